"""The GKE cluster's lifecycle: up (apply, fetch, kube context), down (destroy, verify gone,
forget), status (every gpuctl cluster with its pools, node counts and cost per hour).

One stack per cluster (`gke-<name>` in Pulumi project gpuctl-gke). Everything outside goes
through `GkeDeps`: the StackEngine and the container adapter, so tests substitute both at the
library boundary. Safe to rerun: `up` on an existing cluster converges it, `down` on a gone
one reports that and tidies the stack and context.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from gpuctl_infra import gke_rules
from gpuctl_infra.gke_spec import PROJECT_PLACEHOLDER, GkeSpec, stack_name
from gpuctl_infra.spec import CALLER_ADDRESS_PLACEHOLDER

from ..adapters.container import ClusterView, ContainerApi, PoolView
from ..adapters.pulumi_engine import StackEngine, StackError
from ..lifecycle.failover import short_reason
from ..errors import GpuctlError, PriceError, UsageError
from ..prices.model import PriceBook
from . import kube_access
from .costs import CLUSTER_FEE_USD_PER_HOUR, gpu_node_hourly, system_machine_hourly, disk_hourly
from .kubeconfig import context_name

GKE_PROJECT = "gpuctl-gke"  # the Pulumi project every cluster stack belongs to
OnEvent = Callable[[str, str], None]  # (kind, text): apply, wait, rollback, warn, ready


class LeftoverError(GpuctlError):
    exit_code = 5


@dataclass
class GkeDeps:
    engine: StackEngine
    container: ContainerApi
    project: str
    sleep: Callable[[float], None] = time.sleep
    gone_timeout_s: float = 1800.0  # a cluster deletion takes minutes
    poll_s: float = 10.0
    kubeconfig: Path | None = None  # None: gpuctl's own (gke/kubeconfig.py)
    # Cloud Storage (adapters/storage.py StorageApi): `down` takes back the bucket grants gpuctl
    # made for checkpointed Jobs (gke/bucket_access.py). None: they are left as they are.
    storage: object | None = None


@dataclass
class UpResult:
    cluster: ClusterView
    kubeconfig: Path
    context: str

    def as_dict(self) -> dict:
        return {"cluster": self.cluster.name, "location": self.cluster.location,
                "status": self.cluster.status, "endpoint": self.cluster.endpoint,
                "kubeconfig": str(self.kubeconfig), "context": self.context,
                "pools": [p.as_dict() for p in self.cluster.pools]}


@dataclass
class DownResult:
    name: str
    existed: bool
    deleted_directly: bool  # the engine left the cluster; gpuctl deleted it itself
    context_removed: bool
    grants_removed: list[dict] = field(default_factory=list)  # bucket grants gpuctl took back
    grants_kept: str | None = None  # why the grants gpuctl made were left (another cluster uses them)

    def as_dict(self) -> dict:
        return {"name": self.name, "existed": self.existed,
                "deleted_directly": self.deleted_directly, "context_removed": self.context_removed,
                "grants_removed": self.grants_removed, "grants_kept": self.grants_kept}


def gke_program(spec: GkeSpec) -> Callable[[], None]:
    def program() -> None:
        import pulumi
        from gpuctl_infra.gke import GkeCluster

        cluster = GkeCluster(spec)
        pulumi.export("cluster_name", cluster.cluster.name)
        pulumi.export("location", cluster.cluster.location)
        pulumi.export("endpoint", cluster.cluster.endpoint)
    return program


def gke_up(spec: GkeSpec, deps: GkeDeps, on_event: OnEvent | None = None) -> UpResult:
    """Apply the program, read the cluster back, write the kube context. A failed apply is
    rolled back (a half-made cluster bills its fee) and the failure re-raised."""
    emit = on_event or (lambda kind, text: None)
    if spec.project == PROJECT_PLACEHOLDER or spec.project != deps.project:
        raise UsageError(f"the spec's project {spec.project!r} is not the project in use "
                         f"({deps.project})", "set `project` in the gpuctl config or GPUCTL_PROJECT")
    if spec.control_plane_cidr == CALLER_ADDRESS_PLACEHOLDER:
        raise UsageError(f"cluster {spec.name} has no address for its control plane to answer",
                         "pass --api-from YOUR.PUBLIC.IP (or set ssh_from in the config)")
    gke_rules.check(spec)
    emit("apply", f"applying {spec.stack_name}: cluster {spec.name} in {spec.zone} "
                  "(the control plane takes 5-10 minutes)")
    try:
        deps.engine.up(spec.stack_name, gke_program(spec),
                       {"gcp:project": deps.project, "gcp:zone": spec.zone},
                       on_output=lambda line: emit("engine", line.rstrip()))
        cluster = deps.container.get_cluster(spec.zone, spec.name)
        if cluster is None:
            raise GpuctlError(f"cluster {spec.name} is not in {spec.zone} after the apply",
                              "check `gpuctl gke status`; rerun `gpuctl gke up`")
        path = kube_access.write_context(spec.name, cluster.endpoint, cluster.ca_certificate,
                                         deps.kubeconfig)
    except BaseException as exc:
        emit("rollback", f"removing what was made for {spec.name}")
        try:
            _destroy_and_verify(spec.name, deps, emit)
        except GpuctlError as rollback_error:
            emit("warn", f"rollback incomplete: {rollback_error.message}")
        if isinstance(exc, StackError):
            raise GpuctlError(f"creating cluster {spec.name} failed: {short_reason(exc.detail, 300)}",
                              f"fix the cause; `gpuctl gke down --name {spec.name}` removes "
                              "anything left") from None
        raise
    emit("ready", f"cluster {spec.name} is {cluster.status}; kube context {context_name(spec.name)}")
    return UpResult(cluster, path, context_name(spec.name))


def _find(name: str, deps: GkeDeps) -> ClusterView | None:
    """The gpuctl cluster called `name`, in any location (one list call)."""
    return next((c for c in deps.container.gpuctl_clusters(with_sizes=False)
                 if c.name == name and c.managed_by_gpuctl(name)), None)


def _destroy_and_verify(name: str, deps: GkeDeps, emit: OnEvent) -> bool:
    """Destroy the stack, then make sure through the API that the cluster is gone: wait while
    it is STOPPING, delete it directly if the engine left it. Returns True if deleted directly."""
    try:
        deps.engine.destroy(stack_name(name), on_output=lambda line: emit("engine", line.rstrip()))
    except StackError as exc:
        emit("warn", f"pulumi destroy failed ({exc.message}); deleting through the GKE API instead")
    deleted_directly = False
    polls = max(1, int(deps.gone_timeout_s / max(deps.poll_s, 0.001)))
    for _ in range(polls + 1):
        left = _find(name, deps)
        if left is None:
            return deleted_directly
        if left.status != "STOPPING" and not deleted_directly:
            emit("warn", f"cluster {name} was still there ({left.status}); deleting it")
            deps.container.delete_cluster(left.location, name, deps.gone_timeout_s, deps.poll_s)
            deleted_directly = True
            continue
        emit("wait", f"cluster {name} is {left.status}; waiting for it to go")
        deps.sleep(deps.poll_s)
    raise LeftoverError(f"cluster {name} is still present after down",
                        f"rerun `gpuctl gke down --name {name}`; `gpuctl gke status` shows it")


def gke_down(name: str, deps: GkeDeps, on_event: OnEvent | None = None) -> DownResult:
    emit = on_event or (lambda kind, text: None)
    stack = stack_name(name)
    existed = stack in deps.engine.list_stacks() or _find(name, deps) is not None
    if existed:
        emit("destroy", f"destroying {stack}")
        deleted_directly = _destroy_and_verify(name, deps, emit)
    else:
        deleted_directly = False
    removed = kube_access.remove_context(name, deps.kubeconfig)
    grants, kept = _take_back_grants(name, deps, emit)
    if existed:
        deps.engine.remove(stack)  # last: until here a rerun still finds the stack
    return DownResult(name, existed, deleted_directly, removed, grants, kept)


def _take_back_grants(name: str, deps: GkeDeps, emit: OnEvent) -> tuple[list[dict], str | None]:
    """The bucket grants gpuctl made for checkpointed Jobs name a principal of the project's
    Workload Identity pool, not of a cluster (gke/bucket_access.py): the same namespace and
    account in another cluster of the project is the same principal. So they are taken back only
    when no other gpuctl cluster is left in the project. One that cannot be removed is a
    warning (the cluster is gone either way) and stays recorded for the next `gke down`."""
    from .bucket_access import recorded, revoke_recorded

    if deps.storage is None or not recorded(deps.project):
        return [], None
    try:
        others = sorted(c.name for c in deps.container.gpuctl_clusters(with_sizes=False) if c.name != name)
    except GpuctlError as exc:
        emit("warn", f"kept the checkpoint buckets' grants: could not list the project's clusters "
                     f"({exc.message}); `gpuctl gke down` again takes them back")
        return [], exc.message
    if others:
        why = (f"kept the checkpoint buckets' grants to the pods' accounts: cluster(s) "
               f"{', '.join(others)} in project {deps.project} still use them")
        emit("note", why)
        return [], why
    removed, problems = revoke_recorded(deps.storage, deps.project)
    for grant in removed:
        emit("revoke", f"removed {grant.role} on gs://{grant.bucket} from {grant.member}")
    for problem in problems:
        emit("warn", problem)
    return [asdict(g) for g in removed], None


# --- status ----------------------------------------------------------------------------------


def _pool_node_hourly(pool: PoolView, region: str, book: PriceBook) -> float:
    if not pool.accelerators:  # a CPU pool: the system pool's E2 shapes
        return (system_machine_hourly(region, pool.machine_type, book)
                + disk_hourly(book, region, pool.disk_type or "pd-standard", pool.disk_size_gb))
    accelerator, count = pool.accelerators[0]
    return gpu_node_hourly(book, region, pool.machine_type, accelerator, count, pool.local_ssds,
                           pool.spot, pool.disk_type or "pd-balanced", pool.disk_size_gb)


def cluster_status(cluster: ClusterView, book: PriceBook) -> dict:
    region = cluster.location.rsplit("-", 1)[0] if cluster.location.count("-") == 2 else cluster.location
    pools, total, notes = [], CLUSTER_FEE_USD_PER_HOUR, []
    for pool in cluster.pools:
        try:
            per_node = _pool_node_hourly(pool, region, book)
        except PriceError as exc:
            per_node = None
            notes.append(f"{pool.name}: {exc.message}")
        cost = None if per_node is None or pool.nodes is None else per_node * pool.nodes
        total = None if total is None or cost is None else total + cost
        pools.append({**pool.as_dict(),
                      "usd_per_node_hour": None if per_node is None else round(per_node, 4),
                      "usd_per_hour": None if cost is None else round(cost, 4)})
    if any(p.nodes is None for p in cluster.pools):
        notes.append("node counts unknown: Compute Engine instance groups could not be read")
    return {"name": cluster.name, "location": cluster.location, "status": cluster.status,
            "endpoint": cluster.endpoint, "kube_context": context_name(cluster.name),
            "cluster_fee_usd_per_hour": CLUSTER_FEE_USD_PER_HOUR, "pools": pools,
            "usd_per_hour": None if total is None else round(total, 4), "notes": notes}


def gke_status(deps: GkeDeps, book: PriceBook) -> list[dict]:
    """Every gpuctl cluster in the project, with pools, node counts and cost per hour now."""
    return [cluster_status(c, book) for c in sorted(deps.container.gpuctl_clusters(),
                                                    key=lambda c: (c.location, c.name))]


def gke_deps(ctx, need_engine: bool = True) -> GkeDeps:
    """The real dependencies: ADC, the project, the Pulumi CLI; each missing piece named."""
    from ..adapters.pulumi_engine import AutomationEngine, find_pulumi_cli
    from ..lifecycle.deps import default_credentials, resolve_project

    default_credentials()  # fails fast and names ADC when absent
    project = resolve_project(ctx)
    if need_engine:
        find_pulumi_cli()
    from ..adapters.storage import StorageApi

    return GkeDeps(engine=AutomationEngine(GKE_PROJECT, ctx.config.pulumi_backend),
                   container=ContainerApi(project), project=project, storage=StorageApi(project))
