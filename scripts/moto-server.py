"""moto's DynamoDB-compatible server, with each request handled under one lock.

DynamoDB applies a conditional write atomically. moto's own threaded server does not: two
concurrent PutItem calls with `attribute_not_exists(id)` can both pass the check, which makes
the idempotency concurrency tests fail under load for a reason that is not ours. Serializing the
requests gives moto DynamoDB's atomicity; connections are still accepted in parallel.

Usage: moto-server.py HOST PORT (run with the test services' virtualenv Python).
"""

import os
import sys
import threading

# Written against moto's internals as of this version: a moto upgrade must fail here, loudly,
# not start a server that has silently lost the serialization (and so DynamoDB's atomicity).
TESTED_MOTO_VERSION = "5.2.5"

try:
    import moto
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import BaseWSGIServer, run_simple
except ImportError as error:
    sys.exit(
        f"moto-server.py: moto's internals moved ({error}). This script wraps moto's werkzeug "
        f"app to serialize requests; check the import paths against the installed moto and "
        f"update TESTED_MOTO_VERSION and MOTO_SPEC in scripts/with-test-services together."
    )

if getattr(moto, "__version__", None) != TESTED_MOTO_VERSION:
    sys.exit(
        f"moto-server.py: moto {getattr(moto, '__version__', '?')} is installed, but this script "
        f"was checked against moto {TESTED_MOTO_VERSION}. Check that DomainDispatcherApplication "
        f"still handles one request per call (so the lock below serializes them), then update "
        f"TESTED_MOTO_VERSION and MOTO_SPEC in scripts/with-test-services together."
    )


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            # Materialize the body inside the lock: the whole request is one atomic step.
            return list(app(environ, start_response))

    # werkzeug listens with a backlog of 128. The tests open a thousand connections at once (a
    # thousand concurrent duplicates): past the backlog the kernel drops the SYNs, the client
    # retries them after 1 s and 3 s, and the AWS SDK's 3.1 s connect timeout fails the call,
    # which is moto's limit, not ours (DynamoDB accepts them). The kernel caps it at somaxconn.
    if "request_queue_size" not in vars(BaseWSGIServer):
        sys.exit("moto-server.py: werkzeug's BaseWSGIServer no longer sets request_queue_size")
    BaseWSGIServer.request_queue_size = 4096
    run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
