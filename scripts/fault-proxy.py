"""A fault-injecting HTTP/1.1 proxy in front of the DynamoDB test server (moto).

moto always answers, and answers at once. The failures a Lambda function meets in production do
not look like that: a connection refused or reset, a request that never gets an answer, a slow
one, or a write that DynamoDB applied while the answer was lost on the way back. This proxy sits
between a test's SDK client and moto and produces exactly those, on demand, so that the
idempotency store's error handling is tested against the real wire behaviour.

Tests run in parallel processes, so faults are isolated per test in *channels*: each channel is
its own listening port on 127.0.0.1 that forwards to moto, with its own rule and counters.

Control API (plain HTTP/JSON on the control port):

    POST   /channels              -> 201 {"id": "...", "port": N}   a new channel, rule "pass"
    PUT    /channels/<id>/rule    body: a rule (below)               -> 200 {"rule": ...}
    GET    /channels/<id>/stats   -> 200 {"requests": {"PutItem": 2, ...}, "connections": N,
                                          "refused": N}
    DELETE /channels/<id>         -> 204, the port and every connection on it closed

A rule is {"action": A} plus, optionally, "target": "PutItem" (only requests whose
X-Amz-Target header ends with ".PutItem"; other requests pass) and "times": N (only the next N
matching requests, or connections for an untargeted "refuse"; then everything passes) and
"skip": N (the first N matching requests pass, then the rule applies: the third PutItem of an
invocation, say; a "refuse" with "skip" needs a "target", since an untargeted one acts on
connections). Actions:

    pass     forward the request and stream the answer back
    refuse   reset new connections as soon as they are accepted and close the existing ones;
             with a target, reset the connection when a matching request arrives
    hang     read the request and neither forward nor answer it: the connection is held until
             the client closes it, the rule changes or the channel is deleted, then closed
    delay    forward after "ms" milliseconds ({"action": "delay", "ms": 200})
    cut      forward the request, read moto's whole answer (the write is applied), then close the
             client connection without sending it
    drop     close the client connection without forwarding the request
    error    answer without forwarding, as DynamoDB answers an error: "status" (400 or 500, say)
             and "code" ({"action": "error", "status": 400, "code":
             "ProvisionedThroughputExceededException"}); the body is DynamoDB's JSON error
             (`__type` and `message`), so the SDK reads the code, and retries what it retries

Usage: fault-proxy.py HOST CONTROL_PORT UPSTREAM_HOST:UPSTREAM_PORT (stdlib only, Python 3.11).
"""

import asyncio
import collections
import itertools
import json
import socket
import struct
import sys

ACTIONS = {"pass", "refuse", "hang", "delay", "cut", "drop", "error"}
MAX_HEAD = 64 * 1024
CHUNK = 64 * 1024


def log(message: str) -> None:
    print(f"[fault-proxy] {message}", file=sys.stderr, flush=True)


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The start line and the headers (names lower-cased) of a request or response head."""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def reset(writer: asyncio.StreamWriter) -> None:
    """Closes a connection with a TCP reset instead of an orderly shutdown."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


def check_rule(rule: object) -> dict:
    """The rule, validated; raises ValueError with what is wrong."""
    if not isinstance(rule, dict) or rule.get("action") not in ACTIONS:
        raise ValueError(f"a rule is an object with an action in {sorted(ACTIONS)}")
    unknown = set(rule) - {"action", "target", "times", "skip", "ms", "status", "code"}
    if unknown:
        raise ValueError(f"unknown rule fields {sorted(unknown)}")
    if rule["action"] == "delay" and not isinstance(rule.get("ms"), int | float):
        raise ValueError('a delay rule needs "ms"')
    if rule["action"] == "error" and not (
        isinstance(rule.get("status"), int)
        and 400 <= rule["status"] <= 599
        and isinstance(rule.get("code"), str)
        and rule["code"].isidentifier()
    ):
        raise ValueError('an error rule needs "status" (400 to 599) and "code" (a name)')
    for count in ("times", "skip"):
        # A bool is an int to Python: `true` is not a count.
        value = rule.get(count, 0)
        if isinstance(value, bool) or not (isinstance(value, int) and value >= 0):
            raise ValueError(f'"{count}" is a count')
    if "skip" in rule and rule["action"] == "refuse" and "target" not in rule:
        # An untargeted refuse acts on connections, before any request is read.
        raise ValueError('"skip" counts requests: a "refuse" with "skip" needs a "target"')
    if "target" in rule and not isinstance(rule["target"], str):
        raise ValueError('"target" is an operation name such as "PutItem"')
    return dict(rule)


