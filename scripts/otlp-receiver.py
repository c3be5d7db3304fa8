"""The test services' OTLP/HTTP receiver: oteltap's receiver, writing each span it receives as
one line of JSON on stdout, and nothing else.

`oteltap`'s own command first prints a line that is not JSON ("Listening for OTLP/HTTP telemetry
on port N") on stdout, which made the spans file that the scripts write, and that the READMEs
send readers to with `jq`, not NDJSON (found by a review from the docs). That line goes to stderr
here.

Usage: otlp-receiver.py PORT (run with the test services' virtualenv Python).
"""

import asyncio
import sys

from oteltap.oteltap_http_protobuf_receiver import OtelTapHttpProtobufReceiver
from oteltap.oteltap_http_protobuf_receiver_settings import (
    OtelTapHttpProtobufReceiverSettings,
)


async def receive(port: int) -> None:
    settings = OtelTapHttpProtobufReceiverSettings(
        http_port=port,
        print_traces_as_ndjson=True,
        print_logs_as_ndjson=True,
        print_metrics_as_ndjson=True,
    )
    async with OtelTapHttpProtobufReceiver(settings):
        print(f"Listening for OTLP/HTTP telemetry on port {port}", file=sys.stderr, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: otlp-receiver.py PORT")
    try:
        asyncio.run(receive(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
