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

A `run --recover` group (record.group) is refused, in one line, before any cloud call: its
deadline and its hard cap are the same minute (recovery/plan.py), so the deadline has no room to
move, and the cap lives in the group's instance template, which GCE cannot change
(compute.v1.json instanceTemplates: aggregatedList, delete, get, getIamPolicy, insert, list,
setIamPolicy, testIamPermissions; no update or patch). A new template
(regionInstanceGroupManagers.setInstanceTemplate: "Sets the instance template to use when
creating new instances or recreating instances in this group. Existing instances are not
affected.") would reach only the next replacement, and the VM running now keeps its own
terminationTime (instances.setScheduling, stopped VMs only, as above).
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


def refuse_recovering(record: records.VmRecord) -> None:
    """A `run --recover` group keeps the deadline it started with: one line saying why, when it
    ends, what that may cost, and how to get a longer run (its checkpoints carry over)."""
    if record.group is None:
        return
    name, group = record.name, record.group
    worst = group.get("worst_case_usd")
    cost = f", worst case ${worst:,.2f}" if isinstance(worst, (int, float)) else ""
    run = group.get("run") or "the job"
    how = (f"`gpuctl down {name}` keeps the checkpoints in {group.get('checkpoints') or 'the bucket'}; "
           f"then start {run} again, `gpuctl run {name} job.yaml --recover` with a larger --ttl or "
           "--budget, and it resumes from the newest complete checkpoint")
    if group.get("cancelled_at"):
        raise UsageError(f"{name} is a --recover run that was cancelled at {group['cancelled_at']}; "
                         "there is nothing left to extend", how)
    raise UsageError(
        f"{name} is a --recover run: it keeps its deadline ({group.get('deadline') or record.termination_time}"
        f"{cost}), fixed with the hard cap in its instance template, which GCE cannot change "
        "(a new template would reach only the next replacement, never the VM running now)",
        how)


def extend_vm(name: str, hours: float, deps: LiveDeps, deadlines: DeadlineApi | None = None) -> dict:
    if not (0 < hours <= 24 * 120):
        raise UsageError(f"--hours {hours} is out of range", "use a positive number of hours")
    record = records.require(name)
    refuse_recovering(record)
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
