"""`gpuctl up --gpu A100:2`: a profile made on the spot for a shape no bundled profile names.

The machine is the smallest type in the catalog that carries that many of that GPU (built in,
or attachable on N1); local NVMe is what the type bundles, else the smallest scratch count it
takes; driver, CUDA, Python and the image come from a bundled profile with the same GPU (the
versions that GPU needs), else from the default profile.
"""

from __future__ import annotations

from gpuctl_infra.catalog import GPUS, machines_for

from .errors import ProfileError
from .profiles import Profile

MAX_GPUS = 16


def gpu_names() -> dict[str, str]:
    """What a user may type for each GPU, lowercase: its GCE name (nvidia-tesla-a100), its name
    with memory (a100-40gb) and without (a100; the smallest-memory variant wins a tie)."""
    names: dict[str, str] = {}
    by_memory = sorted(GPUS.items(), key=lambda item: item[1].display)
    for key, gpu in by_memory:
        words = gpu.display.lower().split()
        bare = "-".join(w for w in words if not w.endswith("gb"))
        names.setdefault(bare, key)
        names["-".join(words)] = key
        names[key] = key
    return names


def parse_gpu(text: str) -> tuple[str, int]:
    """'A100:2' -> ('nvidia-tesla-a100', 2); the count defaults to 1."""
    name, _, count_text = text.strip().partition(":")
    key = gpu_names().get(name.strip().lower().replace(" ", "-"))
    if key is None:
        known = ", ".join(sorted({k for k in gpu_names() if not k.startswith("nvidia")}))
        raise ProfileError(f"unknown GPU '{name[:40]}'", f"use one of: {known} (e.g. --gpu A100:2)")
    if count_text and not (count_text.isascii() and count_text.isdigit()):
        raise ProfileError(f"GPU count '{count_text[:10]}' is not a number", "write NAME:COUNT, e.g. --gpu L4:4")
    count = int(count_text) if count_text else 1
    if not 1 <= count <= MAX_GPUS:
        raise ProfileError(f"{count} GPUs is out of range", f"ask for 1 to {MAX_GPUS}")
    return key, count


def adhoc_profile(profiles: dict[str, Profile], text: str, *, spot: bool, flex_start: bool) -> Profile:
    gpu, count = parse_gpu(text)
    machines = machines_for(gpu, count)
    display = GPUS[gpu].display
    if not machines:
        counts = sorted({m.builtin_gpu_count for m in machines_for_any(gpu)}
                        | {c for m in machines_for_any(gpu) for c in m.attachable_gpus.get(gpu, ())})
        raise ProfileError(f"no machine type carries {count}x {display}",
                           f"ask for {', '.join(map(str, counts)) or 'another GPU'} (e.g. --gpu {text.split(':')[0]}:{counts[0] if counts else 1})")
    machine = machines[0]
    base = next((p for p in profiles.values() if p.gpu_type == gpu), None) or next(iter(profiles.values()))
    attached = machine.builtin_gpu is None
    nvme = 0 if machine.bundled_local_ssd else min((c for c in machine.local_ssd_counts if c), default=0)
    model = "flex" if flex_start else "spot" if spot else "ondemand"
    name = f"{gpu_names_short(gpu)}x{count}-{model}"[:31]
    return base.model_copy(update={
        "name": name, "description": f"{count}x {display} on {machine.name} (ad hoc, from --gpu)",
        "machine_type": machine.name, "gpu": gpu if attached else None,
        "gpu_count": count if attached else 0, "nvme_count": nvme, "spot": spot and not flex_start,
        "flex_start": flex_start, "region": None, "zones": None})


def machines_for_any(gpu: str) -> list:
    from gpuctl_infra.catalog import MACHINES

    return [m for m in MACHINES.values() if m.builtin_gpu == gpu or gpu in m.attachable_gpus]


def gpu_names_short(gpu: str) -> str:
    words = GPUS[gpu].display.lower().split()
    return "-".join(w for w in words if not w.endswith("gb"))
