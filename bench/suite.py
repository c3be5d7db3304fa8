#!/usr/bin/env python3
"""The whole benchmark suite in one run; `scripts/bench [--quick]` starts it under
scripts/with-test-services (moto, the OTLP receiver and `cargo lambda` on PATH).

In order, so that the CPU-bound parts run on a quiet machine, one after the other:
1. builds: the functions with `--profile lambda` (sizes), the drivers in release;
2. criterion: the order handler in process (bare, whole stack, replay, cache hit, JMESPath
   key, with the span) and the Rust peers (our log line against `fmt().json()`, our EMF against
   `metrics_cloudwatch_embedded`, tracing disabled against exporting); the full run adds every
   crate's own benchmark;
3. Powertools for Python 3.37.0 in process, the same handler on the same event;
4. through DynamoDB (moto): ours, then Python's, with each call's requests counted;
5. cold start, warm latency and peak RSS of the bare and the full-stack function through the
   Runtime API emulator (bench/lambda_process.py), then AWS-LC's first random fill;
6. the response latency of an exported invocation (tracing off, exported before returning,
   exported after the response through the tracer's extension; median and p99), and ten
   invocations against a collector that hangs, through the Runtime + Extensions API emulator of
   powertools-tracing's tests (`cargo bench -p powertools-tracing --bench response_latency`);
7. instruction counts per call under callgrind (bench/functions/benches/per_call.rs and
   bench/python/per_call.py), which do not depend on the machine's load;
8. the report: tables on stdout, everything in target/bench/results.json, the headline chart in
   bench/headline.svg, and one summary line.

--quick shortens every part (criterion 1 s warm-up / 2 s measurement, fewer Python iterations,
fewer cold starts) and skips the crates' own benchmarks: about 10 minutes instead of 30+.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import chart

REPO = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
CRITERION = TARGET / "criterion"
OUT = TARGET / "bench"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run(command: list[str], capture: bool = True) -> str:
    """Runs `command` from the repository root; its stderr goes to ours, its stdout is returned
    (or, with capture=False, shown on our stderr as progress)."""
    log("$ " + " ".join(str(part) for part in command))
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE if capture else sys.stderr,
                          text=True, check=True)
    log(f"  {time.monotonic() - started:.0f} s")
    return done.stdout or ""


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def criterion(package: str, bench: str, quick: bool, rows: dict[str, str],
              features: str | None = None) -> dict[str, float]:
    """Runs one criterion bench and returns the median of each of `rows` (name -> group/id), in ns.

    Read right after the run: several benches share ids such as invocation/bare_handler.
    `features`: what the bench target's `required-features` need beyond the package's defaults.
    """
    command = ["cargo", "bench", "-p", package, "--bench", bench]
    if features:
        command += ["--features", features]
    command += ["--"]
    if quick:
        command += ["--warm-up-time", "1", "--measurement-time", "2"]
    run(command, capture=False)
    medians = {}
    for name, path in rows.items():
        estimates = json.loads((CRITERION / path / "new" / "estimates.json").read_text())
        medians[name] = estimates["median"]["point_estimate"]
    return medians


def build() -> dict[str, Path]:
    run(["cargo", "build", "--release", "-p", "powertools-bench",
         "--bin", "ddb-latency", "--bin", "create-tables"], capture=False)
    run(["cargo", "build", "--release", "-p", "entropy-probe"], capture=False)
    run(["cargo", "build", "--profile", "lambda", "-p", "powertools-bench",
         "--bin", "bare-function", "--bin", "full-stack-function"], capture=False)
    return {
        "bare": TARGET / "lambda" / "bare-function",
        "full": TARGET / "lambda" / "full-stack-function",
    }


def in_process(quick: bool) -> dict:
    results = {
        "handler": criterion("powertools-bench", "handler", quick, {
            "bare": "handler/bare",
            "first_call": "handler/full_stack_first_call",
            "replay": "handler/full_stack_replay",
            "cache_hit": "handler/full_stack_local_cache_hit",
            "first_call_jmespath": "handler/full_stack_first_call_jmespath_key",
            "first_call_with_span": "handler/full_stack_with_span_first_call",
        }),
        "log_line": criterion("powertools-logging", "line", quick, {
            "fmt_json": "log_line/fmt_json",
            "powertools": "log_line/powertools_in_invocation",
            "powertools_outside_invocation": "log_line/powertools_outside_invocation",
        }),
        "emf": criterion("powertools-metrics", "emf", quick, {
            "powertools_add_metric": "add_metric/powertools",
            "peer_add_metric": "add_metric/metrics_cloudwatch_embedded",
            "powertools_order_and_flush": "order_and_flush/powertools",
            "peer_order_and_flush": "order_and_flush/metrics_cloudwatch_embedded",
        }),
        "tracing": criterion("powertools-tracing", "invocation", quick, {
            "bare": "invocation/bare_handler",
            "disabled": "invocation/tracing_disabled",
            "exporting": "invocation/tracing_exporting_3_spans",
        }),
    }
    if not quick:
        results["idempotency"] = criterion("powertools-idempotency", "layer", quick, {
            "bare": "bare_handler",
            "first_call": "layer_first_call",
            "duplicate": "layer_duplicate",
            "cache_hit": "layer_local_cache_hit",
            "whole_event_key": "layer_duplicate_whole_event_key",
            "jmespath_key": "layer_duplicate_jmespath_key",
        })
        results["stack"] = criterion("powertools", "stack", quick, {
            "bare": "invocation/bare_handler",
            "logs_metrics": "invocation/logs_metrics_tracing_off",
            "full_in_memory": "invocation/full_stack_first_call_in_memory",
        }, features="idempotency")
    return results


def python(quick: bool) -> tuple[str, dict]:
    interpreter = run([str(REPO / "bench" / "python" / "ensure-venv")]).strip()
    flags = ["--quick"] if quick else []
    return interpreter, last_json(run([interpreter, "bench/python/in_process.py", *flags]))


def entropy_probe(runs: int) -> dict:
    """AWS-LC's first random fill, in fresh processes (it happens once per process), as the
    workspace builds it (AWS_LC_SYS_NO_JITTER_ENTROPY=1, from .cargo/config.toml) and with
    jitter entropy (=0, in a separate target dir, as it rebuilds aws-lc-sys)."""
    jitter_target = TARGET / "jitter"
    subprocess.run(["cargo", "build", "--release", "-p", "entropy-probe"], cwd=REPO, check=True,
                   env={**os.environ, "AWS_LC_SYS_NO_JITTER_ENTROPY": "0",
                        "CARGO_TARGET_DIR": str(jitter_target)})
    results = {}
    for build, binary in [("default", jitter_target / "release" / "entropy-probe"),
                          ("no_jitter", TARGET / "release" / "entropy-probe")]:
        samples = [last_json(run([str(binary)])) for _ in range(runs)]
        results[build] = {key: round(statistics.median(sample[key] for sample in samples), 1)
                          for key in samples[0]}
    return results


def response_latency(quick: bool) -> dict:
    """`powertools-tracing`'s response_latency bench: one JSON line."""
    command = ["cargo", "bench", "-p", "powertools-tracing", "--bench", "response_latency", "--"]
    if quick:
        command.append("--quick")
    return last_json(run(command))


