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
6. the report: tables on stdout, everything in target/bench/results.json, and one summary line.

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


def criterion(package: str, bench: str, quick: bool, rows: dict[str, str]) -> dict[str, float]:
    """Runs one criterion bench and returns the median of each of `rows` (name -> group/id), in ns.

    Read right after the run: several benches share ids such as invocation/bare_handler.
    """
    command = ["cargo", "bench", "-p", package, "--bench", bench, "--"]
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
        })
    return results


def python(quick: bool) -> tuple[str, dict]:
    interpreter = run([str(REPO / "bench" / "python" / "ensure-venv")]).strip()
    flags = ["--quick"] if quick else []
    return interpreter, last_json(run([interpreter, "bench/python/in_process.py", *flags]))


def entropy_probe(runs: int) -> dict:
    """AWS-LC's first random fill, in fresh processes (it happens once per process), as built by
    default and with AWS_LC_SYS_NO_JITTER_ENTROPY=1 (a separate target dir, as it rebuilds
    aws-lc-sys)."""
    no_jitter_target = TARGET / "no-jitter"
    subprocess.run(["cargo", "build", "--release", "-p", "entropy-probe"], cwd=REPO, check=True,
                   env={**os.environ, "AWS_LC_SYS_NO_JITTER_ENTROPY": "1",
                        "CARGO_TARGET_DIR": str(no_jitter_target)})
    results = {}
    for build, binary in [("default", TARGET / "release" / "entropy-probe"),
                          ("no_jitter", no_jitter_target / "release" / "entropy-probe")]:
        samples = [last_json(run([str(binary)])) for _ in range(runs)]
        results[build] = {key: round(statistics.median(sample[key] for sample in samples), 1)
                          for key in samples[0]}
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
    entropy = results["entropy"]
    lines += ["", f"AWS-LC's first random fill in a fresh process: {entropy['default']['first_fill_us']} µs "
              f"(second fill {entropy['default']['second_fill_us']} µs); built with "
              f"AWS_LC_SYS_NO_JITTER_ENTROPY=1: {entropy['no_jitter']['first_fill_us']} µs."]
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
            f"log_line_vs_fmt_json={results['in_process']['log_line']['powertools'] / results['in_process']['log_line']['fmt_json']:.2f}")


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
    results["lambda_process"] = last_json(run([
        sys.executable, "bench/lambda_process.py", *flags,
        "--create-tables", str(TARGET / "release" / "create-tables"),
        str(binaries["bare"]), str(binaries["full"]),
    ]))
    results["sizes"] = {name: path.stat().st_size for name, path in binaries.items()}
    results["entropy"] = entropy_probe(3 if args.quick else 7)
    results["seconds"] = round(time.monotonic() - started)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
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
