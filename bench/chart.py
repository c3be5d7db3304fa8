#!/usr/bin/env python3
"""The headline comparisons of a benchmark run as one SVG (no plotting library: plain SVG text).

    python3 bench/chart.py target/bench/results.json bench/headline.svg

`bench/suite.py` calls `draw(results)` at the end of every run and writes bench/headline.svg,
which BENCHMARKS.md shows. Each panel has its own linear scale, starting at zero; each bar is
labelled with its value, so the chart reads without the axis.
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

WIDTH = 760
LABEL_WIDTH = 290
BAR_HEIGHT = 18
GAP = 6
PANEL_GAP = 26
TITLE_HEIGHT = 22
COLOURS = {"ours": "#2f6fb0", "theirs": "#c8553d", "base": "#8a8a8a", "target": "#2e8b57"}


def panel(title: str, bars: list[tuple[str, float, str, str]], y: float) -> tuple[list[str], float]:
    """One panel: a title and horizontal bars (label, value, value text, colour key)."""
    parts = [f'<text x="10" y="{y + 15:.0f}" class="title">{html.escape(title)}</text>']
    y += TITLE_HEIGHT
    top = max((value for _, value, _, _ in bars), default=1.0) or 1.0
    room = WIDTH - LABEL_WIDTH - 110
    for label, value, text, colour in bars:
        length = max(1.0, room * value / top)
        parts.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + 13:.0f}" class="label">{html.escape(label)}</text>')
        parts.append(f'<rect x="{LABEL_WIDTH}" y="{y:.0f}" width="{length:.1f}" height="{BAR_HEIGHT}" '
                     f'fill="{COLOURS[colour]}"/>')
        parts.append(f'<text x="{LABEL_WIDTH + length + 6:.1f}" y="{y + 13:.0f}" class="value">'
                     f'{html.escape(text)}</text>')
        y += BAR_HEIGHT + GAP
    return parts, y + PANEL_GAP - GAP


def draw(results: dict) -> str:
    """The SVG of a results.json (what bench/suite.py writes)."""
    panels: list[tuple[str, list[tuple[str, float, str, str]]]] = []
    counts = results.get("callgrind")
    if counts:
        rust, python = counts["rust"], counts["python"]
        panels.append((f"First call, same handler and event, instructions (callgrind): "
                       f"{python['first_call'] / rust['first_call']:.0f}× fewer than Powertools for Python",
                       [("Powertools for Python 3.37", python["first_call"], f"{python['first_call']:,}", "theirs"),
                        ("powertools-rs", rust["first_call"], f"{rust['first_call']:,}", "ours"),
                        ("powertools-rs, with the span", rust["first_call_with_span"],
                         f"{rust['first_call_with_span']:,}", "ours")]))
    in_process = results.get("in_process")
    python_times = results.get("python_in_process")
    if in_process:
        handler = in_process["handler"]
        if python_times:
            ours = handler["first_call"] / 1000
            theirs = python_times["first_call_us"]["median"]
            panels.append((f"First call, same handler and event: {theirs / ours:.0f}× faster than Powertools for Python",
                           [("Powertools for Python 3.37", theirs, f"{theirs:.1f} µs", "theirs"),
                            ("powertools-rs", ours, f"{ours:.2f} µs", "ours")]))
        bare = handler["bare"] / 1000
        with_span = handler["first_call_with_span"] / 1000
        panels.append(("Per call, in process (criterion medians)",
                       [("bare handler", bare, f"{bare:.2f} µs", "base"),
                        ("logs + metrics + idempotency", handler["first_call"] / 1000,
                         f"{handler['first_call'] / 1000:.2f} µs", "ours"),
                        ("… and the invocation span", with_span, f"{with_span:.2f} µs", "ours"),
                        ("target: bare + 5 µs", bare + 5, f"{bare + 5:.2f} µs", "target")]))
    latency = results.get("response_latency")
    if latency:
        bars = []
        for key, label, colour in [("disabled", "tracing off", "base"),
                                   ("before-return", "exported before returning", "theirs"),
                                   ("after-response", "exported after the response", "ours")]:
            if key in latency:
                row = latency[key]["response_us"]
                bars.append((f"{label}, median", row["median"], f"{row['median']:.0f} µs", colour))
                bars.append((f"{label}, p99", row["p99"], f"{row['p99']:.0f} µs", colour))
        panels.append(("Response latency of an invocation, through the emulator", bars))
        hanging = [("before-return", "exported before returning", "theirs"),
                   ("after-response", "exported after the response", "ours")]
        bars = []
        for key, label, colour in hanging:
            row = latency.get(f"hanging_{key}")
            if row:
                first, tenth = row["response_us"][0] / 1000, row["response_us"][-1] / 1000
                bars.append((f"{label}: 1st invocation", first, f"{first:.1f} ms", colour))
                bars.append((f"{label}: 10th invocation", tenth, f"{tenth:.2f} ms", colour))
        if bars:
            panels.append(("A collector that hangs (2 s flush timeout): response latency", bars))
    sizes = results.get("sizes")
    if sizes:
        bare_mib, full_mib = sizes["bare"] / 2**20, sizes["full"] / 2**20
        panels.append((f"Stripped binary: full stack {sizes['full'] / sizes['bare'] * 100:.0f} % of bare (target 115 %)",
                       [("bare lambda_runtime + aws-sdk-dynamodb", bare_mib, f"{bare_mib:.1f} MiB", "base"),
                        ("full stack", full_mib, f"{full_mib:.1f} MiB", "ours"),
                        ("target: 115 % of bare", bare_mib * 1.15, f"{bare_mib * 1.15:.1f} MiB", "target")]))
    body: list[str] = []
    y = 10.0
    for title, bars in panels:
        parts, y = panel(title, bars, y)
        body += parts
    height = int(y)
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
        "<style>.title{font-weight:bold;font-size:13px}.label{text-anchor:end}.value{fill:#333}</style>",
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        *body,
        "</svg>",
        "",
    ])


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    results = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(draw(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
