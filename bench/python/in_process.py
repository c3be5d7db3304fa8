"""Per-invocation cost of the Powertools (Python) order handler, in process.

    in_process.py [--iterations N] [--warmup W] [--quick] [--event bench/events/order.json]

Rows, each timed call by call with perf_counter_ns:
- bare:       the business logic alone (handler.build_bare);
- first_call: Logger + Metrics + idempotency, a new order id per call (`o-{i}`), on a fresh
              InMemoryPersistenceLayer: conditional put, the body, update;
- replay:     the same order id every call, after one first call: a failed put that returns the
              stored receipt, the body skipped.
Plus import_ms: what importing Logger, Metrics and the idempotency utility adds to a fresh
interpreter's start.

Log lines and EMF documents go to stdout, as in Lambda; while timing, file descriptor 1 points
at /dev/null so a terminal or a pipe reader doesn't slow them down. Before timing, one call is
captured and checked, so a run that silently logs nothing can't pass for a fast one.
The last line on the real stdout is one JSON object for scripts/bench.
"""

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

# No __pycache__ beside the scripts in the work tree (the venv's own caches are kept).
sys.dont_write_bytecode = True
import handler as bench  # noqa: E402  (sets Powertools' environment before importing it)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_EVENT = os.path.join(HERE, "..", "events", "order.json")

# Rust's stdout is line-buffered whatever it is connected to, and Lambda delivers each line as it
# is written; Python would buffer whole blocks when stdout isn't a terminal. Line buffering
# everywhere makes each log line and EMF document one write, whoever runs this.
sys.stdout.reconfigure(line_buffering=True)


