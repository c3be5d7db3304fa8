"""Latency of the Powertools (Python) order handler with its idempotency records in DynamoDB.

    AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:PORT through_dynamodb.py [--iterations N] [--quick]

Against the DynamoDB-compatible server at AWS_ENDPOINT_URL_DYNAMODB (never AWS itself): a new
table, the handler of handler.py on DynamoDBPersistenceLayer, and two rows timed call by call:
- first_call: a new order id each call;
- duplicate:  the ids of first_call again, each completed earlier.
Each call's DynamoDB API calls are counted with a botocore hook on the layer's own client, so
the JSON says how many round trips Powertools makes per invocation, and which. The table is
deleted at the end. The last line on stdout is one JSON object for scripts/bench.
"""

import argparse
import json
import os
import sys
import time
import uuid

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
if not ENDPOINT:
    sys.exit("through_dynamodb.py: set AWS_ENDPOINT_URL_DYNAMODB to a local DynamoDB-compatible server")
# Dummy credentials: the local server doesn't check them, and they can't reach a real account.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", os.environ["AWS_REGION"])

import boto3  # noqa: E402

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts in the work tree
import handler as bench  # noqa: E402  (sets Powertools' environment before importing it)
from aws_lambda_powertools.shared.version import VERSION  # noqa: E402
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer  # noqa: E402
from in_process import DEFAULT_EVENT, fail, quiet_stdout, sanity_check, summary  # noqa: E402


def create_table(client):
    name = f"powertools-bench-{uuid.uuid4().hex[:12]}"
    # The table DynamoDBPersistenceLayer expects by default: hash key `id`, a string.
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for _ in range(100):
        if client.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE":
            return name
        time.sleep(0.1)
    raise RuntimeError(f"table {name} never became ACTIVE")


class CallCounter:
    """Records the DynamoDB operations a botocore client makes.

    `before-call` fires once per API call (whatever retries follow), `before-send` once per HTTP
    request, so `sends - len(ops)` counts retries. Both handlers return None: a value would
    short-circuit the request.
    """

    def __init__(self, client):
        self.ops = []
        self.sends = 0
        client.meta.events.register("before-call.dynamodb", self._on_call)
        client.meta.events.register("before-send.dynamodb", self._on_send)

    def _on_call(self, model, **_):
        self.ops.append(model.name)

    def _on_send(self, **_):
        self.sends += 1


def run(handler, counter, events, expected):
    """Calls `handler` once per event; returns the times in ns and each call's operations."""
    times, ops = [], []
    clock = time.perf_counter_ns
    for event in events:
        context = bench.FakeContext()
        counter.ops = []
        start = clock()
        response = handler(event, context)
        times.append(clock() - start)
        ops.append(tuple(counter.ops))
        if response != expected(event):
            fail(f"{event['order_id']} answered {response!r}")
    return times, ops


def call_counts(name, ops):
    """ddb_calls_<name> (an int if every call made as many, else None), its min and max, and the
    distinct operation sequences seen."""
    counts = [len(o) for o in ops]
    return {
        f"ddb_calls_{name}": counts[0] if min(counts) == max(counts) else None,
        f"ddb_calls_{name}_min": min(counts),
        f"ddb_calls_{name}_max": max(counts),
        f"ddb_ops_{name}": sorted({" ".join(o) for o in ops}),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--quick", action="store_true", help="30 iterations")
    parser.add_argument("--event", default=DEFAULT_EVENT)
    args = parser.parse_args()
    iterations = args.iterations or (30 if args.quick else 200)
    warmup = 3 if args.quick else 10  # connection set up, first-use costs of botocore

    with open(args.event) as f:
        event = json.load(f)

    def orders(prefix, count):
        return [dict(event, order_id=f"{prefix}{i}") for i in range(count)]

    admin = boto3.client("dynamodb")
    table = create_table(admin)
    try:
        # The layer makes its own client from a default session, as in a function; the hook goes
        # on that client (DynamoDBPersistenceLayer.client in 3.37.0).
        layer = DynamoDBPersistenceLayer(table_name=table)
        if layer.client.meta.endpoint_url != ENDPOINT:
            fail(f"the layer's client talks to {layer.client.meta.endpoint_url}, not {ENDPOINT}")
        counter = CallCounter(layer.client)
        handler = bench.build(layer)

        sanity = dict(event, order_id="sanity-1")
        sanity_check(handler, sanity, bench.receipt(sanity))
        with quiet_stdout():
            warm = orders("warm-", warmup)
            run(handler, counter, warm, bench.receipt)
            run(handler, counter, warm, bench.receipt)
            counter.sends = 0
            fresh = orders("o-", iterations)
            first_times, first_ops = run(handler, counter, fresh, bench.receipt)
            dup_times, dup_ops = run(handler, counter, fresh, bench.receipt)
        calls = sum(len(o) for o in first_ops + dup_ops)
    finally:
        admin.delete_table(TableName=table)

    result = {
        "python": sys.version.split()[0],
        "powertools": VERSION,
        "boto3": boto3.__version__,
        "first_call_ms": summary(first_times, 1e6),
        "duplicate_ms": summary(dup_times, 1e6),
        **call_counts("first", first_ops),
        **call_counts("duplicate", dup_ops),
        "http_retries": counter.sends - calls,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
