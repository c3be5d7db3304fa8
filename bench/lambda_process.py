#!/usr/bin/env python3
"""Cold start, warm latency and peak memory of Lambda function binaries, through the Lambda
Runtime API emulator (`cargo lambda watch --only-lambda-apis`).

    python3 bench/lambda_process.py [--quick] BINARY...

Run it under scripts/with-test-services (moto and the OTLP receiver, `cargo lambda` on PATH), with
ORDERS_TABLE and IDEMPOTENCY_TABLE set, or with `--create-tables target/.../create-tables`.

What it measures, for each binary:

- cold_ms: process start to the first response. The invoke is already waiting in the emulator
  when the process is spawned, so this is what a client sees on a cold start: the process's init
  (Lambda's "Init Duration") plus the first invocation, its first DynamoDB connection included.
- init_ms: process start to the function's first `GET .../invocation/next`, which is when
  Lambda's Init Duration ends. The runtime API goes through a small forwarding proxy in this
  script that notes the time of that request.
- warm_ms: a second invoke on the same process, right after the first.
- cold_minus_warm_ms: cold minus warm of the same run: the cold start's own cost, with the
  invocation's steady-state work (how many DynamoDB calls it makes) taken out.
- rss_after_two_kib: VmHWM after those two invocations.
- peak_rss_kib: VmHWM of one more process after a burst of invocations sent from several
  threads at once (the emulator queues them; the function runs them one at a time).

The emulator, as this script drives it:

- One emulator serves every run. It queues an invoke that arrives while no function process
  polls, and a new process picks it up, so processes can come and go between invokes, with one
  catch: a killed process leaves its `GET .../next` pending in the emulator, and an invoke that
  arrives before the emulator has dropped that request is handed to the dead connection and
  lost. So after each kill the script waits until the emulator has closed that connection (it
  sees the close through its proxy) before the next invoke. `--restart-emulator` starts a new
  emulator for every process instead, if that ever proves insufficient.
- The emulator writes the head and the body of a `GET .../next` response in two writes without
  TCP_NODELAY; with the function's delayed ACK that held about half of the warm invocations
  back by 40 ms. The proxy acknowledges at once (TCP_QUICKACK), which removes it. Cold
  invocations were not affected (a new connection acknowledges at once).

Runs of the binaries are interleaved (run 1 of each, then run 2 of each, ...) after one discarded
warm-up run per binary, so that a slow phase of the shared machine hits all of them alike.
Progress goes to stderr; the last stdout line is the JSON result, one key per binary.
Function output goes to log files (--log-dir), never to the terminal.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EVENT = json.loads((REPO / "bench" / "events" / "order.json").read_text())
# The emulator's name for a function it does not start itself (--only-lambda-apis).
FUNCTION = "_"
INVOKE_PATH = f"/2015-03-31/functions/{FUNCTION}/invocations"
INVOKE_TIMEOUT_S = 60.0

# Copied from this script's environment into the function's when set.
PASS_THROUGH = (
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "ORDERS_TABLE",
    "IDEMPOTENCY_TABLE",
    "RUST_LOG",
    "AWS_LAMBDA_LOG_LEVEL",
    "AWS_LAMBDA_LOG_FORMAT",
    # Trust roots for an HTTPS endpoint in front of moto (rustls-native-certs reads it).
    "SSL_CERT_FILE",
)
PASS_THROUGH_PREFIXES = ("POWERTOOLS_", "OTEL_")


class BenchError(Exception):
    """A failed check: the run is not valid and nothing is reported."""


def log(message: str) -> None:
    print(f"[lambda_process] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, seconds: float, what: str, log_path: Path) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"{what} did not listen on 127.0.0.1:{port}; log:\n{tail(log_path)}")
            time.sleep(0.05)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def summary(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "runs": [round(value, 2) for value in values],
    }


def proc_status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {field} in /proc/{pid}/status")


class Emulator:
    """`cargo lambda watch --only-lambda-apis` on a free loopback port."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        self.log = open(log_path, "ab")
        # It reads the cargo project it runs in (cargo metadata), so it runs in our package.
        self.process = subprocess.Popen(
            [
                "cargo", "lambda", "watch", "--only-lambda-apis", "--ignore-changes",
                "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port),
            ],
            cwd=REPO / "bench" / "functions",
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(self.port, 60, "cargo lambda watch", log_path)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            # Its own process group: `cargo` and the `cargo-lambda` it runs.
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


class RuntimeApiProxy:
    """Forwards the function's Runtime API connections to the emulator and notes when the first
    `GET .../invocation/next` of the current process arrives: the end of its init."""

    MARKER = b"/runtime/invocation/next"

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.first_next: float | None = None
        self.lock = threading.Lock()
        # One event per connection, set when the emulator has closed its side.
        self.connections: list[threading.Event] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.first_next = None

    def wait_closed(self, seconds: float) -> bool:
        """Waits until the emulator has closed every connection of the processes stopped so far.

        A stopped function leaves a `GET .../next` pending in the emulator. Until the emulator
        notices the closed connection and drops that request, it would hand the next invoke to
        it, and the invoke would be lost (seen as a timeout). The emulator closes its side when
        it drops the request, so that close is the signal that the next invoke is safe."""
        deadline = time.monotonic() + seconds
        with self.lock:
            pending, self.connections = self.connections, []
        for closed in pending:
            if not closed.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            closed = threading.Event()
            with self.lock:
                self.connections.append(closed)
            threading.Thread(target=self._pipe, args=(client, upstream, True, None),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False, closed),
                             daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, from_function: bool,
              closed: threading.Event | None) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                # Acknowledge at once (Linux clears the flag after each receive). The emulator
                # writes a response's head and body in two writes without TCP_NODELAY, so a
                # delayed ACK from the function's side held the body back by Linux's 40 ms
                # delayed-ACK timer on about half of the warm invocations.
                source.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                if from_function and self.first_next is None and self.MARKER in data:
                    now = time.perf_counter()
                    with self.lock:
                        if self.first_next is None:
                            self.first_next = now
                target.sendall(data)
        except OSError:
            pass
        finally:
            # Half-close, so that the emulator sees the function's end of the connection and
            # the other direction still learns when the emulator closes its end.
            for sock, how in ((target, socket.SHUT_WR), (source, socket.SHUT_RD)):
                try:
                    sock.shutdown(how)
                except OSError:
                    pass
            if closed is not None:
                source.close()
                target.close()
                closed.set()

    def close(self) -> None:
        self.listener.close()


