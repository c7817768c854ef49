"""Everything a command reads before it plans: config, profiles, prices, display currency."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from .config import Config, load_config
from .money import DisplayCurrency, display_currency
from .prices.model import PriceBook
from .prices.store import active_price_book
from .profiles import Profile, build_profiles


@dataclass
class Context:
    config: Config
    profiles: dict[str, Profile]
    prices: PriceBook
    currency: DisplayCurrency
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))


def load_context(now: dt.datetime | None = None) -> Context:
    config = load_config()
    return Context(
        config=config,
        profiles=build_profiles(config.profiles),
        prices=active_price_book(),
        currency=display_currency(config.currency, config.fx_rate),
        now=now or dt.datetime.now(dt.timezone.utc),
    )
