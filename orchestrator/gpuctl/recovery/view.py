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

And from what each incarnation's host left in the run's bucket folder (checkpoint_sync.py), as the
VM's own disk goes with it: `.gpuctl/resumed/<instance id>.json` (the checkpoint it resumed from
and its step) and `.gpuctl/logs/<instance id>.log` (the run's log, copied every 30 s and once
more in the preemption notice), read by the parser `gpuctl progress` uses (runs/progress.py):
  step           the newest incarnation's last logged step (or the step it resumed from, before
                 it logged one) of the total the log names.
  steps redone   for each incarnation after the first, the last step the one before it logged
                 minus the step it resumed from: the work a preemption threw away. Unknown (None)
                 when either side is missing; a log copied up to 30 s before a preemption without
                 notice makes it a lower bound.
  to finish      the steps left x seconds per step (the newest the logs give) x the hourly rate,
                 through runs/estimate.py as for `gpuctl progress`. Unknown without a rate or a
                 total; the replacement's boot and checkpoint download are not in it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass, field

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
    # From the hosts' records in the bucket (run_steps); None: unknown, never 0 for unknown.
    step: int | None = None
    total_steps: int | None = None
    steps_redone: int | None = None
    seconds_per_step: float | None = None
    eta_seconds: float | None = None
    cost_to_finish_usd: float | None = None
    lives: list[dict] = field(default_factory=list)  # per incarnation: resumed from, last step, redone
    steps_note: str | None = None  # why the steps are unknown, when they are

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
    steps = run_steps(deps.storage_api(), group["checkpoints"], record.hourly_usd)
    return GroupView(
        name=record.name, run=group["run"], state=_state(record, members, deps), vm=group.get("vm"),
        zone=current.zone if current else None, vm_status=(current.status or None) if current else None,
        action=current.action if current else None, recreations=max(0, len(lives) - 1), preemptions=preempted,
        hourly_usd=record.hourly_usd, cost_so_far_usd=round(cost, 4), worst_case_left_usd=round(left, 4),
        planned_worst_case_usd=group["worst_case_usd"], deadline=deadline.isoformat() if deadline else None,
        checkpoints=group["checkpoints"], **steps)


def _state(record, members, deps=None) -> str:
    if record.group.get("cancelled_at"):
        return "cancelled"
    if record.state != "ready":
        return f"recorded {record.state}"
    if members is None:  # the group is gone: its own VM deleted it after the run, or the deadline
        finished = finished_marker(record, deps) if deps is not None else None
        if finished is not None:
            return f"finished (exit 0{_at(finished)}; its VM deleted the group)"
        failed = finished_marker(record, deps, FAILED) if deps is not None else None
        if failed is not None:
            return f"failed ({_failure(failed)}{_at(failed)}; its VM deleted the group)"
        return "ended (its deadline deleted the group, or it was deleted outside gpuctl)"
    if not members:
        return "no VM (group of zero)"
    action = members[0].action
    if action == "NONE":
        return "running" if members[0].status == "RUNNING" else (members[0].status or "unknown").lower()
    return action.lower().replace("_", " ")


FINISHED = ".gpuctl/finished"  # written by the VM when the command exits 0 (bootstrap.py watch)
FAILED = ".gpuctl/failed"  # written by the VM when the command failed or no VM could start it


def _at(marker: dict) -> str:
    at = marker.get("at")
    if not isinstance(at, (int, float)) or isinstance(at, bool):
        return ""
    return f" at {dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat(timespec='seconds')}"


def _failure(marker: dict) -> str:
    """What the VM recorded in .gpuctl/failed, in a few words (bootstrap.py watch / main)."""
    if marker.get("stage") == "boot":
        return f"the VM could not start the run: {str(marker.get('reason', 'unknown'))[-160:]}"
    if marker.get("timed_out"):
        return "the run hit its timeout"
    return f"the run exited {marker.get('exit_code', '?')}"


def finished_marker(record, deps, name: str = FINISHED) -> dict | None:
    """The run's `<checkpoints>/.gpuctl/finished` (or `failed`) marker ({"exit_code": 0, "at":
    epoch seconds}), read through the storage adapter; None when there is none (or it cannot be
    read: the state then says `ended`, as before). Read only once the group is gone."""
    from ..errors import GpuctlError

    try:
        body = deps.storage_api().read_object(f"{record.group['checkpoints'].rstrip('/')}/{name}")
    except GpuctlError:
        return None
    if body is None:
        return None
    try:
        marker = json.loads(body)
    except ValueError:
        return {}
    return marker if isinstance(marker, dict) else {}


# --- steps: what each incarnation's host left in the bucket (checkpoint_sync.py) ------------------

