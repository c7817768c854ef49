"""`gpuctl status`: every gpuctl VM in the project from ONE paged aggregatedList filtered by
label, joined with the local records for prices and guards. When Compute Engine cannot be
reached, the local records alone, marked not live (`status_report`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..adapters.compute import InstanceView, parse_time
from ..errors import NetworkError
from . import records
from .billing_time import STOPPED_STATES, cost_so_far, guard_timers, running_window, time_left
from .deps import LiveDeps
from .records import VmRecord


def describe_state(record: VmRecord | None, view: InstanceView | None, now: dt.datetime) -> str:
    """running | creating | stopped (...) | deleted (...) in words a user reads."""
    if view is None:
        if record is None:
            return "unknown"
        if record.state == "creating":
            return "creating (or an interrupted up: `gpuctl down` cleans it)"
        start, end = running_window(record, None, now)
        if end is not None and end < now:
            return "deleted by its run limit"
        return "deleted (preempted, or deleted outside gpuctl)"
    if view.status == "RUNNING":
        return "running"
    if view.status in STOPPED_STATES:
        if record and record.max_run_seconds and view.last_start and view.last_stop and (
                view.last_stop - view.last_start).total_seconds() >= record.max_run_seconds - 60:
            return "stopped by its run limit"
        return "stopped (preempted, scheduled stop or shutdown; disks still bill)"
    return view.status.lower()


def vm_status(record: VmRecord | None, view: InstanceView | None, now: dt.datetime,
              deadline: dt.datetime | None = None) -> dict:
    name = (record.name if record else view.name)
    cost, hours = cost_so_far(record, view, now) if record else (None, None)
    start = view.last_start if view and view.last_start else None
    return {
        "name": name,
        "state": describe_state(record, view, now),
        "zone": (view.zone if view else (record.zone if record else None)),
        "address": (view.address if view else None) or (record.address if record else None),
        "iap": bool(record and record.iap),  # SSH through IAP: no external address to show
        # The one bucket its service account may write (gpuctl up --checkpoints); None: no account.
        "checkpoint_bucket": record.checkpoint_bucket if record else None,
        "machine_type": view.machine_type if view else None,
        "uptime_seconds": ((now - start).total_seconds() if view and view.status == "RUNNING"
                           and start else 0.0),
        "cost_so_far_usd": None if cost is None else round(cost, 4),
        "hourly_usd": record.hourly_usd if record else None,
        "guards": guard_timers(record, view, now, deadline) if record else [],
        "time_left_seconds": time_left(record, view, now, deadline) if record else None,
        "tracked": record is not None,
        "owner": (view.labels.get("gpuctl-owner") if view else None),
        "live": True,
    }


def group_status(record: VmRecord, deps: LiveDeps, now: dt.datetime) -> dict:
    """A `run --recover` group in the same row shape, plus where it runs now, how often Google
    recreated its VM and the worst case left (recovery/view.py)."""
    from ..recovery.view import group_view

    seen = group_view(record, deps, now)
    deadline = parse_time(seen.deadline) if seen.deadline else None
    left = max(0.0, (deadline - now).total_seconds()) if deadline else None
    return {
        "name": record.name, "state": seen.state, "zone": seen.zone, "address": None, "iap": False,
        "checkpoint_bucket": record.checkpoint_bucket, "machine_type": None, "uptime_seconds": None,
        "cost_so_far_usd": seen.cost_so_far_usd, "hourly_usd": record.hourly_usd,
        "guards": [{"kind": "deadline", "action": "delete group", "at": seen.deadline,
                    "fires_in_seconds": left}] if left else [],
        "time_left_seconds": left, "tracked": True, "owner": None, "live": True,
        "recover": seen.as_dict(),
    }


def status_all(deps: LiveDeps, name: str | None = None) -> list[dict]:
    now = deps.clock()
    labels = {"gpuctl-managed": "true"}
    if name:
        labels["gpuctl-name"] = name
    local = {r.name: r for r in records.all_records() if not name or r.name == name}
    groups = {n for n, r in local.items() if r.group}
    # A group's VM carries the group's gpuctl-name label (from its template): shown in its row.
    views = {v.name: v for v in deps.compute.labelled_instances(labels)
             if v.labels.get("gpuctl-name") not in groups}
    names = sorted(set(views) | set(local))
    return [group_status(local[n], deps, now) if n in groups else
            vm_status(local.get(n), views.get(n), now, _deadline(local.get(n), views.get(n), deps, now))
            for n in names]


def _deadline(record: VmRecord | None, view: InstanceView | None, deps: LiveDeps,
              now: dt.datetime) -> dt.datetime | None:
    """Where the VM's deadline job stands now (read live: `extend` moves it)."""
    if record is None or view is None or not record.deadline_seconds:
        return None
    from gpuctl_infra.catalog import region_of

    return deps.deadline_api(region_of(view.zone)).get(record.name, now)


@dataclass
class StatusReport:
    rows: list[dict]
    live: bool  # False: Compute Engine could not be reached; rows are gpuctl's records only
    error: NetworkError | None = None


def recorded_status(record: VmRecord, now: dt.datetime) -> dict:
    """What gpuctl wrote down about a VM, nothing read from Google: no state, uptime or cost
    that could be stale is shown as current."""
    return {
        "name": record.name, "state": f"recorded {record.state} (not live)",
        "zone": record.zone, "address": record.address, "iap": record.iap, "machine_type": None,
        "checkpoint_bucket": record.checkpoint_bucket,
        "uptime_seconds": None, "cost_so_far_usd": None, "hourly_usd": record.hourly_usd,
        "guards": guard_timers(record, None, now), "time_left_seconds": None,
        "tracked": True, "owner": None, "live": False,
    }


def status_report(deps: LiveDeps, name: str | None = None) -> StatusReport:
    """Live rows, or, when the network fails, the local records marked not live with the
    error kept for the caller to report (and exit non-zero on)."""
    try:
        return StatusReport(status_all(deps, name), live=True)
    except NetworkError as exc:
        now = deps.clock()
        rows = [recorded_status(r, now) for r in records.all_records() if not name or r.name == name]
        return StatusReport(rows, live=False, error=exc)