def bench_executable(package: str, bench: str) -> Path:
    """Builds a bench target and returns its executable."""
    output = run(["cargo", "bench", "-p", package, "--bench", bench, "--no-run",
                  "--message-format=json"])
    for line in output.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable") \
                and message["target"]["name"] == bench:
            return Path(message["executable"])
    raise RuntimeError(f"no executable for {package} --bench {bench}")


def instructions(command: list[str], toggle: str | None = None) -> int:
    """Instructions callgrind counts for `command` (only inside `toggle`'s functions, if given)."""
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    if toggle:
        valgrind.append(f"--toggle-collect={toggle}")
    done = subprocess.run(valgrind + command, cwd=REPO / "bench" / "python", stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True)
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split("Collected :")[1].strip())
    raise RuntimeError(f"no instruction count from callgrind: {done.stderr[-2000:]}")


def per_call_instructions(interpreter: str, quick: bool) -> dict:
    """Instructions per call of each row: (count at `many` calls - count at `few`) / (many - few),
    so the start, the set-up and one-time costs cancel out."""
    few, many = (100, 300) if quick else (300, 1300)
    rust = bench_executable("powertools-bench", "per_call")
    results: dict = {"calls": [few, many], "rust": {}, "python": {}}
    for row in ["bare", "span_only", "first_call", "first_call_with_span", "replay"]:
        counts = [instructions([str(rust), row, str(calls)], toggle="*measured*")
                  for calls in (few, many)]
        results["rust"][row] = round((counts[1] - counts[0]) / (many - few))
        log(f"  callgrind rust {row}: {results['rust'][row]} instructions per call")
    script = str(REPO / "bench" / "python" / "per_call.py")
    for row in ["bare", "first_call", "replay"]:
        counts = [instructions([interpreter, script, row, str(calls)]) for calls in (few, many)]
        results["python"][row] = round((counts[1] - counts[0]) / (many - few))
        log(f"  callgrind python {row}: {results['python'][row]} instructions per call")
    return results


