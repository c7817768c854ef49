"""`--pools`: which GPU node pools a cluster gets, in one short string.

    l4                    one L4 pool, up to --max-nodes nodes
    l4:3,t4               L4 up to 3 nodes, T4 up to --max-nodes
    a100@a2-highgpu-2g:1  an A100 pool on a 2-GPU machine, at most 1 node

Grammar: items separated by commas; an item is GPU[@MACHINE][:MAX]. GPU is a short name (t4,
l4, a100) or the GKE accelerator type (nvidia-l4). Only syntax is checked here; whether the
machine fits the GPU, the zone has it and MAX is in range are GKE rules (gke_rules.py), so
every way of building a spec gets the same checks and hints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpuctl_infra.gke_spec import ACCELERATORS, BY_GPU

from ..errors import UsageError

_MACHINE_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_EXAMPLE = "e.g. --pools l4, --pools l4:2,t4 or --pools a100@a2-highgpu-2g:1"


@dataclass(frozen=True)
class PoolRequest:
    short: str  # t4, l4, a100
    max_nodes: int | None = None  # None: the --max-nodes default
    machine: str | None = None  # None: the GPU's default machine type

    def text(self) -> str:
        return (self.short + (f"@{self.machine}" if self.machine else "")
                + (f":{self.max_nodes}" if self.max_nodes is not None else ""))


def parse_pools(text: str) -> list[PoolRequest]:
    """Parse a --pools value; raise UsageError (one line, with a hint) on anything malformed."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise UsageError(f"--pools {text!r} has an empty item", _EXAMPLE)
    found = [_parse_item(item) for item in items]
    seen: set[str] = set()
    for request in found:
        if request.short in seen:
            raise UsageError(f"--pools names {request.short} twice",
                             "one pool per GPU type; give it a larger :MAX instead")
        seen.add(request.short)
    return found


def format_pools(requests: list[PoolRequest]) -> str:
    return ",".join(r.text() for r in requests)


def _parse_item(item: str) -> PoolRequest:
    head, colon, max_text = item.partition(":")
    gpu_text, at, machine = head.partition("@")
    short = _short_name(gpu_text.strip().lower())
    max_nodes = None
    if colon:
        max_text = max_text.strip()
        if not max_text.isascii() or not max_text.isdigit() or len(max_text) > 4:
            raise UsageError(f"--pools item {item!r}: {max_text!r} is not a node count",
                             f"write GPU:MAX with MAX a whole number, {_EXAMPLE}")
        max_nodes = int(max_text)
    if at:
        machine = machine.strip().lower()
        if not _MACHINE_RE.fullmatch(machine):
            raise UsageError(f"--pools item {item!r}: {machine!r} is not a machine type",
                             "write GPU@MACHINE, e.g. l4@g2-standard-16")
    return PoolRequest(short, max_nodes, machine if at else None)


def _short_name(gpu: str) -> str:
    if gpu in ACCELERATORS:
        return gpu
    if gpu in BY_GPU:
        return BY_GPU[gpu].short
    raise UsageError(f"--pools: {gpu!r} is not a GPU gpuctl runs on GKE",
                     f"use {', '.join(ACCELERATORS)} ({_EXAMPLE})")
