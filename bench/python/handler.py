"""The order handler of the benchmark suite, written with Powertools for AWS Lambda (Python).

It is the Python twin of `bench/functions` (`accept_with_powertools` behind our idempotency
layer): the order id on every log line, `OrdersPlaced` by channel as EMF, one log line, an
idempotent receipt keyed by `order_id`. `in_process.py` and `through_dynamodb.py` time it.

- `build(persistence_layer)`: the handler behind Logger, Metrics and the idempotency utility.
- `build_bare()`: the same business logic, no Powertools at all.
- `FakeContext`: the Lambda context attributes Powertools reads.
- `InMemoryPersistenceLayer`: DynamoDBPersistenceLayer's semantics over a dict, so the
  in-process rows measure Powertools and not a network.
"""

import datetime as dt
import os
import uuid

# Powertools reads its settings from the environment, some of them at import time, so they are
# fixed before the import. The values are the ones the Rust side uses.
os.environ["POWERTOOLS_SERVICE_NAME"] = "orders"
os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "Bakery"
os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "orders"  # part of every idempotency key
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", os.environ["AWS_REGION"])  # the one botocore reads
# Anything that would change what is measured is cleared: POWERTOOLS_DEV pretty-prints logs and
# *disables metrics*; POWERTOOLS_DEBUG turns on Powertools' own debug logging; the others disable
# a utility, change the level or log the whole event.
for _name in (
    "POWERTOOLS_DEV",
    "POWERTOOLS_DEBUG",
    "POWERTOOLS_METRICS_DISABLED",
    "POWERTOOLS_IDEMPOTENCY_DISABLED",
    "POWERTOOLS_LOGGER_LOG_EVENT",
    "POWERTOOLS_LOGGER_SAMPLE_RATE",
    "POWERTOOLS_LOG_LEVEL",
    "LOG_LEVEL",
    "AWS_LAMBDA_LOG_LEVEL",
    "POWERTOOLS_TRACE_MIDDLEWARES",
):
    os.environ.pop(_name, None)

