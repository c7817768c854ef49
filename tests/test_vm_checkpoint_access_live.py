"""`gpuctl up --checkpoints` and `down` through the real Pulumi engine and the gcp provider double:
the IAM stand-in sees the VM's own service account made and deleted, the GCS contract proxy (in
front of the real fake-gcs-server) sees its one binding added to the bucket's policy and removed
again with every other binding kept, and the Compute stand-in sees the instance carry that account
with the devstorage.read_write scope only."""

from __future__ import annotations

import pytest

from gpuctl.errors import GpuctlError
from gpuctl.lifecycle import records
from gpuctl.lifecycle.down import down_vm
from gpuctl.lifecycle.up import up_vm
from gpuctl_infra.spec import CHECKPOINT_ROLE, CHECKPOINT_SCOPE
from tests.standins.compute import compute_standin  # noqa: F401 (fixture)
from tests.test_lifecycle_live import NAME, PROJECT, live, nothing_left, plan_for, scheduler  # noqa: F401

EMAIL = f"gpuctl-{NAME}@{PROJECT}.iam.gserviceaccount.com"
LEGACY = {"roles/storage.legacyBucketOwner", "roles/storage.legacyBucketReader"}


@pytest.fixture
def iam(monkeypatch):
    from tests.standins.iam import IamStandIn

    with IamStandIn(PROJECT) as standin:
        monkeypatch.setenv("GPUCTL_IAM_ENDPOINT", standin.endpoint)
        monkeypatch.setenv("GPUCTL_RESOURCEMANAGER_ENDPOINT", standin.endpoint)
        yield standin


def _roles(gcs, bucket: str) -> dict[str, list[str]]:
    return dict(gcs.contract.iam.policies.get(bucket, {}))


def test_up_with_checkpoints_grants_one_bucket_and_down_takes_it_back(ctx, live, iam, gcs_emulator):
    gcs_emulator.client().create_bucket("team-ckpts")
    result = up_vm(ctx, plan_for(ctx, checkpoints="gs://team-ckpts/llama"), live)
    record = result.record
    assert record.state == "ready" and record.checkpoint_bucket == "team-ckpts"
    assert records.load(NAME).service_account == EMAIL  # what `gpuctl run` checks

    (account,) = iam.accounts.values()
    assert account["email"] == EMAIL and "gpuctl-managed=true" in account["description"]
    assert iam.bindings == {"roles/owner": {"user:owner@example.com"}}  # nothing on the project

    roles = _roles(gcs_emulator, "team-ckpts")
    assert roles[CHECKPOINT_ROLE] == [f"serviceAccount:{EMAIL}"]
    assert set(roles) == LEGACY | {CHECKPOINT_ROLE}  # the bucket's other bindings are kept
    assert gcs_emulator.contract.iam.writes[-1]["etag"]  # written back with the etag it read

    sent = live.standin.calls("instances.insert")[-1].body
    assert sent["serviceAccounts"] == [{"email": EMAIL, "scopes": [CHECKPOINT_SCOPE]}]
    assert live.standin.instance(NAME)["serviceAccounts"] == [{"email": EMAIL, "scopes": [CHECKPOINT_SCOPE]}]
    assert live.standin.contract_violations == [] and iam.contract_violations == []
    from gpuctl.lifecycle.status import status_all

    (row,) = status_all(live)
    assert row["checkpoint_bucket"] == "team-ckpts"

    done = down_vm(NAME, live)
    assert done.existed and nothing_left(live.standin)
    assert iam.accounts == {}
    assert set(_roles(gcs_emulator, "team-ckpts")) == LEGACY  # exactly its own member removed
    assert records.load(NAME) is None and live.engine.list_stacks() == []


def test_auto_ensures_gpuctls_bucket_before_the_stack(ctx, live, iam, gcs_emulator):
    from gpuctl.adapters.storage import default_bucket_name

    bucket = default_bucket_name(PROJECT)
    up_vm(ctx, plan_for(ctx, checkpoints="auto"), live)
    made = gcs_emulator.client().get_bucket(bucket)
    assert made.labels.get("gpuctl-kind") == "checkpoints"
    assert _roles(gcs_emulator, bucket)[CHECKPOINT_ROLE] == [f"serviceAccount:{EMAIL}"]
    assert records.load(NAME).checkpoint_bucket == bucket
    down_vm(NAME, live)
    assert CHECKPOINT_ROLE not in _roles(gcs_emulator, bucket) and iam.accounts == {}
    assert gcs_emulator.client().lookup_bucket(bucket) is not None  # checkpoints outlive the VM


def test_a_missing_user_bucket_is_one_line_and_nothing_is_made(ctx, live, iam, gcs_emulator):
    with pytest.raises(GpuctlError) as caught:
        up_vm(ctx, plan_for(ctx, checkpoints="gs://not-there-ckpts"), live)
    assert "gs://not-there-ckpts does not exist" in caught.value.message
    assert "\n" not in caught.value.message and "gcloud storage buckets create" in caught.value.hint
    assert records.load(NAME) is None and iam.accounts == {} and nothing_left(live.standin)
    assert live.engine.list_stacks() == []
