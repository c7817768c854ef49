"""`gpuctl check` against stand-ins (token endpoint, Service Usage, Resource Manager, Compute
regions), driven through the real client libraries: all pass, then each failure injected
alone, named on its own FAIL line with a fix, and a non-zero exit."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from gpuctl.checks.needs import APIS, PERMISSIONS
from gpuctl.cli.main import cli
from tests.gcp_provider.plugin import PINNED_CLI_VERSION, pulumi_bin_dir
from tests.standins.oauth_token import TokenStandIn
from tests.standins.region_quotas import RegionQuotasStandIn
from tests.standins.resourcemanager import ResourceManagerStandIn
from tests.standins.serviceusage import ServiceUsageStandIn

PROJECT = "my-proj"


def service_account_adc(path, token_uri: str) -> str:
    """A service-account key file whose token_uri is the stand-in. (An authorized_user file
    would not do: google-auth always sends those to oauth2.googleapis.com.)"""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({"type": "service_account", "client_email": "ci@my-proj.iam.gserviceaccount.com",
                                "private_key": pem, "private_key_id": "k1", "client_id": "1",
                                "token_uri": token_uri}))
    return str(path)


@pytest.fixture
def apis(tmp_path, monkeypatch):
    token = TokenStandIn().start()
    usage = ServiceUsageStandIn(PROJECT, set(APIS)).start()
    iam = ResourceManagerStandIn(PROJECT).start()
    quotas = RegionQuotasStandIn(PROJECT, {"us-central1": {"NVIDIA_T4_GPUS": (4, 0),
                                                          "PREEMPTIBLE_NVIDIA_T4_GPUS": (8, 2)}}).start()
    pulumi = pulumi_bin_dir()  # the real CLI, built from Go modules (found before HOME moves)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("PATH", f"{pulumi}:/usr/bin:/bin")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "no-pulumi-home"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", service_account_adc(tmp_path / "adc.json", token.token_uri))
    monkeypatch.setenv("GPUCTL_PROJECT", PROJECT)
    monkeypatch.setenv("GPUCTL_SSH_FROM", "198.51.100.7")
    monkeypatch.setenv("GPUCTL_SERVICEUSAGE_ENDPOINT", usage.endpoint)
    monkeypatch.setenv("GPUCTL_RESOURCEMANAGER_ENDPOINT", iam.endpoint)
    monkeypatch.setenv("GPUCTL_COMPUTE_ENDPOINT", quotas.endpoint)
    monkeypatch.setenv("GPUCTL_HTTP_TIMEOUT", "5")
    yield {"token": token, "usage": usage, "iam": iam, "quotas": quotas, "tmp": tmp_path}
    for server in (token, usage, iam, quotas):
        server.stop()


def run_check(*args: str):
    result = CliRunner().invoke(cli, ["check", "--json", *args])
    return result, {r["name"]: r for r in json.loads(result.stdout)}


def failing(by_name: dict) -> list[str]:
    return [name for name, r in by_name.items() if r["status"] == "fail"]


def test_everything_in_place_passes(apis):
    result, by_name = run_check("--profile", "t4-spot", "--region", "us-central1")
    assert result.exit_code == 0, result.output
    assert failing(by_name) == []
    assert by_name["credentials"]["detail"] == "service account ci@my-proj.iam.gserviceaccount.com (key file)"
    assert apis["token"].requests, "the credentials were refreshed at the token stand-in"
    assert by_name["Pulumi CLI"]["detail"].startswith(PINNED_CLI_VERSION)
    assert "PREEMPTIBLE_NVIDIA_T4_GPUS: 6 of 8 free" in by_name["GPU quota t4-spot in us-central1"]["detail"]
    assert all(by_name[f"API {name}"]["status"] == "ok" for name in APIS)
    assert all(by_name[f"permissions {c}"]["status"] == "ok" for c in PERMISSIONS)
    # The calls really went through the client libraries to the stand-ins, with the token.
    batch = apis["usage"].requests[-1]
    assert batch.path == f"/v1/projects/{PROJECT}/services:batchGet"
    assert sorted(n.rsplit("/", 1)[-1] for n in batch.query["names"]) == sorted(APIS)
    asked = apis["iam"].requests[-1].body["permissions"]
    assert "cloudscheduler.jobs.update" in asked and "container.clusters.create" in asked


def test_human_output_is_one_line_per_check(apis):
    result = CliRunner().invoke(cli, ["check", "--profile", "t4-spot"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 + len(APIS) + len(PERMISSIONS) + 1 + 2
    assert all(line.strip().startswith("ok") for line in lines)


def inject(apis, fault: str, monkeypatch) -> None:
    if fault == "credentials":
        apis["token"].revoke()
    elif fault == "api":
        apis["usage"].disable("container.googleapis.com")
    elif fault == "permission":
        apis["iam"].revoke("cloudscheduler.jobs.update")
    elif fault == "quota":
        apis["quotas"].set_quota("us-central1", "PREEMPTIBLE_NVIDIA_T4_GPUS", 8, 8)
    elif fault == "pulumi":
        monkeypatch.setenv("PATH", "/usr/bin:/bin")
    elif fault == "ssh-source":
        import urllib.request

        monkeypatch.delenv("GPUCTL_SSH_FROM")

        def offline(*args, **kwargs):
            raise OSError("network is unreachable")
        monkeypatch.setattr(urllib.request, "urlopen", offline)
    elif fault == "project":
        monkeypatch.delenv("GPUCTL_PROJECT")


FAULTS = {  # fault -> (the line that fails, words of its detail, words of its fix)
    "credentials": ("credentials", "refused by Google", "application-default login"),
    "api": ("API container.googleapis.com", "not enabled", "gcloud services enable container.googleapis.com"),
    "permission": ("permissions extend", "cloudscheduler.jobs.update", "roles/cloudscheduler.admin"),
    "quota": ("GPU quota t4-spot in us-central1", "0 of 8 free", "PREEMPTIBLE_NVIDIA_T4_GPUS"),
    "pulumi": ("Pulumi CLI", "not installed", "get.pulumi.com"),
    "ssh-source": ("SSH source", "could not detect your public address", "--ssh-from"),
    "project": ("project", "no Google Cloud project", "gcloud config set project"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_failure_is_named_with_its_fix_and_fails_the_command(apis, fault, monkeypatch):
    inject(apis, fault, monkeypatch)
    result, by_name = run_check("--profile", "t4-spot", "--region", "us-central1")
    line, detail, fix = FAULTS[fault]
    assert result.exit_code != 0
    assert failing(by_name) == [line], by_name
    assert detail in by_name[line]["detail"] and fix in by_name[line]["fix"]
    stderr = result.stderr.strip().splitlines()
    assert len(stderr) == 1 and stderr[0].startswith("error: ") and "(hint: " in stderr[0]


def test_spot_falls_back_to_standard_quota_without_preemptible_quota(apis):
    apis["quotas"].set_quota("us-central1", "PREEMPTIBLE_NVIDIA_T4_GPUS", 0, 0)
    apis["quotas"].set_quota("us-central1", "NVIDIA_T4_GPUS", 1, 1)
    result, by_name = run_check("--profile", "t4-spot")
    assert result.exit_code != 0
    assert by_name["GPU quota t4-spot in us-central1"]["detail"].startswith("NVIDIA_T4_GPUS: 0 of 1")


def test_service_usage_refused_fails_every_api_line(apis):
    apis["usage"].refuse()
    result, by_name = run_check()
    assert result.exit_code != 0
    assert sorted(failing(by_name)) == sorted(f"API {n}" for n in APIS)
    assert "serviceusage.googleapis.com" in by_name["API compute.googleapis.com"]["fix"]


def test_without_credentials_later_checks_are_skipped_not_faked(apis, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(apis["tmp"] / "missing.json"))
    result, by_name = run_check("--profile", "t4-spot")
    assert result.exit_code != 0
    assert by_name["credentials"]["status"] == "fail"
    assert by_name["API compute.googleapis.com"]["status"] == "skip"
    assert apis["usage"].requests == [] and apis["iam"].requests == []


def test_with_iap_gcloud_is_checked_and_its_absence_fails_with_the_install_hint(apis, monkeypatch):
    monkeypatch.setenv("GPUCTL_IAP", "true")
    # Only the Pulumi CLI on PATH: this machine may have Google's gcloud in /usr/bin (= /bin).
    pulumi = os.environ["PATH"].split(":")[0]  # the fixture put the real CLI first
    monkeypatch.setenv("PATH", pulumi)
    result, by_name = run_check("--profile", "t4-spot")
    assert result.exit_code != 0
    assert failing(by_name) == ["gcloud (iap = true)"]
    assert by_name["gcloud (iap = true)"]["detail"] == "the Google Cloud CLI is not on PATH"
    assert "cloud.google.com/sdk/docs/install" in by_name["gcloud (iap = true)"]["fix"]

    # A gcloud that runs (the real one prints "Google Cloud SDK <version>" first) passes.
    bin_dir = apis["tmp"] / "gcloud-bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text('#!/bin/sh\n[ "$1" = --version ] && echo "Google Cloud SDK 548.0.0" && exit 0\nexit 2\n')
    (bin_dir / "gcloud").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{pulumi}")
    result, by_name = run_check("--profile", "t4-spot")
    assert result.exit_code == 0, result.output
    assert by_name["gcloud (iap = true)"] == {**by_name["gcloud (iap = true)"], "status": "ok",
                                              "detail": "Google Cloud SDK 548.0.0"}


def test_without_iap_gcloud_is_not_asked_for(apis):
    _, by_name = run_check("--profile", "t4-spot")
    assert "gcloud (iap = true)" not in by_name
