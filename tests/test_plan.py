"""The offline plan: every bundled profile's plan satisfies the GCE rules and the guard rule."""

from __future__ import annotations

import pytest

from gpuctl.errors import GuardError, RuleViolation, UsageError
from gpuctl.plan import UpOptions, plan_to_dict, plan_vm
from gpuctl_infra import rules
from gpuctl_infra.catalog import GPUS, REGIONS

from .conftest import FIXED_NOW


def bundled_profile_regions():
    from gpuctl.profiles import build_profiles

    for name, profile in sorted(build_profiles().items()):
        for region in REGIONS:
            if GPUS[profile.gpu_type].zones_in(region) and profile.region in (None, region):
                yield name, region


@pytest.mark.parametrize("profile,region", list(bundled_profile_regions()))
def test_every_bundled_profile_plan_obeys_gce_and_guard_rules(ctx, profile, region):
    plan = plan_vm(ctx, UpOptions(profile=profile, region=region))
    assert plan.zones, "a plan always has zones to try"
    for zone in plan.zones:
        assert rules.violations(_at(plan.spec, zone)) == []
    assert plan.guards.server_side, "the default config TTL is a server-side guard"
    assert plan.worst_case["bounded"] is True
    instance = [r for r in plan.resources if r.type == "gcp:compute/instance:Instance"]
    assert len(instance) == 1
    sched = instance[0].inputs["scheduling"]
    assert sched["maxRunDuration"] == {"seconds": 8 * 3600}  # the config default ttl = 8h
    assert sched["instanceTerminationAction"] == "DELETE"
    assert sched["onHostMaintenance"] == "TERMINATE"
    assert sched["provisioningModel"] == ("SPOT" if plan.profile.spot else "STANDARD")
    assert plan.hourly.running > 0


def _at(spec, zone):
    from dataclasses import replace

    return replace(spec, zone=zone)


def test_a100_spot_plan_json_shape(ctx):
    data = plan_to_dict(plan_vm(ctx, UpOptions(profile="a100-spot")), ctx)
    assert data["profile"] == "a100-spot"
    assert data["name"] == "alice-a100-spot"
    types = sorted(r["type"] for r in data["resources"])
    assert types == ["gcp:compute/firewall:Firewall", "gcp:compute/instance:Instance", "gpuctl:vm:GpuVm"]
    for res in data["resources"]:
        assert set(res) == {"type", "name", "inputs"}
    assert [g["kind"] for g in data["guards"]] == ["max_run_duration", "idle_watchdog"]
    assert data["cost"]["hourly_usd"] > 0
    assert [row["period"] for row in data["cost"]["forgotten"]] == ["1 day", "1 week", "30 days"]
    day = data["cost"]["forgotten"][0]
    # 8 h of running, then deleted: the guarded day costs a third of an unguarded one.
    assert day["guarded_usd"] == pytest.approx(day["running_usd"] / 3, rel=0.01)
    assert [s["id"] for s in data["provisioning"]][:3] == ["connect", "facts", "nvme"]
    assert data["zones_to_try"] == ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]


def test_budget_becomes_max_run_duration(ctx):
    plan = plan_vm(ctx, UpOptions(profile="a100-spot", budget="20"))
    expected = int(20 / plan.hourly.running * 3600)
    assert plan.spec.max_run_seconds == expected
    assert plan.worst_case["running_usd"] == pytest.approx(20, abs=0.01)


def test_budget_in_display_currency(config_file):
    from gpuctl.context import load_context

    config_file('currency = "JPY"\nfx_rate = 150\n')
    ctx = load_context(now=FIXED_NOW)
    plan = plan_vm(ctx, UpOptions(profile="t4-spot", budget="3000JPY"))
    assert plan.budget_usd == pytest.approx(20)


def test_daily_stop_in_tokyo_adds_schedule_and_cron(ctx):
    plan = plan_vm(ctx, UpOptions(profile="t4-spot", region="asia-northeast1", ttl="none",
                                  stop_at="06:00", time_zone="Asia/Tokyo"))
    kinds = {g.kind: g for g in plan.guards.guards}
    assert set(kinds) == {"instance_schedule", "shutdown_cron", "idle_watchdog"}
    # FIXED_NOW is 12:00 in Tokyo: the next 06:00 is 18 hours away.
    assert kinds["instance_schedule"].fires_in_seconds == 18 * 3600
    assert kinds["shutdown_cron"].details["cron"] == "0 6 * * * /sbin/shutdown -h now"
    # A schedule only stops the VM: the boot disk keeps billing afterwards.
    worst = plan.worst_case
    assert worst["then"] == "stopped" and worst["bounded"] is False
    assert worst["then_usd_per_day"] == pytest.approx(24 * plan.hourly.stopped, abs=0.01)
    assert any(r.type.endswith("ResourcePolicy") for r in plan.resources)
    assert any(s.id == "shutdown-cron" for s in plan.steps)


def test_no_server_side_guard_is_refused(ctx):
    with pytest.raises(GuardError) as err:
        plan_vm(ctx, UpOptions(profile="a100-spot", ttl="none"))
    assert "--unguarded" in err.value.hint