class Channel:
    """One listening port forwarding to the upstream, with its rule and counters."""

    def __init__(self, channel_id: str, upstream: tuple[str, int]):
        self.id = channel_id
        self.upstream = upstream
        self.rule = {"action": "pass"}
        self.changed = asyncio.Event()  # set (and replaced) whenever the rule changes
        self.requests = collections.Counter()
        self.connections = 0
        self.refused = 0
        self.clients: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.closed = False

    async def open(self, host: str) -> int:
        self.server = await asyncio.start_server(self.serve, host, 0)
        return self.server.sockets[0].getsockname()[1]

    def set_rule(self, rule: dict) -> None:
        self.rule = rule
        self.changed.set()
        self.changed = asyncio.Event()
        if rule["action"] == "refuse" and "target" not in rule:
            for writer in list(self.clients):
                reset(writer)

    def close(self) -> None:
        self.closed = True
        self.changed.set()
        if self.server is not None:
            self.server.close()
        for writer in list(self.clients):
            writer.transport.abort()

    def take(self, operation: str | None) -> dict:
        """The rule for one request (or connection, with operation None); counts down "times"."""
        rule = self.rule
        if rule["action"] == "pass":
            return rule
        if operation is None and "target" in rule:
            return {"action": "pass"}
        if operation is not None and rule.get("target", operation) != operation:
            return {"action": "pass"}
        if rule.get("skip", 0) > 0:
            rule["skip"] -= 1
            return {"action": "pass"}
        if "times" in rule:
            if rule["times"] <= 0:
                return {"action": "pass"}
            rule["times"] -= 1
        return rule

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        refused = self.rule["action"] == "refuse" and self.take(None)["action"] == "refuse"
        if self.closed or refused:
            self.refused += 1
            reset(writer)
            return
        self.clients.add(writer)
        upstream = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                start, headers = parse_head(head)
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    writer.write(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n")
                    return
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                target = headers.get("x-amz-target", "")
                operation = target.rsplit(".", 1)[-1] if target else start.split(" ")[0]
                self.requests[operation] += 1
                rule = self.take(operation)
                action = rule["action"]
                if action == "refuse":
                    reset(writer)
                    return
                if action == "drop":
                    return
                if action == "hang":
                    await self.hold(reader)
                    return
                if action == "delay":
                    await asyncio.sleep(rule["ms"] / 1000)
                if action == "error":
                    writer.write(dynamodb_error(rule["status"], rule["code"]))
                    await writer.drain()
                    continue
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.upstream)
                deliver = action != "cut"
                reusable = await forward(head + body, start, upstream, writer, deliver)
                # moto answers `Connection: close`; the client then sees the close, as it would
                # without the proxy.
                if not deliver or not reusable or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            self.clients.discard(writer)
            if upstream is not None:
                upstream[1].close()
            if not writer.transport.is_closing():
                writer.close()

    async def hold(self, reader: asyncio.StreamReader) -> None:
        """Waits until the client closes (or sends anything more), the rule changes or the
        channel closes."""
        client_done = asyncio.ensure_future(reader.read(1))
        rule_changed = asyncio.ensure_future(self.changed.wait())
        await asyncio.wait({client_done, rule_changed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (client_done, rule_changed):
            task.cancel()


def dynamodb_error(status: int, code: str) -> bytes:
    """An HTTP answer with DynamoDB's JSON error body for `code`, the connection kept open."""
    body = json.dumps(
        {
            "__type": f"com.amazonaws.dynamodb.v20120810#{code}",
            "message": f"{code} injected by the fault proxy",
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} Error\r\n"
        "Content-Type: application/x-amz-json-1.0\r\n"
        f"x-amzn-RequestId: fault-proxy-{code}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def forward(request: bytes, start: str, upstream, writer, deliver: bool) -> bool:
    """Sends `request` upstream and streams the response to `writer` (or reads and discards it
    when not `deliver`). Returns whether the upstream connection can be reused."""
    up_reader, up_writer = upstream
    up_writer.write(request)
    await up_writer.drain()
    head = await up_reader.readuntil(b"\r\n\r\n")
    status_line, headers = parse_head(head)
    if deliver:
        writer.write(head)
    status = int(status_line.split(" ")[1])
    no_body = start.startswith("HEAD ") or status in (204, 304) or 100 <= status < 200
    reusable = headers.get("connection", "").lower() != "close" and "HTTP/1.1" in status_line
    if no_body:
        pass
    elif "content-length" in headers:
        remaining = int(headers["content-length"])
        while remaining:
            data = await up_reader.read(min(remaining, CHUNK))
            if not data:
                raise ConnectionError("upstream closed mid-body")
            remaining -= len(data)
            if deliver:
                writer.write(data)
                await writer.drain()
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await up_reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            data = await up_reader.readexactly(size + 2) if size else await read_trailer(up_reader)
            if deliver:
                writer.write(size_line + data)
                await writer.drain()
            if not size:
                break
    else:
        while data := await up_reader.read(CHUNK):
            if deliver:
                writer.write(data)
                await writer.drain()
        reusable = False
    if deliver:
        await writer.drain()
    return reusable


async def read_trailer(reader: asyncio.StreamReader) -> bytes:
    """The rest of a chunked body after its last (empty) chunk: trailers, then a blank line."""
    data = b""
    while True:
        line = await reader.readuntil(b"\r\n")
        data += line
        if line == b"\r\n":
            return data


class Control:
    """The control API: creates, configures, inspects and deletes channels."""

    def __init__(self, host: str, upstream: tuple[str, int]):
        self.host = host
        self.upstream = upstream
        self.channels: dict[str, Channel] = {}
        self.ids = itertools.count(1)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            start, headers = parse_head(head)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            method, path = start.split(" ")[:2]
            status, answer = await self.handle(method, path.strip("/").split("/"), body)
        except Exception as error:  # a broken control request must not stop the proxy
            status, answer = 400, {"error": str(error)}
        payload = b"" if answer is None else json.dumps(answer).encode()
        reason = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request"}.get(status)
        writer.write(
            f"HTTP/1.1 {status} {reason or 'Not Found'}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
        )
        try:
            await writer.drain()
        finally:
            writer.close()

    async def handle(self, method: str, parts: list[str], body: bytes) -> tuple[int, object]:
        if parts == ["channels"] and method == "POST":
            channel = Channel(f"ch{next(self.ids)}", self.upstream)
            port = await channel.open(self.host)
            self.channels[channel.id] = channel
            log(f"channel {channel.id} on port {port}")
            return 201, {"id": channel.id, "port": port}
        if len(parts) < 2 or parts[0] != "channels" or parts[1] not in self.channels:
            return 404, {"error": f"no such channel or route: {method} /{'/'.join(parts)}"}
        channel = self.channels[parts[1]]
        route = (method, tuple(parts[2:]))
        if route == ("PUT", ("rule",)):
            try:
                rule = check_rule(json.loads(body or b"null"))
            except ValueError as error:
                return 400, {"error": str(error)}
            channel.set_rule(rule)
            log(f"channel {channel.id}: {json.dumps(rule)}")
            return 200, {"rule": rule}
        if route == ("GET", ("stats",)):
            return 200, {
                "requests": dict(channel.requests),
                "connections": channel.connections,
                "refused": channel.refused,
            }
        if route == ("DELETE", ()):
            channel.close()
            del self.channels[channel.id]
            log(f"channel {channel.id} closed")
            return 204, None
        return 404, {"error": f"no route {method} /{'/'.join(parts)}"}


async def main() -> None:
    host, control_port = sys.argv[1], int(sys.argv[2])
    upstream_host, upstream_port = sys.argv[3].rsplit(":", 1)
    control = Control(host, (upstream_host, int(upstream_port)))
    server = await asyncio.start_server(control.serve, host, control_port, limit=MAX_HEAD)
    log(f"control on {host}:{control_port}, forwarding to {upstream_host}:{upstream_port}")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
