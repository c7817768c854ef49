"""`gpuctl extend`: move a running VM's deadline and say what the new worst case is.

A VM has two server-side time guards:
  * the hard cap: GCE's maxRunDuration (or terminationTime) with its termination action, fixed
    at creation. GCE moves it only with instances.setScheduling, and compute.v1.json says "You
    can only call this method on astopped instance, that is, a VM instance that is in a
    `TERMINATED` state"; stopping loses the local NVMe. So extend never touches it.
  * the deadline: a Cloud Scheduler job that deletes the VM at a minute gpuctl picks
    (adapters/deadline.py), moved in place with jobs.patch while the VM runs.
The VM ends at whichever comes first; that is the worst case extend reports. Past the hard cap
it refuses and says what it would take.
"""

from __future__ import annotations

import datetime as dt

from gpuctl_infra.catalog import region_of

from ..adapters.compute import InstanceView
from ..adapters.deadline import DeadlineApi
from ..errors import GpuctlError, UsageError
from ..units import format_duration
from . import records
from .deps import LiveDeps

def hard_cap(record: records.VmRecord, view: InstanceView) -> dt.datetime | None:
    """When GCE's own limit ends the VM: last start + maxRunDuration, or the termination time."""
    if record.max_run_seconds and view.last_start:
        return view.last_start + dt.timedelta(seconds=record.max_run_seconds)
    if record.termination_time:
        return dt.datetime.fromisoformat(record.termination_time)
    return None


def extend_vm(name: str, hours: float, deps: LiveDeps, deadlines: DeadlineApi | None = None) -> dict:
    if not (0 < hours <= 24 * 120):
        raise UsageError(f"--hours {hours} is out of range", "use a positive number of hours")
    record = records.require(name)
    view = deps.compute.instance(record.zone, name) if record.zone else None
    if view is None:
        raise GpuctlError(f"VM {name} no longer exists in {record.zone}",
                          f"`gpuctl down {name}` cleans up what is left")
    deadlines = deadlines or deps.deadline_api(region_of(record.zone))
    now = deps.clock()
    cap = hard_cap(record, view)
    current = deadlines.get(name, now)
    if current is None and cap is not None:
        # Created without a cap above its run limit: GCE's limit is the only one, and GCE
        # moves it only on a stopped VM (which loses the local NVMe).
        raise UsageError(
            f"{name} has no movable deadline: its run limit is GCE's own, fixed at creation "
            f"(ends {_utc(cap)}); GCE changes it only on a stopped VM, which loses the local NVMe",
            f"copy results off the VM, `gpuctl down {name}`, then `gpuctl up {record.profile} "
            f"--ttl 6h --cap 24h` (or `cap` in the config) for VMs whose deadline extend can move")
    wanted = max(current or now, now) + dt.timedelta(hours=hours)
    if cap is not None and wanted > cap:
        room = max(0.0, (cap - (current or now)).total_seconds())
        raise UsageError(
            f"the deadline would be {_utc(wanted)}, past the VM's hard cap at {_utc(cap)} "
            f"(GCE {record.termination_action.lower()}s it then; the cap was fixed at creation and GCE "
            "changes it only on a stopped VM, which loses the local NVMe)",
            f"extend by at most {room / 3600:.2f}h; to run {format_duration((wanted - now).total_seconds())} "
            f"from now, copy results off the VM, `gpuctl down {name}` and `gpuctl up {record.profile} "
            f"--ttl {_ceil_hours((wanted - now).total_seconds())}h` (or a --budget that buys it)")
    fires = deadlines.set(name, record.zone, wanted)
    ends = min(fires, cap) if cap else fires
    running_h = max(0.0, (ends - now).total_seconds() / 3600)
    return {
        "name": name, "added_hours": hours,
        "deadline": _utc(fires), "previous_deadline": _utc(current) if current else None,
        "hard_cap": _utc(cap) if cap else None,
        "time_left_seconds": running_h * 3600,
        "worst_case_usd": round(running_h * record.hourly_usd, 2),
        "then": "deleted" if ends == fires or record.termination_action == "DELETE" else "stopped",
        "status": view.status,
    }


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _ceil_hours(seconds: float) -> int:
    return int(-(-seconds // 3600))
