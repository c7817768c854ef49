"""Loss curves: a PNG drawn with matplotlib (train loss, eval loss with its points, and a mark
at each step whose loss was NaN or infinite), and a sparkline for the terminal.

matplotlib is the optional `plot` extra, imported only inside `figure`: `gpuctl progress` (which
uses the sparkline) and `gpuctl --help` stay fast, and an install without the extra still runs
everything else and says how to add it."""

from __future__ import annotations

import io
import math

from ..errors import GpuctlError

BLOCKS = "▁▂▃▄▅▆▇█"
EXTRA = "gpuctl-gcp[plot]"
EXTRA_HINT = f"pipx inject gpuctl-gcp matplotlib, or pip install '{EXTRA}'"
TRAIN, EVAL, BAD = "#1f77b4", "#e6641e", "#d62728"
NOT_FINITE = "loss NaN/inf"  # the legend label of the marks, and how tests find them


class MissingExtra(GpuctlError):
    """An optional extra is not installed."""


def sparkline(values: list[float], width: int = 40) -> str:
    """Block characters for the finite values, resampled to at most `width` buckets."""
    clean = [v for v in values if v is not None and math.isfinite(v)]
    if not clean:
        return ""
    if len(clean) > width:
        size = len(clean) / width
        clean = [sum(chunk) / len(chunk) for chunk in
                 (clean[int(i * size):max(int((i + 1) * size), int(i * size) + 1)]
                  for i in range(width))]
    low, high = min(clean), max(clean)
    span = high - low
    if span <= 0 or not math.isfinite(span):
        return BLOCKS[3] * len(clean)
    return "".join(BLOCKS[min(7, int((v - low) / span * 7.999))] for v in clean)


def _figure_class():
    try:
        # The object API, not pyplot: no global figure state and no GUI backend to pick.
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtra(f"plotting needs matplotlib, which comes with the {EXTRA} extra",
                           hint=EXTRA_HINT) from None
    return Figure


def _split(points: list[list[float]]) -> tuple[list[list[float]], list[float]]:
    """(finite [step, loss] points, steps whose loss was NaN or infinite)."""
    good = [p for p in points if all(math.isfinite(v) for v in p)]
    bad = [p[0] for p in points if math.isfinite(p[0]) and not math.isfinite(p[1])]
    return good, bad


def figure(train: list[list[float]], evals: list[list[float]], title: str = ""):
    """Loss against step as a matplotlib Figure; points are [step, loss]."""
    fig = _figure_class()(figsize=(8, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    (train, train_bad), (evals, eval_bad) = _split(train), _split(evals)
    if train:
        ax.plot(*zip(*train), color=TRAIN, linewidth=1.5, label="train loss",
                marker="." if len(train) < 60 else None)
    if evals:
        ax.plot(*zip(*evals), color=EVAL, linewidth=1.5, marker="o", markersize=5, label="eval loss")
    if train_bad or eval_bad:
        # At the foot of the axes (x in steps, y in axes fraction): a NaN has no height.
        ax.plot(sorted(train_bad + eval_bad), [0.02] * len(train_bad + eval_bad),
                transform=ax.get_xaxis_transform(), linestyle="none", marker="x", color=BAD,
                markersize=8, markeredgewidth=2, clip_on=False, label=NOT_FINITE)
    if not (train or evals or train_bad or eval_bad):
        ax.text(0.5, 0.5, "no loss logged yet", transform=ax.transAxes, ha="center", va="center",
                color="gray")
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(True, color="#e4e4e4")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right")
    return fig


def render_png(train: list[list[float]], evals: list[list[float]], title: str = "") -> bytes:
    """The figure as PNG bytes (800x450)."""
    buffer = io.BytesIO()
    figure(train, evals, title).savefig(buffer, format="png")
    return buffer.getvalue()