def us(ns: float) -> float:
    return round(ns / 1000, 2)


def report(results: dict) -> str:
    handler = results["in_process"]["handler"]
    py = results["python_in_process"]
    ddb, py_ddb = results["ddb_rust"], results["ddb_python"]
    machine = results["machine"]
    lines = [f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
             f"{machine['rustc']}, Python {machine['python']}.", "",
             "## Per invocation, in process (criterion medians; Python: median of timed calls)", "",
             "| Handler | powertools-rs | Powertools for Python 3.37.0 | Python / Rust |",
             "| --- | ---: | ---: | ---: |"]
    for label, ours, theirs in [
        ("bare (no Powertools)", handler["bare"], py["bare_us"]["median"] * 1000),
        ("first call (logs + metrics + idempotency in memory)", handler["first_call"],
         py["first_call_us"]["median"] * 1000),
        ("replay (a duplicate)", handler["replay"], py["replay_us"]["median"] * 1000),
    ]:
        lines.append(f"| {label} | {us(ours)} µs | {us(theirs)} µs | {theirs / ours:.0f}× |")
    lines += ["", f"Whole stack with the invocation span (spans dropped, not exported): "
              f"{us(handler['first_call_with_span'])} µs, {us(handler['first_call_with_span'] - handler['bare'])} µs "
              f"over the bare handler. Local-cache hit: {us(handler['cache_hit'])} µs. JMESPath key "
              f"instead of a typed closure: {us(handler['first_call_jmespath'])} µs.", ""]
    peers = results["in_process"]
    lines += ["| Rust peers | ours | peer |", "| --- | ---: | ---: |",
              f"| log line vs `fmt().json()` | {us(peers['log_line']['powertools'])} µs | {us(peers['log_line']['fmt_json'])} µs |",
              f"| EMF `add_metric` vs `metrics_cloudwatch_embedded` | {us(peers['emf']['powertools_add_metric'])} µs | {us(peers['emf']['peer_add_metric'])} µs |",
              f"| EMF order + flush vs `metrics_cloudwatch_embedded` | {us(peers['emf']['powertools_order_and_flush'])} µs | {us(peers['emf']['peer_order_and_flush'])} µs |",
              f"| tracing disabled / exporting 3 spans (bare {us(peers['tracing']['bare'])} µs) | {us(peers['tracing']['disabled'])} µs | {us(peers['tracing']['exporting'])} µs |",
              "", "## Through DynamoDB (moto), per invocation", "",
              "| | powertools-rs | Powertools for Python | DynamoDB calls (rs / py) |",
              "| --- | ---: | ---: | ---: |",
              f"| first call | {ddb['first_call_ms']['median']} ms | {py_ddb['first_call_ms']['median']} ms | {ddb['ddb_calls_first']} / {py_ddb['ddb_calls_first']} |",
              f"| duplicate | {ddb['duplicate_ms']['median']} ms | {py_ddb['duplicate_ms']['median']} ms | {ddb['ddb_calls_duplicate']} / {py_ddb['ddb_calls_duplicate']} |",
              f"| local-cache hit | {ddb['cache_hit_ms']['median']} ms | | {ddb['ddb_calls_cache_hit']} / |"]
    process = results["lambda_process"]
    lines += ["", "## Functions: cold start, size, memory", "",
              "| | bare lambda_runtime + SDK | full stack | difference |", "| --- | ---: | ---: | ---: |"]
    bare, full = process["bare-function"], process["full-stack-function"]
    for label, key in [("init (start to first /next), median ms", "init_ms"),
                       ("cold start (start to first response), median ms", "cold_ms"),
                       ("warm invoke, median ms", "warm_ms"),
                       ("cold minus warm of the same process, median ms", "cold_minus_warm_ms")]:
        lines.append(f"| {label} | {bare[key]['median']} | {full[key]['median']} | "
                     f"{full[key]['median'] - bare[key]['median']:+.2f} |")
    sizes = results["sizes"]
    lines.append(f"| stripped binary (`--profile lambda`), bytes | {sizes['bare']} | {sizes['full']} | "
                 f"{sizes['full'] / sizes['bare'] * 100:.0f} % |")
    lines.append(f"| peak RSS after a burst of {full['burst']}, KiB | {bare['peak_rss_kib']} | "
                 f"{full['peak_rss_kib']} | {full['peak_rss_kib'] - bare['peak_rss_kib']:+d} |")
    latency = results["response_latency"]
    lines += ["", "## Response latency of an invocation, through the Runtime + Extensions API emulator", "",
              "| | response, median | response, p99 | invocation complete, median | complete, p99 |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for key, label in [("disabled", "tracing off"), ("before-return", "exported before returning"),
                       ("after-response", "exported after the response (extension)")]:
        row = latency[key]
        lines.append(f"| {label} | {row['response_us']['median']:.0f} µs | {row['response_us']['p99']:.0f} µs | "
                     f"{row['complete_us']['median']:.0f} µs | {row['complete_us']['p99']:.0f} µs |")
    lines += ["", "A collector that hangs (2 s flush timeout), ten invocations in a row, response latency:", ""]
    for key, label in [("before-return", "exported before returning"),
                       ("after-response", "exported after the response")]:
        row = latency[f"hanging_{key}"]
        lines.append(f"- {label}: " + ", ".join(f"{value / 1000:.2f}" for value in row["response_us"])
                     + " ms (complete: " + ", ".join(f"{value / 1000:.2f}" for value in row["complete_us"])
                     + " ms)")
    counts = results["callgrind"]
    rust, python = counts["rust"], counts["python"]
    lines += ["", "## Instructions per call (callgrind)", "",
              "| | powertools-rs | Powertools for Python | Python / Rust |", "| --- | ---: | ---: | ---: |"]
    for key, label in [("bare", "bare"), ("first_call", "first call"), ("replay", "replay")]:
        lines.append(f"| {label} | {rust[key]:,} | {python[key]:,} | {python[key] / rust[key]:.0f}× |")
    lines += [f"| first call with the span | {rust['first_call_with_span']:,} | | |",
              f"| the tracing layer alone, bare handler | {rust['span_only']:,} | | |",
              "", f"The span adds {rust['first_call_with_span'] - rust['first_call']:,} instructions to a first call "
              f"({rust['span_only'] - rust['bare']:,} around the bare handler)."]
    entropy = results["entropy"]
    lines += ["", f"AWS-LC's first random fill in a fresh process, built with jitter entropy "
              f"(AWS_LC_SYS_NO_JITTER_ENTROPY=0): {entropy['default']['first_fill_us']} µs "
              f"(second fill {entropy['default']['second_fill_us']} µs); as the workspace builds it "
              f"(=1, .cargo/config.toml): {entropy['no_jitter']['first_fill_us']} µs."]
    return "\n".join(lines)


