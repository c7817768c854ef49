"""The recovering VM program: one spot GPU VM that Google Cloud itself replaces after a preemption.

Resources, all children of one RecoveringVm component, named from the spec's name:
  <name>-ssh   firewall rule: tcp/22 from the caller's one address, to this run's tag (for
               `gpuctl logs` / `jobs` while the laptop is open; recovery needs no SSH)
  <name>-sa    the run's own service account (gpuctl-<name>), and
  <name>-ckpt  its one role (roles/storage.objectUser) on the checkpoint bucket alone: the same
               identity as `gpuctl up --checkpoints` (gpu_vm.checkpoint_identity)
  <name>-self-delete  that account's one project grant: roles/compute.instanceAdmin.v1 under an IAM
               condition naming this run's group alone, so the VM deletes its own group when
               the run's command exits 0 (bootstrap.py watch) and nothing bills after the run
  <name>-tpl   instance template: the spot VM (machine, GPUs, local NVMe, boot disk), that
               service account with the devstorage.read_write and compute scopes only (the
               pair rules.service_account_violations allows a recovering VM), its hard cap (scheduling.terminationTime,
               the same absolute time for every replacement), and in metadata only two gs://
               addresses: `startup-script-url` (the bootstrap, bootstrap.py) and `gpuctl-recover`
               (the run spec). No code and no secret is in metadata.
  <name>       regional managed instance group of one VM (targetSize 1) over the allowed zones,
               targetShape ANY, repairs on (defaultActionOnFailure REPAIR) that may change zone
               (onRepair.allowChangingZone YES).

Why a MIG: "If a VM in the group stops, crashes, gets preempted (Spot VMs), or is deleted by an
action not initiated by the MIG, the MIG automatically recreates that VM based on its original
configuration (same VM name, same template) so that the VM can resume its work"
(https://cloud.google.com/compute/docs/instance-groups). ANY: "the group picks zones for creating
VM instances to fulfill the requested number of VMs within present resource constraints"
(compute.v1.json, DistributionPolicy.targetShape). See tests/standins/compute_migs.py.

The deadline that ends every replacement together is a Cloud Scheduler job deleting the MIG
(orchestrator/gpuctl/recovery/guards.py), made outside this program as the plain VM's is; the
template's terminationTime is the hard cap behind it, enforced by GCE even if the job fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from . import rules
from .catalog import MACHINES
from .gpu_vm import (checkpoint_identity, labels_as_description, login_metadata,
                     network_interface, ssh_firewall)
from .spec import CHECKPOINT_ROLE, CHECKPOINT_SCOPE, account_id_for

COMPONENT_TYPE = "gpuctl:vm:RecoveringVm"
RECOVER_KEY = "gpuctl-recover"  # metadata key: gs:// address of the run spec
STARTUP_URL_KEY = "startup-script-url"  # Google's guest environment fetches and runs it on boot
SCRATCH_GB = 375  # one local SSD partition (GCP_FACTS.md, machine shapes)
# The token's scopes: the checkpoint bucket's, and Compute Engine's for the one delete below.
SCOPES = [CHECKPOINT_SCOPE, rules.SELF_DELETE_SCOPE]
# A predefined role holding compute.instanceGroupManagers.delete, the permission
# regionInstanceGroupManagers.delete requires on the group (compute.v1.json has no setIamPolicy on
# instanceGroupManagers: a group takes no policy of its own, so the grant is on the project, and
# the condition below cuts it down to this one group). Its other permissions are on other
# resources, whose names never match the condition.
SELF_DELETE_ROLE = "roles/compute.instanceAdmin.v1"


@dataclass(frozen=True)
class RecoverSpec:
    name: str  # the MIG's name, its VM's base name, the stack's name
    region: str
    zones: tuple[str, ...]  # the allowed zones, all in `region`, cheapest first
    machine_type: str
    image: str
    boot_disk_gb: int
    boot_disk_type: str
    termination_time: str  # RFC 3339: the hard cap, the same for every replacement
    bootstrap_url: str  # gs://BUCKET/PREFIX/RUN/.gpuctl/bootstrap.py
    recover_url: str  # gs://BUCKET/PREFIX/RUN/.gpuctl/recover.json
    checkpoint_bucket: str  # the run's own account may read and write objects here only
    accelerator_type: str | None = None
    accelerator_count: int = 0
    local_ssd_count: int = 0
    ssh_source_cidr: str = "CALLER_IP/32"
    ssh_user: str = "gpuctl"
    ssh_public_key: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    network: str = "default"
    project: str | None = None


def violations(spec: RecoverSpec) -> list[rules.Violation]:
    out: list[rules.Violation] = []
    if not spec.zones:
        out.append(rules.Violation("zones", "no zone to run in", "pass --zones or a region with the GPU"))
    for zone in spec.zones:
        if zone.rsplit("-", 1)[0] != spec.region:
            out.append(rules.Violation("zones", f"zone {zone} is not in region {spec.region}",
                                       "a regional MIG places its VM only in its own region's zones"))
    if spec.machine_type not in MACHINES:
        out.append(rules.Violation("machine-type", f"unknown machine type {spec.machine_type}",
                                   "pick a profile or --gpu"))
    for url in (spec.bootstrap_url, spec.recover_url):
        if not url.startswith("gs://"):
            out.append(rules.Violation("recover-url", f"{url!r} is not a gs:// address",
                                       "recovery reads its spec and bootstrap from the checkpoint bucket"))
    if not spec.checkpoint_bucket:
        out.append(rules.Violation("identity", "a recovering VM needs a service account on its checkpoint bucket",
                                   "it reads its code and checkpoints from Cloud Storage with no laptop"))
    return out


def template_metadata(spec: RecoverSpec) -> dict[str, str]:
    """Only public material: two gs:// addresses, the login key, and SSH hardening switches."""
    return {STARTUP_URL_KEY: spec.bootstrap_url, RECOVER_KEY: spec.recover_url,
            **login_metadata(spec.ssh_user, spec.ssh_public_key)}


