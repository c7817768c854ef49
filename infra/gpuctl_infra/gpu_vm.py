"""The VM program: one spot (or on-demand) GPU VM with its firewall rule and guards.

Resources, all children of one GpuVm component with names derived from the spec's name:
  <name>-ssh         firewall rule: tcp/22 from the caller's single address (or, with IAP,
                     from IAP's TCP forwarding range only), to this VM's tag
  <name>-daily-stop  instance schedule policy (only with a daily stop)
  <name>-sa          only with checkpoints: the VM's own service account (gpuctl-<name>), and
  <name>-ckpt        its one role (roles/storage.objectUser) on the checkpoint bucket alone
  <name>             the instance: boot disk, scratch NVMe, GPUs, spot scheduling, run limit;
                     without checkpoints it has no service account, so no cloud credentials
Firewall rules and resource policies take no labels in GCE, so they carry gpuctl's labels in
their description instead; the sweep reads them back from there.

With IAP the VM has no external address, and provisioning still needs apt, pip and NVIDIA's
repositories: it leaves through the shared Cloud NAT of its region and network, a program and
stack of its own (shared_nat.py) that `up` makes or joins before this one. The instance carries
shared_nat.NAT_LABEL naming that NAT's router, so `down` and `sweep` can tell from Google's list
of instances whether any VM still uses it. (VMs made before the NAT was shared have a router and
NAT inside their own stack; destroying that stack removes them.)
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from . import rules
from .catalog import MACHINES
from .shared_nat import NAT_LABEL, router_name
from .spec import CHECKPOINT_ROLE, CHECKPOINT_SCOPE, VmSpec

COMPONENT_TYPE = "gpuctl:vm:GpuVm"


def labels_as_description(labels: dict[str, str]) -> str:
    return "gpuctl " + " ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def scheduling_args(spec: VmSpec) -> dict:
    """Scheduling that GCE accepts for GPUs: no live migration, and for spot no restart.

    Flex-start (about-flex-start-vms): a run duration of at most seven days and a termination
    action that stops or deletes the VM then; it never restarts by itself."""
    machine = MACHINES[spec.machine_type]
    has_local_ssd = bool(spec.local_ssd_count or machine.bundled_local_ssd)
    restarts = not (spec.spot or spec.flex_start)
    args: dict = {
        "on_host_maintenance": "TERMINATE",  # the only choice with GPUs
        "automatic_restart": restarts,  # spot and flex-start must not restart by themselves
        "provisioning_model": spec.provisioning_model,
        "preemptible": spec.spot,
    }
    if spec.spot or spec.flex_start or spec.max_run_seconds or spec.termination_time:
        args["instance_termination_action"] = spec.termination_action
    if spec.max_run_seconds:
        args["max_run_duration"] = {"seconds": spec.max_run_seconds}
    if spec.termination_time:
        args["termination_time"] = spec.termination_time
    if spec.termination_action == "STOP" and has_local_ssd:
        # A VM with local SSD can only be stopped if it agrees to lose that data.
        args["on_instance_stop_action"] = {"discard_local_ssd": True}
    return args


def instance_metadata(spec: VmSpec) -> dict[str, str]:
    """Only public material: the login user's public key, and switches that harden SSH."""
    return login_metadata(spec.ssh_user, spec.ssh_public_key)


def login_metadata(user: str, public_key: str | None) -> dict[str, str]:
    """The SSH part of every gpuctl VM's metadata (a plain VM's, a recovering VM's template)."""
    metadata = {
        "enable-oslogin": "FALSE",
        "block-project-ssh-keys": "TRUE",  # only the key gpuctl made for this VM
        "enable-guest-attributes": "TRUE",  # publishes host keys so the first SSH is verified
    }
    if public_key:
        metadata["ssh-keys"] = f"{user}:{public_key.strip()}"
    return metadata


def ssh_firewall(name: str, network: str, source: str, tag: str, labels: dict[str, str],
                 child: pulumi.ResourceOptions, provider_args: dict) -> gcp.compute.Firewall:
    """tcp:22 from one source range to the VMs carrying `tag`; labels in the description
    (firewall rules take none)."""
    return gcp.compute.Firewall(
        f"{name}-ssh",
        name=f"{name}-ssh",
        network=network,
        direction="INGRESS",
        allows=[{"protocol": "tcp", "ports": ["22"]}],
        source_ranges=[source],
        target_tags=[tag],
        description=labels_as_description(labels),
        opts=child,
        **provider_args,
    )


def network_interface(network: str, external_address: bool, needs_gvnic: bool) -> dict:
    # An access config is what gives a VM an external IPv4 address (compute.v1.json,
    # NetworkInterface.accessConfigs: "If there are noaccessConfigs specified, then this
    # instance will have no external internet access.").
    interface: dict = {"network": network}
    if external_address:
        interface["access_configs"] = [{}]
    if needs_gvnic:
        interface["nic_type"] = "GVNIC"
    return interface


