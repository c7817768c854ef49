"""What a profile costs: an hourly breakdown, and what forgetting it costs over time.

Pure functions over a Profile and a PriceBook; node_hourly is the one price of a machine. A running VM bills host, GPUs, local SSD and
boot disk; a stopped one (spot VMs stop on preemption, guest shutdown or a schedule) still
bills its boot disk. Local SSD is discarded on stop, so it stops billing.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuctl_infra.catalog import GPUS, LOCAL_SSD_GB, MACHINES

from .errors import PriceError
from .prices.model import HOURS_PER_MONTH, PriceBook
from .profiles import Profile

# Cloud NAT (Public NAT), for VMs made with --iap (no external address, egress through NAT).
# Google's Cloud NAT pricing page (https://cloud.google.com/nat/pricing), Public NAT table:
# the gateway is "$0.0014 * the number of VM instances that are using the gateway" per hour
# (up to 32 VMs), data "$0.045" per GiB processed, inbound and outbound ("The data processing
# price is the same across all regions"), and "$0.005" per hour "for a static or an ephemeral
# external IP address used by a NAT gateway". The price book has no Cloud NAT items yet, so
# the gateway and per-GiB figures are these published ones; the NAT's address is priced from
# the book's on-demand external IPv4 rate (the same $0.005 on that page).
CLOUD_NAT_USD_PER_VM_HOUR = 0.0014
CLOUD_NAT_USD_PER_GIB = 0.045
CLOUD_NAT_SOURCE = "https://cloud.google.com/nat/pricing"

FORGOTTEN_PERIODS: tuple[tuple[str, float], ...] = (("1 day", 24.0), ("1 week", 168.0),
                                                     ("30 days", 720.0))


@dataclass(frozen=True)
class CostLine:
    item: str  # "host", "gpu", "local-ssd", "boot-disk", "external-ip", "cloud-nat", "nat-ip"
    detail: str  # what a person reads: "a2-highgpu-1g (12 vCPU, 85 GB)"
    usd_per_hour: float | None  # None: the price book has no price for it (said, never guessed)
    bills_when_stopped: bool
    note: str = ""  # why the figure is what it is, when it is not the plain list price

    def as_dict(self) -> dict:
        out = {"item": self.item, "detail": self.detail,
               "usd_per_hour": None if self.usd_per_hour is None else round(self.usd_per_hour, 4),
               "bills_when_stopped": self.bills_when_stopped}
        if self.note:
            out["note"] = self.note
        return out


MODELS = ("SPOT", "STANDARD", "FLEX_START")  # GCE's provisioning models


@dataclass(frozen=True)
class HourlyCost:
    region: str
    spot: bool
    lines: tuple[CostLine, ...]
    model: str = "SPOT"  # SPOT, STANDARD or FLEX_START

    @property
    def running(self) -> float:
        """What the priced items cost per hour (see `unknown` for the ones without a price)."""
        return sum(line.usd_per_hour for line in self.lines if line.usd_per_hour is not None)

    @property
    def stopped(self) -> float:
        return sum(line.usd_per_hour for line in self.lines
                   if line.bills_when_stopped and line.usd_per_hour is not None)

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(line.item for line in self.lines if line.usd_per_hour is None)

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(line.note for line in self.lines if line.note))


def _priced(lookup, *args) -> tuple[float | None, str]:
    try:
        return lookup(*args), ""
    except PriceError as exc:
        return None, exc.message


def node_hourly(book: PriceBook, region: str, machine_type: str, *, gpu: str | None, gpus: int,
                local_ssds: int, model: str, disk_type: str, disk_gb: int,
                external_ip: bool = True, cloud_nat: bool = False) -> HourlyCost:
    """What one VM (or one GKE node, which GCE bills as a VM) costs per hour: host, GPUs, local
    SSD, boot disk and its external IPv4 address, each priced from the book in force. A VM
    reached through IAP (external_ip=False, cloud_nat=True) has no address of its own and pays
    for its Cloud NAT instead: the gateway per VM-hour and the NAT's own address (plus a
    per-GiB charge, said in the note: it depends on traffic, not on hours).

    The one price function: VM plans, `gpuctl cost`, `gpuctl profiles` and every GKE figure call
    it. An item the book has no price for is kept with usd_per_hour None and said, never guessed.
    Flex-start: the snapshot has no flex-start rates, so the on-demand rate stands in as an upper
    bound (flex-start is discounted against on demand) and each line says so.
    """
    if model not in MODELS:
        raise ValueError(f"unknown provisioning model {model}")
    spot = model == "SPOT"
    note = ("flex-start rate not in the price data: on-demand rate shown (an upper bound)"
            if model == "FLEX_START" else "")
    machine = MACHINES.get(machine_type)
    detail = (f"{machine.name} ({machine.vcpus} vCPU, {machine.memory_gb:g} GB)" if machine
              else machine_type)
    usd, why = _priced(book.machine_hourly, region, machine_type, spot)
    lines = [CostLine("host", detail, usd, False, why or note)]
    if gpu and gpus:
        per_gpu, why = _priced(book.gpu_hourly, region, gpu, spot)
        display = GPUS[gpu].display if gpu in GPUS else gpu
        lines.append(CostLine("gpu", f"{gpus}x {display}",
                              None if per_gpu is None else per_gpu * gpus, False, why or note))
    if local_ssds:
        per_gb, why = _priced(book.disk_gb_month, region, "local-ssd", spot)
        lines.append(CostLine("local-ssd", f"{local_ssds}x {LOCAL_SSD_GB} GB local NVMe",
                              None if per_gb is None else
                              local_ssds * LOCAL_SSD_GB * per_gb / HOURS_PER_MONTH, False,
                              why or note))
    boot, why = _priced(book.disk_gb_month, region, disk_type, False)
    lines.append(CostLine("boot-disk", f"{disk_gb} GB {disk_type}",
                          None if boot is None else disk_gb * boot / HOURS_PER_MONTH, True, why))
    if external_ip:
        ip, why = _priced(book.network_hourly, region, "external-ipv4", spot)
        lines.append(CostLine("external-ip", "external IPv4 address (in use)", ip, False, why))
    if cloud_nat:
        lines += _cloud_nat_lines(book, region)
    return HourlyCost(region, spot, tuple(lines), model)


def _cloud_nat_lines(book: PriceBook, region: str) -> list[CostLine]:
    per_gib = (f"Cloud NAT also bills ${CLOUD_NAT_USD_PER_GIB:g} per GiB it processes (apt, pip and "
               f"NVIDIA downloads while provisioning: a few GiB), not in the hourly figure "
               f"({CLOUD_NAT_SOURCE})")
    # One NAT gateway per region serves every --iap VM there (lifecycle/shared_nat.py); Google
    # bills the gateway per VM using it, so this VM's share is one VM's rate whoever else joins.
    gateway = CostLine("cloud-nat", "Cloud NAT gateway, this VM's share (billed per VM using the "
                       "region's shared gateway)", CLOUD_NAT_USD_PER_VM_HOUR, False, per_gib)
    # The NAT's address is not a spot VM's, so the on-demand external IPv4 rate applies. It is
    # the shared NAT's, one for all its VMs: counted in full on every VM's line (a sum over VMs
    # errs high, never low). Whether Google releases an auto-allocated NAT address while no VM
    # uses it (a stopped VM) is (unverified): it is counted as billing then.
    usd, why = _priced(book.network_hourly, region, "external-ipv4", False)
    address = CostLine("nat-ip", "Cloud NAT's external IPv4 address (auto-allocated; shared by the "
                       "region's --iap VMs, counted in full for each)", usd, True,
                       why or "the shared Cloud NAT's address is counted in full on each --iap VM "
                              "(it bills once while the NAT exists); whether it bills while the VM "
                              "is stopped is (unverified): counted as billing")
    return [gateway, address]


def hourly_cost(profile: Profile, region: str, book: PriceBook, *, iap: bool = False) -> HourlyCost:
    """A profile's VM per hour; with iap, no external address and a Cloud NAT instead."""
    return node_hourly(book, region, profile.machine_type, gpu=profile.gpu_type,
                       gpus=profile.gpu_total, local_ssds=profile.local_ssd_total,
                       model=profile.model, disk_type=profile.boot_disk_type,
                       disk_gb=profile.boot_disk_gb, external_ip=not iap, cloud_nat=iap)


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
    require_complete(hourly, "a budget")
    return budget_usd / hourly.running


def require_complete(hourly: HourlyCost, what: str) -> None:
    """A run limit computed from a partial price would let the VM run longer than paid for."""
    if hourly.unknown:
        raise PriceError(f"{what} needs the full hourly price, and {', '.join(hourly.unknown)} "
                         f"has no price in {hourly.region}",
                         "use --ttl instead, or run `gpuctl prices refresh`")
