"""gpuctl grants a checkpointed GKE Job's pods their bucket itself: roles/storage.objectUser on
that bucket to the Workload Identity principal of the namespace's gpuctl-trainer account, before
anything is created; `gpuctl gke down` of the project's last cluster takes back what it added.

Real parts: the real kubernetes control plane (tests/k8s/) for the submit, the real
google-cloud-storage client against the Cloud Storage emulator behind the contract proxy
(tests/gcs/: getIamPolicy/setIamPolicy with etags, held to storage.v1.json), the Resource
Manager stand-in (projects.get, held to cloudresourcemanager.v1.json) for the project number,
and for `gke down` the real Pulumi engine against the GKE stand-in."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml
from click.testing import CliRunner

from gpuctl.adapters.compute import CloudAccessError
from gpuctl.adapters.kube import connect
from gpuctl.adapters.resourcemanager import project_number
from gpuctl.adapters.storage import StorageApi
from gpuctl.cli.main import cli
from gpuctl.errors import GpuctlError
from gpuctl.gke.bucket_access import READ_WRITE, ensure_grant, principal, recorded
from gpuctl.gke.manifests import CHECKPOINT_ACCOUNT
from tests.gke_helpers import kube_flags
from tests.standins.gke_fixtures import PROJECT as GKE_PROJECT
from tests.standins.gke_fixtures import gke_api, gke_deps_standin, gke_engine, gke_iam  # noqa: F401
from tests.standins.resourcemanager import ResourceManagerStandIn
from tests.test_gke_cluster import SPEC
from tests.test_gke_workloads import IMAGE

PROJECT = "my-proj"
NUMBER = "481516234200"
BUCKET = "team-ckpt"
SET = "storage.buckets.setIamPolicy"
GET = "storage.buckets.getIamPolicy"


@pytest.fixture
def cloud(gcs_emulator, monkeypatch):
    """The emulator with the team's bucket, and Resource Manager answering the project number."""
    rm = ResourceManagerStandIn(PROJECT, number=NUMBER).start()
    monkeypatch.setenv("GPUCTL_RESOURCEMANAGER_ENDPOINT", rm.endpoint)
    monkeypatch.setenv("GPUCTL_PROJECT", PROJECT)
    monkeypatch.setenv("GPUCTL_HTTP_TIMEOUT", "5")
    gcs_emulator.client().create_bucket(BUCKET)
    yield gcs_emulator.contract.iam, rm
    rm.stop()


def member(namespace: str) -> str:
    return principal(namespace, CHECKPOINT_ACCOUNT, PROJECT, NUMBER)


def job_file(tmp_path, name: str = "llama") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "image": IMAGE, "command": "python train.py",
                                    "gpus_per_node": 1, "accelerator": "nvidia-l4",
                                    "checkpoints": f"gs://{BUCKET}/llama"}))
    return str(path)


def run(*args: str):
    return CliRunner().invoke(cli, ["run", "--gke", *args])


def test_the_principal_is_googles_identifier_for_the_namespaces_account():
    assert principal("ml", "gpuctl-trainer", "my-proj", "481516234200") == (
        "principal://iam.googleapis.com/projects/481516234200/locations/global/workloadIdentityPools/"
        "my-proj.svc.id.goog/subject/ns/ml/sa/gpuctl-trainer")


def test_project_number_comes_from_resource_manager_projects_get(cloud):
    _, rm = cloud
    assert project_number(PROJECT) == NUMBER
    assert [(r.method, r.path) for r in rm.requests] == [("GET", f"/v1/projects/{PROJECT}")]
    rm.revoke("resourcemanager.projects.get")
    with pytest.raises(CloudAccessError, match="refused access in project my-proj"):
        project_number(PROJECT)