class GpuVm(pulumi.ComponentResource):
    instance: gcp.compute.Instance
    firewall: gcp.compute.Firewall
    schedule: gcp.compute.ResourcePolicy | None
    account: gcp.serviceaccount.Account | None
    bucket_access: gcp.storage.BucketIAMMember | None

    def __init__(self, spec: VmSpec, opts: pulumi.ResourceOptions | None = None):
        rules.check(spec)
        metadata = instance_metadata(spec)
        problems = rules.metadata_violations(metadata)
        if problems:
            rules.check_failed(problems)
        super().__init__(COMPONENT_TYPE, spec.name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        provider_args = {"project": spec.project} if spec.project else {}
        network_tag = f"gpuctl-{spec.name}"
        machine = MACHINES[spec.machine_type]

        # With IAP: only IAP's TCP forwarding range (spec.IAP_TCP_FORWARDING_RANGE, from
        # https://cloud.google.com/iap/docs/using-tcp-forwarding); else the caller's /32.
        self.firewall = ssh_firewall(spec.name, spec.network, spec.ssh_firewall_source,
                                     network_tag, spec.labels, child, provider_args)

        self.schedule = None
        schedule_link = None
        if spec.daily_stop:
            self.schedule = gcp.compute.ResourcePolicy(
                f"{spec.name}-daily-stop",
                name=f"{spec.name}-daily-stop",
                region=spec.region,
                description=labels_as_description(spec.labels),
                instance_schedule_policy={
                    "vm_stop_schedule": {"schedule": spec.daily_stop.cron},
                    "time_zone": spec.daily_stop.time_zone,
                },
                opts=child,
                **provider_args,
            )
            schedule_link = self.schedule.self_link

        instance_args: dict = {}
        if spec.accelerator_type:
            instance_args["guest_accelerators"] = [
                {"type": spec.accelerator_type, "count": spec.accelerator_count}
            ]
        if spec.local_ssd_count:
            instance_args["scratch_disks"] = [{"interface": "NVME"}] * spec.local_ssd_count
        if schedule_link is not None:
            # pulumi-gcp 9+ takes one policy (a string); GCE allows one schedule per VM anyway.
            instance_args["resource_policies"] = schedule_link
        labels = dict(spec.labels)
        if spec.iap:  # the shared NAT it leaves through (made or joined by `up` beforehand)
            labels[NAT_LABEL] = router_name(spec.network, spec.region)
        # With IAP the VM has no external address.
        interface = network_interface(spec.network, not spec.iap, machine.needs_gvnic)

        self.account, self.bucket_access = (None, None)
        if spec.checkpoint_bucket:
            self.account, self.bucket_access = checkpoint_identity(
                spec.name, spec.service_account_id, spec.checkpoint_bucket, spec.labels, child, provider_args)
            instance_args["service_account"] = {"email": self.account.email,
                                                "scopes": [CHECKPOINT_SCOPE]}

        instance_opts = child
        if self.bucket_access is not None:
            # The VM boots with its bucket access in place: the first checkpoint sync needs it.
            # (Its way out with IAP, the shared NAT, exists before this program runs.)
            instance_opts = pulumi.ResourceOptions(parent=self, depends_on=[self.bucket_access])
        self.instance = gcp.compute.Instance(
            spec.name,
            name=spec.name,
            zone=spec.zone,
            machine_type=spec.machine_type,
            boot_disk={
                "auto_delete": True,
                "initialize_params": {
                    "image": spec.image,
                    "size": spec.boot_disk_gb,
                    "type": spec.boot_disk_type,
                    "labels": dict(spec.labels),
                },
            },
            network_interfaces=[interface],
            scheduling=scheduling_args(spec),
            labels=labels,
            tags=[network_tag],
            metadata=metadata,
            # No service account unless checkpoints ask for one (then only the one above).
            deletion_protection=False,
            allow_stopping_for_update=True,
            opts=instance_opts,
            **instance_args,
            **provider_args,
        )
        self.register_outputs({
            "instance_name": self.instance.name,
            "zone": self.instance.zone,
            "self_link": self.instance.self_link,
        })


def checkpoint_identity(name: str, account_id: str, bucket: str, labels: dict[str, str],
                        child: pulumi.ResourceOptions, provider_args: dict
                        ) -> tuple[gcp.serviceaccount.Account, gcp.storage.BucketIAMMember]:
    """A VM's own service account (`account_id`) and its one grant: CHECKPOINT_ROLE on `bucket`
    alone. Shared by the plain VM (GpuVm) and the recovering VM's template (RecoveringVm); the
    VM's token carries CHECKPOINT_SCOPE only (the caller sets it on the instance or template).

    BucketIAMMember is non-authoritative: it adds this one member to the bucket's policy and
    keeps every other binding (pulumi-gcp's gcp.storage.BucketIAMMember reference), so a user's
    own bucket keeps its policy, and `down` removes exactly this member again. Service accounts
    take no labels (iam.v1.json, ServiceAccount has none), so gpuctl's labels go in its
    description, as for firewall rules."""
    problems = rules.service_account_violations([CHECKPOINT_SCOPE], CHECKPOINT_ROLE, bucket)
    if problems:
        rules.check_failed(problems)
    account = gcp.serviceaccount.Account(
        f"{name}-sa",
        account_id=account_id,
        display_name=f"gpuctl VM {name} (checkpoints)"[:100],
        description=labels_as_description(labels),
        opts=child,
        **provider_args,
    )
    grant = gcp.storage.BucketIAMMember(
        f"{name}-ckpt",
        bucket=bucket,
        role=CHECKPOINT_ROLE,
        member=account.email.apply(lambda email: f"serviceAccount:{email}"),
        opts=child,
    )
    return account, grant
