#!/usr/bin/env python3
"""Startup wall time of gpuctl commands, next to SkyPilot's `sky --help`.

Run from the repo root:  .venv/bin/python bench/startup.py  (or ./dev bench)

Every timing is one fresh subprocess, because what a user feels is process start + imports +
work, and that is only visible from outside the process. Results are reported as ratios to
`sky --help` (run on the same machine, in the same session) so numbers taken on different
machines can be compared; raw milliseconds are kept beside them. Standard library only, so it
runs with any Python >= 3.10 and never changes what gpuctl's own venv contains.

This is a measurement tool, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# Pinned so a result file always says which SkyPilot it was measured against, and so two runs
# weeks apart compare like with like. Bump deliberately (latest on PyPI when written: 0.14.1).
SKYPILOT_VERSION = "0.14.1"

REPO_ROOT = Path(__file__).resolve().parent.parent
# SkyPilot pulls in a large dependency tree; it gets its own venv outside the repo so it never
# touches gpuctl's .venv and survives `git clean`. The version in the name keeps pins apart.
SKY_VENV = Path.home() / ".cache" / "gpuctl-dev" / f"bench-skypilot-{SKYPILOT_VERSION}"
SKY_MARKER = SKY_VENV / ".installed"  # written only after pip succeeded

STDERR_TAIL_LINES = 8
PER_RUN_TIMEOUT_S = 120  # a hung command is a failure, not an endless benchmark


@dataclass
class Result:
    """Timings (ms) of one command, or why it could not be timed."""

    label: str
    argv: list[str]
    times_ms: list[float] = field(default_factory=list)
    error: str | None = None  # set when the command exited non-zero or timed out

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.times_ms)

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)


# --------------------------------------------------------------------------------------------
# Setup


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    today = dt.date.today().isoformat()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpuctl", type=Path, default=REPO_ROOT / ".venv" / "bin" / "gpuctl",
                   help="gpuctl executable to time (default: .venv/bin/gpuctl)")
    p.add_argument("--runs", type=int, default=10, help="timed runs per command (default 10)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed runs first, to fill OS file cache and .pyc (default 2)")
    p.add_argument("--out", type=Path,
                   default=REPO_ROOT / "bench" / "results" / f"startup-{today}.md",
                   help="Markdown report path (default bench/results/startup-<date>.md)")
    p.add_argument("--json", action="store_true",
                   help="print JSON on stdout instead of the Markdown (the file is still written)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be >= 1 and --warmup >= 0")
    return args


def find_gpuctl(path: Path) -> Path:
    """The gpuctl under test, or exit with a message saying how to get one."""
    path = path if path.is_absolute() else (REPO_ROOT / path)
    if not (path.is_file() and os.access(path, os.X_OK)):
        sys.exit(f"startup.py: no gpuctl executable at {path}\n"
                 "  install it first: ./dev test  (creates .venv with gpuctl), "
                 "or pass --gpuctl PATH")
    return path


def interpreter_of(script: Path) -> str:
    """The Python a console script runs under (its shebang), for the `python -c pass` floor.

    Falls back to the `python` next to it; the floor must use the same interpreter as gpuctl,
    otherwise it measures a different Python's startup.
    """
    try:
        first = script.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        first = ""
    if first.startswith("#!"):
        candidate = first[2:].strip().split()[0]
        if Path(candidate).is_file():
            return candidate
    sibling = script.parent / "python"
    return str(sibling) if sibling.exists() else sys.executable


def ensure_skypilot() -> Path:
    """Path to the pinned `sky`, creating its venv and installing it on first use."""
    sky = SKY_VENV / "bin" / "sky"
    if sky.exists() and SKY_MARKER.exists():
        return sky
    print(f"[bench] installing skypilot=={SKYPILOT_VERSION} into {SKY_VENV} "
          "(one-time, about a minute)", file=sys.stderr)
    SKY_VENV.parent.mkdir(parents=True, exist_ok=True)
    # --clear: a venv left half-built by an interrupted install is rebuilt, not trusted.
    run_or_exit([sys.executable, "-m", "venv", "--clear", str(SKY_VENV)], "create venv")
    # PyPI only: drop local wheel dirs and extra indexes a machine may configure for pip.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX")}
    run_or_exit([str(SKY_VENV / "bin" / "pip"), "install", "--quiet",
                 f"skypilot=={SKYPILOT_VERSION}"], "pip install skypilot", env=env)
    if not sky.exists():
        sys.exit(f"startup.py: skypilot installed but {sky} is missing")
    SKY_MARKER.write_text(SKYPILOT_VERSION + "\n")
    return sky


def run_or_exit(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if proc.returncode != 0:
        sys.exit(f"startup.py: {what} failed (exit {proc.returncode}):\n"
                 f"{tail(proc.stderr, 20)}")


# --------------------------------------------------------------------------------------------
# Timing


def isolated_env(tmp: Path) -> dict[str, str]:
    """Environment for one run: gpuctl state and config point into a fresh temp dir, so the
    user's own ~/.config/gpuctl or price cache can neither speed up nor break a run."""
    env = dict(os.environ)
    env["GPUCTL_HOME"] = str(tmp / "home")
    env["GPUCTL_CONFIG"] = str(tmp / "config.toml")  # absent file: built-in defaults
    env.pop("GPUCTL_DEBUG", None)
    return env


