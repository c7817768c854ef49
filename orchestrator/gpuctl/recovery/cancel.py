"""`gpuctl cancel NAME` of a `run --recover` run: stop the run and every future replacement.

Deleting the group deletes its VM and ends the repairs at once (compute.v1.json,
regionInstanceGroupManagers.delete: "Deletes the specified managed instance group and all of the
instances in that group."); its template goes next (a template in use by a group cannot be
deleted, so never before), then the deadline job, which has nothing left to delete. The group goes
first so that a failure part-way leaves the deadline standing. The checkpoints, the bundle, the
record and the rest of the stack (the run's account and its bucket grant, the SSH rule) stay:
`gpuctl jobs` still shows the run and its cost, `gpuctl down NAME` removes the rest.
"""

from __future__ import annotations

from ..adapters.compute import ResourceView
from ..errors import GpuctlError


def is_recovering(name: str) -> bool:
    from ..lifecycle import records

    try:
        record = records.load(name)
    except GpuctlError:
        return False
    return record is not None and record.group is not None


def cancel_recover_run(name: str, deps) -> dict:
    """Cancel a recovering run. A run whose VM already deleted its group after finishing (the
    bucket holds `.gpuctl/finished`, recovery/view.py) stays `finished`: its template and deadline
    job are still deleted, and nothing is marked cancelled."""
    from ..lifecycle import records
    from .apply import group_deadline_api
    from .view import finished_marker, group_view

    record = records.require(name)
    region = record.group["region"]
    already = bool(record.group.get("cancelled_at"))
    finished = False
    deleted: list[str] = []
    if not already:
        finished = (deps.compute.managed_vms(region, name) is None
                    and finished_marker(record, deps) is not None)
        if not finished:
            deps.compute.delete(ResourceView("instance-group", name, region))
            deleted.append(f"instance-group/{name}")
        deps.compute.delete(ResourceView("instance-template", record.group["template"], "global"))
        group_deadline_api(deps, region).delete(name)
        deleted += [f"instance-template/{record.group['template']}", f"deadline-job/gpuctl-deadline-{name}"]
        if not finished:
            record.group["cancelled_at"] = deps.clock().isoformat()
            records.save(record)
    view = group_view(record, deps)
    return {"name": name, "state": view.state if finished else "cancelled", "already_ended": already,
            "run": view.run, "deleted": deleted, "kept": [view.checkpoints], "cost_so_far_usd": view.cost_so_far_usd,
            "recreations": view.recreations}
