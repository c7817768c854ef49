"""Which price book is in force: a live refresh cached under GPUCTL_HOME, else the bundled one."""

from __future__ import annotations

from ..paths import bundled_data, price_cache_path
from .model import PriceBook, Rate, RegionPrices, load_price_book

BUNDLED_SNAPSHOT = "prices.json"


def bundled_price_book() -> PriceBook:
    return load_price_book(bundled_data(BUNDLED_SNAPSHOT))


def active_price_book() -> PriceBook:
    """The refreshed cache when there is one, the bundled snapshot otherwise.

    A refresh only covers what the catalog answered, so regions or items it lacks fall back to
    the snapshot rather than vanishing.
    """
    bundled = bundled_price_book()
    cache = price_cache_path()
    if not cache.exists():
        return bundled
    live = load_price_book(cache)
    merged = bundled.model_copy(deep=True)
    for name, region in live.regions.items():
        target = merged.regions.setdefault(name, RegionPrices())
        for table in ("machines", "gpus", "disks", "network"):
            _merge_rates(getattr(target, table), getattr(region, table))
    merged.as_of, merged.source = live.as_of, live.source
    return merged


def _merge_rates(into: dict[str, Rate], live: dict[str, Rate]) -> None:
    """Field by field: a refresh that found only a spot price keeps the snapshot's on-demand one."""
    for item, rate in live.items():
        old = into.get(item)
        if old is None:
            into[item] = rate
            continue
        into[item] = Rate(spot=rate.spot if rate.spot is not None else old.spot,
                          ondemand=rate.ondemand if rate.ondemand is not None else old.ondemand,
                          basis=rate.basis or old.basis)
