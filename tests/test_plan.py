"""The offline plan: every bundled profile's plan satisfies the GCE rules and the guard rule."""

from __future__ import annotations

import pytest

from gpuctl.errors import GuardError, RuleViolation, UsageError
from gpuctl.plan import UpOptions, plan_to_dict, plan_vm
from gpuctl_infra import rules
from gpuctl_infra.catalog import REGIONS

from .conftest import FIXED_NOW


def bundled_profile_regions():
    """Every bundled profile in every region the catalog lists its machine in."""
    from gpuctl.plan import zones_for
    from gpuctl.profiles import build_profiles

    for name, profile in sorted(build_profiles().items()):
        for region in REGIONS:
            if zones_for(profile, region, profile.model) and profile.region in (None, region):
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
    assert plan.spec.region == region and plan.region_reason.startswith(region)


def test_the_parametrized_plans_cover_every_region_of_the_catalog():
    covered = {region for _, region in bundled_profile_regions()}
    # asia-south2 lists only 8x H200 with no spot price (the snapshot's gap), and A3 Ultra is
    # sold as spot or flex-start only: no bundled profile can run there as it is.
    assert set(REGIONS) - covered == {"asia-south2"}
    assert len(covered) >= 25


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
    data = plan_to_dict(plan, ctx)
    assert data["budget"] == "¥3,000 ($20.00)"  # echoed back in the currency it was given in
    assert data["worst_case"]["summary"].startswith("at most ")
    assert "¥3,000 ($20.00)" in data["worst_case"]["summary"]


# --- the new shapes: GPU counts, local SSD (RAID0), accelerators only where the type needs them

NEW_SHAPES = {  # profile: (machine, GPUs, local SSDs the VM has, scratch disks in the request)
    "l4x4-spot": ("g2-standard-48", 4, 4, 4),
    "h100x8-spot": ("a3-highgpu-8g", 8, 16, 0),
    "h200x8-spot": ("a3-ultragpu-8g", 8, 32, 0),
    "b200x8-spot": ("a4-highgpu-8g", 8, 32, 0),
    "t4-spot": ("n1-highmem-8", 1, 1, 1),
}


@pytest.mark.parametrize("name", sorted(NEW_SHAPES))
def test_new_profile_plans_carry_their_gpus_and_local_ssd(ctx, name):
    machine, gpus, ssds, scratch = NEW_SHAPES[name]
    plan = plan_vm(ctx, UpOptions(profile=name, any_region=True))
    assert plan.spec.machine_type == machine
    assert plan.profile.gpu_total == gpus and plan.profile.local_ssd_total == ssds
    instance = next(r for r in plan.resources if r.type == "gcp:compute/instance:Instance")
    attached = instance.inputs.get("guestAccelerators") or []
    if machine.startswith("n1-"):  # N1 needs its GPU attached; A2/A3/A4/G2 have theirs built in
        assert attached == [{"type": "nvidia-tesla-t4", "count": 1}]
    else:
        assert attached == []
    assert len(instance.inputs.get("scratchDisks") or []) == scratch
    nvme = next(s for s in plan.steps if s.id == "nvme")
    assert ("RAID0" in nvme.summary or "raid" in nvme.summary.lower()) == (ssds > 1)


def test_a_profile_whose_type_is_in_no_zone_of_the_data_is_refused_with_the_reason(ctx):
    with pytest.raises(RuleViolation) as err:  # G4 has no rows in the bundled snapshot
        plan_vm(ctx, UpOptions(profile="rtxpro-spot", any_region=True))
    assert "g4-standard-48" in err.value.message and "no zone" in err.value.message


def test_any_region_chooses_the_cheapest_zone_and_says_why(ctx):
    plan = plan_vm(ctx, UpOptions(profile="l4-spot", any_region=True))
    prices = [c.hourly_usd for c in plan.choices]
    assert prices == sorted(prices) and len({c.region for c in plan.choices}) > 5
    assert plan.spec.zone == plan.choices[0].zone
    assert plan.hourly.running == pytest.approx(prices[0])
    assert "cheapest of" in plan.region_reason and plan.spec.region in plan.region_reason


def test_region_patterns_and_config_regions_limit_the_choice(ctx, config_file):
    from gpuctl.context import load_context

    plan = plan_vm(ctx, UpOptions(profile="t4-spot", region="europe-*"))
    assert {c.region for c in plan.choices} and all(c.region.startswith("europe-") for c in plan.choices)
    config_file('regions = ["us-east1", "asia-northeast1"]\n')
    plan = plan_vm(load_context(now=FIXED_NOW), UpOptions(profile="t4-spot"))
    assert {c.region for c in plan.choices} == {"us-east1", "asia-northeast1"}


def test_a_flex_start_plan_has_its_documented_scheduling(ctx):
    plan = plan_vm(ctx, UpOptions(profile="a100-spot", flex_start=True, ttl="2d"))
    assert plan.spec.provisioning_model == "FLEX_START" and not plan.spec.spot
    instance = next(r for r in plan.resources if r.type == "gcp:compute/instance:Instance")
    sched = instance.inputs["scheduling"]
    assert sched["provisioningModel"] == "FLEX_START"
    assert sched["maxRunDuration"] == {"seconds": 2 * 86400}
    assert sched["instanceTerminationAction"] == "DELETE"
    assert sched["automaticRestart"] is False and sched["preemptible"] is False
    assert plan.hourly.model == "FLEX_START" and plan.hourly.notes  # says the rate is on-demand's


@pytest.mark.parametrize("options,words", [
    (dict(profile="a100-spot", flex_start=True, ttl="8d"), "7 days"),
    (dict(profile="a100-spot", flex_start=True, ttl="none", unguarded=True), "run duration"),
    (dict(profile="a100-spot", flex_start=True, stop_at="06:00", ttl="1d"), "schedule"),
    (dict(profile="t4-spot", flex_start=True), "n1-highmem-8 takes no flex-start"),
])
def test_flex_start_rules_refuse_what_google_refuses(ctx, options, words):
    with pytest.raises((RuleViolation, UsageError)) as err:
        plan_vm(ctx, UpOptions(**options))
    assert words.lower() in (err.value.message + err.value.hint).lower()


def test_fallback_orders_models_and_drops_those_the_guards_do_not_fit(ctx):
    plan = plan_vm(ctx, UpOptions(profile="a100-spot", fallback="spot,flex-start,on-demand"))
    models = [c.model for c in plan.choices]
    assert models == sorted(models, key=["SPOT", "FLEX_START", "STANDARD"].index)
    assert set(models) == {"SPOT", "FLEX_START", "STANDARD"}
    plan = plan_vm(ctx, UpOptions(profile="a100-spot", fallback="spot,flex-start", ttl="10d"))
    assert {c.model for c in plan.choices} == {"SPOT"}
    assert any("flex-start" in w and "7 days" in w for w in plan.warnings)


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
    dict(zone="mars"), dict(zone="mars-north9-a"), dict(region="europe-wst4"),
        dict(region="mars-*"), dict(fallback="spot,cheap"), dict(ttl="6"), dict(ttl="200d"),
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


def test_the_planned_provisioning_follows_the_steps_the_runner_applies(ctx):
    from gpuctl.provision.runner import default_steps

    plan = plan_vm(ctx, UpOptions(profile="a100-spot", stop_at="06:00", time_zone="Asia/Tokyo"))
    planned = [s.id for s in plan.steps if s.id not in ("connect", "facts")]
    assert planned == [s.id for s in default_steps()]  # every step, in the runner's order
