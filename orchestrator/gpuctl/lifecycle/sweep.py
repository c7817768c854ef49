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

The shared Cloud NAT of a region (a router labelled gpuctl-kind=nat, from `up --iap`; stack in
Pulumi project gpuctl-nat) belongs to every `--iap` VM there, not to one: tracked while a VM uses
it (an instance carrying its gpuctl-nat label, or an `up` still creating one here), an orphan
once none does (the last `down` was interrupted, or ran elsewhere), and a stale stack when the
router is gone but this backend's stack still lists it. `--delete` removes the unused ones
(re-checking that no VM started using it meanwhile).

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
from . import hostkeys, keys, records, shared_nat
from .deps import LiveDeps
from .down import DELETE_ORDER
from .shared_nat import is_shared_nat


@dataclass
class Leftover:
    kind: str  # orphan | stale-stack | tracked
    vm: str
    resource: ResourceView | None
    usd_per_day: float | None

    size_bytes: int | None = None  # buckets: what they hold (the price book has no storage prices)
    stack: str | None = None  # a shared Cloud NAT's stack in this backend (Pulumi project gpuctl-nat)

    def as_dict(self) -> dict:
        r = self.resource
        resource = None if r is None else {"type": r.kind, "name": r.name,
                                           "location": r.location, "status": r.status}
        if resource is not None and self.size_bytes is not None:
            resource["size_bytes"] = self.size_bytes
        out = {"kind": self.kind, "vm": self.vm, "resource": resource,
               "usd_per_day": None if self.usd_per_day is None else round(self.usd_per_day, 2)}
        if self.stack:
            out["stack"] = self.stack
        return out


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
    labelled = [r for r in deps.compute.labelled_resources({"gpuctl-managed": "true"})
                if not is_gke_resource(r)]
    nats = [r for r in labelled if is_shared_nat(r)]
    resources = [r for r in labelled if not is_shared_nat(r)] + deadline_jobs(deps)
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
    stale = set(known - set(by_vm))
    for vm in sorted(stale):
        found.append(Leftover("stale-stack", vm, None, 0.0))
    orphans = {l.vm for l in found if l.kind == "orphan"}
    found += nat_leftovers(ctx, deps, nats, labelled, gone=stale | orphans)
    return found + bucket_leftovers(storage_api(deps, storage))


def nat_leftovers(ctx: Context, deps: LiveDeps, routers: list[ResourceView], labelled: list[ResourceView],
                  gone: set[str]) -> list[Leftover]:
    """Each shared Cloud NAT: tracked while a VM uses it, an orphan when none does (VMs this
    sweep deletes or forgets, `gone`, do not count), and this backend's NAT stacks whose router
    is gone as stale stacks."""
    instances = [r for r in labelled if r.kind == "instance" and r.labels.get("gpuctl-name") not in gone]
    stacks = shared_nat.local_stacks(deps, deps.project)
    found = []
    for router in sorted(routers, key=lambda r: (r.location, r.name)):
        using = shared_nat.users(deps, deps.project, router.location, router.name, instances=instances,
                                 ignore_records=gone)
        stack = next((s for s, name in stacks.items() if name == router.name), None)
        found.append(Leftover("tracked" if using else "orphan", shared_nat.CLOUD_NAT_VM, router,
                              daily_cost(ctx, router, None), stack=stack))
    present = {r.name for r in routers}
    for stack, name in sorted(stacks.items()):
        if name not in present:
            found.append(Leftover("stale-stack", shared_nat.CLOUD_NAT_VM, None, 0.0, stack=stack))
    return found


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
    forgotten = {l.vm for l in leftovers if l.kind == "stale-stack"}  # their records go below
    for item in orphans:
        if is_shared_nat(item.resource):  # after the orphan instances: then no VM uses it
            region, router = item.resource.location, item.resource.name
            if shared_nat.users(deps, deps.project, region, router, ignore_records=forgotten):
                continue  # a VM started using it since it was found: it stays
            shared_nat.remove_unused(deps, deps.project, region, router, lambda kind, text: None)
            done.append(f"router/{router}")
            continue
        if item.resource.kind == "deadline-job":
            deps.deadline_api(item.resource.location).delete(item.vm)
        elif item.resource.kind == "bucket":  # empty when found; Google refuses if no longer so
            storage_api(deps, storage).delete_empty_bucket(item.resource.name)
        else:
            deps.compute.delete(item.resource)
        done.append(f"{item.resource.kind}/{item.resource.name}")
    for item in (l for l in leftovers if l.kind == "stale-stack"):
        if item.vm == shared_nat.CLOUD_NAT_VM:  # a shared NAT's stack whose router is gone
            engine = shared_nat.nat_engine(deps)
            if item.stack in engine.list_stacks():
                engine.destroy(item.stack)
                engine.remove(item.stack)
            done.append(f"stack/{shared_nat.NAT_PROJECT}/{item.stack}")
            continue
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
