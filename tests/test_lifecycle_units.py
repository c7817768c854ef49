"""The pure parts of the live lifecycle: error classification, zone order, records, keys,
host-key pins, cost and guard timers, the engine's passphrase handling."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuctl.adapters.compute import InstanceView, label_filter, labels_from_description
from gpuctl.adapters.pulumi_engine import PulumiMissing, find_pulumi_cli, stack_secrets_env
from gpuctl.lifecycle import hostkeys, keys, records
from gpuctl.lifecycle.billing_time import cost_so_far, guard_timers
from gpuctl.lifecycle.failover import Candidate, classify, order_zones, short_reason, skip_after
from gpuctl.lifecycle.records import Attempt, VmRecord

from .conftest import FIXED_NOW

# Messages in the shapes GCE, the gcp provider and google-api-core produce them.
CLASSIFIED = [
    ("error: creating Instance: The zone 'projects/p/zones/us-central1-a' does not have enough "
     "resources available to fulfill the request. ZONE_RESOURCE_POOL_EXHAUSTED", "stockout"),
    ("400 ... [ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS: A a2-highgpu-1g VM instance is "
     "currently unavailable in the us-central1-c zone.]", "stockout"),
    ("403 Quota 'NVIDIA_A100_GPUS' exceeded.  Limit: 0.0 in region us-central1. [QUOTA_EXCEEDED]",
     "quota"),
    ("400 Invalid value for field 'resource.machineType': 'zones/asia-northeast1-a/machineTypes/"
     "a3-highgpu-1g'. Machine type a3-highgpu-1g does not exist in zone asia-northeast1-a.",
     "unsupported"),
    ("403 Compute Engine API has not been used in project 123 before or it is disabled. "
     "SERVICE_DISABLED", "fatal"),
    ("403 Required 'compute.instances.create' permission for 'projects/p'", "fatal"),
    ("could not find default credentials", "fatal"),
    ("503 Service Unavailable: backendError", "transient"),
    ("429 Too Many Requests: rateLimitExceeded", "transient"),
    ("something nobody has seen before", "fatal"),
]


@pytest.mark.parametrize("text,expected", CLASSIFIED)
def test_errors_are_classified_like_gce_means_them(text, expected):
    assert classify(text) == expected


@given(st.text(max_size=400))
def test_classify_and_short_reason_accept_any_text(text):
    assert classify(text) in ("stockout", "unsupported", "quota", "transient", "fatal")
    reason = short_reason(text)
    assert isinstance(reason, str) and len(reason) <= 200 and "\n" not in reason


def test_zones_are_tried_cheapest_first_then_in_the_given_order():
    given_order = [Candidate("us-central1-c", 1.9), Candidate("us-central1-a", 1.9),
                   Candidate("asia-northeast1-a", 2.3), Candidate("us-central1-f", 1.9)]
    tokyo_cheaper = given_order + [Candidate("asia-northeast1-c", 1.5)]
    assert [c.zone for c in order_zones(given_order)] == [
        "us-central1-c", "us-central1-a", "us-central1-f", "asia-northeast1-a"]
    assert order_zones(tokyo_cheaper)[0].zone == "asia-northeast1-c"


def test_a_regional_quota_error_skips_the_rest_of_that_region_only():
    rest = [Candidate("us-central1-b", 1), Candidate("asia-northeast1-a", 2)]
    assert skip_after("quota", Candidate("us-central1-a", 1), rest) == rest[1:]
    assert skip_after("stockout", Candidate("us-central1-a", 1), rest) == rest


def _record(**overrides) -> VmRecord:
    base = dict(name="alice-a100-spot", profile="a100-spot", project="p", state="ready",
                stack="alice-a100-spot", zones_to_try=["us-central1-a"],
                created_at=FIXED_NOW.isoformat(), hourly_usd=2.0, stopped_hourly_usd=0.1,
                termination_action="DELETE", zone="us-central1-a", max_run_seconds=6 * 3600,
                running_since=FIXED_NOW.isoformat())
    base.update(overrides)
    return VmRecord(**base)


def _view(status="RUNNING", **overrides) -> InstanceView:
    base = dict(name="alice-a100-spot", zone="us-central1-a", status=status, labels={},
                created=FIXED_NOW, last_start=FIXED_NOW, last_stop=None, address="203.0.113.7",
                machine_type="a2-highgpu-1g", max_run_seconds=6 * 3600, termination_time=None,
                termination_action="DELETE", provisioning_model="SPOT")
    base.update(overrides)
    return InstanceView(**base)


def test_records_round_trip_and_are_written_atomically(isolated_home):
    record = _record(attempts=[Attempt("us-central1-a", "stockout", "no capacity")])
    records.save(record)
    assert records.load(record.name) == record
    assert [r.name for r in records.all_records()] == [record.name]
    assert not list(records.records_dir().glob(".*tmp"))
    records.remove(record.name)
    assert records.load(record.name) is None


def test_a_damaged_record_is_reported_with_a_hint(isolated_home):
    records.records_dir().mkdir(parents=True)
    records.record_path("x").write_text("{not json")
    with pytest.raises(Exception) as err:
        records.load("x")
    assert "damaged" in err.value.message and "sweep" in err.value.hint


def test_key_pairs_are_private_and_reused(isolated_home):
    first = keys.ensure_key_pair("vm1")
    assert stat.S_IMODE(os.stat(first.private_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(first.private_path.parent).st_mode) == 0o700
    assert first.public_line.startswith("ssh-ed25519 ") and first.public_line.endswith("gpuctl-vm1")
    assert keys.ensure_key_pair("vm1") == first
    keys.remove_key_pair("vm1")
    assert not first.private_path.exists()


def test_host_keys_are_pinned_per_address_and_replaced(isolated_home):
    lines = hostkeys.host_key_lines("203.0.113.7", [("ssh-ed25519", "AAAAC3Nza"),
                                                    ("ssh-ed25519", "not base64 !"),
                                                    ("made-up-type", "AAAA")])
    assert lines == ["203.0.113.7 ssh-ed25519 AAAAC3Nza"]
    hostkeys.pin("203.0.113.7", lines)
    hostkeys.pin("203.0.113.8", ["203.0.113.8 ssh-ed25519 BBBB"])
    hostkeys.pin("203.0.113.7", ["203.0.113.7 ssh-ed25519 CCCC"])  # a new VM took the address
    text = hostkeys.known_hosts_path().read_text()
    assert text.count("203.0.113.7") == 1 and "CCCC" in text and "BBBB" in text
    assert stat.S_IMODE(os.stat(hostkeys.known_hosts_path()).st_mode) == 0o600


def test_cost_so_far_counts_running_and_stopped_time():
    later = FIXED_NOW + dt.timedelta(hours=3)
    cost, hours = cost_so_far(_record(), _view(), later)
    assert hours == pytest.approx(3.0) and cost == pytest.approx(6.0)
    stopped = _view("TERMINATED", last_stop=FIXED_NOW + dt.timedelta(hours=1))
    cost, hours = cost_so_far(_record(), stopped, later)
    assert hours == pytest.approx(1.0) and cost == pytest.approx(2.0 + 2 * 0.1)
    # Deleted by its 6 h run limit, looked at a day later: 6 h of running, not 24.
    cost, hours = cost_so_far(_record(), None, FIXED_NOW + dt.timedelta(days=1))
    assert hours == pytest.approx(6.0)


def test_guard_timers_count_down_only_while_running():
    timers = guard_timers(_record(daily_stop={"cron": "0 6 * * *", "clock": "06:00",
                                               "time_zone": "Asia/Tokyo"}),
                          _view(), FIXED_NOW + dt.timedelta(hours=1))
    by_kind = {t["kind"]: t for t in timers}
    assert by_kind["max_run_duration"]["fires_in_seconds"] == pytest.approx(5 * 3600)
    assert by_kind["instance_schedule"]["fires_in_seconds"] == pytest.approx(17 * 3600)
    stopped = guard_timers(_record(), _view("TERMINATED"), FIXED_NOW)
    assert stopped[0]["fires_in_seconds"] is None


def test_labels_travel_in_descriptions_and_filters():
    assert labels_from_description("gpuctl gpuctl-managed=true gpuctl-name=vm1") == {
        "gpuctl-managed": "true", "gpuctl-name": "vm1"}
    assert labels_from_description("someone else's rule") == {}
    assert label_filter({"gpuctl-name": "vm1", "gpuctl-managed": "true"}) == (
        '(labels.gpuctl-managed = "true") AND (labels.gpuctl-name = "vm1")')


def test_the_stack_passphrase_is_generated_once_and_private(isolated_home):
    env = stack_secrets_env({})
    path = env["PULUMI_CONFIG_PASSPHRASE_FILE"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    secret = open(path).read()
    assert len(secret) >= 32 and stack_secrets_env({}) == env and open(path).read() == secret
    assert stack_secrets_env({"PULUMI_CONFIG_PASSPHRASE": "mine"}) == {
        "PULUMI_CONFIG_PASSPHRASE": "mine"}


def test_a_missing_pulumi_cli_is_named_with_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "nothing"))
    with pytest.raises(PulumiMissing) as err:
        find_pulumi_cli()
    assert "Pulumi CLI" in err.value.message and "get.pulumi.com" in err.value.hint
