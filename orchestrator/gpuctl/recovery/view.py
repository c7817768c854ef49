"""Where a `run --recover` run stands, read from Google with no help from the VMs: where it runs
now, how often it was recreated, what it cost so far across every replacement, and the worst
case left.

  where now      regionInstanceGroupManagers.listManagedInstances: the group's VM, its zone (from
                 `instance`), `instanceStatus` and `currentAction` (NONE, CREATING, RECREATING, ...;
                 compute.v1.json, ManagedInstance).
  recreations    the VM keeps its name across replacements ("same VM name, same template",
                 https://cloud.google.com/compute/docs/instance-groups) but each incarnation has
                 its own id: an Operation's `targetId` is "The unique target ID, which identifies a
                 specific incarnation of the target resource" (compute.v1.json, Operation). So the
                 zone Operations on that name in the group's zones (zoneOperations.list, filtered
                 by targetLink) give one successful `insert` per incarnation: recreations are the
                 incarnations after the first. Preemptions are the `compute.instances.preempted`
                 operations GCE records (https://cloud.google.com/compute/docs/instances/create-use-spot,
                 "detect preemption": operationType compute.instances.preempted; the stand-in
                 records them the same way, tests/standins/compute_faults.py preempt()).
  cost so far    the sum over incarnations of (end - start) x the VM's hourly rate (host, GPUs,
                 local SSD, boot disk: all bill only while the VM exists, as its disks are deleted
                 with it). start: the end of its insert; end: the end of its preemption or delete,
                 else now; never past the deadline (the template's hard cap ends it then).
  worst left     (deadline - now) x the hourly rate: one VM at a time until the deadline job (read
                 live from Cloud Scheduler) deletes the group.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

ENDS = ("compute.instances.preempted", "delete")


@dataclass(frozen=True)
class Incarnation:
    target_id: str
    zone: str
    started: dt.datetime
    ended: dt.datetime | None  # None: it exists now


def incarnations(compute, zones: list[str], vm_name: str) -> tuple[list[Incarnation], int]:
    """(the VM's incarnations, oldest first; how many times it was preempted)."""
    found: list[Incarnation] = []
    preempted = 0
    for zone in zones:
        ops = compute.instance_operations(zone, vm_name)
        preempted += sum(1 for o in ops if o.kind == "compute.instances.preempted")
        for op in ops:
            if op.kind != "insert" or op.failed or op.ended is None:
                continue
            ends = [o.ended for o in ops if o.target_id == op.target_id and o.kind in ENDS and o.ended]
            found.append(Incarnation(op.target_id, zone, op.ended, min(ends) if ends else None))
    return sorted(found, key=lambda i: i.started), preempted


def billed_hours(lives: list[Incarnation], now: dt.datetime, deadline: dt.datetime | None) -> float:
    limit = min(now, deadline) if deadline else now
    return sum(max(0.0, (min(i.ended or limit, limit) - i.started).total_seconds()) for i in lives) / 3600


@dataclass
class GroupView:
    name: str
    run: str
    state: str  # running | recreating | creating | cancelled | ended | ...
    vm: str | None
    zone: str | None
    vm_status: str | None
    action: str | None
    recreations: int
    preemptions: int
    hourly_usd: float
    cost_so_far_usd: float
    worst_case_left_usd: float
    planned_worst_case_usd: float
    deadline: str | None
    checkpoints: str

    def as_dict(self) -> dict:
        return asdict(self)


def group_view(record, deps, now: dt.datetime | None = None) -> GroupView:
    """One recovering run, live. Saves the group's VM name in the record once it is known."""
    from ..adapters.compute import parse_time
    from ..lifecycle import records
    from .apply import group_deadline_api

    now = now or deps.clock()
    group = record.group
    members = deps.compute.managed_vms(group["region"], record.name)
    current = members[0] if members else None
    if current is not None and group.get("vm") != current.name:
        group["vm"] = current.name
        records.save(record)
    planned_end = parse_time(group["deadline"])
    deadline = None
    if members is not None:
        deadline = group_deadline_api(deps, group["region"]).get(record.name, now) or planned_end
    lives, preempted = (incarnations(deps.compute, record.zones_to_try, group["vm"]) if group.get("vm")
                        else ([], 0))
    cost = billed_hours(lives, now, planned_end) * record.hourly_usd
    left = max(0.0, (deadline - now).total_seconds() / 3600) * record.hourly_usd if deadline else 0.0
    return GroupView(
        name=record.name, run=group["run"], state=_state(record, members), vm=group.get("vm"),
        zone=current.zone if current else None, vm_status=(current.status or None) if current else None,
        action=current.action if current else None, recreations=max(0, len(lives) - 1), preemptions=preempted,
        hourly_usd=record.hourly_usd, cost_so_far_usd=round(cost, 4), worst_case_left_usd=round(left, 4),
        planned_worst_case_usd=group["worst_case_usd"], deadline=deadline.isoformat() if deadline else None,
        checkpoints=group["checkpoints"])


def _state(record, members) -> str:
    if record.group.get("cancelled_at"):
        return "cancelled"
    if record.state != "ready":
        return f"recorded {record.state}"
    if members is None:
        return "ended (its deadline deleted the group, or it was deleted outside gpuctl)"
    if not members:
        return "no VM (group of zero)"
    action = members[0].action
    if action == "NONE":
        return "running" if members[0].status == "RUNNING" else (members[0].status or "unknown").lower()
    return action.lower().replace("_", " ")
