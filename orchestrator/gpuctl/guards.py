"""Guards: what ends a VM's billing when nobody is watching.

Server-side guards live in Google Cloud and work with the laptop closed: a max run duration
(or termination time) with a termination action, and an instance schedule that stops the VM
at a clock time. On-host guards (a shutdown cron at the same clock time, an idle watchdog)
are installed by provisioning; they are a second line, since a wedged host may not run them.
A plan must have a server-side guard unless the user opts out explicitly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from gpuctl_infra.spec import DailyStop

from .cost import Exposure
from .errors import GuardError
from .units import format_duration

UNGUARDED_FLAG = "--unguarded"


@dataclass(frozen=True)
class Guard:
    kind: str  # max_run_duration | termination_time | instance_schedule | shutdown_cron | idle_watchdog
    side: str  # server | host
    summary: str
    action: str  # delete | stop
    fires_in_seconds: float | None = None  # from apply time; None when it depends on use
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "side": self.side, "summary": self.summary, "action": self.action,
                "fires_in_seconds": self.fires_in_seconds, **({"details": self.details} if self.details else {})}


@dataclass(frozen=True)
class GuardPlan:
    guards: tuple[Guard, ...]
    max_run_seconds: int | None  # GCE's own limit: the hard cap when a deadline is set
    termination_time: dt.datetime | None
    termination_action: str  # DELETE | STOP, as GCE spells it
    daily_stop: DailyStop | None
    deadline_seconds: int | None = None  # the movable deadline (a Cloud Scheduler job), if any

    @property
    def server_side(self) -> tuple[Guard, ...]:
        return tuple(g for g in self.guards if g.side == "server")

    def exposure(self) -> Exposure:
        """The first server-side guard to fire bounds the running time; its action decides
        whether billing ends (delete) or shrinks to the disks (stop)."""
        # A movable deadline is not counted: if its job fails (permissions, API off), GCE's own
        # limit still ends the VM, so the worst case is that limit.
        firing = [g for g in self.server_side if g.fires_in_seconds is not None
                  and not g.details.get("movable")]
        if not firing:
            return Exposure(None, "running")
        first = min(firing, key=lambda g: g.fires_in_seconds)
        return Exposure(first.fires_in_seconds / 3600.0, "deleted" if first.action == "delete" else "stopped")


def seconds_until_clock(stop: DailyStop, now: dt.datetime) -> float:
    """Seconds from `now` to the next HH:MM in the stop's time zone (DST-aware)."""
    local_now = now.astimezone(ZoneInfo(stop.time_zone))
    target = local_now.replace(hour=stop.hour, minute=stop.minute, second=0, microsecond=0)
    if target <= local_now:
        target = (target + dt.timedelta(days=1)).replace(hour=stop.hour, minute=stop.minute)
    return (target - local_now).total_seconds()


def plan_guards(*, max_run_seconds: int | None, termination_time: dt.datetime | None,
                deadline_seconds: int | None = None,
                termination_action: str, daily_stop: DailyStop | None, idle_minutes: int,
                unguarded: bool, now: dt.datetime) -> GuardPlan:
    action = termination_action.upper()
    guards: list[Guard] = []
    if max_run_seconds:
        guards.append(Guard(
            "max_run_duration", "server",
            f"GCE {action.lower()}s the VM after {format_duration(max_run_seconds)} of running",
            action.lower(), float(max_run_seconds), {"seconds": max_run_seconds}))
    if deadline_seconds:
        guards.append(Guard(
            "deadline", "server",
            f"Cloud Scheduler deletes the VM after {format_duration(deadline_seconds)} "
            "(`gpuctl extend` moves it, up to the cap)",
            "delete", float(deadline_seconds), {"seconds": deadline_seconds, "movable": True}))
    if termination_time:
        guards.append(Guard(
            "termination_time", "server",
            f"GCE {action.lower()}s the VM at {termination_time.isoformat()}",
            action.lower(), max(0.0, (termination_time - now).total_seconds()),
            {"time": termination_time.isoformat()}))
    if daily_stop:
        guards.append(Guard(
            "instance_schedule", "server",
            f"instance schedule stops the VM daily at {daily_stop.clock} {daily_stop.time_zone}",
            "stop", seconds_until_clock(daily_stop, now),
            {"cron": daily_stop.cron, "time_zone": daily_stop.time_zone}))
        guards.append(Guard(
            "shutdown_cron", "host",
            f"on-host cron powers off at {daily_stop.clock} {daily_stop.time_zone}",
            "stop", seconds_until_clock(daily_stop, now),
            {"cron": f"{daily_stop.cron} /sbin/shutdown -h now", "time_zone": daily_stop.time_zone}))
    if idle_minutes:
        guards.append(Guard(
            "idle_watchdog", "host",
            f"powers off after {idle_minutes} min with idle GPUs, no SSH session and no job",
            "stop", None, {"idle_minutes": idle_minutes}))
    if not any(g.side == "server" for g in guards) and not unguarded:
        raise GuardError("this plan has no server-side guard: the VM would bill until you delete it",
                         f"pass --ttl 6h, --budget 20 or --stop-at 06:00, or {UNGUARDED_FLAG} "
                         "to accept an unbounded bill")
    return GuardPlan(tuple(guards), max_run_seconds, termination_time, action, daily_stop,
                     deadline_seconds)
