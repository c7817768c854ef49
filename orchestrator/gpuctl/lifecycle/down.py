"""`gpuctl down`: destroy the stack, verify through the API that nothing labelled is left,
then forget the VM (stack, record, key pair, host-key pin) and report what it cost.

Safe to run twice, and safe after a crash at any point: every step tolerates its work being
done already, and the record is removed last.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from ..adapters.pulumi_engine import StackError
from ..errors import GpuctlError
from . import hostkeys, keys, records
from .access import host_key_name
from .billing_time import cost_so_far
from .deps import LiveDeps
from .records import VmRecord

OnEvent = Callable[[str, str], None]


class LeftoverError(GpuctlError):
    exit_code = 5


@dataclass
class DownResult:
    name: str
    existed: bool
    final_cost_usd: float | None
    running_hours: float | None
    deleted_directly: list[str]  # resources the engine missed that gpuctl deleted itself

    def as_dict(self) -> dict:
        return {"name": self.name, "existed": self.existed,
                "final_cost_usd": None if self.final_cost_usd is None else round(self.final_cost_usd, 4),
                "running_hours": None if self.running_hours is None else round(self.running_hours, 3),
                "deleted_directly": self.deleted_directly}


def destroy_everything(record: VmRecord, deps: LiveDeps, emit: OnEvent) -> list[str]:
    """Destroy, verify, clean up. Returns resources deleted directly because the engine
    left them (e.g. its state was lost); raises LeftoverError if any survive."""
    record.state = "destroying"
    records.save(record)
    if record.deadline_seconds and record.region:
        try:  # a --recover group's job has the same name (recovery/deadline.py)
            deps.deadline_api(record.region).delete(record.name)
        except GpuctlError as exc:  # a job left behind only fails against a deleted VM; sweep lists it
            emit("warn", f"could not delete the deadline job of {record.name}: {exc.message}")
    try:
        deps.engine.destroy(record.stack)
    except StackError as exc:
        emit("warn", f"pulumi destroy failed ({exc.message}); deleting by label instead")
    leftovers = vm_leftovers(deps, record.name)
    deleted = []
    for resource in sorted(leftovers, key=_delete_order):
        emit("warn", f"{resource.kind} {resource.name} was still there; deleting it")
        deps.compute.delete(resource)
        deleted.append(f"{resource.kind}/{resource.name}")
    survivors = vm_leftovers(deps, record.name)
    if survivors:
        names = ", ".join(f"{r.kind}/{r.name}" for r in survivors)
        raise LeftoverError(f"still present after down: {names}",
                            f"rerun `gpuctl down {record.name}`; `gpuctl sweep` lists them too")
    deps.engine.remove(record.stack)
    if record.iap and record.region:
        # The region's shared Cloud NAT goes with its last user (a VM made before it was
        # shared had its own NAT in its stack, destroyed above; then there is none to release).
        from .shared_nat import release

        deleted += release(deps, record.project or deps.project, record.region, emit, excluding=record.name)
    pinned_as = host_key_name(record)
    if pinned_as:
        hostkeys.unpin(pinned_as)
    keys.remove_key_pair(record.name)
    records.remove(record.name)
    return deleted


@contextmanager
def rollback_on_failure(record: VmRecord, deps: LiveDeps, emit: OnEvent) -> Iterator[None]:
    """Everything made for `record` is destroyed when the block fails in any way (Ctrl-C
    included), and the failure goes on: what `up` and `run --recover` wrap their apply in."""
    try:
        yield
    except BaseException:
        emit("rollback", f"removing everything made for {record.name}")
        destroy_everything(record, deps, emit)
        raise


def vm_leftovers(deps: LiveDeps, name: str) -> list:
    """What is labelled for VM `name`, leaving out a GKE cluster's nodes of the same name and a
    shared Cloud NAT's router (named gpuctl-nat-REGION: a VM could have that name too)."""
    from .shared_nat import is_shared_nat
    from .sweep import is_gke_resource

    labels = {"gpuctl-managed": "true", "gpuctl-name": name}
    return [r for r in deps.compute.labelled_resources(labels)
            if not is_gke_resource(r) and not is_shared_nat(r)]


DELETE_ORDER = {"instance-group": 0, "instance": 1, "instance-template": 2, "disk": 2, "resource-policy": 3,
                "firewall": 4, "router": 5}


def _delete_order(resource) -> int:
    # A group first (else it recreates the VMs deleted under it); then instances: their disks,
    # policies, template and NAT cannot go while an instance or group uses them.
    return DELETE_ORDER.get(resource.kind, 6)


def down_vm(name: str, deps: LiveDeps, on_event: OnEvent | None = None) -> DownResult:
    emit = on_event or (lambda kind, text: None)
    record = records.load(name)
    if record is None:
        # Nothing recorded: still make sure nothing labelled for that name exists.
        if not vm_leftovers(deps, name) and name not in deps.engine.list_stacks():
            return DownResult(name, False, None, None, [])
        record = VmRecord(name=name, profile="?", project=deps.project, state="destroying",
                          stack=name, zones_to_try=[], created_at=deps.clock().isoformat(),
                          hourly_usd=0.0, stopped_hourly_usd=0.0, termination_action="DELETE")
    if record.group and record.state == "ready":  # --recover: every replacement, from Google's records
        from ..recovery.view import group_view

        seen = group_view(record, deps)
        cost, hours = seen.cost_so_far_usd, seen.cost_so_far_usd / record.hourly_usd if record.hourly_usd else None
    else:
        view = deps.compute.instance(record.zone, name) if record.zone else None
        cost, hours = cost_so_far(record, view, deps.clock())
    emit("destroy", f"destroying {name}")
    deleted = destroy_everything(record, deps, emit)
    return DownResult(name, True, cost, hours, deleted)
