"""Offers: each profile's price in each region of the catalog where it can run, like
`sky gpus list`. Pure: a Context in, a dict ready for JSON out (`gpuctl profiles`)."""

from __future__ import annotations

from gpuctl_infra.catalog import GPUS, MACHINES, REGIONS, gpu_by_name

from ..context import Context
from ..cost import hourly_cost
from ..errors import UsageError
from ..profiles import Profile

SORTS = ("price", "name", "gpu")
_MODEL_WORDS = {"SPOT": "spot", "STANDARD": "on-demand", "FLEX_START": "flex-start"}


def _gpu_filter(text: str | None) -> str | None:
    if not text:
        return None
    gpu = gpu_by_name(text.split(":", 1)[0])
    if gpu is None:
        raise UsageError(f"'{text}' is not a GPU gpuctl knows",
                         "use one of: " + ", ".join(sorted({g.short for g in GPUS.values()})))
    return gpu.name


def _region_filter(text: str | None) -> list[str]:
    if not text:
        return list(REGIONS)
    from ..plan import region_patterns

    return region_patterns(text)


def profile_offers(profile: Profile, ctx: Context, regions: list[str]) -> dict[str, dict]:
    from ..plan import zones_for

    out: dict[str, dict] = {}
    for region in regions:
        zones = zones_for(profile, region, profile.model)
        if not zones or profile.region not in (None, region):
            continue
        hourly = hourly_cost(profile, region, ctx.prices)
        out[region] = {"hourly_usd": round(hourly.running, 4), "zones": zones,
                       "unpriced": list(hourly.unknown)}
    return out


def price_note(ctx: Context) -> str:
    """Where the prices come from and how old they are, in plain words."""
    return f"Prices in USD as of {ctx.prices.as_of.isoformat()}: {ctx.prices.source}"


def offers_report(ctx: Context, *, gpu: str | None = None, region: str | None = None,
                  sort: str = "price") -> dict:
    if sort not in SORTS:
        raise UsageError(f"--sort {sort} is not a sort order", f"use one of: {', '.join(SORTS)}")
    wanted_gpu, regions = _gpu_filter(gpu), _region_filter(region)
    rows, offers = [], []
    for profile in sorted(ctx.profiles.values(), key=lambda p: (not p.spot, p.name)):
        if wanted_gpu and profile.gpu_type != wanted_gpu:
            continue
        machine = MACHINES[profile.machine_type]
        per_region = profile_offers(profile, ctx, regions)
        gpu_type = GPUS.get(profile.gpu_type or "")
        cheapest = min(per_region.items(), key=lambda kv: (kv[1]["hourly_usd"], kv[0]),
                       default=None)
        rows.append({
            "name": profile.name, "description": profile.description,
            "machine_type": profile.machine_type,
            "gpu": gpu_type.display if gpu_type else None,
            "gpu_short": gpu_type.short if gpu_type else None,
            "gpu_count": profile.gpu_total, "vcpus": machine.vcpus, "memory_gb": machine.memory_gb,
            "local_nvme": profile.local_ssd_total, "spot": profile.spot,
            "model": _MODEL_WORDS[profile.model],
            "boot_disk": f"{profile.boot_disk_gb} GB {profile.boot_disk_type}",
            "versions": {"driver": profile.driver, "cuda": profile.cuda, "python": profile.python},
            "unverified": list(machine.unverified),
            "regions": per_region,
            "cheapest": ({"region": cheapest[0], "hourly_usd": cheapest[1]["hourly_usd"]}
                         if cheapest else None),
        })
        offers += [{"profile": profile.name, "region": r, **info} for r, info in per_region.items()]
    key = {"price": lambda o: (o["hourly_usd"], o["profile"], o["region"]),
           "name": lambda o: (o["profile"], o["hourly_usd"], o["region"]),
           "gpu": lambda o: (o["profile"].split("-")[0], o["hourly_usd"], o["region"])}[sort]
    offers.sort(key=key)
    if sort == "price":
        rows.sort(key=lambda r: (r["cheapest"] is None,
                                 r["cheapest"]["hourly_usd"] if r["cheapest"] else 0, r["name"]))
    elif sort == "gpu":
        rows.sort(key=lambda r: (r["gpu_short"] or "", r["gpu_count"], r["name"]))
    return {"profiles": rows, "offers": offers, "regions": regions,
            "prices_as_of": ctx.prices.as_of.isoformat(), "prices_source": ctx.prices.source,
            "price_note": price_note(ctx), "currency": ctx.currency.as_dict()}
