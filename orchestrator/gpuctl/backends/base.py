"""The Backend interface and the typed results every backend returns.

Each result carries the fields every backend shares (name, where, state...) and `detail`, the
backend's own figures (a VM run's step/loss/ETA, a GKE Job's pods and nodes), which `--json`
prints as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Protocol

from ..jobspec import JobSpec

BackendName = Literal["vm", "gke"]


@dataclass(frozen=True)
class SubmitRequest:
    spec: JobSpec
    spec_dir: Path  # what `workdir:` is relative to (the job file's folder, or the cwd)
    dry_run: bool = False
    ship_code: bool = True  # False: --no-sync (VM) / no ConfigMap (GKE)
    # A VM or user@host (VM backend only).
    target: str | None = None
    cwd: str = ""
    ssh_key: Path | None = None
    known_hosts: Path | None = None
    price_per_hour: float | None = None
    price_source: str | None = None
    grace_seconds: float = 30.0
    # GKE only: have the apiserver admit everything (server-side dry run), store nothing.
    validate: bool = False

    @property
    def workdir(self) -> Path | None:
        if not self.ship_code:
            return None
        return (self.spec_dir / self.spec.workdir) if self.spec.workdir else self.spec_dir


@dataclass(frozen=True)
class Preview:
    """What a submit would do, worked out offline: for the confirmation and for --dry-run."""

    backend: BackendName
    name: str
    where: str
    notes: list[str]
    summary: list[str] = field(default_factory=list)  # lines a person confirms
    warnings: list[str] = field(default_factory=list)
    manifests: list[dict] | None = None  # GKE: the objects, secrets left out
    cost: dict | None = None


@dataclass(frozen=True)
class Submitted:
    backend: BackendName
    name: str
    where: str
    dry_run: bool
    notes: list[str]
    warnings: list[str]
    next_steps: list[str]  # command lines a person runs next; each one exists (tests/test_hints.py)
    detail: dict

    def as_dict(self) -> dict:
        return {**self.detail, "backend": self.backend, "name": self.name,
                "notes": self.notes, "warnings": self.warnings, "next": self.next_steps}


@dataclass(frozen=True)
class JobView:
    backend: BackendName
    name: str
    where: str
    state: str
    detail: dict

    def as_dict(self) -> dict:
        return {**self.detail, "backend": self.backend}


@dataclass(frozen=True)
class LogEnd:
    """How a log ended: the job's state and exit code when known (None while it runs)."""

    name: str
    state: str | None
    exit_code: int | None


@dataclass(frozen=True)
class Cancelled:
    backend: BackendName
    name: str
    state: str
    already_ended: bool
    detail: dict

    def as_dict(self) -> dict:
        return {**self.detail, "backend": self.backend, "name": self.name}


@dataclass(frozen=True)
class Fetched:
    name: str
    path: str
    dest: str
    files: int
    bytes: int
    unchanged: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


Write = Callable[[bytes], None]
Notice = Callable[[str], None]


class Backend(Protocol):
    name: BackendName

    def preview(self, request: SubmitRequest) -> Preview: ...

    def submit(self, request: SubmitRequest, on_notice: Notice | None = None) -> Submitted: ...

    def list(self, names: list[str] | None = None) -> list[JobView]: ...

    def status(self, name: str) -> JobView: ...

    def logs(self, name: str, write: Write, *, follow: bool = False,
             tail_lines: int | None = None, on_notice: Notice | None = None) -> LogEnd: ...

    def cancel(self, name: str, grace_seconds: float = 30.0) -> Cancelled: ...

    def fetch(self, name: str, path: str, dest: Path) -> Fetched: ...
