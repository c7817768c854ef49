"""The figures a user asks of a run: is loss going down, when will it finish, what will it cost
by then, and will a guard kill it first. Pure functions of a Progress, a price and guards."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .progress import Progress

EMA_BETA = 0.8  # smoothing over roughly the last five logged losses
TREND_MIN_POINTS = 5
TREND_THRESHOLD = 0.01  # a 1% change of the smoothed loss counts as a trend


@dataclass(frozen=True)
class Guard:
    """Something that ends the machine (and the run) at a known time."""

    kind: str  # "run limit" | "termination time" | "daily stop" | "shutdown cron"
    seconds_left: float
    action: str  # "deletes the VM" | "stops the VM" | "powers the host off"
    fix: str | None = None  # a command with {hours} to fill in, or advice

    def as_dict(self) -> dict:
        return {"kind": self.kind, "seconds_left": round(self.seconds_left, 1),
                "action": self.action, "fix": self.fix}


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def smoothed(values: list[float], beta: float = EMA_BETA) -> float | None:
    """Bias-corrected exponential moving average of the finite values (None when none are)."""
    avg, weight = 0.0, 0.0
    for value in values:
        if value is None or not math.isfinite(value):
            continue
        avg = beta * avg + (1 - beta) * value
        weight = beta * weight + (1 - beta)
    if weight == 0:
        return None
    result = avg / weight
    return result if math.isfinite(result) else None


def trend(values: list[float]) -> str | None:
    """'down', 'flat' or 'up': the smoothed loss now against a quarter of the points ago."""
    clean = [v for v in values if v is not None and math.isfinite(v)]
    if len(clean) < TREND_MIN_POINTS:
        return None
    back = max(1, len(clean) // 4)
    before, now = smoothed(clean[:-back]), smoothed(clean)
    if before is None or now is None:
        return None
    scale = max(abs(before), 1e-12)
    change = (now - before) / scale
    if not math.isfinite(change):
        return None
    if change < -TREND_THRESHOLD:
        return "down"
    if change > TREND_THRESHOLD:
        return "up"
    return "flat"


def eta_seconds(p: Progress, since_update: float = 0.0) -> float | None:
    """Seconds left: tqdm's own estimate, else the step rate times the steps left. The
    estimate was printed `since_update` seconds ago; that much of it has passed since."""
    if p.finished:
        return 0.0
    left = finite(p.remaining_seconds)
    if left is None and p.step is not None and p.total_steps and finite(p.seconds_per_step):
        left = max(0, p.total_steps - p.step) * p.seconds_per_step
    if left is None:
        return None
    left = max(0.0, left - max(0.0, since_update))
    return left if math.isfinite(left) else None


def hours_text(seconds: float) -> str:
    """'~9 h', '~2.5 h', '~40 min': how the warning speaks."""
    hours = seconds / 3600
    if hours < 1:
        return f"~{max(1, round(seconds / 60))} min"
    if hours < 10:
        text = f"{hours:.1f}".rstrip("0").rstrip(".")
        return f"~{text} h"
    return f"~{round(hours)} h"


def extra_hours(eta: float, left: float) -> int:
    """Hours to add so the run fits with half an hour to spare."""
    return max(1, math.ceil((eta - left) / 3600 + 0.5))


def guard_warning(eta: float | None, guards: list[Guard]) -> tuple[Guard | None, str | None]:
    """The guard that fires first, and a warning when it fires before the run ends."""
    if not guards:
        return None, None
    first = min(guards, key=lambda g: g.seconds_left)
    if eta is None or eta <= first.seconds_left:
        return first, None
    text = (f"needs {hours_text(eta)}, the {'host' if 'host' in first.action else 'VM'} is "
            f"capped at {hours_text(first.seconds_left)} ({first.kind}, then it {first.action})")
    if first.fix:
        text += ": " + first.fix.format(hours=extra_hours(eta, first.seconds_left))
    return first, text


def figures(p: Progress, *, price_per_hour: float | None = None, guards: list[Guard] = (),
            run_seconds: float | None = None, since_update: float = 0.0,
            running: bool = True) -> dict:
    """Everything `gpuctl jobs` and `gpuctl progress` show for one run, JSON-ready (NaN and
    infinity become None; `loss_finite` says when the latest loss was not a number)."""
    losses = [point[1] for point in p.losses]
    eta = eta_seconds(p, since_update if running else 0.0) if running or p.finished else None
    elapsed = run_seconds if run_seconds is not None else finite(p.elapsed_seconds)
    price = finite(price_per_hour)
    cost_so_far = None if price is None or elapsed is None else elapsed / 3600 * price
    cost_to_complete = None if price is None or eta is None else eta / 3600 * price
    guard, warning = guard_warning(eta, list(guards)) if running else (None, None)
    warnings = [warning] if warning else []
    if p.loss is not None and not math.isfinite(p.loss):
        warnings.append(f"loss is {p.loss} at step {p.step}: the run may have diverged")
    if p.overflows and p.loss_scale is not None and p.loss_scale < 1:
        warnings.append(f"DeepSpeed loss scale fell to {p.loss_scale:g} after {p.overflows} "
                        "overflows: fp16 is underflowing; try bf16")
    evals = [point[1] for point in p.eval_losses if math.isfinite(point[1])]
    percent = None
    if p.step is not None and p.total_steps:
        percent = min(100.0, 100.0 * p.step / p.total_steps)
    return {
        "step": p.step,
        "total_steps": p.total_steps,
        "percent": None if percent is None else round(percent, 1),
        "epoch": finite(p.epoch),
        "loss": finite(p.loss),
        "loss_finite": p.loss is None or math.isfinite(p.loss),
        "smoothed_loss": _round(smoothed(losses)),
        "loss_trend": trend(losses),
        "eval_loss": finite(p.eval_loss),
        "best_eval_loss": min(evals) if evals else None,
        "learning_rate": finite(p.learning_rate),
        "train_loss": finite(p.train_loss),
        "finished": p.finished,
        "elapsed_seconds": _round(elapsed, 1),
        "eta_seconds": _round(eta, 1),
        "seconds_per_step": _round(finite(p.seconds_per_step), 4),
        "price_per_hour_usd": price,
        "cost_so_far_usd": _round(cost_so_far, 4),
        "cost_to_complete_usd": _round(cost_to_complete, 4),
        "cost_total_usd": (None if cost_so_far is None or cost_to_complete is None
                           else _round(cost_so_far + cost_to_complete, 4)),
        "overflows": p.overflows,
        "loss_scale": finite(p.loss_scale),
        "guard": guard.as_dict() if guard else None,
        "warnings": warnings,
        "malformed_lines": p.malformed,
    }


def _round(value: float | None, digits: int = 6) -> float | None:
    value = finite(value)
    return None if value is None else round(value, digits)
