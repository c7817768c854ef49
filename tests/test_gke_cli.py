"""`gpuctl gke` through CliRunner and the installed command: dry runs that create nothing, bad
flags as one line with exit 2, up -> status -> down on the GKE stand-in, and `gke token`."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuctl.cli.main import cli
from gpuctl.gke import cluster as cluster_service
from tests.standins.gke_fixtures import PROJECT, gke_api, gke_deps_standin, gke_engine, gke_iam  # noqa: F401

GPUCTL = Path(sys.executable).parent / "gpuctl"


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


# --- dry run ---------------------------------------------------------------------------------


def test_dry_run_shows_resources_and_cost_and_creates_nothing(isolated_home):
    result = run("gke", "up", "--dry-run", "--pools", "l4:3,t4", "--name", "ml")
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("GKE cluster ml in us-central1-a", "container.Cluster", "ml-gpu-l4", "ml-gpu-t4",
                 "ml-system", "idle (no GPU node)", "each gpu-l4 node", "cluster fee", "$0.1000"):
        assert text in out, text
    assert not isolated_home.exists() or not any(isolated_home.rglob("*"))  # nothing written


def test_dry_run_json(isolated_home):
    result = run("gke", "up", "--dry-run", "--json", "--pools", "a100", "--zone", "asia-northeast1-c")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["zone"] == "asia-northeast1-c" and report["cluster"] == "gpuctl"
    assert [r["name"] for r in report["resources"]] == [
        "gpuctl-nodes", "gpuctl", "gpuctl-nodes-role", "gpuctl-system", "gpuctl-gpu-a100"]
    cost = report["cost"]
    assert cost["cluster_fee_usd_per_hour"] == 0.1
    assert cost["idle_usd_per_hour"] == pytest.approx(0.1 + cost["system_pool"]["usd_per_node_hour"], abs=1e-4)
    assert cost["gpu_pools"][0]["usd_per_node_hour"] > 1.0  # an A100 node in Tokyo


@pytest.mark.parametrize(("args", "text"), [
    (["--pools", "h100"], "error: --pools: 'h100' is not a GPU gpuctl runs on GKE (hint: use t4, l4, a100"),
    (["--pools", "l4,,t4"], "error: --pools 'l4,,t4' has an empty item"),
    (["--pools", "l4", "--zone", "us-central1-f"], "error: L4 24GB is not offered in us-central1-f (hint: use one of"),
    (["--pools", "a100@n1-standard-8"], "cannot run on n1-standard-8 in GKE (hint: T4 runs on n1-*"),
    (["--max-nodes", "40"], "max nodes 40 is out of range (hint: use 1 to 16"),
    (["--name", "Bad_Name"], "is not a valid GKE cluster name"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_created(args, text, isolated_home, monkeypatch):
    monkeypatch.setattr(cluster_service, "gke_deps", lambda *a, **k: pytest.fail("reached the cloud"))
    for mode in (["--dry-run"], ["-y"]):
        result = CliRunner().invoke(cli, ["gke", "up", *mode, *args])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and text in lines[0], result.output
    assert not isolated_home.exists() or not any(isolated_home.rglob("*"))


def test_gke_help_lists_commands_but_not_token():
    result = run("gke", "--help")
    assert result.exit_code == 0
    assert all(word in result.output for word in ("up", "down", "status"))
    assert "token" not in result.output


def test_cli_module_imports_no_cloud_library():
    code = ("import sys; import gpuctl.cli.gke_cmd, gpuctl.cli.main; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_gcp', 'kubernetes') "
            "or m.startswith('google.cloud') or m.startswith('google.auth')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_installed_command_dry_run(tmp_path):
    env = {**os.environ, "GPUCTL_HOME": str(tmp_path / "home"), "GPUCTL_CONFIG": str(tmp_path / "c.toml"),
           "GPUCTL_OWNER": "alice"}
    out = subprocess.run([str(GPUCTL), "gke", "up", "--dry-run", "--json", "--pools", "t4:1"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["labels"]["gpuctl-owner"] == "alice"
    assert report["cost"]["gpu_pools"][0]["max_nodes"] == 1
    bad = subprocess.run([str(GPUCTL), "gke", "up", "--dry-run", "--pools", "t4:x"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "is not a node count" in bad.stderr
    assert not (tmp_path / "home").exists()


# --- live, against the stand-in --------------------------------------------------------------


def test_up_status_down_through_the_cli(gke_api, gke_deps_standin, monkeypatch, config_file):
    config_file(f'project = "{PROJECT}"\nssh_from = "198.51.100.7"\n')
    monkeypatch.setattr(cluster_service, "gke_deps", lambda ctx, need_engine=True: gke_deps_standin)

    up = run("gke", "up", "--name", "ml", "--pools", "l4:2,t4:1", "-y", "--json")
    assert up.exit_code == 0, up.output
    created = json.loads(up.output)
    assert created["context"] == "gpuctl-ml" and created["status"] == "RUNNING"
    assert created["plan"]["project"] == PROJECT
    assert {p["name"] for p in created["pools"]} == {"system", "gpu-l4", "gpu-t4"}

    gke_api.set_pool_size("ml", "gpu-t4", 1)
    status = run("gke", "status", "--json")
    (row,) = json.loads(status.output)
    t4 = next(p for p in row["pools"] if p["name"] == "gpu-t4")
    assert t4["nodes"] == 1 and t4["usd_per_hour"] == t4["usd_per_node_hour"]
    table = run("gke", "status")
    assert "gpu-t4" in table.output and "1 of 0..1" in table.output and "total now" in table.output

    down = run("gke", "down", "--name", "ml", "-y")
    assert down.exit_code == 0, down.output
    assert "cluster ml: deleted" in down.output
    assert gke_api.clusters == {} and gke_deps_standin.engine.list_stacks() == []
    assert run("gke", "status").output.strip() == "no gpuctl GKE clusters"
    assert "nothing to delete" in run("gke", "down", "--name", "ml", "-y").output


def test_up_without_yes_asks_and_stops_on_no(gke_api, gke_deps_standin, monkeypatch, config_file):
    config_file(f'project = "{PROJECT}"\nssh_from = "198.51.100.7"\n')
    monkeypatch.setattr(cluster_service, "gke_deps", lambda ctx, need_engine=True: gke_deps_standin)
    result = CliRunner().invoke(cli, ["gke", "up", "--name", "ml"], input="n\n")
    assert result.exit_code == 1 and "create cluster ml in us-central1-a?" in result.output
    assert gke_api.clusters == {} and gke_deps_standin.engine.list_stacks() == []


# --- gke token -------------------------------------------------------------------------------


class FakeCredentials:
    token, expiry = None, None

    def refresh(self, request):
        self.token = "ya29.from-adc"
        self.expiry = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(hours=1)


@pytest.fixture
def adc(monkeypatch):
    import google.auth

    calls = []

    def default(scopes=None):
        calls.append(scopes)
        return FakeCredentials(), "my-project-1"

    monkeypatch.setattr(google.auth, "default", default)
    return calls


def test_token_prints_an_exec_credential_and_caches_it(adc, isolated_home):
    first = run("gke", "token")
    assert first.exit_code == 0, first.output
    credential = json.loads(first.output)
    assert credential["kind"] == "ExecCredential"
    assert credential["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert credential["spec"] == {}
    assert credential["status"]["token"] == "ya29.from-adc"
    expiry = dt.datetime.strptime(credential["status"]["expirationTimestamp"],
                                  "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert dt.timedelta(minutes=55) < expiry - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(hours=1)
    cache = isolated_home / "kube" / "token.json"
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    assert json.loads(run("gke", "token").output) == credential
    assert len(adc) == 1  # the second answer came from the cache


def test_token_answers_in_the_version_kubectl_asks_for(adc):
    info = json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                       "spec": {"interactive": False}})
    result = run("gke", "token", env={"KUBERNETES_EXEC_INFO": info})
    assert json.loads(result.output)["apiVersion"] == "client.authentication.k8s.io/v1"


def test_token_refreshes_when_the_cache_is_nearly_expired(adc):
    from gpuctl.gke.kube_access import cache_token

    cache_token("ya29.old", dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=2))
    assert json.loads(run("gke", "token").output)["status"]["token"] == "ya29.from-adc"
    assert len(adc) == 1


def test_token_without_adc_is_one_line(monkeypatch):
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def default(scopes=None):
        raise DefaultCredentialsError("not found")

    monkeypatch.setattr(google.auth, "default", default)
    result = CliRunner().invoke(cli, ["gke", "token"])
    assert result.exit_code == 3
    assert result.output.strip().splitlines() == [
        "error: no Google Cloud credentials found (Application Default Credentials) "
        "(hint: run `gcloud auth application-default login`)"]
