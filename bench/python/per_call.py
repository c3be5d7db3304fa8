"""The Python rows of the in-process comparison as plain loops, for instruction counts under
callgrind (the Rust side is bench/functions/benches/per_call.rs):

    valgrind --tool=callgrind --callgrind-out-file=/dev/null PYTHON bench/python/per_call.py ROW CALLS

ROW is bare, first_call or replay, as in in_process.py; log lines and EMF documents go to
/dev/null. scripts/bench runs each row with two numbers of calls and reports the difference per
call, so the interpreter's start and the imports cancel out.
"""

import json
import os
import sys

sys.dont_write_bytecode = True
import handler as bench  # noqa: E402  (sets Powertools' environment before importing it)

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    row, calls = sys.argv[1], int(sys.argv[2])
    with open(os.path.join(HERE, "..", "events", "order.json")) as f:
        event = json.load(f)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    if row == "bare":
        handler = bench.build_bare()
        events = [event] * calls
    elif row == "first_call":
        handler = bench.build(bench.InMemoryPersistenceLayer())
        events = [dict(event, order_id=f"o-{i}") for i in range(calls)]
    elif row == "replay":
        handler = bench.build(bench.InMemoryPersistenceLayer())
        handler(event, bench.FakeContext())
        events = [event] * calls
    else:
        sys.exit(f"unknown row {row}")
    for item in events:
        handler(item, bench.FakeContext())


if __name__ == "__main__":
    main()