def test_submit_grants_the_bucket_once_and_a_second_submit_writes_nothing(cloud, k8s_cluster,
                                                                          k8s_namespace, tmp_path):
    iam, _ = cloud
    where = kube_flags(k8s_cluster, k8s_namespace)
    before = iam.policy(BUCKET)["bindings"]
    result = run(job_file(tmp_path), "-y", "--json", *where)
    assert result.exit_code == 0, result.output
    grant = json.loads(result.stdout)["bucket_grant"]
    assert grant == {"bucket": BUCKET, "role": READ_WRITE, "member": member(k8s_namespace), "granted": True}
    after = iam.policy(BUCKET)["bindings"]
    # Exactly one new binding, for the one principal, with the project's number; nothing else moved.
    assert [b for b in after if b not in before] == [{"role": READ_WRITE, "members": [member(k8s_namespace)]}]
    assert all(b in after for b in before)
    assert len(iam.writes) == 1
    assert [g.member for g in recorded(PROJECT)] == [member(k8s_namespace)]

    result = run(job_file(tmp_path, "llama-2"), "-y", *where)
    assert result.exit_code == 0, result.output
    assert "granted" not in result.stderr  # already there: said nothing, wrote nothing
    assert len(iam.writes) == 1
    assert iam.members(BUCKET, READ_WRITE) == [member(k8s_namespace)]
    kube = connect(k8s_cluster.kubeconfig, k8s_cluster.context)
    assert {j["metadata"]["name"] for j in kube.list("batch/v1", "Job", k8s_namespace)} == {"llama", "llama-2"}


def test_a_policy_changed_in_between_is_read_again_and_kept(cloud, k8s_cluster, k8s_namespace, tmp_path):
    iam, _ = cloud

    def someone_else(policies):
        policies[BUCKET].setdefault("roles/storage.objectViewer", []).append("user:bob@example.com")

    iam.before_next_set(someone_else)
    result = run(job_file(tmp_path), "-y", *kube_flags(k8s_cluster, k8s_namespace))
    assert result.exit_code == 0, result.output
    assert f"granted {READ_WRITE} on gs://{BUCKET} to {member(k8s_namespace)}" in result.stderr
    assert iam.refused == [412]  # the stale etag was refused; the second write went through
    assert iam.members(BUCKET, READ_WRITE) == [member(k8s_namespace)]
    assert iam.members(BUCKET, "roles/storage.objectViewer") == ["user:bob@example.com"]


def test_a_refused_grant_fails_before_anything_exists_in_one_line_with_the_command(
        cloud, k8s_cluster, k8s_namespace, tmp_path):
    iam, _ = cloud
    iam.deny(SET)
    result = run(job_file(tmp_path), "-y", *kube_flags(k8s_cluster, k8s_namespace))
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()
    assert SET in line and "nothing was created" in line
    assert (f"(hint: ask an admin of the bucket to run: gcloud storage buckets add-iam-policy-binding "
            f"gs://{BUCKET} --role={READ_WRITE} --member={member(k8s_namespace)})") in line
    kube = connect(k8s_cluster.kubeconfig, k8s_cluster.context)
    assert kube.list("batch/v1", "Job", k8s_namespace) == []
    assert kube.get("v1", "ServiceAccount", CHECKPOINT_ACCOUNT, k8s_namespace) is None
    assert iam.writes == [] and recorded(PROJECT) == []


def test_a_policy_that_cannot_be_read_is_a_warning_and_the_job_goes_on(cloud, k8s_cluster,
                                                                        k8s_namespace, tmp_path):
    iam, _ = cloud
    iam.deny(GET)
    result = run(job_file(tmp_path), "-y", *kube_flags(k8s_cluster, k8s_namespace))
    assert result.exit_code == 0, result.output
    assert f"warning: could not read who may use gs://{BUCKET} ({GET} is missing)" in result.stderr
    assert "gcloud storage buckets add-iam-policy-binding" in result.stderr
    assert iam.writes == [] and recorded(PROJECT) == []


def test_a_missing_bucket_fails_before_anything_exists(cloud, k8s_cluster, k8s_namespace, tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"name": "llama", "image": IMAGE, "command": "python train.py",
                                    "checkpoints": "gs://no-such-bucket/x"}))
    result = run(str(path), "-y", *kube_flags(k8s_cluster, k8s_namespace))
    assert result.exit_code == 1, result.output
    assert "gs://no-such-bucket does not exist" in result.stderr
    kube = connect(k8s_cluster.kubeconfig, k8s_cluster.context)
    assert kube.list("batch/v1", "Job", k8s_namespace) == []


