"""What a profile costs: an hourly breakdown, and what forgetting it costs over time.

Pure functions over a Profile and a PriceBook. A running VM bills host, GPUs, local SSD and
boot disk; a stopped one (spot VMs stop on preemption, guest shutdown or a schedule) still
bills its boot disk. Local SSD is discarded on stop, so it stops billing.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuctl_infra.catalog import GPUS, LOCAL_SSD_GB, MACHINES

from .prices.model import HOURS_PER_MONTH, PriceBook
from .profiles import Profile

FORGOTTEN_PERIODS: tuple[tuple[str, float], ...] = (("1 day", 24.0), ("1 week", 168.0),
                                                     ("30 days", 720.0))


@dataclass(frozen=True)
class CostLine:
    item: str  # "host", "gpu", "local-ssd", "boot-disk"
    detail: str  # what a person reads: "a2-highgpu-1g (12 vCPU, 85 GB)"
    usd_per_hour: float
    bills_when_stopped: bool

    def as_dict(self) -> dict:
        return {"item": self.item, "detail": self.detail, "usd_per_hour": round(self.usd_per_hour, 4),
                "bills_when_stopped": self.bills_when_stopped}


@dataclass(frozen=True)
class HourlyCost:
    region: str
    spot: bool
    lines: tuple[CostLine, ...]

    @property
    def running(self) -> float:
        return sum(line.usd_per_hour for line in self.lines)

    @property
    def stopped(self) -> float:
        return sum(line.usd_per_hour for line in self.lines if line.bills_when_stopped)


def hourly_cost(profile: Profile, region: str, book: PriceBook) -> HourlyCost:
    machine = MACHINES[profile.machine_type]
    spot = profile.spot
    lines = [CostLine("host", f"{machine.name} ({machine.vcpus} vCPU, {machine.memory_gb:g} GB)",
                      book.machine_hourly(region, machine.name, spot), False)]
    if profile.gpu_type and profile.gpu_total:
        per_gpu = book.gpu_hourly(region, profile.gpu_type, spot)
        lines.append(CostLine("gpu", f"{profile.gpu_total}x {GPUS[profile.gpu_type].display}",
                              per_gpu * profile.gpu_total, False))
    if profile.local_ssd_total:
        gb = profile.local_ssd_total * LOCAL_SSD_GB
        per_gb_month = book.disk_gb_month(region, "local-ssd", spot)
        lines.append(CostLine("local-ssd", f"{profile.local_ssd_total}x 375 GB local NVMe",
                              gb * per_gb_month / HOURS_PER_MONTH, False))
    boot_rate = book.disk_gb_month(region, profile.boot_disk_type, False)
    lines.append(CostLine("boot-disk", f"{profile.boot_disk_gb} GB {profile.boot_disk_type}",
                          profile.boot_disk_gb * boot_rate / HOURS_PER_MONTH, True))
    return HourlyCost(region, spot, tuple(lines))


@dataclass(frozen=True)
class Exposure:
    """How long a VM can run before a guard ends it, and what it bills afterwards."""

    running_hours: float | None  # None: nothing stops it
    after: str  # "deleted" or "stopped"


def cost_over(hours: float, hourly: HourlyCost, exposure: Exposure | None) -> float:
    """USD billed over `hours` of being forgotten, given what the guards do."""
    if exposure is None or exposure.running_hours is None:
        return hours * hourly.running
    running = min(hours, exposure.running_hours)
    idle = hours - running
    return running * hourly.running + (idle * hourly.stopped if exposure.after == "stopped" else 0.0)


@dataclass(frozen=True)
class ForgottenRow:
    period: str
    hours: float
    running_usd: float  # left running with no guard
    stopped_usd: float  # stopped but not deleted: disks keep billing
    guarded_usd: float | None  # with the planned guards

    def as_dict(self) -> dict:
        out = {"period": self.period, "hours": self.hours, "running_usd": round(self.running_usd, 2),
               "stopped_usd": round(self.stopped_usd, 2)}
        if self.guarded_usd is not None:
            out["guarded_usd"] = round(self.guarded_usd, 2)
        return out


def forgotten_table(hourly: HourlyCost, exposure: Exposure | None = None) -> list[ForgottenRow]:
    return [ForgottenRow(period, hours, hours * hourly.running, hours * hourly.stopped,
                         cost_over(hours, hourly, exposure) if exposure else None)
            for period, hours in FORGOTTEN_PERIODS]


def hours_for_budget(budget_usd: float, hourly: HourlyCost) -> float:
    return budget_usd / hourly.running
