"""User configuration: the TOML file, GPUCTL_* overrides, validation (gpuctl.config)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuctl_infra.catalog import REGIONS

from gpuctl.config import Config, label_safe, load_config
from gpuctl.errors import ConfigError

LABEL_RE = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and valid files -----------------------------------------------------------------

def test_missing_file_gives_defaults(tmp_path):
    config = load_config(tmp_path / "nope.toml", environ={})
    assert config == Config()
    assert config.region == "us-central1"
    assert config.currency == "USD"
    assert config.ttl == "8h"
    assert config.termination_action == "delete"
    assert config.daily_stop is None
    assert config.time_zone is None  # hosts keep their zone unless one is configured
    assert config.idle_minutes == 30
    assert config.profiles == {}
    assert config.owner is None


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, ""), environ={}) == Config()


def test_full_example(tmp_path):
    path = write(tmp_path, """
owner = "alice"
project = "my-gcp-project"
region = "asia-northeast1"
currency = "jpy"
ttl = "6h"
daily_stop = "06:00"
time_zone = "Asia/Tokyo"
idle_minutes = 45
termination_action = "stop"

[profiles.a100-spot]
zones = ["asia-northeast1-c", "asia-northeast1-a"]

[profiles.my-t4]
base = "t4-spot"
nvme_count = 2
""")
    config = load_config(path, environ={})
    assert config.owner == "alice"
    assert config.project == "my-gcp-project"
    assert config.region == "asia-northeast1"
    assert config.currency == "JPY"  # normalised to upper case
    assert config.ttl == "6h"
    assert config.daily_stop == "06:00"
    assert config.time_zone == "Asia/Tokyo"
    assert config.idle_minutes == 45
    assert config.termination_action == "stop"
    assert config.profiles == {
        "a100-spot": {"zones": ["asia-northeast1-c", "asia-northeast1-a"]},
        "my-t4": {"base": "t4-spot", "nvme_count": 2},
    }


@pytest.mark.parametrize("value", ["none", "off", "NONE", ""])
def test_ttl_can_be_turned_off(tmp_path, value):
    assert load_config(write(tmp_path, f'ttl = "{value}"\n'), environ={}).ttl is None


@pytest.mark.parametrize("value", ["none", "off", ""])
def test_daily_stop_can_be_turned_off(tmp_path, value):
    assert load_config(write(tmp_path, f'daily_stop = "{value}"\n'), environ={}).daily_stop is None


@pytest.mark.parametrize("ttl", ["90m", "1d12h", "2w", "45s"])
def test_valid_ttls_kept(tmp_path, ttl):
    assert load_config(write(tmp_path, f'ttl = "{ttl}"\n'), environ={}).ttl == ttl


def test_resolved_owner_is_label_safe(tmp_path):
    config = load_config(write(tmp_path, 'owner = "Alice.Smith@Example"\n'), environ={})
    assert config.resolved_owner() == "alice-smith-example"


# --- broken files -----------------------------------------------------------------------------

def test_broken_toml_names_the_file_and_hints(tmp_path):
    path = write(tmp_path, 'region = "us-central1\nttl = 6h\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(path) in info.value.message
    assert "TOML" in info.value.message
    assert info.value.hint


def test_unreadable_encoding_is_config_error(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b'region = "\xff\xfe"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(path) in info.value.message
    assert info.value.hint


def test_directory_in_place_of_file_is_config_error(tmp_path):
    path = tmp_path / "config.toml"
    path.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.hint


def test_unknown_key_is_refused(tmp_path):
    path = write(tmp_path, 'regoin = "us-central1"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "regoin" in info.value.message
    assert str(path) in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("line, key", [
    ('ttl = "6"', "ttl"),
    ('ttl = "0h"', "ttl"),
    ('ttl = "-3h"', "ttl"),
    ('ttl = "six hours"', "ttl"),
    ('ttl = 6', "ttl"),
    ('daily_stop = "25:00"', "daily_stop"),
    ('daily_stop = "6am"', "daily_stop"),
    ('daily_stop = "06:00:00"', "daily_stop"),
    ('currency = "dollars"', "currency"),
    ('currency = "US"', "currency"),
    ('currency = "U$D"', "currency"),
    ('currency = 840', "currency"),
    ('termination_action = "explode"', "termination_action"),
    ('idle_minutes = -1', "idle_minutes"),
    ('idle_minutes = 100000', "idle_minutes"),
    ('fx_rate = 0', "fx_rate"),
    ('fx_rate = -150.0', "fx_rate"),
    ('profiles = "t4-spot"', "profiles"),
    ('region = ["us-central1"]', "region"),
])
def test_bad_values_are_config_errors_naming_the_key(tmp_path, line, key):
    path = write(tmp_path, line + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert key in info.value.message
    assert str(path) in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("line", [
    'ttl = "0.1s"',          # rounds to a zero-second run limit
    'currency = "usd\\n"',   # a trailing newline is not part of a currency code
    'fx_rate = inf',         # an infinite exchange rate makes every cost infinite
])
def test_values_that_only_look_valid_are_refused(tmp_path, line):
    path = write(tmp_path, line + "\n")
    with pytest.raises(ConfigError):
        load_config(path, environ={})


# --- environment overrides --------------------------------------------------------------------

def test_env_overrides_win_over_the_file(tmp_path):
    path = write(tmp_path, 'region = "us-central1"\ncurrency = "USD"\nttl = "6h"\nowner = "bob"\n')
    config = load_config(path, environ={
        "GPUCTL_REGION": "asia-northeast1",
        "GPUCTL_CURRENCY": "jpy",
        "GPUCTL_TTL": "2h",
        "GPUCTL_OWNER": "carol",
        "GPUCTL_DAILY_STOP": "07:30",
        "GPUCTL_TIME_ZONE": "Asia/Tokyo",
        "GPUCTL_PROJECT": "proj-1",
        "GPUCTL_SSH_FROM": "198.51.100.7",
    })
    assert config.region == "asia-northeast1"
    assert config.currency == "JPY"
    assert config.ttl == "2h"
    assert config.owner == "carol"
    assert config.daily_stop == "07:30"
    assert config.time_zone == "Asia/Tokyo"
    assert config.project == "proj-1"
    assert config.ssh_from == "198.51.100.7"


def test_empty_env_values_do_not_override(tmp_path):
    path = write(tmp_path, 'region = "asia-northeast1"\n')
    config = load_config(path, environ={"GPUCTL_REGION": ""})
    assert config.region == "asia-northeast1"


def test_unrelated_env_is_ignored(tmp_path):
    config = load_config(tmp_path / "missing.toml",
                         environ={"GPUCTL_PROFILES": "x", "REGION": "europe-west4",
                                  "GPUCTL_IDLE_MINUTES": "5"})
    assert config == Config()


def test_bad_env_value_is_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml", environ={"GPUCTL_TTL": "6"})
    assert "ttl" in info.value.message
    assert info.value.hint


def test_environ_none_reads_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCTL_REGION", "asia-northeast1")
    assert load_config(tmp_path / "missing.toml").region == "asia-northeast1"


@settings(max_examples=100)
@given(st.sampled_from(REGIONS), st.sampled_from(REGIONS))
def test_env_region_always_wins(file_region, env_region):
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), f'region = "{file_region}"\n')
        assert load_config(path, environ={"GPUCTL_REGION": env_region}).region == env_region


# --- arbitrary files --------------------------------------------------------------------------

_CONFIG_LINES = st.sampled_from([
    'owner = "alice"', 'region = "asia-northeast1"', 'currency = "jpy"', 'currency = "x"',
    'ttl = "6h"', 'ttl = "6"', 'ttl = 6', 'daily_stop = "06:00"', 'daily_stop = "26:00"',
    'time_zone = "Asia/Tokyo"', 'idle_minutes = 0', 'idle_minutes = "ten"', 'fx_rate = 150.0',
    'fx_rate = nan', 'termination_action = "stop"', 'bogus = 1', '[profiles.t4-spot]',
    'nvme_count = 2', '[profiles]', 'x = [1, "a"]', '= broken', '[[profiles]]', 'ttl = 1979-05-27',
    'owner = { a = 1 }', '"\\u0000" = 1',
])


def _check_load(path: Path) -> None:
    try:
        config = load_config(path, environ={})
    except ConfigError as exc:
        assert exc.message
        assert exc.hint
        return
    assert isinstance(config, Config)
    assert re.fullmatch(r"[A-Z]{3}", config.currency)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_are_config_or_config_error(tmp_path, data):
    path = tmp_path / "config.toml"
    path.write_bytes(data)
    _check_load(path)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text_is_config_or_config_error(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    _check_load(path)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_CONFIG_LINES, max_size=8))
def test_plausible_files_are_config_or_config_error(tmp_path, lines):
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _check_load(path)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["REGION", "CURRENCY", "TTL", "DAILY_STOP", "TIME_ZONE", "OWNER",
                            "PROJECT", "SSH_FROM"]),
       value=st.text(max_size=30))
def test_arbitrary_env_values_are_config_or_config_error(tmp_path, key, value):
    try:
        config = load_config(tmp_path / "missing.toml", environ={f"GPUCTL_{key}": value})
    except ConfigError as exc:
        assert exc.hint
        return
    assert isinstance(config, Config)


# --- label_safe -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("alice", "alice"),
    ("Alice", "alice"),
    ("alice.smith", "alice-smith"),
    ("alice_smith", "alice-smith"),
    ("  Bob  ", "bob"),
    ("1alice", "u-1alice"),
    ("-alice-", "alice"),
    ("", "u"),
    ("山田", "u"),
    ("a" * 100, "a" * 63),
])
def test_label_safe_examples(text, expected):
    assert label_safe(text) == expected


@settings(max_examples=300)
@given(st.text())
def test_label_safe_always_a_valid_label(text):
    out = label_safe(text)
    assert LABEL_RE.match(out), out
    assert "\n" not in out
    assert 1 <= len(out) <= 63


@settings(max_examples=200)
@given(st.text(), st.integers(min_value=2, max_value=63))
def test_label_safe_respects_max_len(text, max_len):
    out = label_safe(text, max_len=max_len)
    assert LABEL_RE.match(out), out
    assert len(out) <= max_len


@settings(max_examples=200)
@given(st.from_regex(r"[a-z][a-z0-9]{0,20}(-[a-z0-9]{1,10}){0,3}", fullmatch=True))
def test_label_safe_keeps_labels_that_are_already_safe(text):
    assert label_safe(text) == text


@settings(max_examples=200)
@given(st.text())
def test_label_safe_is_idempotent(text):
    once = label_safe(text)
    assert label_safe(once) == once
