"""`gpuctl gke up` before anything exists: flags -> GkeSpec -> the plan (resources from the
real program under Pulumi's mocks, and the cost idle and per GPU node).

Pure apart from running the program under mocks: no credentials, no network.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuctl_infra import gke_rules
from gpuctl_infra.catalog import GPUS, REGIONS
from gpuctl_infra.gke_spec import ACCELERATORS, PROJECT_PLACEHOLDER, GkeSpec, GpuPoolSpec
from gpuctl_infra.mock_run import PlannedResource

from ..context import Context
from ..errors import UsageError
from .costs import ClusterCost, cluster_cost
from .kubeconfig import DEFAULT_CLUSTER, context_name
from .pools import PoolRequest, parse_pools

DEFAULT_POOLS = "l4"
DEFAULT_MAX_NODES = 2


@dataclass(frozen=True)
class GkeOptions:
    name: str = DEFAULT_CLUSTER
    zone: str | None = None  # default: the first zone of the config's region with every GPU
    pools: str = DEFAULT_POOLS
    max_nodes: int = DEFAULT_MAX_NODES
    project: str | None = None  # default: config, else a placeholder (dry run only)
    system_machine_type: str = "e2-standard-2"
    api_from: str | None = None  # the one address the control plane answers; default: ssh_from / detected


@dataclass
class GkePlan:
    spec: GkeSpec
    resources: list[PlannedResource]
    cost: ClusterCost


def gke_labels(owner: str, name: str) -> dict[str, str]:
    # gpuctl-kind tells a VM sweep that the GKE node VMs and disks carrying these labels are
    # the cluster's (the managed instance group recreates them), not orphans of a VM.
    return {"gpuctl-managed": "true", "gpuctl-owner": owner, "gpuctl-name": name,
            "gpuctl-expiry": "none", "gpuctl-kind": "gke"}


def default_zone(region: str, requests: list[PoolRequest]) -> str:
    """The first zone of `region` that offers every requested GPU."""
    if region not in REGIONS:
        raise UsageError(f"gpuctl has no GPU data for region {region}",
                         f"pass --zone in one of: {', '.join(REGIONS)}")
    gpus = [ACCELERATORS[r.short].gpu for r in requests]
    zone_sets = [set(GPUS[gpu].zones_in(region)) for gpu in gpus]
    common = sorted(set.intersection(*zone_sets)) if zone_sets else []
    if not common:
        names = ", ".join(r.short for r in requests)
        raise UsageError(f"no zone in {region} offers all of: {names}",
                         "pass fewer GPUs in --pools, or --zone in another region")
    return common[0]


def _single_address(address: str | None) -> str:
    """An address as the /32 (or /128) the control plane is opened to; a placeholder until the
    live path detects the caller's address."""
    from gpuctl_infra.spec import CALLER_ADDRESS_PLACEHOLDER

    if not address:
        return CALLER_ADDRESS_PLACEHOLDER
    return address if "/" in address else f"{address}/{128 if ':' in address else 32}"


def build_spec(ctx: Context, options: GkeOptions) -> GkeSpec:
    requests = parse_pools(options.pools)
    zone = options.zone or default_zone(ctx.config.region, requests)
    pools = tuple(
        GpuPoolSpec(accelerator=ACCELERATORS[r.short].gpu,
                    machine_type=r.machine or ACCELERATORS[r.short].default_machine,
                    max_nodes=options.max_nodes if r.max_nodes is None else r.max_nodes)
        for r in requests)
    spec = GkeSpec(name=options.name, zone=zone,
                   project=options.project or ctx.config.project or PROJECT_PLACEHOLDER,
                   gpu_pools=pools, labels=gke_labels(ctx.config.resolved_owner(), options.name),
                   system_machine_type=options.system_machine_type,
                   control_plane_cidr=_single_address(options.api_from or ctx.config.ssh_from))
    gke_rules.check(spec)  # one line with a hint, before the program or the engine runs
    return spec


def planned_resources(spec: GkeSpec) -> list[PlannedResource]:
    from gpuctl_infra.gke import GkeCluster
    from gpuctl_infra.mock_run import run_under_mocks

    found = run_under_mocks(lambda: GkeCluster(spec), project="gpuctl-gke", stack=spec.stack_name)
    return [r for r in found if r.type.startswith("gcp:")]


def plan_gke(ctx: Context, options: GkeOptions) -> GkePlan:
    spec = build_spec(ctx, options)
    return GkePlan(spec, planned_resources(spec), cluster_cost(spec, ctx.prices))


def _gcs_fuse_on(cluster_inputs: dict) -> bool:
    return bool(((cluster_inputs.get("addonsConfig") or {}).get("gcsFuseCsiDriverConfig") or {})
                .get("enabled"))


def _resource_summary(resource: PlannedResource) -> str:
    inputs = resource.inputs
    if resource.short_type == "container.Cluster":
        allowed = ", ".join(b["cidrBlock"] for b in
                            inputs.get("masterAuthorizedNetworksConfig", {}).get("cidrBlocks", []))
        return (f"zonal {inputs.get('location')}, {inputs['releaseChannel']['channel']} channel, "
                f"Workload Identity {inputs['workloadIdentityConfig']['workloadPool']}, "
                f"control plane only from {allowed or 'anywhere'}, "
                f"{'Dataplane V2 (NetworkPolicy enforced)' if inputs.get('datapathProvider') == 'ADVANCED_DATAPATH' else 'no NetworkPolicy enforcement'}"
                f"{', checkpoint buckets mountable (Cloud Storage FUSE CSI)' if _gcs_fuse_on(inputs) else ''}")
    if resource.short_type == "serviceaccount.Account":
        return f"the nodes' own service account {inputs.get('accountId')} (not the default compute one)"
    if resource.short_type == "projects.IAMMember":
        return f"{inputs.get('role')} for the nodes' account, nothing more"
    node = inputs.get("nodeConfig", {})
    scale = inputs.get("autoscaling", {})
    gpus = "".join(f" + {int(g['count'])}x {g['type']}" for g in node.get("guestAccelerators", []))
    taint = " tainted nvidia.com/gpu" if node.get("taints") else ""
    return (f"{node.get('machineType')}{gpus}, {'spot' if node.get('spot') else 'on-demand'}, "
            f"{int(scale.get('totalMinNodeCount', 0))}..{int(scale.get('totalMaxNodeCount', 0))} "
            f"nodes{taint}")


def plan_to_dict(plan: GkePlan, ctx: Context) -> dict:
    spec = plan.spec
    return {
        "cluster": spec.name,
        "zone": spec.zone,
        "project": spec.project,
        "stack": spec.stack_name,
        "kube_context": context_name(spec.name),
        "labels": spec.labels,
        "resources": [{"type": r.short_type, "name": r.name, "summary": _resource_summary(r)}
                      for r in plan.resources],
        "cost": plan.cost.as_dict(),
        "guards": ["GPU pools autoscale from 0: with no GPU pod pending, GKE removes GPU nodes "
                   "(about 10 minutes idle), laptop on or off",
                   "the cluster fee and the system pool bill until `gpuctl gke down`"],
        "prices_as_of": ctx.prices.as_of.isoformat(),
        "prices_source": ctx.prices.source,
    }