def test_unguarded_opt_out_is_explicit(ctx):
    plan = plan_vm(ctx, UpOptions(profile="a100-spot", ttl="none", unguarded=True))
    assert plan.worst_case["bounded"] is False
    assert "maxRunDuration" not in plan.resources[-1].inputs["scheduling"]


def test_gpu_not_in_region_says_where_it_is(ctx):
    with pytest.raises(RuleViolation) as err:
        plan_vm(ctx, UpOptions(profile="a100-80-spot", region="asia-northeast1"))
    assert "us-central1" in err.value.hint


def test_zone_without_the_gpu_lists_zones_that_have_it(ctx):
    with pytest.raises(RuleViolation) as err:
        plan_vm(ctx, UpOptions(profile="h100-spot", zone="asia-northeast1-a"))
    assert "asia-northeast1-b" in err.value.hint


@pytest.mark.parametrize("options", [
    dict(zone="mars"), dict(zone="europe-west4-a"), dict(ttl="6"), dict(ttl="200d"),
    dict(budget="abc"), dict(budget="0.0001"), dict(budget="20", ttl="6h"),
    dict(until="tomorrow"), dict(until="2026-11-24T06:00"), dict(until="2020-01-01T00:00Z"),
    dict(stop_at="25:00"), dict(stop_at="06:00", time_zone="Mars/Base"),
])
def test_bad_options_raise_usage_errors_with_hints(ctx, options):
    with pytest.raises(UsageError) as err:
        plan_vm(ctx, UpOptions(profile="a100-spot", **options))
    assert err.value.hint


def test_until_sets_termination_time_instead_of_default_ttl(ctx):
    plan = plan_vm(ctx, UpOptions(profile="a100-spot", until="2026-11-24T06:00+09:00"))
    assert plan.spec.max_run_seconds is None
    assert plan.spec.termination_time == "2026-11-24T06:00:00+09:00"
    assert plan.guards.guards[0].fires_in_seconds == 18 * 3600


def test_profile_zones_from_config_are_tried_in_order(config_file):
    from gpuctl.context import load_context

    config_file('[profiles.a100-spot]\nzones = ["asia-northeast1-c", "asia-northeast1-a"]\n')
    plan = plan_vm(load_context(now=FIXED_NOW), UpOptions(profile="a100-spot"))
    assert plan.zones == ["asia-northeast1-c", "asia-northeast1-a"]
    assert plan.spec.zone == "asia-northeast1-c"
    assert plan.hourly.region == "asia-northeast1"


def test_configured_zone_without_the_gpu_is_refused(config_file):
    from gpuctl.context import load_context

    config_file('[profiles.a100-spot]\nzones = ["asia-northeast1-b"]\n')
    with pytest.raises(RuleViolation):
        plan_vm(load_context(now=FIXED_NOW), UpOptions(profile="a100-spot"))


def test_ssh_rule_uses_the_given_address(ctx):
    plan = plan_vm(ctx, UpOptions(profile="a100-spot", ssh_from="198.51.100.7"))
    fw = next(r for r in plan.resources if r.type.endswith("Firewall"))
    assert fw.inputs["sourceRanges"] == ["198.51.100.7/32"]


def test_ssh_rule_refuses_a_wide_range(ctx):
    with pytest.raises(UsageError, match="any address"):
        plan_vm(ctx, UpOptions(profile="a100-spot", ssh_from="0.0.0.0/0"))
    with pytest.raises(RuleViolation, match="256 addresses"):
        plan_vm(ctx, UpOptions(profile="a100-spot", ssh_from="198.51.100.0/24"))


def test_stop_at_alone_gets_a_run_limit_that_lets_the_stop_happen(ctx):
    # Reported: `up t4-spot --stop-at 06:00 --tz Asia/Tokyo` planned a stop the default 8 h limit pre-empted.
    from gpuctl.guards import seconds_until_clock

    plan = plan_vm(ctx, UpOptions(profile="t4-spot", region="asia-northeast1", stop_at="06:00",
                                  time_zone="Asia/Tokyo"), with_resources=False)
    until_stop = seconds_until_clock(plan.guards.daily_stop, ctx.now)
    assert plan.guards.max_run_seconds >= until_stop  # the stop fires first, the cap is still server-side
    exposure = plan.guards.exposure()
    assert until_stop == 18 * 3600  # 12:00 -> 06:00 in Tokyo: past the default 8 h limit
    assert plan.warnings and "run limit raised" in plan.warnings[0]
    assert exposure.after == "stopped" and exposure.running_hours == pytest.approx(until_stop / 3600)


def test_an_explicit_run_limit_shorter_than_the_stop_window_is_warned_with_the_fix(ctx):
    from gpuctl.guards import seconds_until_clock

    plan = plan_vm(ctx, UpOptions(profile="t4-spot", region="asia-northeast1", stop_at="06:00",
                                  time_zone="Asia/Tokyo", ttl="1m"), with_resources=False)
    until_stop = seconds_until_clock(plan.guards.daily_stop, ctx.now)
    assert until_stop > 60 and plan.guards.max_run_seconds == 60
    assert len(plan.warnings) == 1 and "the stop never fires" in plan.warnings[0] and "fix: --ttl" in plan.warnings[0]
    assert plan_to_dict(plan, ctx)["warnings"] == plan.warnings
