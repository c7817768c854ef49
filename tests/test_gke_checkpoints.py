"""`checkpoints:` on GKE: the bucket folder is mounted into the Job's pods through the Cloud
Storage FUSE CSI driver, so a pod that replaces a preempted one resumes from the same files.

Rendering is checked offline; admission, the Job controller's replacement of a disrupted pod
and the pods it creates are checked on the real control plane (tests/k8s/). The CSI driver
itself (a node plugin) does not exist there: what is tested is that every attempt asks for the
same bucket folder, under the same identity, with the same environment."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gpuctl.adapters.storage import default_bucket_name
from gpuctl.cli.main import cli
from gpuctl.gke import jobs
from gpuctl.gke.manifests import (CHECKPOINT_ACCOUNT, CHECKPOINT_MOUNT, GCS_FUSE_ANNOTATION,
                                  GCS_FUSE_DRIVER, build_job_manifests)
from gpuctl.jobspec import JobSpecError
from tests.test_gke_workloads import kube, manifests, pods_of, spec, wait_for  # noqa: F401

URL = "gs://team-ckpt/llama"


def pod_template(objects):
    return objects[-1]["spec"]["template"]


def checkpoint_view(template: dict) -> dict:
    """What a pod is told about its checkpoints: volume, mount, identity, environment."""
    pod = template["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "checkpoints"]
    (trainer,) = [c for c in pod["containers"] if c["name"] == "trainer"]
    env = {e["name"]: e.get("value") for e in trainer["env"]}
    return {"volume": volume["csi"], "account": pod.get("serviceAccountName"),
            "annotation": (template["metadata"].get("annotations") or {}).get(GCS_FUSE_ANNOTATION),
            "mounts": [m["mountPath"] for m in trainer["volumeMounts"] if m["name"] == "checkpoints"],
            "dir": env.get("GPUCTL_CHECKPOINT_DIR"), "url": env.get("GPUCTL_CHECKPOINT_URL")}


def test_the_bucket_folder_of_the_run_is_mounted_with_its_identity_and_environment():
    objects = build_job_manifests(spec(checkpoints=URL + "/"), namespace="ml", owner="alice")
    assert checkpoint_view(pod_template(objects)) == {
        "volume": {"driver": GCS_FUSE_DRIVER,
                   "volumeAttributes": {"bucketName": "team-ckpt",
                                        "mountOptions": "implicit-dirs,only-dir=llama/train"}},
        "account": CHECKPOINT_ACCOUNT, "annotation": "true", "mounts": [CHECKPOINT_MOUNT],
        "dir": CHECKPOINT_MOUNT, "url": "gs://team-ckpt/llama/train"}
    # Without checkpoints: no volume, no account, no annotation (the default stays as it was).
    plain = pod_template(build_job_manifests(spec(), namespace="ml", owner="alice"))
    assert "serviceAccountName" not in plain["spec"] and "annotations" not in plain["metadata"]
    assert plain["spec"]["automountServiceAccountToken"] is False


def test_auto_names_the_projects_bucket_and_needs_a_project():
    objects = build_job_manifests(spec(checkpoints="auto"), namespace="ml", owner="alice",
                                  project="my-project-1")
    view = checkpoint_view(pod_template(objects))
    assert view["volume"]["volumeAttributes"]["bucketName"] == default_bucket_name("my-project-1")
    assert view["url"] == f"gs://{default_bucket_name('my-project-1')}/train"
    with pytest.raises(JobSpecError, match="checkpoints: auto names its bucket after the project"):
        build_job_manifests(spec(checkpoints="auto"), namespace="ml", owner="alice")


def test_dry_run_says_which_grant_gpuctl_will_make(tmp_path, monkeypatch):
    job = tmp_path / "job.yaml"
    job.write_text(f"name: llama\ncommand: [python, train.py]\ncheckpoints: {URL}\n")
    monkeypatch.setenv("GPUCTL_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["run", "--gke", str(job), "--dry-run", "-n", "ml"])
    assert result.exit_code == 0, result.output
    assert "# note: checkpoints: the pods mount gs://team-ckpt/llama/llama as /gpuctl/checkpoints" \
        in result.stdout
    assert "on submit gpuctl will grant it roles/storage.objectUser on gs://team-ckpt" in result.stdout
    assert "--role=roles/storage.objectUser" in result.stdout
    assert "subject/ns/ml/sa/gpuctl-trainer" in result.stdout
    assert "only-dir=llama/llama" in result.stdout


def test_a_replacement_pod_mounts_the_same_checkpoints_as_the_one_preempted(kube, k8s_cluster,
                                                                             k8s_namespace):
    jobs.submit(kube, manifests(k8s_namespace, outcome="hold", max_retries=2, checkpoints=URL))
    account = kube.get("v1", "ServiceAccount", CHECKPOINT_ACCOUNT, k8s_namespace)
    assert account is not None and account["automountServiceAccountToken"] is False
    first = wait_for(lambda: next((p for p in pods_of(kube, k8s_namespace, "train")
                                   if p["status"].get("phase") == "Running"), None), what="running")
    k8s_cluster.preempt_pod(k8s_namespace, first["metadata"]["name"])

    def replacement():
        return next((p for p in pods_of(kube, k8s_namespace, "train")
                     if p["metadata"]["name"] != first["metadata"]["name"]
                     and p["status"].get("phase") == "Running"), None)

    second = wait_for(replacement, what="a replacement pod")
    views = [checkpoint_view({"metadata": p["metadata"], "spec": p["spec"]}) for p in (first, second)]
    assert views[0] == views[1]  # same bucket folder, identity and environment: it resumes
    assert views[1]["volume"]["volumeAttributes"] == {
        "bucketName": "team-ckpt", "mountOptions": "implicit-dirs,only-dir=llama/train"}
    assert second["spec"]["serviceAccountName"] == CHECKPOINT_ACCOUNT
    (row,) = jobs.list_jobs(kube, k8s_namespace)
    assert row["restarts"] == 1
    # A second job in the namespace shares the account rather than failing on it.
    jobs.submit(kube, manifests(k8s_namespace, outcome="hold", name="train-2", checkpoints=URL))
    assert len(kube.list("v1", "ServiceAccount", k8s_namespace,
                         label_selector="gpuctl-managed=true")) == 1
