"""Apply steps in order over one connection, recording each outcome with its timing.

Before changing anything the runner asks every step's functional check in one SSH command;
those verdicts hold until a step changes the host, after which each later step asks again.
A step that applied is "changed" only if its check then says done: otherwise it failed,
whatever its commands returned. A failed step stops the run (later steps may depend on it);
rerunning resumes, because every step re-checks the host and redoes what does not work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import GpuctlError
from .base import Host, RebootRequested, Step
from .checks import run_batch, run_check
from .gpu_steps import CudaStep, DriverStep, VerifyStep
from .python_step import PythonStep
from .nvme import NvmeStep
from .settings import ProvisionSettings
from .system_steps import CachesStep, IdleWatchdogStep, ShutdownCronStep, TimezoneStep

CHANGED, UNCHANGED, SKIPPED, FAILED = "changed", "unchanged", "skipped", "failed"


def default_steps() -> list[Step]:
    # Time zone before the shutdown cron: cron reads clock times in the host's zone.
    return [NvmeStep(), CachesStep(), TimezoneStep(), ShutdownCronStep(), IdleWatchdogStep(),
            DriverStep(), CudaStep(), PythonStep(), VerifyStep()]


@dataclass
class StepOutcome:
    id: str
    status: str
    actions: list[str] = field(default_factory=list)
    reason: str = ""
    error: str = ""
    hint: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        out = {"id": self.id, "status": self.status, "seconds": round(self.seconds, 3)}
        if self.actions:
            out["actions"] = self.actions
        if self.reason:
            out["reason"] = self.reason
        if self.error:
            out["error"] = self.error
        if self.hint:
            out["hint"] = self.hint
        return out


@dataclass
class ProvisionReport:
    host: str
    check: bool
    steps: list[StepOutcome]
    round_trips: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(s.status != FAILED for s in self.steps)

    @property
    def changed(self) -> int:
        return sum(s.status == CHANGED for s in self.steps)

    def as_dict(self) -> dict:
        return {"host": self.host, "check": self.check, "ok": self.ok, "changed": self.changed,
                "round_trips": self.round_trips, "seconds": round(self.seconds, 3),
                "steps": [s.as_dict() for s in self.steps]}


def _error_text(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, GpuctlError):
        return exc.message, exc.hint or ""
    return f"{type(exc).__name__}: {exc}", ""


class NotWorking(GpuctlError):
    """A step's commands ran, but what they made does not pass the step's own check."""


def run_steps(host: Host, settings: ProvisionSettings, steps: list[Step], *, check: bool = False,
              on_step: Callable[[StepOutcome], None] | None = None, label: str = "") -> ProvisionReport:
    started = time.monotonic()
    report = ProvisionReport(label, check, [])
    failed = False
    would_change = False
    # One round trip answers every check; valid only until the first change (then stale).
    fresh = run_batch(host, {s.id: s.check(settings) for s in steps if hasattr(s, "check")})
    for step in steps:
        t0 = time.monotonic()
        outcome = StepOutcome(step.id, UNCHANGED)
        if failed:
            outcome.status, outcome.reason = SKIPPED, "an earlier step failed"
        elif check and would_change and getattr(step, "verifies", False):
            outcome.status, outcome.reason = SKIPPED, "verifies after the changes above are applied"
        else:
            try:
                verdict = None if would_change else fresh.get(step.id)
                plan = step.plan(host, settings, verdict) if hasattr(step, "check") \
                    else step.plan(host, settings)
                outcome.actions, outcome.reason = plan.actions, plan.reason
                if plan.skipped:
                    outcome.status = SKIPPED
                elif plan.changes:
                    would_change = True
                    if not check and plan.apply:
                        plan.apply(host)
                        _verify(host, step, settings)
                    outcome.status = CHANGED
            except Exception as exc:  # a step's failure is reported, not raised mid-run
                if _is_connection_error(exc) or isinstance(exc, RebootRequested):
                    raise  # the host went away (or is rebooting): no later step can run
                outcome.error, outcome.hint = _error_text(exc)
                outcome.status, failed = FAILED, True
        outcome.seconds = time.monotonic() - t0
        report.steps.append(outcome)
        if on_step:
            on_step(outcome)
    report.seconds = time.monotonic() - started
    report.round_trips = getattr(host, "round_trips", 0)
    return report


def _verify(host: Host, step: Step, settings: ProvisionSettings) -> None:
    """Done means working: after applying, the step's check must say so."""
    if not hasattr(step, "check"):
        return
    after = run_check(host, step.check(settings))
    if not after.done:
        raise NotWorking(f"applied, but {after.reason}",
                         "rerun to repair it; if it fails the same way, fix that on the host")


def _is_connection_error(exc: Exception) -> bool:
    from ..adapters.ssh import SshError

    return isinstance(exc, SshError)