class Invocation(threading.Thread):
    """One invoke through the emulator's Invoke API, in a thread; `sent` is set once the request
    is written, `answered` is the time the response arrived."""

    def __init__(self, port: int, order_id: str):
        super().__init__(daemon=True)
        self.port = port
        self.order_id = order_id
        self.sent = threading.Event()
        self.answered: float | None = None
        self.status: int | None = None
        self.body = b""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=INVOKE_TIMEOUT_S)
            payload = json.dumps({**EVENT, "order_id": self.order_id})
            connection.request("POST", INVOKE_PATH, body=payload,
                               headers={"content-type": "application/json"})
            self.sent.set()
            response = connection.getresponse()
            self.body = response.read()
            self.answered = time.perf_counter()
            self.status = response.status
            connection.close()
        except BaseException as error:  # reported by check()
            self.error = error
            self.sent.set()

    def check(self, what: str, log_path: Path) -> None:
        if self.is_alive():
            raise BenchError(f"{what}: no answer within {INVOKE_TIMEOUT_S:.0f} s "
                             f"(order {self.order_id}); function log:\n{tail(log_path)}")
        if self.error is not None:
            raise BenchError(f"{what}: invoke failed: {self.error!r}; function log:\n{tail(log_path)}")
        try:
            receipt = json.loads(self.body)
        except ValueError:
            receipt = None
        if (self.status != 200 or not isinstance(receipt, dict)
                or receipt.get("order_id") != self.order_id or receipt.get("accepted") is not True):
            raise BenchError(f"{what}: expected 200 with the receipt of {self.order_id}, got "
                             f"{self.status} {self.body[:500]!r}; function log:\n{tail(log_path)}")


def invoke(port: int, order_id: str, what: str, log_path: Path) -> float:
    """A synchronous invoke; returns its round trip in milliseconds."""
    invocation = Invocation(port, order_id)
    start = time.perf_counter()
    invocation.start()
    invocation.join(INVOKE_TIMEOUT_S + 5)
    invocation.check(what, log_path)
    return (invocation.answered - start) * 1000


