#!/usr/bin/env python3
"""The first invocation over HTTPS, with AWS-LC seeding from CPU jitter (built with
AWS_LC_SYS_NO_JITTER_ENTROPY=0, aws-lc-sys's own default) and without it (=1, as the workspace's
.cargo/config.toml builds everything): cold starts of the bare and the
full-stack function through bench/lambda_process.py, with DynamoDB (moto) and the OTLP receiver
behind TLS-terminating proxies on loopback, so that the function's first DynamoDB request and
its first span export each open a TLS connection.

    scripts/with-test-services python3 bench/https_first_call.py [--quick] --create-tables BIN \\
        BARE FULL BARE_NO_JITTER FULL_NO_JITTER

BARE and FULL from `AWS_LC_SYS_NO_JITTER_ENTROPY=0 CARGO_TARGET_DIR=target/jitter cargo build
--profile lambda -p powertools-bench --bin bare-function --bin full-stack-function`, the other two
from the same command without the variable and the target directory.

The proxies' certificate authority is made now with `openssl` and given to the functions as
SSL_CERT_FILE (rustls-native-certs reads it), so nothing else is trusted differently. The last
stdout line is lambda_process.py's JSON, one key per binary (the no-jitter binaries are copied
under names ending in -no-jitter first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[https_first_call] {message}", file=sys.stderr, flush=True)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A certificate authority and a certificate for localhost / 127.0.0.1 that it signed."""
    ca_key, ca, key, request, certificate = (directory / name for name in (
        "ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                          "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n")

    def openssl(*arguments: str) -> None:
        subprocess.run(["openssl", *arguments], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(ca_key), "-out", str(ca), "-days", "1", "-subj", "/CN=bench test CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(request), "-subj", "/CN=localhost")
    openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(certificate), "-days", "1", "-extfile", str(extensions))
    return ca, certificate, key


def pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for side in (source, sink):
            try:
                side.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve_tls(port_to: int, context: ssl.SSLContext) -> int:
    """A thread accepting TLS on a free port and forwarding the plain bytes to 127.0.0.1:port_to."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            threading.Thread(target=connect, args=(client,), daemon=True).start()

    def connect(client: socket.socket) -> None:
        try:
            secure = context.wrap_socket(client, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", port_to))
        except OSError:
            client.close()
            return
        secure.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=pump, args=(upstream, secure), daemon=True).start()
        pump(secure, upstream)

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--create-tables", required=True)
    parser.add_argument("binaries", nargs=4, metavar="BINARY")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="https-first-call-"))
    ca, certificate, key = make_certificates(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    environment = dict(os.environ)
    for variable in ("AWS_ENDPOINT_URL_DYNAMODB", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        port = urlparse(environment[variable]).port
        environment[variable] = f"https://localhost:{serve_tls(port, context)}"
        log(f"{variable}={environment[variable]} (TLS in front of 127.0.0.1:{port})")
    environment["SSL_CERT_FILE"] = str(ca)
    bare, full, bare_no_jitter, full_no_jitter = (Path(binary) for binary in args.binaries)
    renamed = []
    for binary in (bare_no_jitter, full_no_jitter):
        copy = directory / f"{binary.name}-no-jitter"
        shutil.copy2(binary, copy)
        renamed.append(copy)
    # A new emulator per process: the full stack registers the tracer's extension, and
    # `cargo lambda watch` keeps a dead process's extension registered (the next invoke fails).
    command = [sys.executable, str(REPO / "bench" / "lambda_process.py"), "--restart-emulator",
               "--create-tables", args.create_tables, str(bare), str(full), *map(str, renamed)]
    if args.quick:
        command.insert(2, "--quick")
    # The proxies live in this process: run the driver as a child, with the TLS endpoints.
    done = subprocess.run(command, env=environment, stdout=subprocess.PIPE, text=True, check=True)
    print(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
