"""What a run's machine costs per hour and which guards will end it: the one place runs ask.

`vm_economics` is the function to wire to the live VM view (it reads the local VM record
today: the hourly price recorded at `up`, the run limit counted from when GCE reported
RUNNING, the termination time and the daily stop). A `user@host` target has no record: its
price comes from --price-per-hour or --profile, and its guard from the host's own shutdown
cron, read in the same round trip as the run's status.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from .estimate import Guard

CRON_LINE = re.compile(r"^\s*(\d{1,2})\s+(\d{1,2})\s+\*\s+\*\s+\*\s+\S+\s+\S*shutdown\b", re.M)
DAY = 86400


@dataclass(frozen=True)
class Economics:
    price_per_hour: float | None = None
    price_source: str | None = None  # "VM record", "--price-per-hour", "profile a100-spot"
    guards: list[Guard] = field(default_factory=list)


def vm_economics(vm_name: str, now: dt.datetime | None = None) -> Economics:
    """Price and server-side guards of a gpuctl VM. Returns an empty Economics for a VM
    gpuctl has no record of (the run is still shown; only its cost is unknown)."""
    from ..lifecycle import records
    from ..adapters.compute import parse_time
    from ..guards import seconds_until_clock

    now = now or dt.datetime.now(dt.timezone.utc)
    record = records.load(vm_name)
    if record is None:
        return Economics()
    guards: list[Guard] = []
    action = "deletes the VM" if record.termination_action.upper() == "DELETE" else "stops the VM"
    extend = f"`gpuctl extend {vm_name} --hours {{hours}}`"
    start = parse_time(record.running_since or "")
    if record.max_run_seconds and start:
        left = (start + dt.timedelta(seconds=record.max_run_seconds) - now).total_seconds()
        guards.append(Guard("run limit", max(0.0, left), action, extend))
    if record.termination_time:
        when = parse_time(record.termination_time)
        if when:
            guards.append(Guard("termination time", max(0.0, (when - now).total_seconds()),
                                action, extend))
    if record.daily_stop:
        from gpuctl_infra.spec import DailyStop

        hour, minute = (int(p) for p in record.daily_stop["clock"].split(":"))
        stop = DailyStop(hour, minute, record.daily_stop["time_zone"])
        guards.append(Guard("daily stop", seconds_until_clock(stop, now), "stops the VM",
                            f"it stops daily at {stop.clock} {stop.time_zone}: save checkpoints "
                            "and resume after it (the schedule cannot be extended)"))
    return Economics(record.hourly_usd, "VM record", guards)


def profile_price(profile_name: str) -> float:
    """Hourly running price of a profile in the configured region."""
    from ..context import load_context
    from ..cost import hourly_cost
    from ..profiles import get_profile
    from ..reports import pick_region

    ctx = load_context()
    profile = get_profile(ctx.profiles, profile_name)
    region = pick_region(profile, None, ctx.config.region)
    return hourly_cost(profile, region, ctx.prices).running


def shutdown_cron_guard(cron_text: str | None, local_seconds: int | None,
                        target: str) -> Guard | None:
    """The host's daily shutdown cron (written by provisioning) as a guard, from the host's
    local time of day. Pure."""
    if not cron_text or local_seconds is None:
        return None
    match = CRON_LINE.search(cron_text)
    if not match:
        return None
    minute, hour = int(match.group(1)), int(match.group(2))
    if minute > 59 or hour > 23:
        return None
    left = (hour * 3600 + minute * 60 - int(local_seconds)) % DAY or DAY
    return Guard("daily shutdown", float(left), "powers the host off",
                 f"it powers off at {hour:02d}:{minute:02d} host time: move it with "
                 f"`gpuctl provision {target} --stop-at HH:MM`, or resume from a checkpoint")


def economics(vm: str | None, target: str, price_per_hour: float | None,
              price_source: str | None, host_clock: dict | None,
              now: dt.datetime | None = None) -> Economics:
    """Price and guards for a run: the VM's record first, then what was given at `run`."""
    base = vm_economics(vm, now) if vm else Economics()
    price = base.price_per_hour if base.price_per_hour is not None else price_per_hour
    source = base.price_source if base.price_per_hour is not None else price_source
    guards = list(base.guards)
    if host_clock:
        cron = shutdown_cron_guard(host_clock.get("shutdown_cron"),
                                   host_clock.get("local_seconds"), target)
        if cron and not any(g.kind == "daily stop" for g in guards):
            guards.append(cron)
    return Economics(price, source, guards)
