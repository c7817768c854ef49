"""How long a VM has billed and what it cost, and when each of its guards fires.

Estimates from what GCE reports (first RUNNING, last start/stop) and the hourly prices
recorded at `up`: running time bills the whole VM, stopped time only its disks. Stop/start
cycles between the last start and the first RUNNING are counted as running: an estimate
that errs towards the larger bill.
"""

from __future__ import annotations

import datetime as dt

from ..adapters.compute import InstanceView, parse_time
from ..guards import seconds_until_clock
from .records import VmRecord

STOPPED_STATES = ("TERMINATED", "STOPPED", "SUSPENDED", "STOPPING", "SUSPENDING")


def running_window(record: VmRecord, view: InstanceView | None,
                   now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    start = parse_time(record.running_since or "") or (view.last_start if view else None)
    if start is None:
        return None, None
    if view is None:  # deleted: by its run limit if that fell before now, else just now
        end = now
        if record.max_run_seconds:
            end = min(now, start + dt.timedelta(seconds=record.max_run_seconds))
        if record.termination_time:
            end = min(end, parse_time(record.termination_time) or end)
        return start, max(start, end)
    if view.status in STOPPED_STATES and view.last_stop:
        return start, max(start, view.last_stop)
    return start, now


def cost_so_far(record: VmRecord, view: InstanceView | None,
                now: dt.datetime) -> tuple[float | None, float | None]:
    start, end = running_window(record, view, now)
    if start is None:
        return 0.0, 0.0
    running_h = (end - start).total_seconds() / 3600
    stopped_h = 0.0
    if view is not None and view.status in STOPPED_STATES and end < now:
        stopped_h = (now - end).total_seconds() / 3600
    return running_h * record.hourly_usd + stopped_h * record.stopped_hourly_usd, running_h


def guard_timers(record: VmRecord, view: InstanceView | None, now: dt.datetime,
                 deadline: dt.datetime | None = None) -> list[dict]:
    """Each server-side guard with the seconds until it fires (None when it cannot fire now).
    `deadline`: when the VM's deadline job fires, as Cloud Scheduler holds it (extend moves it)."""
    timers = []
    running = view is not None and view.status == "RUNNING"
    start = view.last_start if view and view.last_start else parse_time(record.running_since or "")
    action = record.termination_action.lower()
    if record.max_run_seconds:
        left = None
        if running and start:
            left = max(0.0, (start + dt.timedelta(seconds=record.max_run_seconds) - now).total_seconds())
        timers.append({"kind": "max_run_duration", "action": action, "fires_in_seconds": left,
                       "limit_seconds": record.max_run_seconds})
    if deadline is not None:
        timers.append({"kind": "deadline", "action": "delete", "at": deadline.isoformat(),
                       "fires_in_seconds": max(0.0, (deadline - now).total_seconds()), "movable": True})
    if record.termination_time:
        when = parse_time(record.termination_time)
        timers.append({"kind": "termination_time", "action": action, "at": record.termination_time,
                       "fires_in_seconds": max(0.0, (when - now).total_seconds()) if when else None})
    if record.daily_stop:
        from gpuctl_infra.spec import DailyStop

        hour, minute = (int(p) for p in record.daily_stop["clock"].split(":"))
        stop = DailyStop(hour, minute, record.daily_stop["time_zone"])
        timers.append({"kind": "instance_schedule", "action": "stop",
                       "at": f"{stop.clock} {stop.time_zone}",
                       "fires_in_seconds": seconds_until_clock(stop, now) if running else None})
    return timers


def time_left(record: VmRecord, view: InstanceView | None, now: dt.datetime,
              deadline: dt.datetime | None = None) -> float | None:
    firing = [t["fires_in_seconds"] for t in guard_timers(record, view, now, deadline)
              if t["fires_in_seconds"] is not None]
    return min(firing) if firing else None
