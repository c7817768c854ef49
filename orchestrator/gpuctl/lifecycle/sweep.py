"""`gpuctl sweep`: find what a crash, a Ctrl-C or a lost laptop left behind.

Three kinds of leftovers:
  orphan       a gpuctl-labelled resource (instance, disk, firewall rule, resource policy, and for
               `run --recover` a managed instance group or an instance template: labels in their
               description, as groups take none, and a template's own properties.labels), or a
               VM's deadline job in Cloud Scheduler (named gpuctl-deadline-VM: jobs take no
               labels), with neither a stack nor a local record: nothing else will delete it;
  stale stack  a stack or record whose resources are all gone (e.g. a guard deleted the VM);
  tracked      resources of a VM gpuctl still knows: listed, left to `gpuctl down`.
Each with what it costs per day, so the most expensive leftover is obvious.

Checkpoint buckets gpuctl created (labelled gpuctl-managed, gpuctl-kind=checkpoints) belong to
the project, not to a VM: they are meant to outlive it. One that holds checkpoints is listed as
tracked with its size (its lifecycle rule expires old objects; sweep never deletes checkpoints);
an empty one is an orphan that `--delete` removes. The price book has no Cloud Storage prices,
so a bucket's cost per day is unknown ("?") and its size is shown instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..adapters.compute import CloudAccessError, ResourceView
from ..adapters.storage import BucketView, StorageApi
from ..context import Context
from ..cost import hourly_cost
from ..errors import PriceError
from ..prices.model import HOURS_PER_MONTH
from . import hostkeys, keys, records
from .deps import LiveDeps
from .down import DELETE_ORDER


@dataclass
class Leftover:
    kind: str  # orphan | stale-stack | tracked
    vm: str
    resource: ResourceView | None
    usd_per_day: float | None

    size_bytes: int | None = None  # buckets: what they hold (the price book has no storage prices)

    def as_dict(self) -> dict:
        r = self.resource
        resource = None if r is None else {"type": r.kind, "name": r.name,
                                           "location": r.location, "status": r.status}
        if resource is not None and self.size_bytes is not None:
            resource["size_bytes"] = self.size_bytes
        return {"kind": self.kind, "vm": self.vm, "resource": resource,
                "usd_per_day": None if self.usd_per_day is None else round(self.usd_per_day, 2)}


CHECKPOINTS_VM = "(checkpoints)"  # what the vm column says for a project's checkpoint bucket


def storage_api(deps: LiveDeps, storage: StorageApi | None = None) -> StorageApi:
    return storage or getattr(deps, "storage", None) or StorageApi(deps.project)


def bucket_leftovers(storage: StorageApi) -> list[Leftover]:
    """gpuctl's checkpoint buckets, each sized. An account that may not list buckets (or a
    project without the Cloud Storage API) has none gpuctl could have made there, as creating
    one needs roles/storage.admin, which lists too: that refusal is not an error."""
    try:
        buckets = storage.labelled_buckets({"gpuctl-managed": "true", "gpuctl-kind": "checkpoints"})
    except CloudAccessError:
        return []
    return [Leftover("tracked" if b.objects else "orphan", CHECKPOINTS_VM, bucket_resource(b), None,
                     b.size_bytes) for b in buckets]


def bucket_resource(bucket: BucketView) -> ResourceView:
    more = "" if bucket.sized_all else "+"
    status = f"{bucket.objects}{more} objects, {bucket.size_bytes / 2**30:,.2f}{more} GiB"
    return ResourceView("bucket", bucket.name, bucket.location, bucket.labels,
                        size_gb=-(-bucket.size_bytes // 10**9), status=status)


def find_leftovers(ctx: Context, deps: LiveDeps, storage: StorageApi | None = None) -> list[Leftover]:
    resources = [r for r in deps.compute.labelled_resources({"gpuctl-managed": "true"})
                 if not is_gke_resource(r)] + deadline_jobs(deps)
    stacks = set(deps.engine.list_stacks())
    local = {r.name: r for r in records.all_records()}
    known = stacks | set(local)
    found: list[Leftover] = []
    by_vm: dict[str, list[ResourceView]] = {}
    for resource in resources:
        by_vm.setdefault(resource.labels.get("gpuctl-name", "?"), []).append(resource)
    for vm, items in sorted(by_vm.items()):
        kind = "tracked" if vm in known else "orphan"
        found += [Leftover(kind, vm, r, daily_cost(ctx, r, local.get(vm))) for r in items]
    for vm in sorted(known - set(by_vm)):
        found.append(Leftover("stale-stack", vm, None, 0.0))
    return found + bucket_leftovers(storage_api(deps, storage))


# Cloud Scheduler pricing (cloud.google.com/scheduler/pricing): "A job is billed $0.10/job/31
# days, which is $0.003 per day for each billable job"; each billing account has 3 free jobs.
JOB_USD_PER_DAY = 0.10 / 31


def deadline_jobs(deps: LiveDeps) -> list[ResourceView]:
    """Deadline jobs in every region gpuctl knows. A project where Cloud Scheduler was never
    enabled (nobody used --cap) has none, so a refusal there is not an error."""
    from gpuctl_infra.catalog import REGIONS

    from ..errors import GpuctlError

    found = []
    for region in sorted(REGIONS):
        try:
            names = deps.deadline_api(region).vm_names()
        except GpuctlError:
            return found
        found += [ResourceView("deadline-job", f"gpuctl-deadline-{vm}", region, {"gpuctl-name": vm})
                  for vm in names]
    return found


def is_gke_resource(resource: ResourceView) -> bool:
    """GKE node VMs and disks carry gpuctl labels too; their cluster's stack owns them, and
    `gpuctl gke down` (never a VM sweep) removes them."""
    return resource.labels.get("gpuctl-kind") == "gke"


def daily_cost(ctx: Context, resource: ResourceView, record) -> float | None:
    if resource.kind == "instance":
        if resource.status not in ("RUNNING", "PROVISIONING", "STAGING"):
            return 0.0  # its disks are listed (and priced) separately
        if record is not None:
            return record.hourly_usd * 24
        return _instance_estimate(ctx, resource)
    if resource.kind == "disk":
        region = resource.location.rsplit("-", 1)[0]
        try:
            per_gb_month = ctx.prices.disk_gb_month(region, resource.disk_type or "pd-balanced", False)
        except PriceError:
            return None
        return resource.size_gb * per_gb_month / HOURS_PER_MONTH * 24
    if resource.kind == "deadline-job":
        return JOB_USD_PER_DAY
    # Firewall rules, resource policies and routers cost nothing by themselves. A router's NAT
    # bills its gateway per VM using it (those are listed as instances); whether its
    # auto-allocated address still bills with no VM behind it is unverified, so not counted.
    return 0.0


def _instance_estimate(ctx: Context, resource: ResourceView) -> float | None:
    """An orphan has no record: price it like the profile with its machine type (boot disk
    included; it is also listed as a disk, so the total errs high, never low)."""
    for profile in ctx.profiles.values():
        if profile.machine_type == resource.machine_type and profile.spot:
            try:
                return hourly_cost(profile, resource.location.rsplit("-", 1)[0], ctx.prices).running * 24
            except PriceError:
                return None
    return None


def delete_leftovers(leftovers: list[Leftover], deps: LiveDeps,
                     storage: StorageApi | None = None) -> list[str]:
    """Delete orphans (instances first) and forget stale stacks; tracked VMs are left alone."""
    done = []
    orphans = sorted((l for l in leftovers if l.kind == "orphan"),
                     key=lambda l: DELETE_ORDER.get(l.resource.kind, 9))
    for item in orphans:
        if item.resource.kind == "deadline-job":
            deps.deadline_api(item.resource.location).delete(item.vm)
        elif item.resource.kind == "bucket":  # empty when found; Google refuses if no longer so
            storage_api(deps, storage).delete_empty_bucket(item.resource.name)
        else:
            deps.compute.delete(item.resource)
        done.append(f"{item.resource.kind}/{item.resource.name}")
    for item in (l for l in leftovers if l.kind == "stale-stack"):
        if item.vm in deps.engine.list_stacks():
            deps.engine.destroy(item.vm)  # the state may still list resources GCE removed
            deps.engine.remove(item.vm)
        record = records.load(item.vm)
        if record is not None:
            if record.deadline_seconds and record.region:  # the VM (or group) is gone: so must its job be
                deps.deadline_api(record.region).delete(item.vm)
            if record.address:
                hostkeys.unpin(record.address)
            keys.remove_key_pair(item.vm)
            records.remove(item.vm)
        done.append(f"stack/{item.vm}")
    return done
