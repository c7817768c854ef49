"""Loss plots (gpuctl/runs/plot.py): a real PNG drawn by matplotlib, with the eval points and a
mark at each NaN/inf loss in the figure; without the `plot` extra, `gpuctl plot` says how to
add it in one line; the sparkline needs nothing."""

from __future__ import annotations

import builtins
import io
import math
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
from click.testing import CliRunner

from gpuctl.cli.main import cli
from gpuctl.runs import plot

LOGS = Path(__file__).parent / "data" / "logs"
NAN = float("nan")
TRAIN = [[1, 2.5], [2, 2.1], [3, NAN], [4, 1.7], [5, float("inf")], [6, 1.4]]
EVALS = [[2, 2.3], [4, 1.9], [6, NAN]]


def lines_by_label(fig) -> dict:
    return {line.get_label(): line for line in fig.axes[0].get_lines()}


def test_png_is_a_real_image_with_content():
    image = matplotlib.image.imread(io.BytesIO(plot.render_png(TRAIN, EVALS, "run: loss")), format="png")
    assert image.shape[:2] == (450, 800)
    # Not a blank canvas: white background, plus the curves' colours and the axes' dark ink.
    pixels = image[..., :3].reshape(-1, 3)
    assert np.isclose(pixels, 1.0).all(axis=1).mean() > 0.5
    assert (pixels.max(axis=1) < 0.3).sum() > 500  # labels, ticks and frame
    assert len(np.unique((pixels * 255).astype(int), axis=0)) > 20


def test_figure_has_axes_labels_and_both_series():
    fig = plot.figure(TRAIN, EVALS, "run: loss")
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("step", "loss", "run: loss")
    lines = lines_by_label(fig)
    assert list(lines["train loss"].get_xdata()) == [1, 2, 4, 6]  # the finite points only
    assert list(lines["train loss"].get_ydata()) == [2.5, 2.1, 1.7, 1.4]
    assert list(lines["eval loss"].get_xdata()) == [2, 4] and lines["eval loss"].get_marker() == "o"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train loss", "eval loss", plot.NOT_FINITE]
    assert ax.get_xticklabels() and ax.get_yticklabels()


def test_nan_and_inf_losses_are_marked_at_their_steps():
    lines = lines_by_label(plot.figure(TRAIN, EVALS))
    marks = lines[plot.NOT_FINITE]
    assert list(marks.get_xdata()) == [3, 5, 6] and marks.get_marker() == "x"
    assert marks.get_linestyle() == "None"
    assert plot.NOT_FINITE not in lines_by_label(plot.figure([[1, 2.0]], []))


def test_an_empty_run_says_so():
    fig = plot.figure([], [], "empty")
    assert [t.get_text() for t in fig.axes[0].texts] == ["no loss logged yet"]
    assert fig.axes[0].get_legend() is None
    assert matplotlib.image.imread(io.BytesIO(plot.render_png([], [])), format="png").shape[:2] == (450, 800)


def test_cli_plot_writes_the_png_of_a_log(tmp_path):
    out = tmp_path / "loss.png"
    result = CliRunner().invoke(cli, ["plot", str(LOGS / "trainer_a100_lora.log"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert matplotlib.image.imread(str(out)).shape[:2] == (450, 800)
    assert "train loss" in result.stdout and "wrote" in result.stdout


def test_missing_matplotlib_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    out = tmp_path / "loss.png"
    result = CliRunner().invoke(cli, ["plot", str(LOGS / "trainer_a100_lora.log"), "-o", str(out)])
    assert result.exit_code == 1 and not out.exists()
    assert result.stderr == ("error: plotting needs matplotlib, which comes with the gpuctl-gcp[plot] "
                             "extra (hint: pipx inject gpuctl-gcp matplotlib, or pip install "
                             "'gpuctl-gcp[plot]')\n")
    assert "Traceback" not in result.output


def test_sparkline_needs_no_matplotlib():
    code = ("import sys; from gpuctl.runs.plot import sparkline; "
            "print(sparkline([3, 2, float('nan'), 1]), 'matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["█▄▁", "False"], done.stderr
    assert plot.sparkline([]) == "" and plot.sparkline([1.0, 1.0]) == "▄▄"
    assert len(plot.sparkline([math.sin(i / 9) for i in range(500)], width=40)) == 40