def summary(results: dict) -> str:
    handler = results["in_process"]["handler"]
    py = results["python_in_process"]
    process = results["lambda_process"]
    return ("summary: "
            f"full_stack_overhead_us={us(handler['first_call_with_span'] - handler['bare'])} "
            f"python_ratio={py['first_call_us']['median'] * 1000 / handler['first_call']:.0f} "
            f"python_replay_ratio={py['replay_us']['median'] * 1000 / handler['replay']:.0f} "
            f"ddb_calls_first={results['ddb_rust']['ddb_calls_first']} "
            f"ddb_calls_duplicate={results['ddb_rust']['ddb_calls_duplicate']} "
            f"ddb_calls_cache_hit={results['ddb_rust']['ddb_calls_cache_hit']} "
            f"init_overhead_ms={process['full-stack-function']['init_ms']['median'] - process['bare-function']['init_ms']['median']:.2f} "
            f"cold_start_overhead_ms={process['full-stack-function']['cold_minus_warm_ms']['median'] - process['bare-function']['cold_minus_warm_ms']['median']:.2f} "
            f"binary_ratio={results['sizes']['full'] / results['sizes']['bare']:.2f} "
            f"log_line_vs_fmt_json={results['in_process']['log_line']['powertools'] / results['in_process']['log_line']['fmt_json']:.2f} "
            f"export_latency_us={results['response_latency']['after-response']['response_us']['median']:.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a CI-sized run (about 10 minutes)")
    args = parser.parse_args()
    if not os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"):
        sys.exit("bench/suite.py: run it through scripts/bench (it needs the test services)")
    flags = ["--quick"] if args.quick else []
    started = time.monotonic()
    binaries = build()
    results: dict = {"quick": args.quick, "machine": machine()}
    results["in_process"] = in_process(args.quick)
    interpreter, results["python_in_process"] = python(args.quick)
    results["ddb_rust"] = last_json(run([str(TARGET / "release" / "ddb-latency"), *flags]))
    results["ddb_python"] = last_json(run([interpreter, "bench/python/through_dynamodb.py", *flags]))
    # A new emulator per process: the full stack registers the tracer's extension, and
    # `cargo lambda watch` keeps a dead process's extension registered (the next invoke fails).
    results["lambda_process"] = last_json(run([
        sys.executable, "bench/lambda_process.py", *flags, "--restart-emulator",
        "--create-tables", str(TARGET / "release" / "create-tables"),
        str(binaries["bare"]), str(binaries["full"]),
    ]))
    results["sizes"] = {name: path.stat().st_size for name, path in binaries.items()}
    results["entropy"] = entropy_probe(3 if args.quick else 7)
    results["response_latency"] = response_latency(args.quick)
    results["callgrind"] = per_call_instructions(interpreter, args.quick)
    results["seconds"] = round(time.monotonic() - started)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (REPO / "bench" / "headline.svg").write_text(chart.draw(results))
    print(report(results))
    print(f"\n(whole run {results['seconds']} s; every figure in {OUT / 'results.json'})\n")
    print(summary(results))
    return 0


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    memory_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))
    rustc = subprocess.run(["rustc", "--version"], stdout=subprocess.PIPE, text=True, check=False).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory_kib / 1024 / 1024, 1),
            "rustc": rustc, "python": sys.version.split()[0]}


if __name__ == "__main__":
    sys.exit(main())
