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
