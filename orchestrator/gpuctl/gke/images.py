"""Which container images the GKE workloads run: the one place gpuctl's code names them.

The Web UI image comes from images/images.toml (built and pushed by the images/ recipes).
Until that file names one, a placeholder is used: dry runs show it, and a live `webui up`
refuses it. The proxy and the idle rule run stdlib scripts in a stock Python image.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError

WEBUI_PLACEHOLDER = "gpuctl-webui:placeholder"
HELPER_IMAGE = "python:3.12-slim"  # runs the proxy and the idle rule (k8s/webui/)


def images_toml() -> Path:
    env = os.environ.get("GPUCTL_IMAGES_TOML")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3] / "images" / "images.toml"


def _table() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    path = images_toml()
    try:
        return tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _ref(entry: object) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        for key in ("ref", "image"):
            if isinstance(entry.get(key), str):
                return entry[key]
        if isinstance(entry.get("name"), str) and entry.get("tag"):
            return f"{entry['name']}:{entry['tag']}"
    return None


def webui_image(explicit: str | None = None) -> str:
    """--image, else images.toml's webui entry, else the placeholder."""
    if explicit:
        return explicit
    table = _table()
    ref = _ref(table.get("webui")) or _ref((table.get("images") or {}).get("webui"))
    return ref or WEBUI_PLACEHOLDER


def require_real_image(image: str) -> str:
    if image == WEBUI_PLACEHOLDER:
        raise UsageError("no Web UI image is configured yet",
                         "build and push it (see images/), or pass --image REF")
    return image
