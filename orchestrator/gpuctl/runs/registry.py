"""The local record of each run: where it runs (so `gpuctl logs RUN` knows where to go), and
the progress parsed from its log so far (so `gpuctl jobs` reads only new bytes).

<gpuctl home>/runs/<run>.json           the record, written once at start
<gpuctl home>/runs/<run>.progress.json  log offset, parser state, last status seen
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import GpuctlError
from ..paths import gpuctl_home
from .progress import ProgressParser

FINAL_STATES = ("succeeded", "failed", "cancelled", "timed-out", "lost", "missing")


@dataclass
class RunRecord:
    name: str
    target: str  # what the user typed: a VM name or user@host[:port]
    host: str
    user: str
    port: int
    run_dir: str
    started_at: str  # RFC 3339, this machine's clock
    command: str
    launcher: str
    vm: str | None = None
    key_file: str | None = None
    known_hosts: list[str] = field(default_factory=list)
    price_per_hour: float | None = None
    price_source: str | None = None
    base_on_nvme: bool = True
    cwd: str | None = None  # the run's working directory on the host (fetch is relative to it)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def log_path(self) -> str:
        return f"{self.run_dir}/output.log"

    @property
    def host_key(self) -> tuple[str, str, int]:
        return (self.user, self.host, self.port)


@dataclass
class RunCache:
    offset: int = 0
    parser: dict = field(default_factory=dict)
    status: dict = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return (self.status.get("state") in FINAL_STATES
                and self.offset >= int(self.status.get("log_size") or 0))

    def as_dict(self) -> dict:
        return asdict(self)

    def load_parser(self) -> ProgressParser:
        return ProgressParser.from_state(self.parser)


def runs_dir() -> Path:
    return gpuctl_home() / "runs"


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def save(record: RunRecord) -> None:
    _write(runs_dir() / f"{record.name}.json", record.as_dict())


def is_run_name(name: str) -> bool:
    """Run names are job spec names; anything else ('../x', 300 characters, a NUL) names no
    run and must never become a path under the home."""
    from ..jobspec import NAME_RE

    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def load(name: str) -> RunRecord | None:
    from ..safe_read import load_json

    if not is_run_name(name):
        return None
    path = runs_dir() / f"{name}.json"
    if not path.is_file():
        return None
    hint = "delete the file; the run itself is still on its host"
    data = load_json(path, "run record", GpuctlError, hint)
    try:
        return RunRecord(**data)
    except (ValueError, TypeError) as exc:
        raise GpuctlError(f"the record of run {name} ({path}) is damaged: "
                          f"{str(exc).splitlines()[0][:200]}", hint) from None


def require(name: str) -> RunRecord:
    record = load(name)
    if record is None:
        known = ", ".join(r.name for r in all_records()[-10:]) or "none"
        raise GpuctlError(f"gpuctl knows no run named {name}", f"known runs: {known} (gpuctl jobs)")
    return record


def all_records() -> list[RunRecord]:
    directory = runs_dir()
    if not directory.is_dir():
        return []
    records = [load(p.stem) for p in directory.glob("*.json") if not p.name.endswith(".progress.json")]
    return sorted((r for r in records if r), key=lambda r: r.started_at)


def load_cache(name: str) -> RunCache:
    from ..safe_read import load_json

    path = runs_dir() / f"{name}.progress.json"
    try:  # a cache is only a shortcut: anything wrong with it means "parse from the start"
        return RunCache(**load_json(path, "run record", GpuctlError, ""))
    except (GpuctlError, ValueError, TypeError):
        return RunCache()


def save_cache(name: str, cache: RunCache) -> None:
    _write(runs_dir() / f"{name}.progress.json", cache.as_dict())