class Bench:
    def __init__(self, args: argparse.Namespace, env: dict[str, str]):
        self.args = args
        self.env = env
        self.log_dir = Path(args.log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.emulator: Emulator | None = None
        self.proxy: RuntimeApiProxy | None = None
        self.running: list[subprocess.Popen] = []
        self.emulator_starts = 0

    # The emulator and its proxy.
    def start_emulator(self) -> None:
        self.stop_emulator()
        self.emulator = Emulator(self.log_dir / "emulator.log")
        self.proxy = RuntimeApiProxy(self.emulator.port)
        self.emulator_starts += 1

    def stop_emulator(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
            self.proxy = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None

    def function_env(self) -> dict[str, str]:
        assert self.proxy is not None
        return {
            **self.env,
            "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{self.proxy.port}/.rt",
        }

    # Function processes.
    def spawn(self, binary: Path, log_path: Path, header: str) -> subprocess.Popen:
        with open(log_path, "ab") as log_file:
            log_file.write(f"\n===== {header}\n".encode())
            log_file.flush()
            process = subprocess.Popen([str(binary)], env=self.function_env(),
                                       stdin=subprocess.DEVNULL, stdout=log_file,
                                       stderr=subprocess.STDOUT)
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen, check: bool = True) -> None:
        # SIGKILL, as Lambda does to an environment it retires: nothing to flush is waited for.
        if process.poll() is None:
            process.kill()
        process.wait()
        self.running.remove(process)
        if self.proxy is not None and not self.proxy.wait_closed(10) and check:
            raise BenchError("the emulator kept a stopped function's connection open for 10 s; "
                             "rerun with --restart-emulator")

    def stop_all(self) -> None:
        for process in list(self.running):
            self.stop(process, check=False)
        self.stop_emulator()

    # Measurements.
    def cold_run(self, binary: Path, label: str) -> dict:
        if self.args.restart_emulator or self.emulator is None:
            self.start_emulator()
        assert self.emulator is not None and self.proxy is not None
        log_path = self.log_dir / f"{binary.name}.log"
        tag = uuid.uuid4().hex[:10]
        first = Invocation(self.emulator.port, f"cold-{tag}")
        first.start()
        if not first.sent.wait(10):
            raise BenchError("the first invoke could not be sent")
        # Let the emulator take the request in before the process exists.
        time.sleep(0.02)
        self.proxy.reset()
        start = time.perf_counter()
        process = self.spawn(binary, log_path, label)
        try:
            first.join(INVOKE_TIMEOUT_S + 5)
            first.check(f"{binary.name} {label}: cold invoke", log_path)
            if self.proxy.first_next is None:
                raise BenchError(f"{binary.name} {label}: no GET /invocation/next seen by the proxy")
            cold = (first.answered - start) * 1000
            init = (self.proxy.first_next - start) * 1000
            warm = invoke(self.emulator.port, f"warm-{tag}", f"{binary.name} {label}: warm invoke",
                          log_path)
            rss = proc_status_kib(process.pid, "VmHWM")
        except BaseException:
            self.stop(process, check=False)
            raise
        self.stop(process)
        return {"cold": cold, "init": init, "warm": warm, "rss": rss}

    def burst(self, binary: Path) -> dict:
        if self.args.restart_emulator or self.emulator is None:
            self.start_emulator()
        assert self.emulator is not None
        log_path = self.log_dir / f"{binary.name}.log"
        total, threads = self.args.burst, self.args.threads
        failures: list[str] = []
        tag = uuid.uuid4().hex[:10]
        port = self.emulator.port

        def sender(index: int) -> None:
            for number in range(index, total, threads):
                try:
                    invoke(port, f"burst-{tag}-{number}", f"{binary.name} burst #{number}", log_path)
                except BenchError as error:
                    failures.append(str(error))
                    return

        # The invokes are queued first, so that the burst is waiting when the process starts.
        start = time.perf_counter()
        workers = [threading.Thread(target=sender, args=(index,), daemon=True)
                   for index in range(threads)]
        for worker in workers:
            worker.start()
        time.sleep(0.05)
        process = self.spawn(binary, log_path, f"burst of {total}")
        try:
            for worker in workers:
                worker.join()
            seconds = time.perf_counter() - start
            if failures:
                raise BenchError(f"{len(failures)} burst invocations failed; first: {failures[0]}")
            if process.poll() is not None:
                raise BenchError(f"{binary.name} exited during the burst; log:\n{tail(log_path)}")
            peak = proc_status_kib(process.pid, "VmHWM")
            rss_now = proc_status_kib(process.pid, "VmRSS")
        except BaseException:
            self.stop(process, check=False)
            raise
        self.stop(process)
        return {"peak_rss_kib": peak, "rss_after_burst_kib": rss_now, "burst": total,
                "burst_s": round(seconds, 2), "burst_per_s": round(total / seconds, 1)}

    def run(self, binaries: list[Path]) -> dict:
        samples: dict[str, list[dict]] = {binary.name: [] for binary in binaries}
        for binary in binaries:
            log_path = self.log_dir / f"{binary.name}.log"
            log_path.write_bytes(b"")
            self.cold_run(binary, "warm-up (discarded)")
        for run in range(1, self.args.runs + 1):
            for binary in binaries:
                sample = self.cold_run(binary, f"run {run}")
                samples[binary.name].append(sample)
                log(f"run {run}/{self.args.runs} {binary.name}: cold {sample['cold']:.1f} ms, "
                    f"init {sample['init']:.1f} ms, warm {sample['warm']:.1f} ms, "
                    f"VmHWM {sample['rss']} KiB")
        results = {}
        for binary in binaries:
            runs = samples[binary.name]
            burst = self.burst(binary)
            log(f"burst {binary.name}: {burst}")
            results[binary.name] = {
                "cold_ms": summary([run["cold"] for run in runs]),
                "init_ms": summary([run["init"] for run in runs]),
                "warm_ms": summary([run["warm"] for run in runs]),
                "cold_minus_warm_ms": summary([run["cold"] - run["warm"] for run in runs]),
                "rss_after_two_kib": int(statistics.median(run["rss"] for run in runs)),
                **burst,
                "size_bytes": binary.stat().st_size,
            }
        log(f"{self.emulator_starts} emulator start(s) for "
            f"{len(binaries) * (self.args.runs + 2)} function processes")
        return results


def lambda_env(args: argparse.Namespace) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "TZ": ":UTC",
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(args.memory_size),
        "POWERTOOLS_SERVICE_NAME": "orders",
        "POWERTOOLS_METRICS_NAMESPACE": "Bakery",
    }
    for name, value in os.environ.items():
        if name in PASS_THROUGH or name.startswith(PASS_THROUGH_PREFIXES):
            env[name] = value
    if "AWS_REGION" in env:
        env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
    return env


