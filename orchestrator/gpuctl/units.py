"""Parsers for what users type: durations, money, clock times. Pure and strict.

Each parser raises UsageError with a hint instead of guessing: "6" is refused as a TTL
because nobody can tell whether it means hours or minutes.
"""

from __future__ import annotations

import math
import re

from .errors import UsageError, shown

# ASCII only (re.ASCII): "６h" or "٣h" are digits to Python's \d and float(), not to a user
# reading the plan, and never to Google's APIs. Lengths are bounded so float() stays finite.
_DURATION_PART = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)([smhdw])", re.ASCII)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MONEY = re.compile(r"^\s*(\$)?\s*([0-9]{1,15}(?:\.[0-9]{1,15})?)\s*([a-zA-Z]{3})?\s*$", re.ASCII)
_CLOCK = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$", re.ASCII)
MAX_AMOUNT = 1e12  # in any currency; bounds every budget before it is divided by a rate
DURATION_HINT = "write a duration like 90m, 6h, 1d12h or 2w"
OFF_WORDS = ("", "none", "off")  # what turns an optional guard setting off


def is_off(text: str | None) -> bool:
    return text is None or str(text).strip().lower() in OFF_WORDS


def parse_duration(text: str) -> int:
    """'1d12h' -> 129600 seconds. Units s, m, h, d, w; at least one part; no bare numbers."""
    cleaned = str(text).strip().lower().replace(" ", "")
    if not cleaned:
        raise UsageError("empty duration", DURATION_HINT)
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(cleaned):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(cleaned) or pos == 0:
        raise UsageError(f"{shown(text)} is not a duration", DURATION_HINT)
    # Round before the check: "0.4s" would otherwise become a zero-second TTL.
    if not math.isfinite(total) or round(total) <= 0:
        raise UsageError(f"duration {shown(text)} must be at least one second", DURATION_HINT)
    return int(round(total))


def format_duration(seconds: float) -> str:
    """129600 -> '1d 12h'; 5400 -> '1h 30m'; 45 -> '45s'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return " ".join(parts[:2])


def parse_money(text: str, default_currency: str = "USD") -> tuple[float, str]:
    """'20', '$20', '20usd', '3000 JPY' -> (amount, currency code)."""
    match = _MONEY.fullmatch(str(text))
    if not match:
        raise UsageError(f"{shown(text)} is not an amount of money",
                         "write an amount like 20, $20, 20USD or 3000JPY")
    dollar, amount, code = match.groups()
    value = float(amount)
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"amount {shown(text)} must be more than zero", "e.g. --budget 20")
    if value > MAX_AMOUNT:
        raise UsageError(f"amount {shown(text)} is too large", "e.g. --budget 20")
    currency = "USD" if dollar else (code or default_currency).upper()
    if dollar and code and code.upper() != "USD":
        raise UsageError(f"{shown(text)} mixes $ with {code.upper()}", "write $20 or 3000JPY")
    return value, currency


def parse_clock(text: str) -> tuple[int, int]:
    """'06:00' -> (6, 0). 24-hour clock."""
    match = _CLOCK.fullmatch(str(text).strip())
    if not match:
        raise UsageError(f"{shown(text)} is not a clock time", "write a 24-hour time like 06:00 or 23:30")
    return int(match.group(1)), int(match.group(2))
