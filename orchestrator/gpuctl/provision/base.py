"""The step contract: read facts now, return what would change (or why nothing does)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .checks import SKIP, Check, Verdict, run_check
from .facts import Fact
from .settings import ProvisionSettings


class RebootRequested(Exception):
    """A Host's reboot_and_wait could not wait: the reboot ends the process running the steps
    (provisioning on the machine itself, provision/local_host.py). The runner stops and lets it
    through; the next boot runs the steps again."""


class Host(Protocol):
    def run(self, command: str, *, sudo: bool = False, check: bool = True,
            timeout: int | None = 600) -> Any: ...

    def reboot_and_wait(self, timeout_s: float = 600, poll_s: float = 5) -> None: ...


def read(host: Host, fact: Fact):
    """Read a fact at the moment a step needs it."""
    return fact.parse(host.run(fact.command, sudo=fact.sudo, check=False).stdout)


@dataclass
class StepPlan:
    actions: list[str] = field(default_factory=list)  # what apply would do, for people
    apply: Callable[[Host], None] | None = None
    reason: str = ""  # why nothing changes, or why the step is skipped
    skipped: bool = False

    @property
    def changes(self) -> bool:
        return bool(self.actions) and not self.skipped


def noop(reason: str) -> StepPlan:
    return StepPlan(reason=reason)


def skip(reason: str) -> StepPlan:
    return StepPlan(reason=reason, skipped=True)


def commands(*cmds: str, sudo: bool = True) -> StepPlan:
    """A plan that runs shell commands in order; each is also its own description."""
    def apply(host: Host) -> None:
        for cmd in cmds:
            host.run(cmd, sudo=sudo)
    return StepPlan(actions=list(cmds), apply=apply)


def ask(host: Host, check: Check, verdict: Verdict | None) -> Verdict:
    """The runner's batched verdict when it is still fresh, else the check asked now."""
    return verdict or run_check(host, check)


def settled(verdict: Verdict) -> StepPlan | None:
    """The no-op or skip plan when the step is done or cannot apply; None when there is work."""
    if verdict.state == SKIP:
        return skip(verdict.reason)
    if verdict.done:
        return noop(verdict.reason)
    return None


class Step(Protocol):
    id: str

    def check(self, settings: ProvisionSettings) -> Check:
        """The functional 'already done?' test; the runner also asks it after apply."""

    def plan(self, host: Host, settings: ProvisionSettings,
             verdict: Verdict | None = None) -> StepPlan: ...