def test_dry_run_says_what_it_will_grant_and_asks_nothing(cloud, tmp_path):
    iam, rm = cloud
    result = run(job_file(tmp_path), "--dry-run", "-n", "ml")
    assert result.exit_code == 0, result.output
    assert f"on submit gpuctl will grant it {READ_WRITE} on gs://{BUCKET}" in result.stdout
    assert ("--member=principal://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/"
            "workloadIdentityPools/my-proj.svc.id.goog/subject/ns/ml/sa/gpuctl-trainer") in result.stdout
    assert iam.writes == [] and rm.requests == []


def test_a_binding_someone_else_made_is_neither_recorded_nor_written(cloud):
    iam, _ = cloud
    storage = StorageApi(PROJECT)
    assert storage.add_bucket_member(BUCKET, READ_WRITE, member("ml")) is True  # an admin, by hand
    iam.writes.clear()
    grant = ensure_grant(storage, PROJECT, NUMBER, BUCKET, "ml", CHECKPOINT_ACCOUNT)
    assert grant["granted"] is False and iam.writes == [] and recorded(PROJECT) == []


def test_the_placeholder_principal_is_refused_by_the_contract(cloud):
    with pytest.raises(GpuctlError, match="Invalid member"):
        StorageApi(PROJECT).add_bucket_member(BUCKET, READ_WRITE, principal("ml", CHECKPOINT_ACCOUNT))


def test_remove_takes_out_only_that_member(cloud):
    iam, _ = cloud
    storage = StorageApi(PROJECT)
    storage.add_bucket_member(BUCKET, READ_WRITE, "user:bob@example.com")
    storage.add_bucket_member(BUCKET, READ_WRITE, member("ml"))
    assert storage.remove_bucket_member(BUCKET, READ_WRITE, member("ml")) is True
    assert iam.members(BUCKET, READ_WRITE) == ["user:bob@example.com"]
    assert storage.remove_bucket_member(BUCKET, READ_WRITE, member("ml")) is False
    assert storage.remove_bucket_member("gone-bucket", READ_WRITE, member("ml")) is False


# --- gke down -------------------------------------------------------------------------------------


def test_gke_down_takes_back_what_gpuctl_granted_once_no_cluster_is_left(gcs_emulator, gke_api,
                                                                         gke_deps_standin):
    from gpuctl.gke.cluster import gke_down, gke_up

    gcs_emulator.client().create_bucket(BUCKET)
    iam = gcs_emulator.contract.iam
    storage = StorageApi(GKE_PROJECT)
    deps = replace(gke_deps_standin, storage=storage)
    by_hand = principal("other", CHECKPOINT_ACCOUNT, GKE_PROJECT, NUMBER)
    storage.add_bucket_member(BUCKET, READ_WRITE, by_hand)  # someone's own grant: never gpuctl's to take
    gke_up(SPEC, deps)
    ours = ensure_grant(storage, GKE_PROJECT, NUMBER, BUCKET, "ml", CHECKPOINT_ACCOUNT)["member"]

    seen = []
    other = gke_down("not-this-one", deps, lambda kind, text: seen.append((kind, text)))
    assert other.grants_removed == [] and "cluster(s) ml" in other.grants_kept
    assert sorted(iam.members(BUCKET, READ_WRITE)) == sorted([by_hand, ours])

    result = gke_down("ml", deps, lambda kind, text: seen.append((kind, text)))
    assert result.grants_removed == [{"project": GKE_PROJECT, "bucket": BUCKET, "role": READ_WRITE,
                                      "member": ours}]
    assert iam.members(BUCKET, READ_WRITE) == [by_hand]
    assert recorded(GKE_PROJECT) == []
    assert ("revoke", f"removed {READ_WRITE} on gs://{BUCKET} from {ours}") in seen
    assert gke_down("ml", deps).grants_removed == []  # nothing left to take back