# No Tracer anywhere: our stack's tracing is not part of this comparison.
from aws_lambda_powertools import Logger, Metrics  # noqa: E402
from aws_lambda_powertools.metrics import MetricUnit  # noqa: E402
from aws_lambda_powertools.utilities.idempotency import (  # noqa: E402
    BasePersistenceLayer,
    IdempotencyConfig,
    idempotent,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (  # noqa: E402
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import (  # noqa: E402
    STATUS_CONSTANTS,
    DataRecord,
)


def receipt(event):
    """The business logic, shared by both handlers (Rust: `accept`)."""
    return {
        "order_id": event["order_id"],
        "accepted": True,
        "total_cents": sum(i["quantity"] * i["price_cents"] for i in event["items"]),
    }


def build_bare():
    """The handler with no Powertools: the floor the other rows are compared with."""

    def handler(event, context):
        return receipt(event)

    return handler


def build(persistence_layer):
    """The handler behind Logger, Metrics and idempotency, stored in `persistence_layer`.

    Decorator order, outermost first, as Powertools' docs show it:
    - `log_metrics` flushes the EMF document in a `finally`, after everything inside ran;
    - `inject_lambda_context` adds the context keys (and cold_start) before the handler logs;
    - `idempotent` innermost, so that a replay skips only the business function: the stored
      receipt is returned without running the body, hence without its log line or metric.
    No payload validation and no local cache: every call goes to the persistence layer.
    """
    logger = Logger(service="orders")
    metrics = Metrics(namespace="Bakery", service="orders")
    config = IdempotencyConfig(event_key_jmespath="order_id")

    @metrics.log_metrics
    @logger.inject_lambda_context
    @idempotent(persistence_store=persistence_layer, config=config)
    def handler(event, context):
        logger.append_keys(order_id=event["order_id"])
        metrics.add_dimension(name="channel", value=event["channel"])
        metrics.add_metric(name="OrdersPlaced", unit=MetricUnit.Count, value=1)
        logger.info("order placed")
        return receipt(event)

    return handler


class FakeContext:
    """What the Lambda runtime passes as `context`, with the attributes Powertools reads.

    A new request id per context, as Lambda gives one per invocation; make one context per call.
    """

    function_name = "orders"
    function_version = "$LATEST"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:orders"
    log_group_name = "/aws/lambda/orders"
    log_stream_name = "2026/01/01/[$LATEST]00000000000000000000000000000000"

    def __init__(self, aws_request_id=None):
        self.aws_request_id = aws_request_id or str(uuid.uuid4())

    def get_remaining_time_in_millis(self):
        # Read by the idempotency utility for the in-progress expiry: 30 s left.
        return 30_000


class InMemoryPersistenceLayer(BasePersistenceLayer):
    """DynamoDBPersistenceLayer (3.37.0) with a dict for a table, written for the benchmark.

    Items are stored as DynamoDB would hold them (plain attribute values, not DataRecord objects)
    and turned into a new DataRecord on every read, like `_item_to_data_record`. The conditional
    put is DynamoDB's condition, and a failed one raises IdempotencyItemAlreadyExistsError with
    the old record, as `ReturnValuesOnConditionCheckFailure=ALL_OLD` makes the DynamoDB layer do:
    so a replay takes the same path (one failed put, no get) as against DynamoDB.
    """

    def __init__(self):
        super().__init__()
        self.items = {}

    def _record(self, item):
        return DataRecord(
            idempotency_key=item["id"],
            status=item["status"],
            expiry_timestamp=item["expiration"],
            in_progress_expiry_timestamp=item.get("in_progress_expiration"),
            response_data=item.get("data", ""),
            payload_hash=item.get("validation", ""),
        )

    def _get_record(self, idempotency_key):
        item = self.items.get(idempotency_key)
        if item is None:
            raise IdempotencyItemNotFoundError
        return self._record(item)

    def _put_record(self, data_record):
        item = {
            "id": data_record.idempotency_key,
            "expiration": data_record.expiry_timestamp,
            "status": data_record.status,
        }
        if data_record.in_progress_expiry_timestamp is not None:
            item["in_progress_expiration"] = data_record.in_progress_expiry_timestamp
        if self.payload_validation_enabled and data_record.payload_hash:
            item["validation"] = data_record.payload_hash

        # DynamoDB's condition: attribute_not_exists(#id) OR #expiry < :now OR (#status =
        # INPROGRESS AND attribute_exists(#in_progress_expiry) AND #in_progress_expiry < :now_ms),
        # on the stored attributes (not DataRecord.status, which turns expired into EXPIRED).
        now = dt.datetime.now()
        old = self.items.get(data_record.idempotency_key)
        if old is not None and not (
            old["expiration"] < int(now.timestamp())
            or (
                old["status"] == STATUS_CONSTANTS["INPROGRESS"]
                and old.get("in_progress_expiration") is not None
                and old["in_progress_expiration"] < int(now.timestamp() * 1000)
            )
        ):
            old_data_record = self._record(old)
            # What the DynamoDB layer does with the ALL_OLD item before raising.
            self._validate_payload(data_payload=data_record, stored_data_record=old_data_record)
            self._save_to_cache(data_record=old_data_record)
            raise IdempotencyItemAlreadyExistsError(old_data_record=old_data_record)
        # PutItem replaces the whole item: an expired record's response data goes with it.
        self.items[data_record.idempotency_key] = item

    def _update_record(self, data_record):
        # UpdateItem SETs these attributes, creating the item if it is missing.
        item = self.items.setdefault(data_record.idempotency_key, {"id": data_record.idempotency_key})
        item["data"] = data_record.response_data
        item["expiration"] = data_record.expiry_timestamp
        item["status"] = data_record.status
        if self.payload_validation_enabled:
            item["validation"] = data_record.payload_hash

    def _delete_record(self, data_record):
        self.items.pop(data_record.idempotency_key, None)
