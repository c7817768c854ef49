"""User configuration: ~/.config/gpuctl/config.toml, then GPUCTL_* variables, then flags.

Example:
    owner = "alice"
    project = "my-gcp-project"
    region = "asia-northeast1"
    currency = "JPY"
    ttl = "6h"                  # default server-side run limit for every VM
    cap = "24h"                 # hard cap: the 6h becomes a deadline `gpuctl extend` can move
    daily_stop = "06:00"        # stop every day at this clock time...
    time_zone = "Asia/Tokyo"    # ...in this zone
    iap = true                  # SSH through Identity-Aware Proxy: no external address
    checkpoints = "auto"        # every VM may write checkpoints there (or gs://BUCKET/PREFIX)
    pulumi_backend = "gs://my-bucket/gpuctl"   # where stacks live (default: under the gpuctl home)
    [profiles.a100-spot]
    zones = ["asia-northeast1-c", "asia-northeast1-a"]
    [profiles.my-t4]
    base = "t4-spot"
    nvme_count = 2
"""

from __future__ import annotations

import getpass
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gpuctl_infra.rules import is_time_zone

from .errors import ConfigError, UsageError
from .paths import config_path
from .safe_read import load_toml, present
from .units import is_off, parse_clock, parse_duration
from .validation import as_value_error, first_error, project_id, ssh_source

_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
# GPUCTL_<NAME> environment variables that override config keys.
ENV_KEYS = ("owner", "project", "region", "currency", "ttl", "cap", "daily_stop", "time_zone", "ssh_from",
            "iap", "checkpoints")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str | None = None  # default: the local user name, sanitised for labels
    project: str | None = None  # default: gcloud's default project at apply time
    region: str = "us-central1"
    # Regions `up` may use, cheapest zone first (names or patterns such as "europe-*");
    # None: `region` only.
    regions: list[str] | None = None
    currency: str = "USD"  # display currency next to USD
    # USD -> currency, overrides the snapshot. Bounded: a rate of 1e-300 makes every budget
    # infinite once divided by it (the strongest currency per USD is ~0.3, the weakest ~1e5).
    fx_rate: float | None = Field(default=None, ge=1e-4, le=1e7, allow_inf_nan=False)
    ttl: str | None = "8h"  # server-side max run duration for every VM; "none" to omit
    # A hard cap longer than the ttl makes the ttl a movable deadline (`gpuctl extend`): GCE's
    # own limit is set to the cap, and a Cloud Scheduler job deletes the VM at the ttl.
    cap: str | None = None
    termination_action: Literal["delete", "stop"] = "delete"
    daily_stop: str | None = None  # HH:MM
    time_zone: str | None = None  # IANA name; None leaves hosts as they are (UTC for schedules)
    idle_minutes: int = Field(default=30, ge=0, le=24 * 60)  # 0 disables the idle watchdog
    ssh_from: str | None = None  # the caller's address; detected at apply time when unset
    iap: bool = False  # SSH through Identity-Aware Proxy: no external address, Cloud NAT egress
    # Where VMs write checkpoints: gs://BUCKET/PREFIX or "auto" (gpuctl's bucket per project).
    # Each VM then gets its own service account with object access to that one bucket.
    checkpoints: str | None = None
    pulumi_backend: str | None = None  # e.g. gs://bucket/gpuctl; default: a file backend in the gpuctl home
    profiles: dict[str, dict[str, Any]] = {}

    @field_validator("iap", mode="before")
    @classmethod
    def _iap(cls, value: Any) -> bool:
        # TOML gives a bool; GPUCTL_IAP gives text: only true/false, not pydantic's yes/on/1.
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ValueError("write iap = true or iap = false (GPUCTL_IAP=true|false)")

    @field_validator("checkpoints")
    @classmethod
    def _checkpoints(cls, value: str | None) -> str | None:
        if value is None or value == "auto":
            return value
        from .validation import gcs_url

        bucket, prefix = as_value_error(lambda text: gcs_url(text, what=""), value)
        return f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"

    @field_validator("project")
    @classmethod
    def _project(cls, value: str | None) -> str | None:
        return value if value is None else as_value_error(project_id, value)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        # Refused here, not priced as the default region later.
        from gpuctl_infra.catalog import REGIONS

        if value not in REGIONS:
            raise ValueError(f"'{value[:80]}' is not a region gpuctl knows (known: "
                             f"{', '.join(REGIONS)})")
        return value

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        import fnmatch

        from gpuctl_infra.catalog import REGIONS

        if not value:
            raise ValueError("list at least one region, or leave regions out")
        for word in value:
            if not any(fnmatch.fnmatchcase(r, word) for r in REGIONS):
                raise ValueError(f"'{word[:80]}' matches no region gpuctl knows "
                                 "(`gpuctl profiles --json` lists them)")
        return value

    @field_validator("ssh_from")
    @classmethod
    def _ssh_from(cls, value: str | None) -> str | None:
        if value is not None:
            as_value_error(ssh_source, value)  # checked, kept as written (plan adds the /32)
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        value = value.upper()
        if not _CURRENCY_RE.fullmatch(value):
            raise ValueError(f"'{value}' is not a currency code like USD or JPY")
        return value

    @field_validator("ttl", "cap")
    @classmethod
    def _ttl(cls, value: str | None) -> str | None:
        return _optional_setting(value, parse_duration)

    @field_validator("daily_stop")
    @classmethod
    def _daily_stop(cls, value: str | None) -> str | None:
        return _optional_setting(value, parse_clock)

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str | None) -> str | None:
        if value is not None and not is_time_zone(value):
            raise ValueError(f"'{value}' is not a time zone (use an IANA name such as Asia/Tokyo)")
        return value

    def resolved_owner(self) -> str:
        return label_safe(self.owner or _login_name())


def _optional_setting(value: str | None, parser) -> str | None:
    """None for an 'off' word; otherwise the value, if `parser` accepts it."""
    if is_off(value):
        return None
    try:
        parser(value)
    except UsageError as exc:
        raise ValueError(f"{exc.message} ({exc.hint})") from None
    return value


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "gpuctl-user"


def label_safe(text: str, max_len: int = 63) -> str:
    """Make text a valid GCE label value and name fragment: lowercase, digits, dashes."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "u-" + cleaned
    return cleaned[:max_len].rstrip("-")


def _read_toml(path: Path) -> dict[str, Any]:

    return load_toml(path, "config", ConfigError,
                     "fix the line it names, or move the file away to use defaults")


def env_overrides(environ: dict[str, str] | os._Environ) -> dict[str, str]:
    return {key: environ[f"GPUCTL_{key.upper()}"] for key in ENV_KEYS
            if environ.get(f"GPUCTL_{key.upper()}")}


def load_config(path: Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read the config file (missing is fine), apply GPUCTL_* variables, validate."""
    path = path or config_path()
    data = _read_toml(path) if present(path) else {}
    data.update(env_overrides(os.environ if environ is None else environ))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"config {path}: {first_error(exc)}",
                          "fix that key (see `gpuctl config show` for the keys and defaults)") from None
