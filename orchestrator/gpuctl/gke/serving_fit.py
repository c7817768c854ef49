"""Does a model fit the GPU it is asked to run on? Decided before anything is applied.

The size comes from the model's name (`Qwen2.5-0.5B-Instruct`, `Llama-3.1-8B`, `Mixtral-8x7B`,
`opt-125m`) or from `--params 8B`. Weights are served in fp16/bf16: 2 bytes per parameter.
vLLM takes `--gpu-memory-utilization` (default 0.9) of the GPU and needs, besides the weights,
room for the KV cache, activations and CUDA graphs; gpuctl asks for 20% of the weights and at
least 1 GB on top. GPU memory per accelerator comes from gpuctl's catalog
(gpuctl_infra.catalog, the GPU's `memory_gb`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError

BYTES_PER_PARAM = 2  # fp16 / bf16 weights
GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default share of the GPU (--gpu-memory-utilization)
HEADROOM_SHARE = 0.2  # KV cache, activations, CUDA graphs: a share of the weights...
HEADROOM_MIN_GB = 1.0  # ...and never less than this
MAX_PARAMS = 2e12

_UNITS = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
# A size is digits with an optional fraction and a unit, standing alone between separators:
# '-8B-', '_0.5b', '8x7B' (experts x size); 'A3B' (active parameters) and '4k' are not sizes.
_SIZE = re.compile(r"(?<![A-Za-z0-9.])(?:(\d{1,3})x)?(\d{1,4}(?:\.\d{1,3})?)([mbtMBT])(?![A-Za-z0-9])")
_PARAMS_FLAG = re.compile(r"^\s*(\d{1,6}(?:\.\d{1,3})?)\s*([kmbtKMBT])?\s*$")


@dataclass(frozen=True)
class Fit:
    accelerator: str
    gpu_memory_gb: float
    params: float
    weights_gb: float
    needed_gb: float
    usable_gb: float

    @property
    def fits(self) -> bool:
        return self.needed_gb <= self.usable_gb

    @property
    def reason(self) -> str:
        size = params_text(self.params)
        verdict = "fits" if self.fits else "does not fit"
        return (f"{size} fp16 ({self.weights_gb:.1f} GB of weights + "
                f"{self.needed_gb - self.weights_gb:.1f} GB for the KV cache) {verdict} "
                f"{gpu_name(self.accelerator)} ({self.gpu_memory_gb:g} GB, "
                f"{self.usable_gb:.1f} GB usable at {GPU_MEMORY_UTILIZATION:.0%})")

    def as_dict(self) -> dict:
        return {"accelerator": self.accelerator, "gpu_memory_gb": self.gpu_memory_gb,
                "params": self.params, "weights_gb": round(self.weights_gb, 2),
                "needed_gb": round(self.needed_gb, 2), "usable_gb": round(self.usable_gb, 2),
                "fits": self.fits, "reason": self.reason}


def params_text(params: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if params >= size:
            return f"{params / size:g}{unit}"
    return f"{params:g}"


def params_from_name(model: str) -> float | None:
    """The parameter count a model's name states, or None. For a path (an HF id's `org/name`,
    a gs:// location), the last part that states one; one part stating two different sizes is
    ambiguous (None). A size no model has (0, over MAX_PARAMS: `0T`, a version) is no size."""
    for part in reversed([p for p in re.split(r"[/]", model) if p]):
        sizes = {v for v in (_size(m) for m in _SIZE.finditer(part)) if 0 < v <= MAX_PARAMS}
        if len(sizes) == 1:
            return sizes.pop()
        if len(sizes) > 1:
            return None
    return None


def _size(match: re.Match) -> float:
    experts = int(match.group(1)) if match.group(1) else 1
    return experts * float(match.group(2)) * _UNITS[match.group(3).lower()]


def parse_params(text: str) -> float:
    """`--params`: '8B', '0.5b', '125M', '7000000000'."""
    match = _PARAMS_FLAG.match(text or "")
    if not match:
        raise UsageError(f"--params {text!r} is not a parameter count",
                         "write it like 8B, 0.5B or 125M")
    value = float(match.group(1)) * (_UNITS[match.group(2).lower()] if match.group(2) else 1)
    if not 1e6 <= value <= MAX_PARAMS:
        raise UsageError(f"--params {text} is outside 1M..2T", "write it like 8B, 0.5B or 125M")
    return value


def gpu_memory_gb(accelerator: str) -> float:
    from gpuctl_infra.catalog import GPUS

    gpu = GPUS.get(accelerator)
    if gpu is None:
        raise UsageError(f"'{accelerator}' is not in gpuctl's GPU catalog",
                         "use one of: nvidia-tesla-t4, nvidia-l4, nvidia-tesla-a100, ...")
    return float(gpu.memory_gb)


def gpu_name(accelerator: str) -> str:
    from gpuctl_infra.catalog import GPUS

    gpu = GPUS.get(accelerator)
    return gpu.short if gpu and gpu.short else accelerator


def check_fit(model: str, accelerator: str, params: float | None = None) -> Fit:
    """The fit of `model` (its size from `params`, else its name) on one `accelerator`.
    Raises UsageError when the size is unknown; the caller refuses a Fit that does not fit."""
    if params is None:
        params = params_from_name(model)
    if params is None:
        raise UsageError(f"cannot tell the size of {model} from its name",
                         "pass --params with its parameter count, e.g. --params 8B")
    memory = gpu_memory_gb(accelerator)
    weights = params * BYTES_PER_PARAM / 1e9
    needed = weights + max(HEADROOM_MIN_GB, HEADROOM_SHARE * weights)
    return Fit(accelerator, memory, params, weights, needed, memory * GPU_MEMORY_UTILIZATION)


def smallest_fitting(params: float, choices: tuple[str, ...]) -> str | None:
    """The GPU with the least memory among `choices` that holds `params`."""
    fitting = []
    for accelerator in choices:
        try:
            fit = check_fit("", accelerator, params)
        except UsageError:
            continue
        if fit.fits:
            fitting.append((fit.gpu_memory_gb, accelerator))
    return min(fitting)[1] if fitting else None

