"""Parsers for what users type: durations, money, clock times (gpuctl.units)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuctl.errors import UsageError
from gpuctl.units import DURATION_HINT, format_duration, parse_clock, parse_duration, parse_money

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

# A duration part: a positive whole amount with one unit.
duration_parts = st.lists(
    st.tuples(st.integers(min_value=1, max_value=10_000), st.sampled_from(sorted(UNIT_SECONDS))),
    min_size=1, max_size=6)


def _compose(parts: list[tuple[int, str]]) -> str:
    return "".join(f"{amount}{unit}" for amount, unit in parts)


# --- parse_duration ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("45s", 45),
    ("90m", 5400),
    ("6h", 6 * 3600),
    ("1d", 86400),
    ("2w", 2 * 7 * 86400),
    ("1d12h", 129600),
    ("1d12h30m", 129600 + 1800),
    ("1h30m15s", 5415),
    ("1.5h", 5400),
    ("0.5d", 43200),
    ("  6H ", 6 * 3600),          # case and surrounding space are forgiven
    ("1d 12h", 129600),            # so are spaces between parts
    ("1h1h", 7200),                # repeated units add up
])
def test_parse_duration_examples(text, seconds):
    assert parse_duration(text) == seconds


@settings(max_examples=200)
@given(duration_parts)
def test_parse_duration_composition_is_exact_sum(parts):
    expected = sum(amount * UNIT_SECONDS[unit] for amount, unit in parts)
    assert parse_duration(_compose(parts)) == expected


@settings(max_examples=200)
@given(st.integers(min_value=1, max_value=200 * 86400))
def test_parse_duration_round_trips_a_generated_sum(total):
    # Spell the number of seconds out in w/d/h/m/s parts and read it back.
    parts, rest = [], total
    for unit in ("w", "d", "h", "m", "s"):
        amount, rest = divmod(rest, UNIT_SECONDS[unit])
        if amount:
            parts.append((amount, unit))
    assert parse_duration(_compose(parts)) == total


@settings(max_examples=200)
@given(st.integers(min_value=1, max_value=400 * 86400))
def test_format_duration_reads_back_within_its_precision(seconds):
    """format_duration keeps the two largest parts; parsing it back loses at most the rest."""
    text = format_duration(seconds)
    assert len(text.split()) <= 2
    back = parse_duration(text)
    assert 0 < back <= seconds
    # What is dropped is smaller than the smallest unit still shown.
    assert seconds - back < UNIT_SECONDS[text[-1]]


def assert_positive_seconds_or_hinted_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except UsageError as exc:
        assert exc.hint
        return
    assert isinstance(value, int)
    assert value > 0


@settings(max_examples=300)
@given(st.text())
def test_parse_duration_arbitrary_text_is_positive_or_usage_error(text):
    assert_positive_seconds_or_hinted_error(text)


@settings(max_examples=200)
@given(st.text(alphabet="0123456789.smhdwSMHDW -x", max_size=12))
def test_parse_duration_duration_like_text_is_positive_or_usage_error(text):
    """Text made of the characters durations are made of hits the parser's edges harder."""
    assert_positive_seconds_or_hinted_error(text)


@pytest.mark.parametrize("text", ["0.1s", "0.4s", "0.5s"])
def test_parse_duration_refuses_fractions_that_round_to_zero(text):
    # A duration shorter than one second rounds to 0 s: a zero TTL must be refused, not returned.
    with pytest.raises(UsageError) as info:
        parse_duration(text)
    assert info.value.hint


@pytest.mark.parametrize("text", [
    "6",            # bare number: hours or minutes?
    "90",
    "-6h",          # negative
    "-1d",
    "",             # empty
    "   ",
    "0h",           # zero
    "0m0s",
    "0.0h",
    "h",            # unit without amount
    "6x",           # unknown unit
    "6 hours",
    "1d12",         # trailing bare number
    "1e3s",
    "six hours",
    "1h-30m",
])
def test_parse_duration_refuses_with_hint(text):
    with pytest.raises(UsageError) as info:
        parse_duration(text)
    assert info.value.hint == DURATION_HINT
    assert info.value.message


def test_parse_duration_overflow_is_refused_not_raised():
    with pytest.raises(UsageError):
        parse_duration("9" * 400 + "w")