def run_once(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str] | None]:
    """Wall time (ms) of one fresh process. The temp dir is made before the clock starts and
    removed after it stops, so only the command itself is timed."""
    with tempfile.TemporaryDirectory(prefix="gpuctl-bench-") as tmp:
        env = isolated_env(Path(tmp))
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=PER_RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return (time.perf_counter() - start) * 1000, None
        return (time.perf_counter() - start) * 1000, proc


def measure(label: str, argv: list[str], runs: int, warmup: int) -> Result:
    """Warm up, then time `runs` runs. The first failure stops the series: a command that
    errors out is usually fast for the wrong reason, so its time would flatter it."""
    result = Result(label, argv)
    for i in range(warmup + runs):
        ms, proc = run_once(argv)
        if proc is None:
            result.error = f"timed out after {PER_RUN_TIMEOUT_S}s"
            return result
        if proc.returncode != 0:
            result.error = f"exit {proc.returncode}\n{tail(proc.stderr or proc.stdout)}"
            result.times_ms.clear()
            return result
        if i >= warmup:
            result.times_ms.append(ms)
    return result


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def version_of(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    out = (proc.stdout or proc.stderr).strip()
    return out.splitlines()[-1] if proc.returncode == 0 and out else f"unknown ({out[:80]})"


# --------------------------------------------------------------------------------------------
# Report


def machine_facts(gpuctl: Path, python: str, sky: Path) -> dict[str, str]:
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "host": f"{platform.system()} {platform.release()} {platform.machine()}",
        "nproc": str(os.cpu_count()),
        "python": version_of([python, "-c", "import sys; print(sys.version.split()[0])"]),
        "gpuctl": version_of([str(gpuctl), "--version"]),
        "skypilot": version_of([str(sky), "--version"]),
    }


def ratio(result: Result, baseline: Result) -> float | None:
    """median(command) / median(sky --help); below 1.0 means gpuctl starts faster."""
    if not (result.ok and baseline.ok):
        return None
    return result.median / baseline.median


def to_markdown(facts: dict[str, str], results: list[Result], baseline: Result,
                runs: int, warmup: int) -> str:
    lines = [
        "# gpuctl startup benchmark",
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
        f"- runs: {runs} timed after {warmup} warmup, each a fresh process",
        "",
        "| command | median ms | min ms | max ms | ratio vs `sky --help` |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    failures = []
    for r in results:
        if not r.ok:
            lines.append(f"| `{r.label}` | FAILED | | | |")
            failures.append(r)
            continue
        rt = ratio(r, baseline)
        rt_text = f"{rt:.2f}" if rt is not None else "n/a"
        lines.append(f"| `{r.label}` | {r.median:.0f} | {min(r.times_ms):.0f} | "
                     f"{max(r.times_ms):.0f} | {rt_text} |")
    lines += ["", "Ratio = median / median of `sky --help`; below 1.00 is faster than SkyPilot. "
              "`python -c pass` is the interpreter's own floor."]
    if failures:
        lines += ["", "## Failures", ""]
        for r in failures:
            summary, *detail = r.error.splitlines()
            lines += [f"`{r.label}` failed ({summary}); output tail:", ""]
            if detail:
                lines += ["```", *detail, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def to_json(facts: dict[str, str], results: list[Result], baseline: Result) -> str:
    rows = []
    for r in results:
        row: dict[str, object] = {"command": r.label, "ok": r.ok}
        if r.ok:
            rt = ratio(r, baseline)
            row.update(median_ms=round(r.median, 1), min_ms=round(min(r.times_ms), 1),
                       max_ms=round(max(r.times_ms), 1),
                       times_ms=[round(t, 1) for t in r.times_ms],
                       ratio_vs_sky_help=round(rt, 3) if rt is not None else None)
        else:
            row["error"] = r.error
        rows.append(row)
    return json.dumps({"facts": facts, "results": rows}, indent=2)


def write_atomically(path: Path, text: str) -> None:
    """Write via a .tmp then rename, so an interrupted run never leaves half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gpuctl = find_gpuctl(args.gpuctl)
    python = interpreter_of(gpuctl)
    sky = ensure_skypilot()
    g = str(gpuctl)

    commands = [
        ("python -c pass", [python, "-c", "pass"]),
        ("gpuctl --help", [g, "--help"]),
        ("gpuctl profiles", [g, "profiles"]),
        ("gpuctl up a100-spot --dry-run", [g, "up", "a100-spot", "--dry-run"]),
        ("sky --help", [str(sky), "--help"]),
    ]
    results = []
    for label, cmd in commands:
        print(f"[bench] {label} ...", file=sys.stderr, flush=True)
        results.append(measure(label, cmd, args.runs, args.warmup))
    baseline = results[-1]

    facts = machine_facts(gpuctl, python, sky)
    markdown = to_markdown(facts, results, baseline, args.runs, args.warmup)
    write_atomically(args.out, markdown)
    print(to_json(facts, results, baseline) if args.json else markdown)
    print(f"[bench] report written to {args.out}", file=sys.stderr)
    # Non-zero when anything failed, so `./dev bench` in a script notices; timings never fail it.
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
