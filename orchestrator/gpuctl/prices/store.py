"""Which price book is in force: a live refresh cached under GPUCTL_HOME, else the bundled one."""

from __future__ import annotations

from ..paths import bundled_data, price_cache_path
from .model import PriceBook, load_price_book

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
        target = merged.regions.setdefault(name, region)
        if target is region:
            continue
        target.machines.update(region.machines)
        target.gpus.update(region.gpus)
        target.disks.update(region.disks)
    merged.as_of, merged.source = live.as_of, live.source
    return merged
