"""A VM with checkpoints gets exactly the storage access they need: its own service account,
roles/storage.objectUser on the one bucket, the devstorage.read_write scope, nothing more; a VM
without checkpoints gets no service account at all; a checkpointed run on a VM without the
access is refused with the fix. Offline parts: the program under Pulumi's mocks, the rules, the
CLI on bad input, the run refusal; the Compute stand-in and the bucket IAM contract of the GCS
proxy against Google's documents."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from hypothesis import given
from hypothesis import strategies as st
from click.testing import CliRunner
from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from gpuctl.cli.main import cli
from gpuctl.errors import UsageError
from gpuctl.lifecycle import records
from gpuctl.plan import UpOptions, plan_to_dict, plan_vm
from gpuctl_infra import rules
from gpuctl_infra.errors import RuleViolation
from gpuctl_infra.spec import CHECKPOINT_ROLE, CHECKPOINT_SCOPE, account_id_for
from tests.test_compute_standin import P, ZONE, api, create, standin, vm  # noqa: F401 (fixtures)

ACCOUNT = "gcp:serviceaccount/account:Account"
GRANT = "gcp:storage/bucketIAMMember:BucketIAMMember"
INSTANCE = "gcp:compute/instance:Instance"


def _by_type(plan) -> dict[str, list]:
    found: dict[str, list] = {}
    for r in plan.resources:
        found.setdefault(r.type, []).append(r)
    return found


# -- the program, under Pulumi's mocks (what the dry run shows) -------------------------------------

def test_checkpoints_give_one_account_one_binding_on_one_bucket_and_one_scope(ctx):
    plan = plan_vm(ctx, UpOptions(profile="a100-spot", name="alice-ckpt", checkpoints="gs://team-ckpts/llama"))
    found = _by_type(plan)
    (account,) = found[ACCOUNT]
    assert account.inputs["accountId"] == "gpuctl-alice-ckpt"
    assert "gpuctl-managed=true" in account.inputs["description"]  # accounts take no labels
    (grant,) = found[GRANT]
    email = "gpuctl-alice-ckpt@gpuctl-offline.iam.gserviceaccount.com"
    assert grant.inputs == {"bucket": "team-ckpts", "role": CHECKPOINT_ROLE, "member": f"serviceAccount:{email}"}
    (instance,) = found[INSTANCE]
    assert instance.inputs["serviceAccount"] == {"email": email, "scopes": [CHECKPOINT_SCOPE]}
    assert not any("IAMMember" in t and t != GRANT for t in found)  # no project-wide grant

    report = plan_to_dict(plan, ctx)
    access = report["checkpoint_access"]
    assert access["bucket"] == "team-ckpts" and access["role"] == CHECKPOINT_ROLE
    assert access["scopes"] == [CHECKPOINT_SCOPE]


def test_without_checkpoints_the_vm_has_no_service_account(ctx):
    plan = plan_vm(ctx, UpOptions(profile="a100-spot"))
    found = _by_type(plan)
    assert ACCOUNT not in found and GRANT not in found
    (instance,) = found[INSTANCE]
    assert "serviceAccount" not in instance.inputs
    assert plan_to_dict(plan, ctx)["checkpoint_access"] is None


def test_auto_names_the_bucket_after_the_project_or_says_it_is_named_at_apply(ctx, monkeypatch):
    from gpuctl.adapters.storage import default_bucket_name
    from gpuctl.plan import AUTO_BUCKET_PLACEHOLDER

    plan = plan_vm(ctx, UpOptions(profile="a100-spot", checkpoints="auto"))
    assert plan.checkpoints == "auto"
    expected = default_bucket_name(ctx.config.project) if ctx.config.project else AUTO_BUCKET_PLACEHOLDER
    assert plan.spec.checkpoint_bucket == expected


def test_the_dry_run_shows_the_access_in_one_line():
    result = CliRunner().invoke(cli, ["up", "a100-spot", "--dry-run", "--checkpoints", "gs://team-ckpts/x"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "cloud access:" in text and "roles/storage.objectUser on gs://team-ckpts only" in text
    plain = CliRunner().invoke(cli, ["up", "a100-spot", "--dry-run"])
    assert "cloud access: none (no service account" in " ".join(plain.output.split())


@pytest.mark.parametrize("value,words", [
    ("s3://bucket/x", "is not a gs:// URL"),
    ("gs://UPPER/x", "not a valid Cloud Storage bucket name"),
    ("gs://ab", "not a valid Cloud Storage bucket name"),
    ("gs://", "the bucket name is empty"),
])
def test_bad_checkpoints_are_one_line_without_a_traceback(value, words):
    result = CliRunner().invoke(cli, ["up", "a100-spot", "--dry-run", "--checkpoints", value])
    assert result.exit_code != 0 and words in result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1


def test_a_bad_config_checkpoints_is_refused_by_name(config_file):
    config_file('checkpoints = "s3://nope"\n')
    result = CliRunner().invoke(cli, ["up", "a100-spot", "--dry-run"])
    assert result.exit_code != 0 and "checkpoints" in result.output and "Traceback" not in result.output


# -- the rules ----------------------------------------------------------------------------------

@pytest.mark.parametrize("scopes,role,bucket,rule", [
    (["https://www.googleapis.com/auth/cloud-platform"], CHECKPOINT_ROLE, "b-1", "vm-scope"),
    ([CHECKPOINT_SCOPE, "https://www.googleapis.com/auth/devstorage.full_control"], CHECKPOINT_ROLE, "b-1", "vm-scope"),
    ([], CHECKPOINT_ROLE, "b-1", "vm-scope"),
    ([CHECKPOINT_SCOPE], "roles/storage.admin", "b-1", "vm-role"),
    ([CHECKPOINT_SCOPE], "roles/editor", "b-1", "vm-role"),
    ([CHECKPOINT_SCOPE], CHECKPOINT_ROLE, None, "vm-role-scope"),
])
def test_the_rules_refuse_anything_broader(scopes, role, bucket, rule):
    assert [v.rule for v in rules.service_account_violations(scopes, role, bucket)] == [rule]
    assert rules.service_account_violations([CHECKPOINT_SCOPE], CHECKPOINT_ROLE, "b-1") == []


@given(st.from_regex(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True))
def test_account_ids_keep_iams_6_to_30_rule_for_every_vm_name(name):
    # Every name GCE takes (RFC 1035, 1-63) gives an id IAM takes: no rule needed at plan time.
    account = account_id_for(name)
    assert 6 <= len(account) <= 30 and rules.ACCOUNT_ID_RE.fullmatch(account)
    assert account.startswith("gpuctl-")


def test_long_names_sharing_a_prefix_get_two_accounts():
    assert account_id_for("alice-" + "a" * 40 + "-1") != account_id_for("alice-" + "a" * 40 + "-2")


def test_a_bucket_name_google_refuses_is_a_rule_violation(ctx):
    from dataclasses import replace

    plan = plan_vm(ctx, UpOptions(profile="a100-spot", checkpoints="gs://team-ckpts"), with_resources=False)
    with pytest.raises(RuleViolation, match="not a bucket name"):
        rules.check(replace(plan.spec, checkpoint_bucket="has-goog-inside"))


# -- the run refusal ------------------------------------------------------------------------------

def _record(name: str, bucket: str | None) -> records.VmRecord:
    record = records.VmRecord(name=name, profile="a100-spot", project="gpuctl-test", state="ready", stack=name,
                              zones_to_try=[], created_at="2026-12-01T00:00:00+00:00", hourly_usd=1.0,
                              stopped_hourly_usd=0.0, termination_action="DELETE", zone=ZONE,
                              checkpoint_bucket=bucket)
    records.save(record)
    return record


def test_a_checkpointed_run_on_a_vm_without_access_is_refused_with_the_fix():
    from gpuctl.runs.service import require_checkpoint_access

    _record("bare", None)
    with pytest.raises(UsageError) as caught:
        require_checkpoint_access("gs://team-ckpts/llama", "bare", "bare")
    message, hint = caught.value.message, caught.value.hint
    assert "has no service account" in message and "gs://team-ckpts" in message and "\n" not in message
    assert "--checkpoints gs://team-ckpts" in hint and "gpuctl down bare" in hint

    _record("other", "another-bucket")
    with pytest.raises(UsageError, match="may write only gs://another-bucket"):
        require_checkpoint_access("gs://team-ckpts", "other", "other")


def test_a_vm_with_the_matching_bucket_runs_and_auto_means_the_projects_bucket():
    from gpuctl.adapters.storage import default_bucket_name
    from gpuctl.runs.service import require_checkpoint_access

    _record("ready", "team-ckpts")
    assert require_checkpoint_access("gs://team-ckpts/llama", "ready", "ready") == []
    _record("auto-vm", default_bucket_name("gpuctl-test"))
    assert require_checkpoint_access("auto", "auto-vm", "auto-vm") == []
    with pytest.raises(UsageError) as caught:
        require_checkpoint_access("auto", "ready", "ready")
    assert "--checkpoints auto" in caught.value.hint


def test_a_user_host_target_gets_a_note_not_an_error():
    from gpuctl.runs.service import require_checkpoint_access

    (note,) = require_checkpoint_access("gs://team-ckpts", None, "me@10.0.0.5")
    assert "me@10.0.0.5 is not a gpuctl VM" in note


# -- the Compute stand-in: instance service accounts as compute.v1.json describes them ------------------

def _with_accounts(name: str, *accounts: tuple[str, list[str]]) -> compute_v1.Instance:
    body = vm(name)
    body.service_accounts = [compute_v1.ServiceAccount(email=e, scopes=s) for e, s in accounts]
    return body


def test_the_compute_stand_in_keeps_one_service_account_and_its_scopes(standin, api):  # noqa: F811
    email = f"gpuctl-x@{P}.iam.gserviceaccount.com"
    create(api, _with_accounts("one", (email, [CHECKPOINT_SCOPE])))
    got = api.instances.get(project=P, zone=ZONE, instance="one")
    assert [(a.email, list(a.scopes)) for a in got.service_accounts] == [(email, [CHECKPOINT_SCOPE])]


def test_the_compute_stand_in_refuses_two_service_accounts(standin, api):  # noqa: F811
    a, b = (f"{n}@{P}.iam.gserviceaccount.com" for n in ("gpuctl-a1", "gpuctl-b1"))
    with pytest.raises(gexc.BadRequest, match="Only one service account per VM instance is supported"):
        api.instances.insert(project=P, zone=ZONE, instance_resource=_with_accounts(
            "two", (a, [CHECKPOINT_SCOPE]), (b, [CHECKPOINT_SCOPE])))
    with pytest.raises(gexc.BadRequest, match="serviceAccounts"):
        api.instances.insert(project=P, zone=ZONE, instance_resource=_with_accounts(
            "scope", (a, ["cloud-platform"])))
    assert standin.instances() == []


def test_set_service_account_is_refused_on_a_running_vm(standin, api):  # noqa: F811
    create(api, vm("running"))
    request = compute_v1.InstancesSetServiceAccountRequest(
        email=f"gpuctl-x@{P}.iam.gserviceaccount.com", scopes=[CHECKPOINT_SCOPE])
    with pytest.raises(gexc.BadRequest, match="stopped"):
        api.instances.set_service_account(project=P, zone=ZONE, instance="running",
                                          instances_set_service_account_request_resource=request)


# -- the bucket IAM contract of the GCS proxy (storage.v1 getIamPolicy / setIamPolicy) -------------------

def _call(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_bucket_iam_policy_contract(gcs_emulator):
    gcs_emulator.client().create_bucket("team-ckpts")
    url = f"{gcs_emulator.endpoint}/storage/v1/b/team-ckpts/iam"
    status, policy = _call(url)
    assert status == 200 and policy["kind"] == "storage#policy" and policy["etag"]
    assert {b["role"] for b in policy["bindings"]} == {"roles/storage.legacyBucketOwner",
                                                       "roles/storage.legacyBucketReader"}
    member = f"serviceAccount:gpuctl-x@{gcs_emulator.project}.iam.gserviceaccount.com"
    added = {"bindings": policy["bindings"] + [{"role": CHECKPOINT_ROLE, "members": [member]}],
             "etag": policy["etag"]}
    status, written = _call(url, "PUT", added)
    assert status == 200 and written["etag"] != policy["etag"]
    assert gcs_emulator.contract.iam.members("team-ckpts", CHECKPOINT_ROLE) == [member]

    status, error = _call(url, "PUT", added)  # the etag read before the write is stale now
    assert status == 412 and error["error"]["errors"][0]["reason"] == "conditionNotMet"
    assert _call(url, "PUT", {"bindings": [{"role": "storage.admin", "members": [member]}]})[0] == 400
    assert _call(url, "PUT", {"bindings": [{"role": CHECKPOINT_ROLE, "members": ["someone"]}]})[0] == 400
    assert _call(url, "PUT", {"bindings": [], "owner": "me"})[0] == 400  # not in the Policy schema
    assert _call(f"{gcs_emulator.endpoint}/storage/v1/b/no-such-bucket/iam")[0] == 404
    # Objects still pass through to the real emulator, untouched by the IAM side.
    gcs_emulator.client().bucket("team-ckpts").blob("a/b").upload_from_string(b"x")
    assert [b.name for b in gcs_emulator.client().list_blobs("team-ckpts")] == ["a/b"]