# The folders the hosts write their records to; the rest of `.gpuctl/` (the code snapshot, the
# helpers) is never read here.
RECORD_FOLDERS = (".gpuctl/resumed/", ".gpuctl/logs/")
# <id>: a VM's instance id (checkpoint_sync.py), or a GKE pod's name (gke/log_keeper.py).
RESUMED = re.compile(r"\.gpuctl/resumed/([A-Za-z0-9][A-Za-z0-9.-]{0,252})\.json")
LOG = re.compile(r"\.gpuctl/logs/([A-Za-z0-9][A-Za-z0-9.-]{0,252})\.log")
# The end of each VM's log is enough: the step, its total and the seconds per step are in the
# newest progress lines. Every `gpuctl jobs` reads it for every --recover run, so keep it small.
LOG_TAIL = 2**20


@dataclass(frozen=True)
class HostLife:
    """One incarnation as its host recorded it."""

    incarnation: str  # the VM's instance id (an Operation's targetId in Compute Engine), or the pod's name
    at: dt.datetime | None  # when it resumed, else when its log was last copied: orders lives
    resumed_from: str | None  # the checkpoint's name; None: started fresh, or not recorded
    resumed_step: int | None  # None: not recorded
    progress: object | None  # runs.progress.Progress of its log; None: no log


def host_lives(objects: dict) -> list[HostLife]:
    """Pure: {name under the run's folder: (bytes, last written)} of the `.gpuctl/` records ->
    each incarnation's life, oldest first. Whatever does not parse counts as not recorded."""
    from ..runs.progress import parse_text

    resumed, logs = {}, {}
    for name, (data, updated) in objects.items():
        if found := RESUMED.fullmatch(name):
            try:
                doc = json.loads(data)
                step = doc.get("step")
                resumed[found.group(1)] = (doc.get("checkpoint"), step if isinstance(step, int) else None,
                                           _when(doc.get("at")) or updated)
            except (ValueError, AttributeError):
                continue
        elif found := LOG.fullmatch(name):
            logs[found.group(1)] = (parse_text(data), updated)
    lives = []
    for incarnation in set(resumed) | set(logs):
        entry, step, at = resumed.get(incarnation, (None, None, None))
        progress, updated = logs.get(incarnation, (None, None))
        lives.append(HostLife(incarnation, at or updated, entry, step, progress))
    far_past = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return sorted(lives, key=lambda life: (life.at or far_past, life.incarnation))


def _when(text) -> dt.datetime | None:
    from ..adapters.compute import parse_time

    when = parse_time(text) if isinstance(text, str) else None
    return when if when is None or when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _last_step(life: HostLife) -> int | None:
    return life.progress.step if life.progress is not None else None


def steps_figures(lives: list[HostLife], hourly_usd: float | None) -> dict:
    """Pure: GroupView's step fields from the lives (see the module's docstring)."""
    from ..runs.estimate import figures
    from ..runs.progress import Progress

    rows = []
    # Before the first recorded life, nothing was redone only if it started from step 0.
    redone = 0 if lives and lives[0].resumed_step == 0 else None
    for index, life in enumerate(lives):
        lost = None
        if index:
            before, start = _last_step(lives[index - 1]), life.resumed_step
            lost = None if before is None or start is None else max(0, before - start)
        if index and lost is None:
            redone = None
        elif lost and redone is not None:
            redone += lost
        rows.append({"incarnation": life.incarnation, "resumed_from": life.resumed_from,
                     "resumed_step": life.resumed_step, "last_step": _last_step(life), "steps_redone": lost})
    if not lives:
        return {"steps_redone": None, "lives": rows, "steps_note": "no host has recorded its steps yet"}
    newest = lives[-1]
    step = _last_step(newest)
    step = newest.resumed_step if step is None else step
    logged = [life.progress for life in reversed(lives) if life.progress is not None]
    total = next((p.total_steps for p in logged if p.total_steps), None)
    per_step = next((p.seconds_per_step for p in logged if p.seconds_per_step), None)
    finished = bool(newest.progress and newest.progress.finished)
    # The steps left at the newest rate, not tqdm's own remaining time: a resumed bar's first jump
    # to the checkpoint's step makes that estimate far too short until it settles.
    now = figures(Progress(step=step, total_steps=total, seconds_per_step=per_step, finished=finished),
                  price_per_hour=hourly_usd)
    note = None
    if now["cost_to_complete_usd"] is None:
        note = ("the logs name no total steps" if total is None else
                "the logs give no seconds per step" if per_step is None else
                "no step known yet" if step is None else "no hourly price")
    return {"step": step, "total_steps": total, "steps_redone": redone,
            "seconds_per_step": now["seconds_per_step"], "eta_seconds": now["eta_seconds"],
            "cost_to_finish_usd": now["cost_to_complete_usd"], "lives": rows, "steps_note": note}


def run_steps(storage, folder: str, hourly_usd: float | None) -> dict:
    """The step fields of one run, read from its bucket folder through `storage` (a StorageApi).
    A failure to read the bucket leaves them unknown, with the reason: where it runs and what it
    cost still show."""
    from ..errors import GpuctlError

    try:
        objects = {name: value for under in RECORD_FOLDERS
                   for name, value in storage.object_tails(folder, under, LOG_TAIL).items()}
    except GpuctlError as exc:
        return {"steps_note": f"the run's records in {folder} could not be read: {exc.message}"}
    return steps_figures(host_lives(objects), hourly_usd)
