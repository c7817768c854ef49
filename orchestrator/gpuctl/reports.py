"""Read-only reports behind `gpuctl profiles` and `gpuctl cost`: plain dicts, ready for JSON."""

from __future__ import annotations

from gpuctl_infra.catalog import GPUS, MACHINES, REGIONS, region_of

from .context import Context
from .cost import forgotten_table, hourly_cost, hours_for_budget
from .errors import PriceError, UsageError
from .plan import cost_dict, require_known_region, zones_for
from .money import budget_in_usd
from .profiles import Profile, get_profile


def _regions_for(profile: Profile) -> list[str]:
    """Regions with a zone where the profile's machine exists under its provisioning model."""
    regions = [r for r in REGIONS if zones_for(profile, r, profile.model)]
    if profile.region:
        regions = [r for r in regions if r == profile.region]
    return regions


def pick_region(profile: Profile, requested: str | None, default: str) -> str:
    """The region to price: asked for, pinned by the profile, the config's, or the first with the GPU."""
    if requested:
        return require_known_region(requested)
    if profile.zones:
        return region_of(profile.zones[0])
    offered = _regions_for(profile)
    if default in offered or not offered:
        return profile.region or default
    return offered[0]


def profile_row(profile: Profile, ctx: Context) -> dict:
    machine = MACHINES[profile.machine_type]
    gpu = GPUS.get(profile.gpu_type or "")
    per_region: dict[str, dict] = {}
    for region in _regions_for(profile):
        try:
            usd = hourly_cost(profile, region, ctx.prices).running
        except PriceError:
            usd = None  # a region the snapshot lacks: shown as unknown, not as free
        per_region[region] = {"hourly_usd": round(usd, 4) if usd is not None else None,
                              "zones": profile.zones or (gpu.zones_in(region) if gpu else [])}
    return {
        "name": profile.name,
        "description": profile.description,
        "machine_type": profile.machine_type,
        "gpu": gpu.display if gpu else None,
        "gpu_count": profile.gpu_total,
        "vcpus": machine.vcpus,
        "memory_gb": machine.memory_gb,
        "local_nvme": profile.local_ssd_total,
        "spot": profile.spot,
        "boot_disk": f"{profile.boot_disk_gb} GB {profile.boot_disk_type}",
        "versions": {"driver": profile.driver, "cuda": profile.cuda, "python": profile.python},
        "regions": per_region,
    }


def profiles_report(ctx: Context) -> dict:
    rows = [profile_row(p, ctx) for p in sorted(ctx.profiles.values(),
                                                key=lambda p: (not p.spot, p.name))]
    return {"profiles": rows, "prices_as_of": ctx.prices.as_of.isoformat(),
            "prices_source": ctx.prices.source, "currency": ctx.currency.as_dict()}


def cost_report(ctx: Context, profile_name: str, region: str | None = None,
                hours: float | None = None, budget: str | None = None,
                ttl: str | None = None, cap: str | None = None, iap: bool = False) -> dict:
    """`iap`: priced as `up --iap` makes it (no external address; a Cloud NAT), also when the
    config says `iap = true`, as `up` does."""
    profile = get_profile(ctx.profiles, profile_name)
    iap = bool(iap or ctx.config.iap)
    if hours is not None and budget is not None:
        raise UsageError("--hours and --budget ask different questions", "pass one of them")
    if hours is not None and not 0 < hours <= 24 * 365:
        raise UsageError(f"--hours {hours} is out of range", "use a number of hours above 0")
    region = pick_region(profile, region, ctx.config.region)
    if not zones_for(profile, region, profile.model):  # like `up`: no figures for what is not sold
        from gpuctl_infra.catalog import MACHINES

        from .plan import _nowhere

        raise _nowhere(profile, MACHINES[profile.machine_type], [profile.model], [region])
    hourly = hourly_cost(profile, region, ctx.prices, iap=iap)
    report = {"profile": profile.name, "iap": iap, **cost_dict(hourly, forgotten_table(hourly), ctx),
              "currency": ctx.currency.as_dict()}
    if hours is not None:
        report["for_hours"] = {"hours": hours, "usd": round(hours * hourly.running, 2)}
    if budget is not None:
        usd = budget_in_usd(budget, ctx.currency)
        report["budget"] = {"usd": round(usd, 2), "hours": round(hours_for_budget(usd, hourly), 2)}
    if ttl is not None or cap is not None:
        report["limits"] = _limits(ttl, cap, hourly)
    return report


def _limits(ttl: str | None, cap: str | None, hourly) -> dict:
    """What a VM made with `--ttl T --cap C` costs at its deadline and, at worst, at its cap."""
    from .units import parse_duration

    if ttl is None or cap is None:
        raise UsageError("--ttl and --cap go together here", "e.g. gpuctl cost a100-spot --ttl 6h --cap 24h")
    deadline_s, cap_s = parse_duration(ttl), parse_duration(cap)
    if not 0 < deadline_s < cap_s:
        raise UsageError(f"the deadline {ttl} must be shorter than the cap {cap}", "pass a --cap longer than --ttl")
    return {"deadline_hours": deadline_s / 3600, "deadline_usd": round(deadline_s / 3600 * hourly.running, 2),
            "cap_hours": cap_s / 3600, "cap_usd": round(cap_s / 3600 * hourly.running, 2)}
