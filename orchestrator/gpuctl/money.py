"""Showing USD amounts next to the user's display currency, with the rate and its date."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import ConfigError, UsageError
from .paths import bundled_data
from .units import parse_money

# Currencies written without decimals.
_WHOLE_UNITS = {"JPY", "KRW", "TWD"}
_SYMBOLS = {"USD": "$", "JPY": "¥", "EUR": "€", "GBP": "£", "THB": "฿", "KRW": "₩", "INR": "₹"}


@dataclass(frozen=True)
class DisplayCurrency:
    code: str
    rate: float  # units of `code` per USD
    as_of: str
    source: str

    @property
    def is_usd(self) -> bool:
        return self.code == "USD"

    def convert(self, usd: float) -> float:
        return usd * self.rate

    def format(self, usd: float) -> str:
        return format_amount(self.convert(usd), self.code)

    def describe(self) -> str:
        return f"1 USD = {self.rate:g} {self.code} ({self.source}, {self.as_of})"

    def as_dict(self) -> dict:
        return {"code": self.code, "rate": self.rate, "as_of": self.as_of, "source": self.source}


def format_amount(amount: float, code: str) -> str:
    symbol = _SYMBOLS.get(code, "")
    digits = 0 if code in _WHOLE_UNITS else 2
    text = f"{amount:,.{digits}f}"
    return f"{symbol}{text}" if symbol else f"{text} {code}"


def usd(amount: float) -> str:
    return format_amount(amount, "USD")


def display_currency(code: str, override_rate: float | None = None) -> DisplayCurrency:
    table = json.loads(bundled_data("fx.json").read_text())
    if override_rate is not None:
        return DisplayCurrency(code, override_rate, "your config", "fx_rate")
    if code not in table["rates"]:
        raise ConfigError(f"no exchange rate for {code}",
                          f"set fx_rate in config.toml, or use one of: {', '.join(table['rates'])}")
    return DisplayCurrency(code, float(table["rates"][code]), table["as_of"], "bundled snapshot")


def budget_in_usd(text: str, display: DisplayCurrency) -> float:
    """'20', '$20' or '3000JPY' (when JPY is the display currency) -> USD."""
    amount, currency = parse_money(text, "USD")
    if currency == "USD":
        return amount
    if currency != display.code:
        raise UsageError(f"no exchange rate for {currency} (display currency is {display.code})",
                         f"give the amount in USD or {display.code}")
    return amount / display.rate
