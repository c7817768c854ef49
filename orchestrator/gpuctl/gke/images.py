"""Which container images the GKE workloads run: the one place gpuctl's code names them.

The Web UI image comes from images/images.toml ("{registry}/{repository}:{tag}", built and
pushed by the images/ recipes). While its registry is still the YOUR_PROJECT template (or the
file is missing), dry runs show that reference and a live `webui up` refuses it. The proxy and
the idle rule run their scripts (gke/incluster_scripts/) in the helper image from the same
file (images/helper/: Python with the official `kubernetes` client, pinned), so that the client
they are tested with is the one in the pod.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError

WEBUI_PLACEHOLDER = "gpuctl-webui:placeholder"
HELPER = "gpuctl-helper"  # the name k8s/webui/ gives the image of the proxy and the idle rule
HELPER_PLACEHOLDER = f"{HELPER}:placeholder"


def images_toml() -> Path:
    """$GPUCTL_IMAGES_TOML, else images.toml from the package data `gpuctl_images` (the
    repository's images/ folder, installed with gpuctl)."""
    env = os.environ.get("GPUCTL_IMAGES_TOML")
    if env:
        return Path(env).expanduser()
    from importlib.resources import files

    return Path(str(files("gpuctl_images"))) / "images.toml"


def _table() -> dict:
    """images.toml's tables; {} when there is none. GPUCTL_IMAGES_TOML makes it user input,
    so it goes through the safe reader (a FIFO there would otherwise hang every webui command)."""
    from ..errors import ConfigError
    from ..safe_read import load_toml, present

    path = images_toml()
    if not present(path):
        return {}
    return load_toml(path, "images file", ConfigError,
                     "fix images/images.toml, or point GPUCTL_IMAGES_TOML at a good one")


NOT_CONFIGURED = "YOUR_PROJECT"  # images.toml's registry until someone sets theirs


def image_ref(name: str) -> str | None:
    """"{registry}/{repository}:{tag}" for images.toml's [name] table, or None."""
    table = _table()
    entry = table.get(name)
    if not isinstance(entry, dict) or not entry.get("repository") or not entry.get("tag"):
        return None
    registry = str(table.get("registry") or "").rstrip("/")
    repository = f"{registry}/{entry['repository']}" if registry else str(entry["repository"])
    return f"{repository}:{entry['tag']}"


def webui_image(explicit: str | None = None) -> str:
    """--image, else images.toml's webui image, else the placeholder. An explicit reference
    is checked against the OCI grammar: it lands in a manifest and in kustomize's arguments."""
    if explicit is not None:
        from ..validation import image_ref as checked_image

        return checked_image(explicit)
    return image_ref("webui") or WEBUI_PLACEHOLDER


def helper_image() -> str:
    """images.toml's helper image (the proxy's and the idle rule's), else the placeholder."""
    return image_ref("helper") or HELPER_PLACEHOLDER


def require_real_image(image: str) -> str:
    """Refuse what cannot be pulled: the placeholder, or images.toml's unset registry, for the
    UI image and for the helper image beside it."""
    if image == WEBUI_PLACEHOLDER or NOT_CONFIGURED in image:
        raise UsageError(f"the Web UI image is not configured ({image})",
                         "set `registry` in images/images.toml to your Artifact Registry path "
                         "and push the image (see images/), or pass --image REF")
    helper = helper_image()
    if helper == HELPER_PLACEHOLDER or NOT_CONFIGURED in helper:
        raise UsageError(f"the Web UI's helper image is not configured ({helper})",
                         "set `registry` in images/images.toml to your Artifact Registry path "
                         "and push gpuctl-helper there (see images/README.md)")
    return image
