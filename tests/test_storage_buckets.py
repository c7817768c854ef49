"""The checkpoint bucket and `gpuctl sweep`'s buckets, through the real google-cloud-storage
client against a real Cloud Storage emulator (fake-gcs-server, tests/gcs/fixtures.py)."""

from __future__ import annotations

import pytest

from gpuctl.adapters.storage import (DEFAULT_RETENTION_DAYS, StorageApi, default_bucket_name,
                                     managed_labels)
from gpuctl.errors import GpuctlError, UsageError
from gpuctl.lifecycle.sweep import CHECKPOINTS_VM, bucket_leftovers, delete_leftovers, find_leftovers
from tests.standins import discovery


def test_default_bucket_is_created_private_labelled_and_expiring(gcs_emulator):
    api = StorageApi(gcs_emulator.project)
    where = api.ensure_checkpoints(None, "alice", "us-central1")
    assert where.bucket == default_bucket_name(gcs_emulator.project) and where.prefix == ""

    # What the client sent is a Bucket Google's discovery document allows, with every setting.
    [sent] = gcs_emulator.contract.inserts
    assert discovery.check("storage.v1", "Bucket", sent) == []
    assert sent["iamConfiguration"] == {"uniformBucketLevelAccess": {"enabled": True},
                                        "publicAccessPrevention": "enforced"}
    assert sent["lifecycle"] == {"rule": [{"action": {"type": "Delete"},
                                           "condition": {"age": DEFAULT_RETENTION_DAYS}}]}
    assert sent["labels"] == managed_labels("alice") and sent["location"] == "us-central1"

    # Read back through the client, as gpuctl (and sweep) will see it.
    bucket = gcs_emulator.client().get_bucket(where.bucket)
    assert bucket.labels["gpuctl-managed"] == "true" and bucket.labels["gpuctl-kind"] == "checkpoints"
    assert bucket.iam_configuration.public_access_prevention == "enforced"
    assert bucket.iam_configuration.uniform_bucket_level_access_enabled is True
    assert [r["condition"]["age"] for r in bucket.lifecycle_rules] == [DEFAULT_RETENTION_DAYS]


def test_rerun_reuses_the_bucket_and_its_checkpoints(gcs_emulator):
    api = StorageApi(gcs_emulator.project)
    first = api.ensure_checkpoints(None, "alice", "us-central1")
    gcs_emulator.client().bucket(first.bucket).blob("run-1/step-100/model.bin").upload_from_string(b"w" * 64)
    again = StorageApi(gcs_emulator.project).ensure_checkpoints(None, "bob", "us-central1", retention_days=7)
    assert again == first and len(gcs_emulator.contract.inserts) == 1  # created once
    blob = gcs_emulator.client().bucket(first.bucket).get_blob("run-1/step-100/model.bin")
    assert blob.download_as_bytes() == b"w" * 64


def test_user_bucket_is_created_when_missing_and_left_alone_when_it_exists(gcs_emulator):
    client = gcs_emulator.client()
    client.create_bucket("team-ckpts-existing")  # the user's own, no gpuctl labels
    api = StorageApi(gcs_emulator.project)
    where = api.ensure_checkpoints("gs://team-ckpts-existing/llama/", "alice", "us-central1")
    assert (where.bucket, where.prefix, where.url) == ("team-ckpts-existing", "llama",
                                                       "gs://team-ckpts-existing/llama")
    assert len(gcs_emulator.contract.inserts) == 1  # only the user's own create
    assert not client.get_bucket("team-ckpts-existing").labels  # never relabelled

    made = api.ensure_checkpoints("gs://team-ckpts-new/a/b", "alice", "asia-northeast1", retention_days=14)
    assert made.url == "gs://team-ckpts-new/a/b"
    new = client.get_bucket("team-ckpts-new")
    assert new.labels == managed_labels("alice") and new.location == "ASIA-NORTHEAST1"
    assert [r["condition"]["age"] for r in new.lifecycle_rules] == [14]


def test_bad_url_and_retention_fail_before_any_request(gcs_emulator):
    api = StorageApi(gcs_emulator.project)
    with pytest.raises(UsageError, match="Google reserves"):
        api.ensure_checkpoints("gs://my-google-ckpts/x", "alice", "us-central1")
    with pytest.raises(GpuctlError, match="retention"):
        api.ensure_checkpoints(None, "alice", "us-central1", retention_days=0)
    assert gcs_emulator.contract.inserts == [] and list(gcs_emulator.client().list_buckets()) == []


