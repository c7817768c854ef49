"""Google Compute Engine rules a VmSpec must satisfy (gpuctl_infra.rules)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuctl.errors import RuleViolation
from gpuctl_infra import rules
from gpuctl_infra.catalog import GPUS, MACHINES, REGIONS
from gpuctl_infra.spec import CALLER_ADDRESS_PLACEHOLDER, DailyStop, VmSpec

UBUNTU = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts"
ED25519 = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl "
           "alice@laptop")


def valid_labels(name: str = "gpu-alice-t4") -> dict[str, str]:
    return {"gpuctl-managed": "true", "gpuctl-owner": "alice", "gpuctl-name": name,
            "gpuctl-expiry": "20261123t1100z"}


def valid_spec(**overrides) -> VmSpec:
    """A spot T4 VM in us-central1-a that breaks no rule; overrides replace fields."""
    fields = dict(
        name="gpu-alice-t4",
        zone="us-central1-a",
        machine_type="n1-highmem-8",
        image=UBUNTU,
        boot_disk_gb=100,
        boot_disk_type="pd-ssd",
        spot=True,
        accelerator_type="nvidia-tesla-t4",
        accelerator_count=1,
        local_ssd_count=1,
        termination_action="DELETE",
        max_run_seconds=8 * 3600,
        ssh_source_cidr=CALLER_ADDRESS_PLACEHOLDER,
        ssh_public_key=ED25519,
        labels=valid_labels(),
    )
    fields.update(overrides)
    return VmSpec(**fields)


def builtin(machine_type: str, **overrides) -> VmSpec:
    """A valid spec for a machine type whose GPU is built in."""
    machine = MACHINES[machine_type]
    fields = dict(machine_type=machine_type, accelerator_type=None, accelerator_count=0,
                  local_ssd_count=0 if machine.bundled_local_ssd or not machine.local_ssd_counts
                  else machine.local_ssd_counts[0])
    fields.update(overrides)
    return valid_spec(**fields)


def rule_ids(spec: VmSpec) -> list[str]:
    return [v.rule for v in rules.violations(spec)]


# --- valid specs ------------------------------------------------------------------------------

def test_valid_spec_has_no_violations():
    assert rules.violations(valid_spec()) == []
    rules.check(valid_spec())  # does not raise


def catalog_rows():
    """(machine type, zone, model) for every zone the catalog lists each GPU machine in."""
    for name, machine in sorted(MACHINES.items()):
        if not machine.builtin_gpu:
            continue
        for region in machine.regions:
            for model in machine.models:
                for zone in machine.zones_in(region, model):
                    yield name, zone, model


@settings(max_examples=300)
@given(st.sampled_from(list(catalog_rows())))
def test_every_catalog_row_is_a_valid_spec_under_each_model_it_takes(row):
    machine_type, zone, model = row
    spec = builtin(machine_type, zone=zone, spot=model == "SPOT", flex_start=model == "FLEX_START")
    assert rule_ids(spec) == []


def test_the_catalog_rows_cover_every_gpu_machine_with_zones():
    covered = {name for name, _, _ in catalog_rows()}
    with_zones = {n for n, m in MACHINES.items() if m.builtin_gpu and m.zones}
    assert covered == with_zones, with_zones ^ covered
    assert len(covered) >= 25
    assert {n for n, m in MACHINES.items() if m.builtin_gpu and not m.zones} \
        == {f"g4-standard-{n}" for n in (48, 96, 192, 384)}  # G4: not in the snapshot


@pytest.mark.parametrize("machine_type", sorted(m for m in MACHINES if MACHINES[m].builtin_gpu
                                                and not MACHINES[m].zones))
def test_a_machine_in_no_zone_of_the_data_is_refused(machine_type):
    assert rule_ids(builtin(machine_type, zone="us-central1-a")) == ["machine-zone"]


@pytest.mark.parametrize("spec", [
    valid_spec(ssh_source_cidr="198.51.100.7/32"),
    valid_spec(ssh_source_cidr="198.51.100.7"),
    valid_spec(ssh_source_cidr="2001:db8::7/128"),
    valid_spec(max_run_seconds=None, termination_time="2026-11-23T12:00:00Z"),
    valid_spec(max_run_seconds=None, daily_stop=DailyStop(6, 0, "Asia/Tokyo")),
    valid_spec(max_run_seconds=30),
    valid_spec(max_run_seconds=120 * 24 * 3600),
    valid_spec(termination_action="STOP"),
    valid_spec(local_ssd_count=0),
    valid_spec(local_ssd_count=24),
    valid_spec(accelerator_count=4),
    valid_spec(boot_disk_gb=10, boot_disk_type="pd-balanced"),
    valid_spec(boot_disk_gb=65536, boot_disk_type="pd-standard"),
    valid_spec(zone="asia-northeast1-c"),
    valid_spec(name="a" * 50, labels=valid_labels("a" * 50)),
    valid_spec(labels=dict(valid_labels(), team="ml_research", empty="")),
    builtin("a2-ultragpu-1g", zone="us-central1-c"),
    builtin("a3-highgpu-1g", zone="asia-northeast1-b"),
    builtin("a2-highgpu-4g", zone="asia-northeast1-a", local_ssd_count=8),
    builtin("g2-standard-8", zone="asia-northeast1-b", local_ssd_count=0),
])
def test_more_valid_specs(spec):
    assert rules.violations(spec) == []


# --- each rule, broken alone ------------------------------------------------------------------

BROKEN = {
    "machine-type": valid_spec(machine_type="n2-standard-8"),
    "gpu-builtin": builtin("a2-highgpu-1g", accelerator_type="nvidia-tesla-a100",
                           accelerator_count=1),
    "gpu-missing": valid_spec(accelerator_type=None, accelerator_count=0),
    "gpu-pair": valid_spec(accelerator_type="nvidia-tesla-a100"),
    "gpu-count": valid_spec(accelerator_count=3),
    "gpu-zone": builtin("a2-ultragpu-1g", zone="asia-northeast1-a"),  # no A100 80GB in Tokyo
    "zone-format": valid_spec(zone="uscentral1a"),
    "region-known": valid_spec(zone="mars-north9-a"),
    "spot-zone": builtin("a4-highgpu-8g", zone="us-central1-b"),  # B200 there: no spot price
    "machine-zone": builtin("g4-standard-48", zone="us-central1-a"),
    "one-model": builtin("a2-highgpu-1g", zone="us-central1-a", flex_start=True),
    "flex-start-machine": valid_spec(spot=False, flex_start=True),
    "flex-start-duration": builtin("a2-highgpu-1g", zone="us-central1-a", spot=False,
                                   flex_start=True, max_run_seconds=8 * 86400),
    "flex-start-stop": builtin("a2-highgpu-1g", zone="us-central1-a", spot=False, flex_start=True,
                               daily_stop=DailyStop(6, 0, "UTC")),
    "local-ssd-bundled": builtin("a2-ultragpu-1g", zone="us-central1-a", local_ssd_count=1),
    "local-ssd-count": valid_spec(local_ssd_count=9),
    "spot-only": builtin("a3-highgpu-1g", zone="us-central1-a", spot=False),
    "run-limit-exclusive": valid_spec(termination_time="2026-11-23T12:00:00Z"),
    "run-limit-range": valid_spec(max_run_seconds=10),
    "termination-action": valid_spec(termination_action="SUSPEND"),
    "ssh-source": valid_spec(ssh_source_cidr="0.0.0.0/0"),
    "name": valid_spec(name="GPU_alice"),
    "labels-required": valid_spec(labels={k: v for k, v in valid_labels().items()
                                          if k != "gpuctl-expiry"}),
    "label-format": valid_spec(labels=dict(valid_labels(), Team="ml")),
    "boot-disk-type": valid_spec(boot_disk_type="pd-extreme"),
    "boot-disk-size": valid_spec(boot_disk_gb=5),
    "daily-stop-clock": valid_spec(daily_stop=DailyStop(24, 0, "UTC")),
    "daily-stop-tz": valid_spec(daily_stop=DailyStop(6, 0, "Mars/Olympus_Mons")),
    "checkpoint-bucket": valid_spec(checkpoint_bucket="goog-ckpt"),
}
# The VM identity rules judge a grant, not a spec (gpu_vm.py asks them before any resource).
IDENTITY_BROKEN = {
    "vm-scope": (["https://www.googleapis.com/auth/cloud-platform"], rules.CHECKPOINT_ROLE, "b-1"),
    "vm-role": ([rules.CHECKPOINT_SCOPE], "roles/storage.admin", "b-1"),
    "vm-role-scope": ([rules.CHECKPOINT_SCOPE], rules.CHECKPOINT_ROLE, None),
}


@pytest.mark.parametrize("rule", sorted(IDENTITY_BROKEN))
def test_breaking_one_identity_rule_yields_exactly_that_violation(rule):
    found = rules.service_account_violations(*IDENTITY_BROKEN[rule])
    assert [v.rule for v in found] == [rule] and found[0].message and found[0].hint


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_breaking_one_rule_yields_exactly_that_violation(rule):
    found = rules.violations(BROKEN[rule])
    assert [v.rule for v in found] == [rule]
    assert found[0].message
    assert found[0].hint


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_check_raises_the_violation_with_message_and_hint(rule):
    found = rules.violations(BROKEN[rule])
    with pytest.raises(RuleViolation) as info:
        rules.check(BROKEN[rule])
    assert info.value.message == found[0].message
    assert info.value.hint == found[0].hint
    assert info.value.exit_code == 2


def test_every_rule_id_in_rules_py_is_exercised():
    import inspect
    import re

    source = inspect.getsource(rules)
    ids = set(re.findall(r'Violation\(\s*"([a-z-]+)"', source))
    ids |= set(re.findall(r'single_address_violations\([^,]+,\s*"([a-z-]+)"', source))
    assert ids - {"metadata-secret"} == set(BROKEN) | set(IDENTITY_BROKEN)


@pytest.mark.parametrize("spec, words", [
    (builtin("a2-ultragpu-1g", zone="asia-northeast1-a"), ["A100 80GB", "asia-northeast1",
                                                           "us-central1"]),
    (builtin("a3-highgpu-1g", zone="asia-northeast1-a"), ["H100 80GB", "asia-northeast1-a",
                                                          "asia-northeast1-b"]),
    (valid_spec(zone="us-central1-d"), ["T4 16GB", "us-central1-d", "us-central1-a"]),
    (builtin("a2-highgpu-1g", zone="asia-northeast1-b"), ["A100 40GB", "asia-northeast1-a"]),
])
def test_gpu_zone_says_where_the_gpu_is(spec, words):
    found = rules.violations(spec)
    assert [v.rule for v in found] == ["gpu-zone"]
    text = found[0].message + " " + found[0].hint
    for word in words:
        assert word in text


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "198.51.100.0/24", "10.0.0.0/31", "::/0",
                                  "2001:db8::/64", "not-an-ip", "198.51.100.7/24", ""])
def test_ssh_source_refuses_anything_but_one_address(cidr):
    found = rules.violations(valid_spec(ssh_source_cidr=cidr))
    assert [v.rule for v in found] == ["ssh-source"]
    assert "/32" in found[0].hint or "address" in found[0].hint


@pytest.mark.parametrize("cidr", ["198.51.100.7/32", "203.0.113.255/32", "2001:db8::1/128",
                                  CALLER_ADDRESS_PLACEHOLDER])
def test_ssh_source_accepts_one_address(cidr):
    assert rules.violations(valid_spec(ssh_source_cidr=cidr)) == []


@pytest.mark.parametrize("name", ["GPU", "1gpu", "gpu-", "gpu_vm", "gpu vm", "", "a" * 51,
                                  "gpu.vm", "-gpu"])
def test_bad_names(name):
    assert "name" in rule_ids(valid_spec(name=name, labels=valid_labels()))


@pytest.mark.parametrize("count", [9, 10, 15, 17, 25, -1])
def test_bad_local_ssd_counts_on_n1(count):
    assert rule_ids(valid_spec(local_ssd_count=count)) == ["local-ssd-count"]


@pytest.mark.parametrize("machine_type, count", [("a2-highgpu-4g", 1), ("a2-highgpu-4g", 2),
                                                 ("a2-highgpu-8g", 4), ("g2-standard-8", 2)])
def test_bad_local_ssd_counts_on_builtin(machine_type, count):
    assert rule_ids(builtin(machine_type, zone="us-central1-a",
                            local_ssd_count=count)) == ["local-ssd-count"]


@pytest.mark.parametrize("seconds", [0, 29, -5, 120 * 24 * 3600 + 1])
def test_run_limit_range(seconds):
    assert rule_ids(valid_spec(max_run_seconds=seconds)) == ["run-limit-range"]


@pytest.mark.parametrize("labels", [
    {"gpuctl-owner": "Alice"},
    {"gpuctl-owner": "alice.smith"},
    {"gpuctl-owner": "a" * 64},
    {"1team": "ml"},
    {"team": "ml research"},
])
def test_label_format(labels):
    assert rule_ids(valid_spec(labels=dict(valid_labels(), **labels))) == ["label-format"]


def test_missing_labels_each_reported():
    found = rule_ids(valid_spec(labels={}))
    assert found == ["labels-required"] * 4


# --- anchors: "$" matches before a trailing newline -----------------------------------------

def test_name_with_trailing_newline_is_refused():
    # NAME_RE uses "$", which also matches before a final "\n": "gpu-vm\n" passes as a name.
    assert "name" in rule_ids(valid_spec(name="gpu-vm\n", labels=valid_labels()))


def test_label_value_with_trailing_newline_is_refused():
    labels = dict(valid_labels(), **{"gpuctl-owner": "alice\n"})
    assert rule_ids(valid_spec(labels=labels)) == ["label-format"]


# --- daily stop time zones --------------------------------------------------------------------

@pytest.mark.parametrize("tz", ["Mars/Base", "", "/etc/localtime", "../UTC", "Asia/Tokyo\n",
                                "Asia", "America", "a" * 300])
def test_bad_daily_stop_time_zones_are_violations_not_crashes(tz):
    # "Asia" and "America" are directories in the tz database, and an over-long name makes the
    # lookup fail with an OSError; all must come back as daily-stop-tz, not as an exception.
    assert rule_ids(valid_spec(daily_stop=DailyStop(6, 0, tz))) == ["daily-stop-tz"]


# --- metadata ---------------------------------------------------------------------------------

PRIVATE_KEY = """-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
-----END OPENSSH PRIVATE KEY-----"""


def test_metadata_accepts_public_ed25519_key():
    assert rules.metadata_violations({"ssh-keys": f"gpuctl:{ED25519}"}) == []


def test_metadata_accepts_several_public_keys_and_plain_values():
    metadata = {
        "ssh-keys": f"gpuctl:{ED25519}\nbob:ssh-rsa AAAAB3NzaC1yc2E bob@host\n",
        "enable-oslogin": "FALSE",
        "startup-script": "#!/bin/sh\nmkdir -p /mnt/nvme\n",
    }
    assert rules.metadata_violations(metadata) == []


def test_metadata_flags_private_key_in_ssh_keys():
    found = rules.metadata_violations({"ssh-keys": f"gpuctl:{PRIVATE_KEY}"})
    assert found
    assert {v.rule for v in found} == {"metadata-secret"}
    assert all(v.hint for v in found)
    assert ".pub" in found[0].hint


def test_metadata_flags_private_key_among_public_keys():
    value = f"gpuctl:{ED25519}\ngpuctl:{PRIVATE_KEY}"
    assert rules.metadata_violations({"ssh-keys": value})


@pytest.mark.parametrize("key, value", [
    ("hf-token", "abc"),
    ("startup-script", "export HF_TOKEN=hf_abcdefghijklmnop"),
    ("startup-script", "huggingface-cli login --token hf_abc"),
    ("db", "password=hunter2"),
    ("wandb", "WANDB_API_KEY=0123456789"),
    ("creds", "-----BEGIN RSA PRIVATE KEY-----"),
    ("aws-secret", "x"),
])
def test_metadata_flags_secrets(key, value):
    found = rules.metadata_violations({key: value})
    assert [v.rule for v in found] == ["metadata-secret"]
    assert key in found[0].message
    assert "Secret Manager" in found[0].hint


# --- random specs from catalog values ---------------------------------------------------------

_all_zones = sorted({z for g in GPUS.values() for r in g.zones for z in g.zones_in(r)}
                    | {f"{r}-{s}" for r in REGIONS for s in "abcdef"})

_specs = st.builds(
    VmSpec,
    name=st.one_of(st.sampled_from(["gpu-alice-t4", "a" * 50, "a" * 51, "GPU", "gpu-"]),
                   st.text(max_size=60)),
    zone=st.one_of(st.sampled_from(_all_zones + ["europe-west4-a", "uscentral1", ""]),
                   st.text(max_size=20)),
    machine_type=st.one_of(st.sampled_from(sorted(MACHINES)), st.just("n2-standard-4"),
                           st.text(max_size=15)),
    image=st.just(UBUNTU),
    boot_disk_gb=st.integers(min_value=-10, max_value=70000),
    boot_disk_type=st.sampled_from(["pd-ssd", "pd-balanced", "pd-standard", "pd-extreme", ""]),
    spot=st.booleans(),
    accelerator_type=st.one_of(st.none(), st.sampled_from(sorted(GPUS)), st.text(max_size=10)),
    accelerator_count=st.integers(min_value=-1, max_value=10),
    local_ssd_count=st.integers(min_value=-1, max_value=25),
    termination_action=st.sampled_from(["DELETE", "STOP", "delete", "X"]),
    max_run_seconds=st.one_of(st.none(), st.integers(min_value=-100, max_value=200 * 86400)),
    termination_time=st.one_of(st.none(), st.just("2026-11-23T12:00:00Z")),
    daily_stop=st.one_of(st.none(), st.builds(
        DailyStop, hour=st.integers(min_value=-1, max_value=25),
        minute=st.integers(min_value=-1, max_value=61),
        time_zone=st.sampled_from(["UTC", "Asia/Tokyo", "America/Chicago", "Mars/Base", ""]))),
    ssh_source_cidr=st.one_of(
        st.sampled_from([CALLER_ADDRESS_PLACEHOLDER, "198.51.100.7/32", "0.0.0.0/0",
                         "10.0.0.0/24", "2001:db8::1/128", "::/0"]),
        st.text(max_size=20)),
    labels=st.one_of(st.just(valid_labels()), st.dictionaries(
        st.sampled_from(list(valid_labels()) + ["Team", "team", "1x"]),
        st.sampled_from(["true", "alice", "Alice", "", "a" * 64]), max_size=6)),
)


@settings(max_examples=200)
@given(_specs)
def test_random_specs_never_crash_and_check_agrees(spec):
    found = rules.violations(spec)
    assert all(v.rule and v.message and v.hint for v in found)
    if found:
        with pytest.raises(RuleViolation) as info:
            rules.check(spec)
        assert info.value.message == found[0].message
        assert info.value.hint == found[0].hint
    else:
        rules.check(spec)
        # A spec with no violations really is a valid GCE shape.
        machine = MACHINES[spec.machine_type]
        gpu = machine.builtin_gpu or spec.accelerator_type
        assert gpu in GPUS
        zones = machine.zones_in(spec.region, "SPOT" if spec.spot else "STANDARD") \
            if machine.builtin_gpu else (GPUS[gpu].spot_zones_in(spec.region) if spec.spot
                                         else GPUS[gpu].zones_in(spec.region))
        assert spec.zone in zones
        assert spot_ok(machine, spec)
        assert spec.local_ssd_count == 0 or spec.local_ssd_count in machine.local_ssd_counts


def spot_ok(machine, spec) -> bool:
    return spec.spot or not machine.spot_only


@settings(max_examples=200)
@given(machine_type=st.sampled_from(sorted(MACHINES)),
       accelerator_type=st.one_of(st.none(), st.sampled_from(sorted(GPUS))),
       accelerator_count=st.integers(min_value=0, max_value=8),
       zone=st.sampled_from(_all_zones),
       local_ssd_count=st.integers(min_value=0, max_value=24),
       spot=st.booleans())
def test_catalog_combinations(machine_type, accelerator_type, accelerator_count, zone,
                              local_ssd_count, spot):
    spec = valid_spec(machine_type=machine_type, accelerator_type=accelerator_type,
                      accelerator_count=accelerator_count, zone=zone,
                      local_ssd_count=local_ssd_count, spot=spot)
    ids = rule_ids(spec)
    machine = MACHINES[machine_type]
    # Everything but the machine shape is valid, so only shape rules can fire.
    assert set(ids) <= {"gpu-builtin", "gpu-missing", "gpu-pair", "gpu-count", "gpu-zone",
                        "local-ssd-bundled", "local-ssd-count", "spot-only", "spot-zone",
                        "machine-zone"}
    assert ("spot-only" in ids) == (machine.spot_only and not spot)
    if machine.builtin_gpu:
        assert ("gpu-builtin" in ids) == bool(accelerator_type or accelerator_count)
    else:
        assert ("gpu-missing" in ids) == (accelerator_type is None)
    if machine.bundled_local_ssd:
        assert ("local-ssd-bundled" in ids) == (local_ssd_count > 0)
    elif local_ssd_count and local_ssd_count not in machine.local_ssd_counts:
        assert "local-ssd-count" in ids
    assert (ids == []) == (rules.violations(spec) == [])
    try:
        rules.check(spec)
    except RuleViolation:
        assert ids
    else:
        assert not ids


@settings(max_examples=150)
@given(st.text(max_size=40))
def test_random_time_zone_is_violation_or_valid(tz):
    found = rule_ids(valid_spec(daily_stop=DailyStop(6, 0, tz)))
    assert found in ([], ["daily-stop-tz"])


@settings(max_examples=150)
@given(st.dictionaries(st.text(max_size=10), st.text(max_size=60), max_size=4))
def test_metadata_violations_never_crash(metadata):
    found = rules.metadata_violations(metadata)
    assert all(v.rule == "metadata-secret" and v.hint for v in found)


def test_spec_is_frozen():
    spec = valid_spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.zone = "us-central1-b"  # type: ignore[misc]


def test_the_infra_layer_imports_nothing_of_gpuctl():
    import ast
    from pathlib import Path

    import gpuctl_infra

    for path in Path(gpuctl_infra.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            assert not any(n == "gpuctl" or n.startswith("gpuctl.") for n in names), path.name
