"""Where gpuctl keeps things: one home for state (GPUCTL_HOME), XDG config."""

from __future__ import annotations

import os
from pathlib import Path


def gpuctl_home() -> Path:
    """All state (price cache, later stacks and keys) lives under one directory."""
    env = os.environ.get("GPUCTL_HOME")
    if env:
        return Path(env).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "gpuctl"


def config_path() -> Path:
    env = os.environ.get("GPUCTL_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gpuctl" / "config.toml"


def price_cache_path() -> Path:
    return gpuctl_home() / "prices.json"


def bundled_data(name: str) -> Path:
    """A data file shipped inside the package (profiles, prices, rates), wherever it is installed."""
    from importlib.resources import files

    return Path(str(files("gpuctl"))) / "data" / name
