"""The typed spec a VM program is a function of.

The orchestrator turns a profile, config and flags into a VmSpec; the Pulumi program reads
nothing else. Frozen so a spec checked by the rules cannot change before it is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Shown in dry-run plans where the caller's public address is only known at apply time.
CALLER_ADDRESS_PLACEHOLDER = "CALLER_IP/32"

# The addresses IAP TCP forwarding connects from: "allows ingress traffic from the IP range
# 35.235.240.0/20. This range contains all IP addresses that IAP uses for TCP forwarding."
# (https://cloud.google.com/iap/docs/using-tcp-forwarding, "Create a firewall rule")
IAP_TCP_FORWARDING_RANGE = "35.235.240.0/20"

# What a VM with checkpoints may do, and nothing more (least privilege, one bucket):
# the role, granted on the checkpoint bucket only. Google's predefined Storage Object User role
# (roles/storage.objectUser) grants creating, reading, updating and deleting objects, and no
# permission on the bucket's settings or IAM policy
# (https://cloud.google.com/storage/docs/access-control/iam-roles; its exact wording was not
# re-read here: unverified).
CHECKPOINT_ROLE = "roles/storage.objectUser"
# The one OAuth scope its token carries: "read-write: allows access to read and change data, but
# not metadata like IAM policies" (https://cloud.google.com/storage/docs/oauth-scopes). Scopes
# cap the token; IAM (the role above, on one bucket) decides what it may touch.
CHECKPOINT_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
# A service account id "must be 6-30 characters long, and match the regular expression
# [a-z]([-a-z0-9]*[a-z0-9])" (iam.v1.json, CreateServiceAccountRequest.accountId).
ACCOUNT_ID_PREFIX = "gpuctl-"
ACCOUNT_ID_MAX = 30


@dataclass(frozen=True)
class DailyStop:
    """Stop the VM every day at a clock time, server side (instance schedule policy)."""

    hour: int
    minute: int
    time_zone: str  # IANA name, e.g. Asia/Tokyo

    @property
    def cron(self) -> str:
        return f"{self.minute} {self.hour} * * *"

    @property
    def clock(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}"


@dataclass(frozen=True)
class VmSpec:
    name: str  # also the stack name; a valid GCE resource name
    zone: str
    machine_type: str
    image: str
    boot_disk_gb: int
    boot_disk_type: str
    spot: bool
    # Attached GPUs (N1 only); built-in GPUs of A2/A3/G2 are implied by the machine type.
    accelerator_type: str | None = None
    accelerator_count: int = 0
    # Scratch NVMe disks to add; 0 for machine types whose local SSD is bundled.
    local_ssd_count: int = 0
    termination_action: Literal["DELETE", "STOP"] = "DELETE"
    max_run_seconds: int | None = None
    termination_time: str | None = None  # RFC 3339, exclusive with max_run_seconds
    daily_stop: DailyStop | None = None
    ssh_source_cidr: str = CALLER_ADDRESS_PLACEHOLDER
    ssh_user: str = "gpuctl"
    ssh_public_key: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    network: str = "default"
    project: str | None = None
    # Dynamic Workload Scheduler flex-start capacity (provisioning model FLEX_START); spot False.
    flex_start: bool = False
    # SSH through Identity-Aware Proxy: no external address, port 22 open only to IAP's range,
    # and egress (apt, pip, NVIDIA's repositories) through a Cloud NAT of the VM's own.
    iap: bool = False
    # The bucket the VM's checkpoints go to: the VM gets a service account of its own with
    # CHECKPOINT_ROLE on this bucket only and CHECKPOINT_SCOPE. None: no service account at all.
    checkpoint_bucket: str | None = None

    @property
    def service_account_id(self) -> str | None:
        """gpuctl-<vm>, cut to IAM's 30 characters with a short hash when the name is longer
        (two long names sharing a prefix still get two accounts); no trailing dash."""
        if not self.checkpoint_bucket:
            return None
        return account_id_for(self.name)

    @property
    def provisioning_model(self) -> str:
        return "FLEX_START" if self.flex_start else "SPOT" if self.spot else "STANDARD"

    @property
    def region(self) -> str:
        return self.zone.rsplit("-", 1)[0]

    @property
    def ssh_firewall_source(self) -> str:
        """Where port 22 is reachable from: IAP's forwarding range, or the caller's one address."""
        return IAP_TCP_FORWARDING_RANGE if self.iap else self.ssh_source_cidr

    @property
    def has_server_side_guard(self) -> bool:
        return bool(self.max_run_seconds or self.termination_time or self.daily_stop)


def account_id_for(vm_name: str) -> str:
    import hashlib

    whole = f"{ACCOUNT_ID_PREFIX}{vm_name}"
    if len(whole) <= ACCOUNT_ID_MAX:
        return whole
    digest = hashlib.sha256(vm_name.encode()).hexdigest()[:6]
    head = whole[:ACCOUNT_ID_MAX - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"