@contextlib.contextmanager
def stdout_to(fd):
    """Points file descriptor 1 at `fd` for the block.

    At the descriptor, not by swapping sys.stdout: Powertools' Logger keeps the sys.stdout object
    it saw when its first instance was made, while Metrics prints to the current one.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(fd, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def quiet_stdout():
    with open(os.devnull, "w") as devnull, stdout_to(devnull.fileno()):
        yield


def captured_call(handler, event):
    """One invocation with stdout captured: (response, JSON documents printed, warnings)."""
    with tempfile.TemporaryFile("w+") as out:
        with stdout_to(out.fileno()), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            response = handler(event, bench.FakeContext())
        out.seek(0)
        docs = [json.loads(line) for line in out.read().splitlines() if line.strip()]
    return response, docs, [str(w.message) for w in caught]


def fail(message):
    sys.exit(f"sanity check failed: {message}")


def sanity_check(handler, event, expected):
    """Checks that a first call logs and emits its metric, and what a replay does.

    `event` must be new to the handler's persistence layer. Returns what the replay printed.
    """
    response, docs, _ = captured_call(handler, event)
    if response != expected:
        fail(f"first call answered {response!r}, expected {expected!r}")
    logs = [d for d in docs if d.get("message") == "order placed"]
    if len(logs) != 1:
        fail(f"expected one 'order placed' JSON log line on stdout, got: {docs!r}")
    log = logs[0]
    for key, value in (("level", "INFO"), ("service", "orders"), ("order_id", event["order_id"])):
        if log.get(key) != value:
            fail(f"log line has {key}={log.get(key)!r}, expected {value!r}: {log!r}")
    if "function_request_id" not in log:
        fail(f"log line lacks the Lambda context keys: {log!r}")
    emf = [d for d in docs if "_aws" in d]
    if len(emf) != 1:
        fail(f"expected one EMF document on stdout, got: {docs!r}")
    directive = emf[0]["_aws"]["CloudWatchMetrics"][0]
    names = [m["Name"] for m in directive["Metrics"]]
    if directive["Namespace"] != "Bakery" or "OrdersPlaced" not in names:
        fail(f"EMF document lacks Bakery/OrdersPlaced: {emf[0]!r}")
    if "channel" not in directive["Dimensions"][0] or emf[0].get("channel") != event["channel"]:
        fail(f"EMF document lacks the channel dimension: {emf[0]!r}")

    response, docs, caught = captured_call(handler, event)
    if response != expected:
        fail(f"replay answered {response!r}, expected the stored {expected!r}")
    return {
        "log_lines": sum(1 for d in docs if "message" in d),
        "emf_documents": sum(1 for d in docs if "_aws" in d),
        "no_metrics_warning": any("No application metrics" in w for w in caught),
    }


def summary(samples_ns, scale):
    """median, mean, p90 (nearest rank) of `samples_ns` divided by `scale`, and n."""
    ordered = sorted(samples_ns)
    n = len(ordered)
    return {
        "median": round(statistics.median(ordered) / scale, 3),
        "mean": round(statistics.fmean(ordered) / scale, 3),
        "p90": round(ordered[math.ceil(0.9 * n) - 1] / scale, 3),
        "n": n,
    }


def time_calls(handler, events):
    """Calls `handler` once per event, each with a new context, and returns the times in ns.

    Making the context and the event copy is the runtime's work, so it stays outside the clock.
    The garbage collector stays on, as in Lambda.
    """
    times = []
    clock = time.perf_counter_ns
    for event in events:
        context = bench.FakeContext()
        start = clock()
        handler(event, context)
        times.append(clock() - start)
    return times


POWERTOOLS_IMPORTS = (
    "from aws_lambda_powertools import Logger, Metrics; "
    "from aws_lambda_powertools.utilities.idempotency import idempotent, IdempotencyConfig"
)


def import_ms(code, runs=5):
    """Median start-up time that `code` adds to a fresh interpreter (this venv's), in ms.

    Fresh interpreters running `code`, minus fresh ones doing nothing.
    """

    def start(c):
        begin = time.perf_counter_ns()
        subprocess.run([sys.executable, "-c", c], check=True)
        return time.perf_counter_ns() - begin

    start(code)  # writes any missing .pyc, so that no run pays for compiling
    with_imports, bare = [], []
    for _ in range(runs):  # interleaved, so a burst of load on the machine hits both
        with_imports.append(start(code))
        bare.append(start("pass"))
    return round((statistics.median(with_imports) - statistics.median(bare)) / 1e6, 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--quick", action="store_true", help="500 iterations, 50 warm-up")
    parser.add_argument("--event", default=DEFAULT_EVENT)
    args = parser.parse_args()
    iterations = args.iterations or (500 if args.quick else 5000)
    warmup = args.warmup if args.warmup is not None else (50 if args.quick else 500)

    with open(args.event) as f:
        event = json.load(f)
    expected = bench.receipt(event)

    def orders(prefix, count):
        return [dict(event, order_id=f"{prefix}{i}") for i in range(count)]

    # Bare.
    bare = bench.build_bare()
    time_calls(bare, [event] * warmup)
    bare_times = time_calls(bare, [event] * iterations)

    # First calls: the sanity check's two calls and the warm-up use ids of their own.
    first = bench.build(bench.InMemoryPersistenceLayer())
    sanity = dict(event, order_id="sanity-1")
    replay_output = sanity_check(first, sanity, bench.receipt(sanity))
    with quiet_stdout():
        time_calls(first, orders("warm-", warmup))
        first_times = time_calls(first, orders("o-", iterations))

    # Replays of one order, completed once before.
    replay = bench.build(bench.InMemoryPersistenceLayer())
    with quiet_stdout():
        if replay(event, bench.FakeContext()) != expected:
            fail("the replay row's first call answered something else")
        time_calls(replay, [event] * warmup)
        replay_times = time_calls(replay, [event] * iterations)

    from aws_lambda_powertools.shared.version import VERSION

    result = {
        "python": sys.version.split()[0],
        "powertools": VERSION,
        "bare_us": summary(bare_times, 1e3),
        "first_call_us": summary(first_times, 1e3),
        "replay_us": summary(replay_times, 1e3),
        "import_ms": import_ms(POWERTOOLS_IMPORTS),
        # The idempotency package imports its DynamoDB layer, hence boto3, even when another
        # layer is used: this is that part of import_ms.
        "import_boto3_ms": import_ms("import boto3"),
        "replay_output": replay_output,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