def test_the_contract_refuses_a_bucket_field_google_does_not_know(gcs_emulator):
    """The proxy is held to Google's document: a misspelt field is a 400, not a silent yes."""
    import requests

    answer = requests.post(f"{gcs_emulator.endpoint}/storage/v1/b?project={gcs_emulator.project}",
                           json={"name": "typo-bucket", "lables": {"a": "b"}}, timeout=10)
    assert answer.status_code == 400 and "lables" in answer.json()["error"]["message"]


def test_unreachable_storage_is_one_network_error_naming_the_override(monkeypatch):
    monkeypatch.setenv("GPUCTL_STORAGE_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(GpuctlError) as err:
        StorageApi("p-123456").ensure_checkpoints(None, "alice", "us-central1")
    assert "Cloud Storage" in err.value.message and "GPUCTL_STORAGE_ENDPOINT" in err.value.hint


# -- sweep ----------------------------------------------------------------------------------

def test_sweep_lists_gpuctl_buckets_with_their_size_and_deletes_only_empty_ones(gcs_emulator):
    api = StorageApi(gcs_emulator.project)
    client = gcs_emulator.client()
    full = api.ensure_checkpoints("gs://gpuctl-full-ckpts/x", "alice", "us-central1").bucket
    empty = api.ensure_checkpoints("gs://gpuctl-empty-ckpts", "alice", "us-central1").bucket
    client.create_bucket("someone-elses-bucket")  # not gpuctl's: never listed
    for i, size in enumerate((1000, 2500)):
        client.bucket(full).blob(f"x/run-1/step-{i}.pt").upload_from_string(b"0" * size)

    found = {item.resource.name: item for item in bucket_leftovers(api)}
    assert set(found) == {full, empty}
    assert found[full].kind == "tracked" and found[full].size_bytes == 3500
    assert found[full].resource.status.startswith("2 objects") and found[full].vm == CHECKPOINTS_VM
    assert found[full].usd_per_day is None  # the price book has no Cloud Storage prices
    assert found[empty].kind == "orphan" and found[empty].size_bytes == 0
    assert found[full].as_dict()["resource"]["size_bytes"] == 3500

    done = delete_leftovers(list(found.values()), deps=None, storage=api)
    assert done == [f"bucket/{empty}"]
    names = {b.name for b in client.list_buckets()}
    assert names == {full, "someone-elses-bucket"}  # checkpoints are never swept


def test_sweep_deleting_a_bucket_that_filled_meanwhile_is_refused(gcs_emulator):
    api = StorageApi(gcs_emulator.project)
    name = api.ensure_checkpoints("gs://gpuctl-racy-ckpts", "alice", "us-central1").bucket
    [item] = bucket_leftovers(api)
    assert item.kind == "orphan"
    gcs_emulator.client().bucket(name).blob("run/step-1.pt").upload_from_string(b"late")
    with pytest.raises(GpuctlError) as err:
        delete_leftovers([item], deps=None, storage=api)
    assert "never deleted" in err.value.hint
    assert gcs_emulator.client().bucket(name).get_blob("run/step-1.pt") is not None


class _NoCompute:
    """sweep's other sources, empty: this test is about buckets."""

    project = "gpuctl-test-project"

    class compute:  # noqa: N801 - an attribute standing for the Compute adapter
        @staticmethod
        def labelled_resources(labels):
            return []

    class engine:  # noqa: N801
        @staticmethod
        def list_stacks():
            return []

    @staticmethod
    def deadline_api(region):
        raise GpuctlError("Cloud Scheduler is not enabled", "n/a")


def test_find_leftovers_includes_buckets_from_the_storage_endpoint(ctx, gcs_emulator):
    StorageApi(gcs_emulator.project).ensure_checkpoints(None, "alice", "us-central1")
    deps = _NoCompute()
    found = find_leftovers(ctx, deps)  # StorageApi built from GPUCTL_STORAGE_ENDPOINT
    assert [(f.kind, f.vm, f.resource.kind, f.resource.name) for f in found] == [
        ("orphan", CHECKPOINTS_VM, "bucket", default_bucket_name(gcs_emulator.project))]


def test_a_missing_emulator_build_fails_the_test_naming_the_script(tmp_path, monkeypatch):
    """No skip: without the binary, every emulator test fails and says how to build it."""
    from tests.gcs.fixtures import emulator_binary

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(pytest.fail.Exception, match="scripts/build-gcs-emulator.sh"):
        emulator_binary()