# --- format_duration --------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, text", [
    (0, "0s"),
    (45, "45s"),
    (59, "59s"),
    (59.6, "1m"),
    (60, "1m"),
    (5400, "1h 30m"),
    (3600, "1h"),
    (129600, "1d 12h"),
    (86400, "1d"),
    (86400 + 60, "1d 1m"),
    (86400 + 3600 + 60, "1d 1h"),   # two parts at most
    (7 * 86400, "7d"),
])
def test_format_duration_examples(seconds, text):
    assert format_duration(seconds) == text


# --- parse_money ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("$20", (20.0, "USD")),
    ("20", (20.0, "USD")),
    ("20usd", (20.0, "USD")),
    ("20USD", (20.0, "USD")),
    ("3000 JPY", (3000.0, "JPY")),
    ("3000jpy", (3000.0, "JPY")),
    ("$ 12.50", (12.5, "USD")),
    ("$20usd", (20.0, "USD")),
    ("  7.25 eur  ", (7.25, "EUR")),
])
def test_parse_money_examples(text, expected):
    assert parse_money(text) == expected


def test_parse_money_default_currency_applies_to_bare_numbers_only():
    assert parse_money("3000", default_currency="jpy") == (3000.0, "JPY")
    assert parse_money("$20", default_currency="JPY") == (20.0, "USD")
    assert parse_money("20eur", default_currency="JPY") == (20.0, "EUR")


@pytest.mark.parametrize("text", ["0", "$0", "0.00 USD", "-5", "$-5", "-20usd"])
def test_parse_money_refuses_zero_and_negative(text):
    with pytest.raises(UsageError) as info:
        parse_money(text)
    assert info.value.hint


@pytest.mark.parametrize("text", ["", "twenty", "$", "20 dollars", "20US", "$20 JPY", "1e3",
                                  "20,00", "9" * 400])
def test_parse_money_refuses_malformed(text):
    with pytest.raises(UsageError) as info:
        parse_money(text)
    assert info.value.hint


@settings(max_examples=200)
@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=0, max_value=99),
       st.sampled_from(["USD", "JPY", "EUR", "usd", "jpy"]), st.sampled_from(["", " "]))
def test_parse_money_amount_and_code(whole, cents, code, gap):
    value, currency = parse_money(f"{whole}.{cents:02d}{gap}{code}")
    assert value == pytest.approx(whole + cents / 100)
    assert currency == code.upper()


@settings(max_examples=300)
@given(st.text())
def test_parse_money_arbitrary_text_only_usage_error(text):
    try:
        value, currency = parse_money(text)
    except UsageError as exc:
        assert exc.hint
        return
    assert value > 0
    assert len(currency) == 3 and currency.isupper()


@settings(max_examples=200)
@given(st.text(alphabet="0123456789.$ -usdjpyUSDJPY", max_size=12))
def test_parse_money_money_like_text_only_usage_error(text):
    try:
        value, currency = parse_money(text)
    except UsageError:
        return
    assert value > 0
    assert currency in ("USD", "JPY") or len(currency) == 3


# --- parse_clock ------------------------------------------------------------------------------

@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=23), st.integers(min_value=0, max_value=59),
       st.booleans())
def test_parse_clock_accepts_every_valid_time(hour, minute, pad_hour):
    text = f"{hour:02d}:{minute:02d}" if pad_hour else f"{hour}:{minute:02d}"
    assert parse_clock(text) == (hour, minute)


@pytest.mark.parametrize("text", ["24:00", "25:00", "12:60", "6", "06", "6:0", "06:00:00",
                                  "-1:00", "", "noon", "6pm", "06.00", "123:00"])
def test_parse_clock_refuses(text):
    with pytest.raises(UsageError) as info:
        parse_clock(text)
    assert "24-hour" in info.value.hint


def test_parse_clock_forgives_surrounding_space():
    assert parse_clock(" 23:30 ") == (23, 30)


@settings(max_examples=300)
@given(st.text())
def test_parse_clock_arbitrary_text_only_usage_error(text):
    try:
        hour, minute = parse_clock(text)
    except UsageError as exc:
        assert exc.hint
        return
    assert 0 <= hour <= 23
    assert 0 <= minute <= 59
