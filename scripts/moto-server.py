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

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
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

    run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
