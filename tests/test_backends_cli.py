"""`gpuctl run | jobs | logs | cancel` on both backends: GKE against the real test control plane
(tests/k8s/), the VM side against a real throwaway SSH host (tests/hosts/)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner

from gpuctl.adapters.kube import connect
from gpuctl.cli.main import cli
from tests.gke_helpers import kube_flags
from tests.k8s.cluster import wait_for

IMAGE = "us-docker.pkg.dev/my-project/train/llama:1.0"
LORA = Path(__file__).parent.parent / "examples" / "lora"


def test_jobs_logs_cancel_with_gke_on_the_control_plane(k8s_cluster, k8s_namespace, tmp_path,
                                                        monkeypatch):
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "requirements.txt").write_text("\n")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"name": "both-ways", "command": ["python", "train.py"],
                                    "workdir": ".", "requirements": "requirements.txt",
                                    "secrets": {"HF_TOKEN": "env:HF_TOKEN"}, "image": IMAGE}))
    monkeypatch.setenv("HF_TOKEN", "hf-value-from-the-shell")
    where = kube_flags(k8s_cluster, k8s_namespace)
    runner = CliRunner()
    submitted = runner.invoke(cli, ["run", "--gke", str(path), "-y", *where])
    assert submitted.exit_code == 0, submitted.output
    assert "gpuctl logs --gke -f both-ways" in submitted.stdout
    kube = connect(k8s_cluster.kubeconfig, k8s_cluster.context)
    secret = kube.get("v1", "Secret", "both-ways-secrets", k8s_namespace)
    assert secret["metadata"]["ownerReferences"][0]["name"] == "both-ways"
    assert kube.get("v1", "ConfigMap", "both-ways-code", k8s_namespace)["binaryData"]["code.tar.gz"]

    listed = runner.invoke(cli, ["jobs", "--gke", "--json", *where])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["name"] == "both-ways" and row["backend"] == "gke" and row["accelerator"] == "nvidia-l4"
    table = runner.invoke(cli, ["jobs", "--gke", *where])
    assert table.exit_code == 0 and "both-ways" in table.stdout

    # KWOK plays the kubelet's status but serves no logs: the apiserver cannot fetch them,
    # and gpuctl says so in one line (a documented limit of the test control plane).
    wait_for(lambda: kube.list("v1", "Pod", k8s_namespace,
                               label_selector="gpuctl-job=both-ways"), what="a pod")
    logs = runner.invoke(cli, ["logs", "--gke", "both-ways", *where])
    assert logs.exit_code != 0
    (line,) = logs.stderr.strip().splitlines()
    assert line.startswith("error: ") and "(hint: " in line and "Traceback" not in logs.output

    cancelled = runner.invoke(cli, ["cancel", "--gke", "both-ways", "--grace", "1s", *where])
    assert cancelled.exit_code == 0, cancelled.output
    assert "Job/both-ways" in cancelled.stdout
    # The ConfigMap and Secret go too (deleted by cancel, or first by the garbage collector).
    from gpuctl.gke.jobs import leftovers

    wait_for(lambda: not leftovers(kube, k8s_namespace, "both-ways"), what="nothing left")
    missing = runner.invoke(cli, ["cancel", "--gke", "both-ways", *where])
    assert missing.exit_code == 1 and "gpuctl jobs --gke" in missing.stderr
    fetched = runner.invoke(cli, ["fetch", "--gke", "both-ways", "out"])
    assert fetched.exit_code == 1 and "gs://" in fetched.stderr


def test_the_example_job_file_dry_runs_on_a_host_unchanged(throwaway_host, tmp_path, monkeypatch):
    host = throwaway_host
    example = tmp_path / "lora"
    shutil.copytree(LORA, example, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("HF_TOKEN", "hf-not-sent-in-a-dry-run")
    result = CliRunner().invoke(cli, [
        "run", f"{host.user}@{host.address}:{host.port}", str(example / "job.yaml"),
        "--ssh-key", str(host.key_path), "--known-hosts", str(host.known_hosts_path),
        "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["backend"] == "vm" and report["dry_run"] and report["name"] == "llama-lora"
    assert report["sync"]["upload"] >= 4 and report["secrets"] == ["HF_TOKEN"]