def create_tables(binary: str) -> None:
    output = subprocess.run([binary], check=True, capture_output=True, text=True).stdout
    tables = json.loads(output.strip().splitlines()[-1])
    os.environ["ORDERS_TABLE"] = tables["orders_table"]
    os.environ["IDEMPOTENCY_TABLE"] = tables["idempotency_table"]
    log(f"tables: {tables}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binaries", nargs="+", type=Path, help="function binaries to measure")
    parser.add_argument("--quick", action="store_true", help="5 runs and a burst of 50")
    parser.add_argument("--runs", type=int, help="cold runs per binary (default 11, quick 5)")
    parser.add_argument("--burst", type=int, help="invocations of the memory burst (default 200, quick 50)")
    parser.add_argument("--threads", type=int, default=8, help="threads sending the burst")
    parser.add_argument("--memory-size", type=int, default=128, help="AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    parser.add_argument("--log-dir", default=str(REPO / "target" / "bench" / "lambda-process"),
                        help="where the emulator and function logs go")
    parser.add_argument("--create-tables", metavar="BINARY",
                        help="run this create-tables binary when ORDERS_TABLE or IDEMPOTENCY_TABLE is not set")
    parser.add_argument("--restart-emulator", action="store_true",
                        help="a new emulator for every function process")
    args = parser.parse_args()
    args.runs = args.runs or (5 if args.quick else 11)
    args.burst = args.burst or (50 if args.quick else 200)

    for binary in args.binaries:
        if not os.access(binary, os.X_OK):
            parser.error(f"{binary} is not an executable file")
    if len({binary.name for binary in args.binaries}) != len(args.binaries):
        parser.error("the binaries must have different file names")
    if not os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"):
        parser.error("AWS_ENDPOINT_URL_DYNAMODB is not set: run under scripts/with-test-services")
    if not (os.environ.get("ORDERS_TABLE") and os.environ.get("IDEMPOTENCY_TABLE")):
        if not args.create_tables:
            parser.error("set ORDERS_TABLE and IDEMPOTENCY_TABLE, or pass --create-tables")
        create_tables(args.create_tables)

    bench = Bench(args, lambda_env(args))
    try:
        results = bench.run([binary.resolve() for binary in args.binaries])
    except BenchError as error:
        log(f"FAILED: {error}")
        return 1
    finally:
        bench.stop_all()
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
