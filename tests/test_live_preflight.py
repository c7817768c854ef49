"""`gpuctl up` without what the live path needs stops before creating anything and names the
missing piece: credentials, a project, the Pulumi CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gpuctl.cli.main import cli


def service_account_file(tmp_path, project: str | None) -> str:
    """A well-formed service-account key (never used against Google: nothing is called)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "client_email": "gpuctl-test@example.iam.gserviceaccount.com",
            "private_key": pem, "private_key_id": "k1", "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token"}
    if project:
        info["project_id"] = project
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    return str(path)


@pytest.fixture
def no_gcloud(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no pulumi here
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "no-pulumi"))
    for var in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        monkeypatch.delenv(var, raising=False)


def invoke_up():
    return CliRunner().invoke(cli, ["up", "a100-spot", "-y", "--ssh-from", "198.51.100.7"])


def test_without_a_project_the_error_names_it(tmp_path, monkeypatch, no_gcloud, isolated_home):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", service_account_file(tmp_path, None))
    result = invoke_up()
    assert result.exit_code == 3
    assert "no Google Cloud project" in result.stderr and "gcloud config set project" in result.stderr
    assert not (isolated_home / "vms").exists()


def test_without_the_pulumi_cli_the_error_names_it(tmp_path, monkeypatch, no_gcloud, isolated_home):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", service_account_file(tmp_path, "my-proj"))
    result = invoke_up()
    assert result.exit_code == 3
    assert "Pulumi CLI is not installed" in result.stderr and "get.pulumi.com" in result.stderr
    assert not (isolated_home / "vms").exists() and not (isolated_home / "keys").exists()
