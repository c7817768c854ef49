"""The GKE program: one zonal cluster with a small CPU system pool and spot GPU pools that
scale from zero.

Resources, all children of one GkeCluster component, named from the spec's name:
  <name>-nodes       the nodes' own service account, with only the role GKE documents for
                     nodes (roles/container.defaultNodeServiceAccount), not the project's
                     default compute account (Editor)
  <name>             the cluster: default pool removed, Workload Identity, release channel,
                     control plane reachable only from the caller's address (authorized
                     networks), Dataplane V2 so NetworkPolicies are enforced, shielded nodes
  <name>-system      CPU pool (on-demand e2) for kube-dns and agents: 1..2 nodes
  <name>-gpu-<gpu>   one spot pool per accelerator: 0..N nodes, tainted nvidia.com/gpu,
                     driver installed by GKE, local NVMe for ephemeral storage
The server-side guard is autoscaling to zero: with no GPU pod pending, GKE removes GPU nodes
whether or not the laptop that made them is on. What keeps billing is the cluster fee and the
system pool, which the plan states.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from . import gke_rules
from .catalog import MACHINES
from .gke_spec import GPU_TAINT, NODE_OAUTH_SCOPES, GkeSpec, GpuPoolSpec

COMPONENT_TYPE = "gpuctl:gke:GkeCluster"


# Google's "Configure GKE node service accounts" page (kubernetes-engine/security/
# configure-node-service-accounts), "Grant the minimum required role for GKE": the role for a
# custom node service account instead of the Compute Engine default one.
NODE_ROLE = "roles/container.defaultNodeServiceAccount"


def _common_node_config(spec: GkeSpec, machine_type: str, spot: bool, disk_gb: int,
                        disk_type: str, node_labels: dict[str, str], service_account=None) -> dict:
    """What every node gets: labels on the VM and the node, minimal scopes, Workload Identity's
    metadata server (pods never see the node's credentials), shielded boot."""
    return {
        "machine_type": machine_type,
        "spot": spot,
        "disk_size_gb": disk_gb,
        "disk_type": disk_type,
        "image_type": spec.image_type,
        "oauth_scopes": list(NODE_OAUTH_SCOPES),
        "resource_labels": dict(spec.labels),
        "labels": {**spec.labels, **node_labels},
        "metadata": {"disable-legacy-endpoints": "true"},
        "workload_metadata_config": {"mode": "GKE_METADATA"},
        "shielded_instance_config": {"enable_secure_boot": True, "enable_integrity_monitoring": True},
        **({"service_account": service_account} if service_account is not None else {}),
    }


def gpu_node_config(spec: GkeSpec, pool: GpuPoolSpec, service_account=None) -> dict:
    config = _common_node_config(spec, pool.machine_type, pool.spot, pool.disk_size_gb,
                                 pool.disk_type, {"gpuctl-pool": pool.name,
                                                  "gpuctl-accelerator": pool.short}, service_account)
    config["guest_accelerators"] = [{
        "type": pool.accelerator,
        "count": gke_rules.gpus_per_node(pool),
        # GKE installs the driver itself: no DaemonSet of ours to keep in step with node images.
        "gpu_driver_installation_config": {"gpu_driver_version": pool.driver_version},
    }]
    config["taints"] = [dict(GPU_TAINT)]
    ssds = gke_rules.local_ssds(pool)
    if ssds:
        # Container images, emptyDir and the model cache on local NVMe instead of the boot disk.
        config["ephemeral_storage_local_ssd_config"] = {"local_ssd_count": ssds}
    if MACHINES[pool.machine_type].needs_gvnic:
        config["gvnic"] = {"enabled": True}
    return config


def system_node_config(spec: GkeSpec, service_account=None) -> dict:
    return _common_node_config(spec, spec.system_machine_type, spec.system_spot,
                               spec.system_disk_size_gb, spec.system_disk_type,
                               {"gpuctl-pool": "system"}, service_account)


class GkeCluster(pulumi.ComponentResource):
    cluster: gcp.container.Cluster
    system_pool: gcp.container.NodePool
    gpu_pools: dict[str, gcp.container.NodePool]

    def __init__(self, spec: GkeSpec, opts: pulumi.ResourceOptions | None = None):
        gke_rules.check(spec)
        super().__init__(COMPONENT_TYPE, spec.name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        common = {"project": spec.project, "location": spec.zone}  # zonal: one zone, one fee

        self.node_account = gcp.serviceaccount.Account(
            f"{spec.name}-nodes",
            account_id=spec.node_account_id,
            display_name=f"gpuctl GKE nodes of {spec.name}",
            description=f"least-privilege node identity ({NODE_ROLE})",
            project=spec.project,
            opts=child,
        )
        self.node_role = gcp.projects.IAMMember(
            f"{spec.name}-nodes-role",
            project=spec.project,
            role=NODE_ROLE,
            member=self.node_account.email.apply(lambda email: f"serviceAccount:{email}"),
            opts=child,
        )

        self.cluster = gcp.container.Cluster(
            spec.name,
            name=spec.name,
            network=spec.network,
            release_channel={"channel": spec.release_channel},
            workload_identity_config={"workload_pool": spec.workload_pool},
            # GKE needs a pool at creation; ours are managed separately so each can change
            # without replacing the cluster.
            remove_default_node_pool=True,
            initial_node_count=1,
            resource_labels=dict(spec.labels),
            networking_mode="VPC_NATIVE",
            ip_allocation_policy={},
            enable_shielded_nodes=True,
            # The Cloud Storage FUSE CSI driver mounts a Job's `checkpoints:` bucket into its
            # pods (through Workload Identity), so a pod that replaces a preempted one resumes
            # from the same files. Off by default on Standard clusters: "--addons
            # GcsFuseCsiDriver" in https://cloud.google.com/kubernetes-engine/docs/how-to/
            # cloud-storage-fuse-csi-driver-setup; API field AddonsConfig.gcsFuseCsiDriverConfig.
            addons_config={"gcs_fuse_csi_driver_config": {"enabled": True}},
            # Only the caller's address reaches the control plane (and gpuctl's kube context).
            master_authorized_networks_config={"cidr_blocks": [
                {"cidr_block": spec.control_plane_cidr, "display_name": "gpuctl caller"}]},
            # Dataplane V2: NetworkPolicies (the Web UI's) are enforced, not decorative.
            datapath_provider="ADVANCED_DATAPATH",
            # Remove idle GPU nodes sooner than the default profile does.
            cluster_autoscaling={"autoscaling_profile": "OPTIMIZE_UTILIZATION"},
            # The provider defaults to true, which would make `gpuctl gke down` fail.
            deletion_protection=False,
            opts=child,
            **common,
        )
        # Pools wait for the nodes' role too: a node that boots without it cannot pull images.
        pool_opts = pulumi.ResourceOptions(parent=self, depends_on=[self.cluster, self.node_role])
        nodes_as = self.node_account.email

        self.system_pool = gcp.container.NodePool(
            f"{spec.name}-system",
            name="system",
            cluster=self.cluster.name,
            initial_node_count=spec.system_min_nodes,
            autoscaling={"total_min_node_count": spec.system_min_nodes,
                         "total_max_node_count": spec.system_max_nodes,
                         "location_policy": "BALANCED"},
            management={"auto_repair": True, "auto_upgrade": True},
            node_config=system_node_config(spec, nodes_as),
            opts=pool_opts,
            **common,
        )

        self.gpu_pools = {}
        for pool in spec.gpu_pools:
            self.gpu_pools[pool.name] = gcp.container.NodePool(
                f"{spec.name}-{pool.name}",
                name=pool.name,
                cluster=self.cluster.name,
                initial_node_count=0,  # nothing bills until a GPU pod is pending
                autoscaling={"total_min_node_count": 0, "total_max_node_count": pool.max_nodes,
                             # ANY: take spot capacity wherever it is, fewer preemptions.
                             "location_policy": "ANY"},
                management={"auto_repair": True, "auto_upgrade": True},
                node_config=gpu_node_config(spec, pool, nodes_as),
                opts=pool_opts,
                **common,
            )

        self.register_outputs({
            "cluster_name": self.cluster.name,
            "location": self.cluster.location,
            "endpoint": self.cluster.endpoint,
        })
