"""`gpuctl up --gpu NAME[:COUNT]`: an ad hoc shape without a profile."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gpuctl.adhoc import adhoc_profile, gpu_names, parse_gpu
from gpuctl.cli.main import cli
from gpuctl.errors import ProfileError, UsageError
from gpuctl.plan import UpOptions, plan_vm
from gpuctl_infra.catalog import GPUS, MACHINES


def instance_inputs(plan) -> dict:
    return next(r.inputs for r in plan.resources if r.type.endswith("instance:Instance"))


def test_built_in_gpus_pick_the_smallest_type_that_carries_them(ctx):
    plan = plan_vm(ctx, UpOptions(profile=None, gpu="A100:2"))
    inputs = instance_inputs(plan)
    assert inputs["machineType"] == "a2-highgpu-2g" and "guestAccelerators" not in inputs
    assert plan.profile.spot and plan.profile.gpu_total == 2


def test_attached_gpus_on_n1_on_demand(ctx):
    plan = plan_vm(ctx, UpOptions(profile=None, gpu="t4:2", on_demand=True))
    inputs = instance_inputs(plan)
    assert inputs["machineType"].startswith("n1-")
    assert inputs["guestAccelerators"] == [{"type": "nvidia-tesla-t4", "count": 2}]
    assert not plan.profile.spot and inputs["scheduling"]["provisioningModel"] == "STANDARD"


def test_versions_come_from_a_profile_with_the_same_gpu(ctx):
    b200 = adhoc_profile(ctx.profiles, "B200:8", spot=True, flex_start=False)
    assert (b200.driver, b200.cuda) == (ctx.profiles["b200x8-spot"].driver, ctx.profiles["b200x8-spot"].cuda)


@pytest.mark.parametrize("text, words", [
    ("A100:3", "no machine type carries 3x A100"),
    ("Z9", "unknown GPU"),
    ("L4:x", "not a number"),
    ("L4:０", "not a number"),
    ("L4:99", "out of range"),
])
def test_shapes_that_do_not_exist_are_refused(text, words):
    with pytest.raises(ProfileError, match=words):
        parse_gpu(text) if "unknown" in words or "number" in words or "range" in words \
            else adhoc_profile({}, text, spot=True, flex_start=False)


def test_every_gpu_count_the_catalog_sells_is_reachable():
    for machine in MACHINES.values():
        if machine.builtin_gpu and GPUS.get(machine.builtin_gpu):
            gpu, count = parse_gpu(f"{machine.builtin_gpu}:{machine.builtin_gpu_count}")
            assert gpu == machine.builtin_gpu and count == machine.builtin_gpu_count
    assert gpu_names()["a100"] == "nvidia-tesla-a100" and gpu_names()["a100-80gb"] == "nvidia-a100-80gb"


def test_cli_refuses_a_profile_and_a_gpu_together_and_neither():
    both = CliRunner().invoke(cli, ["up", "a100-spot", "--gpu", "A100:2", "--dry-run"])
    neither = CliRunner().invoke(cli, ["up", "--dry-run"])
    assert both.exit_code == neither.exit_code == 2
    assert both.stderr.startswith("error: a profile and --gpu") and "gpuctl up --gpu" in neither.stderr


def test_on_demand_needs_gpu(ctx):
    with pytest.raises(UsageError, match="--on-demand goes with --gpu"):
        plan_vm(ctx, UpOptions(profile="a100-spot", on_demand=True))
