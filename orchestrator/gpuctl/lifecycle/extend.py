"""`gpuctl extend`: move a VM's server-side run limit and say what the new worst case is.

The limit is changed in place with instances.setScheduling (GCE's own call for it), keeping
every other scheduling field; the record follows, so status and cost stay right. GCE may
refuse to change scheduling on a running VM in some cases; then nothing changes and the
error says so (gpuctl never stops a VM to extend it: that would lose its local NVMe).
"""

from __future__ import annotations

import datetime as dt

from gpuctl_infra.rules import MAX_RUN_SECONDS

from ..errors import GpuctlError, UsageError
from ..units import format_duration
from . import records
from .billing_time import time_left
from .deps import LiveDeps


def extend_vm(name: str, hours: float, deps: LiveDeps) -> dict:
    if not (0 < hours <= 24 * 120):
        raise UsageError(f"--hours {hours} is out of range", "use a positive number of hours")
    record = records.require(name)
    view = deps.compute.instance(record.zone, name) if record.zone else None
    if view is None:
        raise GpuctlError(f"VM {name} no longer exists in {record.zone}",
                          f"`gpuctl down {name}` cleans up what is left")
    added = int(hours * 3600)
    if record.max_run_seconds:
        new_limit = record.max_run_seconds + added
        if new_limit > MAX_RUN_SECONDS:
            raise UsageError(f"the run limit would be {format_duration(new_limit)}, over GCE's 120 days",
                             "extend by less")
        deps.compute.set_run_limit(view, max_run_seconds=new_limit)
        record.max_run_seconds = new_limit
    elif record.termination_time:
        when = dt.datetime.fromisoformat(record.termination_time) + dt.timedelta(seconds=added)
        deps.compute.set_run_limit(view, termination_time=when.isoformat())
        record.termination_time = when.isoformat()
    else:
        raise GpuctlError(f"VM {name} has no run limit to move (only a daily stop)",
                          "its guard is the schedule; `gpuctl down` when you are done")
    records.save(record)
    left = time_left(record, deps.compute.instance(record.zone, name), deps.clock())
    worst = None if left is None else left / 3600 * record.hourly_usd
    return {"name": name, "added_hours": hours, "max_run_seconds": record.max_run_seconds,
            "termination_time": record.termination_time, "time_left_seconds": left,
            "worst_case_usd": None if worst is None else round(worst, 2),
            "then": "deleted" if record.termination_action == "DELETE" else "stopped"}
