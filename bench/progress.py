#!/usr/bin/env python3
"""Records per second of `gpuctl progress`'s parser, next to a single regex pass over the same
file and to the line-at-a-time parser it replaced (gpuctl.runs.progress_reference).

Run from the repo root:  .venv/bin/python bench/progress.py [--records 1000000]

The log is generated (seeded, so every run parses the same bytes): 80% tqdm bars ending in
`\\r`, 15% Trainer log dicts, 5% DeepSpeed overflow lines. Each parser reads it in the 1 MiB
blocks `gpuctl progress` uses. The regex pass is `re.finditer` of one compiled pattern that
touches every record (the cheapest honest "read every record" in Python); its time is the
unit, so numbers from different machines compare as ratios. The parsers' results are checked
equal before any time is reported, and peak memory (tracemalloc) shows that it stays flat.

A measurement tool, not a test: it asserts only that both parsers agree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "orchestrator"))

from gpuctl.runs import progress, progress_reference  # noqa: E402

BLOCK = 1024 * 1024
REGEX_PASS = re.compile(rb"[^\r\n]*[\r\n]")  # one match per record, nothing else


def generate(path: Path, records: int, seed: int = 15) -> int:
    """Write the mixed log; returns its size in bytes."""
    rng = random.Random(seed)
    total_steps = max(1, records * 80 // 100 // 4)
    step, loss, scale = 0, 9.0, 65536.0
    with open(path, "wb", buffering=BLOCK) as out:
        out.write(f"  Total optimization steps = {total_steps:,}\n".encode())
        for i in range(records):
            kind = rng.random()
            if kind < 0.80:
                step = min(total_steps, step + (1 if rng.random() < 0.25 else 0))
                pct = step * 100 // total_steps
                bar = "█" * (pct // 10) + " " * (10 - pct // 10)
                out.write(f" {pct:3d}%|{bar}| {step}/{total_steps} [{i // 60:02d}:{i % 60:02d}<"
                          f"{(total_steps - step) // 60}:{(total_steps - step) % 60:02d}, "
                          f"{rng.uniform(1, 20):.2f}s/it]\r".encode())
            elif kind < 0.95:
                loss = max(0.01, loss * rng.uniform(0.97, 1.01))
                out.write(f"{{'loss': {loss:.4f}, 'grad_norm': {rng.uniform(0.1, 3):.4f}, "
                          f"'learning_rate': {rng.uniform(1e-6, 2e-4):.3e}, "
                          f"'epoch': {step / total_steps:.2f}}}\n".encode())
            else:
                out.write(f"[2026-12-01 03:00:{i % 60:02d},123] [INFO] [loss_scaler.py:183:"
                          f"update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted "
                          f"loss scale: {scale:.0f}, reducing to {scale / 2}\n".encode())
                scale = max(1.0, scale / 2) if scale > 2 else 65536.0
    return path.stat().st_size


def parse_with(parser_class, path: Path) -> tuple[float, object]:
    """(seconds, Progress)."""
    started = time.perf_counter()
    parser = parser_class()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            parser.feed(block)
    result = parser.close()
    return time.perf_counter() - started, result


def peak_memory(parser_class, path: Path) -> int:
    """Peak bytes allocated while parsing (tracemalloc slows the parse, so it is timed apart)."""
    tracemalloc.start()
    parse_with(parser_class, path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def regex_pass(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    count = 0
    with open(path, "rb") as f:
        rest = b""
        for block in iter(lambda: f.read(BLOCK), b""):
            data = rest + block
            end = 0
            for m in REGEX_PASS.finditer(data):
                count += 1
                end = m.end()
            rest = data[end:]
    return time.perf_counter() - started, count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--skip-reference", action="store_true",
                    help="do not time the old parser (it takes ~30 s per 1e6 records)")
    ap.add_argument("--out", type=Path,
                    default=REPO_ROOT / "bench" / "results" / f"progress-{dt.date.today()}.md")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the Markdown")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "mixed.log"
        size = generate(log, args.records)
        regex_s, counted = regex_pass(log)
        new_s, new = parse_with(progress.ProgressParser, log)
        new_peak = peak_memory(progress.ProgressParser, log)
        ref_s = ref = None
        if not args.skip_reference:
            ref_s, ref = parse_with(progress_reference.ProgressParser, log)
            # Its peak is not traced: tracemalloc would triple its ~30 s.
            same = json.dumps(new.as_dict(), sort_keys=True) == json.dumps(ref.as_dict(), sort_keys=True)
            if not same:
                print("error: the parsers disagree on the generated log", file=sys.stderr)
                return 1

    rate = lambda s: args.records / s  # noqa: E731
    result = {
        "date": str(dt.date.today()), "records": args.records, "bytes": size,
        "records_counted_by_regex": counted, "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "regex_pass_s": round(regex_s, 3),
        "parser_s": round(new_s, 3), "parser_records_per_s": round(rate(new_s)),
        "parser_to_regex_ratio": round(new_s / regex_s, 2),
        "parser_peak_mib": round(new_peak / 2**20, 2),
    }
    if ref_s is not None:
        result.update({
            "reference_s": round(ref_s, 3), "reference_records_per_s": round(rate(ref_s)),
            "reference_to_regex_ratio": round(ref_s / regex_s, 2),
            "speedup": round(ref_s / new_s, 1), "results_equal": True,
        })
    markdown = render(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown)
    print(json.dumps(result, indent=2) if args.json else markdown)
    return 0


def render(r: dict) -> str:
    lines = [f"# progress parser, {r['date']}", "",
             f"{r['records']:,} records ({r['bytes'] / 2**20:.1f} MiB: 80% tqdm bars ending in "
             "`\\r`, 15% Trainer dicts, 5% DeepSpeed overflow lines), read in 1 MiB blocks; "
             f"nproc {r['nproc']}, Python {r['python']}.", "",
             "| what | seconds | records/s | x regex pass | peak MiB |",
             "| --- | ---: | ---: | ---: | ---: |",
             f"| single regex pass | {r['regex_pass_s']} | {r['records'] / r['regex_pass_s']:,.0f} "
             "| 1.00 | - |",
             f"| `gpuctl progress` parser | {r['parser_s']} | {r['parser_records_per_s']:,} | "
             f"{r['parser_to_regex_ratio']} | {r['parser_peak_mib']} |"]
    if "reference_s" in r:
        lines.append(f"| line-at-a-time parser it replaced | {r['reference_s']} | "
                     f"{r['reference_records_per_s']:,} | {r['reference_to_regex_ratio']} | - |")
        lines += ["", f"Speed-up: **{r['speedup']}x** records/s; both parsers' results equal."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