def template_scheduling(spec: RecoverSpec) -> dict:
    """Spot, deleted on preemption (a stopped VM's disks would bill while the MIG recreates it),
    and ended at the hard cap, an absolute time that every replacement inherits."""
    return {
        "provisioning_model": "SPOT",
        "preemptible": True,
        "automatic_restart": False,  # required with spot
        "on_host_maintenance": "TERMINATE",  # the only choice with GPUs
        "instance_termination_action": "DELETE",
        "termination_time": spec.termination_time,
    }


def group_resource_name(project: str, region: str, name: str) -> str:
    """The group's name as an IAM condition reads `resource.name`: its relative resource name,
    the path regionInstanceGroupManagers.delete takes (compute.v1.json). Compute Engine is among
    the services whose resource name attribute can control access
    (https://cloud.google.com/iam/docs/configuring-resource-based-access); the exact string IAM
    evaluates for a regional group is the one Compute's own paths use (the table in
    https://cloud.google.com/iam/docs/conditions-resource-attributes was not re-read for this
    type here: unverified)."""
    return f"projects/{project}/regions/{region}/instanceGroupManagers/{name}"


def self_delete_condition(project: str, region: str, name: str) -> dict[str, str]:
    """The IAM condition (Expr: title, description, expression) that limits the run's project
    grant to its own group."""
    return {"title": f"gpuctl-{name}-self-delete"[:100],
            "description": f"gpuctl: the run's VM may delete its own group {name} once the run finishes",
            "expression": f'resource.name == "{group_resource_name(project, region, name)}"'}


class RecoveringVm(pulumi.ComponentResource):
    template: gcp.compute.InstanceTemplate
    group: gcp.compute.RegionInstanceGroupManager
    firewall: gcp.compute.Firewall
    account: gcp.serviceaccount.Account
    bucket_access: gcp.storage.BucketIAMMember
    self_delete: gcp.projects.IAMMember

    def __init__(self, spec: RecoverSpec, opts: pulumi.ResourceOptions | None = None):
        metadata = template_metadata(spec)
        problems = (violations(spec) + rules.metadata_violations(metadata)
                    + rules.service_account_violations(SCOPES, CHECKPOINT_ROLE, spec.checkpoint_bucket,
                                                       self_delete=True))
        if problems:
            rules.check_failed(problems)
        super().__init__(COMPONENT_TYPE, spec.name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        provider_args = {"project": spec.project} if spec.project else {}
        tag = f"gpuctl-{spec.name}"
        machine = MACHINES[spec.machine_type]

        self.firewall = ssh_firewall(spec.name, spec.network, spec.ssh_source_cidr, tag,
                                     spec.labels, child, provider_args)

        disks: list[dict] = [{
            "boot": True, "auto_delete": True, "source_image": spec.image,
            "disk_size_gb": spec.boot_disk_gb, "disk_type": spec.boot_disk_type, "labels": dict(spec.labels),
        }]
        disks += [{"type": "SCRATCH", "interface": "NVME", "disk_type": "local-ssd", "disk_size_gb": SCRATCH_GB,
                   "auto_delete": True}] * spec.local_ssd_count
        interface = network_interface(spec.network, True, machine.needs_gvnic)
        self.account, self.bucket_access = checkpoint_identity(
            spec.name, account_id_for(spec.name), spec.checkpoint_bucket, spec.labels, child, provider_args)
        # The project of the condition: the spec's (the apply path always sets it), else the
        # stack's gcp:project; a dry run with neither shows a placeholder.
        project = spec.project or gcp.config.project or "PROJECT"
        # Conditional bindings need policy version 3; the provider reads and writes the project's
        # policy at that version (cloudresourcemanager.v1.json, Policy.version).
        self.self_delete = gcp.projects.IAMMember(
            f"{spec.name}-self-delete", project=project, role=SELF_DELETE_ROLE,
            member=self.account.email.apply(lambda email: f"serviceAccount:{email}"),
            condition=self_delete_condition(project, spec.region, spec.name), opts=child)
        template_args: dict = {}
        if spec.accelerator_type:
            template_args["guest_accelerators"] = [{"type": spec.accelerator_type,
                                                    "count": spec.accelerator_count}]
        self.template = gcp.compute.InstanceTemplate(
            f"{spec.name}-tpl", name=f"{spec.name}-tpl", machine_type=spec.machine_type, disks=disks,
            network_interfaces=[interface], scheduling=template_scheduling(spec),
            metadata=metadata, labels=dict(spec.labels), tags=[tag], description=labels_as_description(spec.labels),
            service_account={"email": self.account.email, "scopes": list(SCOPES)},
            # Every VM the group makes boots with its bucket access and its self-delete in place.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.bucket_access, self.self_delete]),
            **template_args, **provider_args)

        self.group = gcp.compute.RegionInstanceGroupManager(
            spec.name, name=spec.name, region=spec.region, base_instance_name=spec.name,
            versions=[{"instance_template": self.template.self_link, "name": "run"}],
            target_size=1,
            distribution_policy_zones=list(spec.zones),
            distribution_policy_target_shape="ANY",
            instance_lifecycle_policy={"default_action_on_failure": "REPAIR",
                                       "on_repair": {"allow_changing_zone": "YES"}},
            description=labels_as_description(spec.labels),
            opts=child, **provider_args)
        self.register_outputs({"group": self.group.name, "template": self.template.name,
                               "region": spec.region})
