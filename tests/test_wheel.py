"""The wheel is the product: build the sdist and wheel, check them, install the wheel into a
fresh virtualenv outside the checkout, and run every offline command from an empty folder with
an empty HOME. Whatever gpuctl reads at run time must have travelled inside the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOG = REPO / "tests" / "data" / "logs" / "trainer_a100_lora.log"


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The `gpuctl` of a fresh virtualenv that has only the wheel (and its dependencies). The
    wheel is built from the sdist, as pip builds it: never from the checkout, whose ignored
    build/ may still hold files that were deleted since."""
    dist = tmp_path_factory.mktemp("dist")
    built = run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(REPO)])
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    checked = run([sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    venv = tmp_path_factory.mktemp("venv")
    assert run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    pip = run([str(venv / "bin" / "pip"), "install", "-q", str(wheels[0])], cwd=str(venv))
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    return venv / "bin" / "gpuctl"


@pytest.fixture
def outside(tmp_path) -> tuple[Path, dict]:
    """An empty working folder and an empty HOME, far from the checkout."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return work, env


def gpuctl(installed: Path, outside, *args: str) -> subprocess.CompletedProcess:
    work, env = outside
    return run([str(installed), *args], cwd=str(work), env=env)


def test_the_installed_wheel_does_not_import_from_the_checkout(installed, outside):
    work, env = outside
    found = run([str(installed.parent / "python"), "-c",
                 "import gpuctl, gpuctl_infra, gpuctl_k8s, gpuctl_images; "
                 "print(gpuctl.__file__, gpuctl_k8s.__file__, gpuctl_images.__file__)"],
                cwd=str(work), env=env)
    assert found.returncode == 0, found.stderr
    assert str(REPO) not in found.stdout and "site-packages" in found.stdout


@pytest.mark.parametrize("args, expect", [
    (["--version"], "gpuctl"),
    (["profiles"], "a100-spot"),
    (["cost", "a100-spot"], "local NVMe"),
    (["up", "a100-spot", "--dry-run"], "worst case"),
    (["gke", "up", "--dry-run"], "container.Cluster"),
    (["progress", str(LOG)], "loss"),
])
def test_offline_commands_work_from_the_wheel(installed, outside, args, expect):
    done = gpuctl(installed, outside, *args)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    assert expect in done.stdout
    assert "Traceback" not in done.stderr


def test_webui_plan_and_manifests_from_the_wheel(installed, outside):
    # The plan names public images pinned by digest; --manifests adds the kustomize base the
    # wheel carries (gpuctl_k8s), rendered with gpuctl's settings.
    args = ["webui", "up", "--model", "Qwen/Qwen2.5-0.5B-Instruct", "--dry-run"]
    plan = gpuctl(installed, outside, *args)
    assert plan.returncode == 0, plan.stdout[-1500:] + plan.stderr[-1500:]
    assert "nothing to build" in plan.stdout and "@sha256:" in plan.stdout
    assert "kind: Deployment" not in plan.stdout
    full = gpuctl(installed, outside, *args, "--manifests")
    assert full.returncode == 0, full.stdout[-1500:] + full.stderr[-1500:]
    assert "nothing to build" in full.stdout and "kind: Deployment" in full.stdout
    assert "Traceback" not in plan.stderr + full.stderr


def test_train_on_gke_from_the_wheel(installed, outside):
    work, _ = outside
    (work / "train.py").write_text("print('step 1')\n")
    (work / "job.yaml").write_text(textwrap.dedent("""\
        name: tiny
        command: python train.py
        image: python:3.12-slim
        accelerator: nvidia-l4
        """))
    train = gpuctl(installed, outside, "train", "--gke", "job.yaml", "--dry-run")
    assert train.returncode == 0, train.stdout[-1500:] + train.stderr[-1500:]
    assert "kind: Job" in train.stdout
    assert not any(p.name == "k8s" for p in work.iterdir()) and os.listdir(work)


def test_plot_without_the_extra_names_it_in_one_line(installed, outside):
    # This venv has the wheel without extras, as `pipx install gpuctl-gcp` gives it: matplotlib
    # is the `plot` extra, so `plot` must say how to add it (tests/test_runs_plot.py draws).
    work, env = outside
    plot = gpuctl(installed, outside, "plot", str(LOG), "-o", "loss.png")
    assert plot.returncode == 1 and not (work / "loss.png").exists()
    assert plot.stderr.startswith("error: plotting needs matplotlib") and plot.stderr.count("\n") == 1
    assert "(hint: pipx inject gpuctl-gcp matplotlib, or pip install 'gpuctl-gcp[plot]')" in plot.stderr
    extras = run([str(installed.parent / "python"), "-c", "import importlib.metadata as m; "
                  "print(m.metadata('gpuctl-gcp').get_all('Provides-Extra'))"], cwd=str(work), env=env)
    assert "'plot'" in extras.stdout, extras.stdout + extras.stderr  # the hint names a real extra
