"""The CLI: CliRunner for behaviour, real subprocesses of the installed `gpuctl` for startup."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuctl.cli.main import cli

GPUCTL = shutil.which("gpuctl", path=str(Path(sys.executable).parent))


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_profiles_json_lists_every_profile_with_prices_per_region():
    result = run("profiles", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    by_name = {p["name"]: p for p in data["profiles"]}
    assert {"t4-spot", "l4-spot", "a100-spot", "a100-80-spot", "h100-spot", "a100x4-spot",
            "t4-ondemand", "a100-ondemand"} <= set(by_name)
    a100 = by_name["a100-spot"]["regions"]
    assert {"us-central1", "asia-northeast1"} <= set(a100)  # and every other region selling it
    assert a100["asia-northeast1"]["zones"] == ["asia-northeast1-a", "asia-northeast1-c"]
    assert a100["us-central1"]["hourly_usd"] > 0
    assert set(by_name["a100-80-spot"]["regions"]) == {"us-central1"}
    assert data["prices_as_of"]


def test_profiles_table():
    result = CliRunner().invoke(cli, ["profiles"], env={"COLUMNS": "80"})  # an 80-column terminal
    assert result.exit_code == 0
    assert "a100x4-spot" in result.stdout and "h200x8-spot" in result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines())  # fits an 80-column terminal


def test_cost_json_has_breakdown_and_forgotten_table():
    result = run("cost", "a100-spot", "--json", "--hours", "10")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    items = [line["item"] for line in data["breakdown"]]
    assert items == ["host", "gpu", "local-ssd", "boot-disk", "external-ip"]
    assert data["hourly_usd"] == pytest.approx(sum(l["usd_per_hour"] for l in data["breakdown"]), abs=1e-3)
    assert data["for_hours"]["usd"] == pytest.approx(10 * data["hourly_usd"], abs=0.01)
    periods = {row["period"]: row for row in data["forgotten"]}
    assert periods["1 week"]["running_usd"] == pytest.approx(168 * data["hourly_usd"], abs=0.01)
    assert 0 < periods["30 days"]["stopped_usd"] < periods["30 days"]["running_usd"]


def test_cost_budget_in_yen(config_file):
    config_file('currency = "JPY"\nfx_rate = 150\n')
    result = run("cost", "t4-spot", "--budget", "3000JPY")
    assert result.exit_code == 0, result.stderr
    assert "¥" in result.stdout and "buys" in result.stdout and "1 USD = 150 JPY" in result.stdout


def test_up_dry_run_human_output_shows_everything():
    result = run("up", "a100-spot", "--dry-run", "--stop-at", "06:00", "--tz", "Asia/Tokyo")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for heading in ("Resources", "Provisioning over SSH", "Guards", "Hourly cost", "If you forget it",
                    "worst case", "nothing was created"):
        assert heading in out
    assert "a2-highgpu-1g" in out and "daily-stop" in out and "CALLER_IP/32" in out


def test_up_dry_run_json():
    result = run("up", "a100-spot", "--dry-run", "--json", "--ttl", "6h")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["profile"] == "a100-spot"
    assert {"type", "name", "inputs"} <= set(data["resources"][0])
    assert data["guards"][0]["kind"] == "max_run_duration"
    assert data["guards"][0]["fires_in_seconds"] == 6 * 3600
    assert data["cost"]["hourly_usd"] > 0 and len(data["cost"]["forgotten"]) == 3


def test_live_up_without_credentials_names_them_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud ADC file either
    monkeypatch.delenv("CLOUDSDK_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["up", "a100-spot", "-y"])
    assert result.exit_code == 3
    assert "Application Default Credentials" in result.stderr
    assert "gcloud auth application-default login" in result.stderr
    assert not (tmp_path / "gpuctl-home" / "vms").exists()


BAD_INPUTS = [
    (["up", "a100-spto", "--dry-run"], "unknown profile 'a100-spto'"),
    (["up", "a100-spot", "--dry-run", "--zone", "mars-1"], "not a zone name"),
    (["up", "a100-spot", "--dry-run", "--zone", "asia-northeast1-b"], "not offered in asia-northeast1-b"),
    (["up", "a100-spot", "--dry-run", "--ttl", "6"], "is not a duration"),
    (["up", "a100-spot", "--dry-run", "--budget", "twenty"], "not an amount of money"),
    (["up", "a100-spot", "--dry-run", "--ttl", "none"], "no server-side guard"),
    (["cost", "a100-spot", "--budget", "-5"], "not an amount of money"),
    (["cost", "nope"], "unknown profile"),
    (["cost", "a100-spot", "--region", "mars1"], "no GPU data for region"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
def test_bad_input_is_one_line_with_a_hint_and_creates_nothing(args, message, isolated_home):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0] and "(hint: " in lines[0]
    assert "Traceback" not in result.output
    assert not isolated_home.exists() or not any(isolated_home.iterdir())


def test_broken_config_file_is_one_line(config_file):
    config_file("region = [unclosed\n")
    result = CliRunner().invoke(cli, ["profiles"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "is not valid TOML" in result.stderr


def test_config_with_unknown_key(config_file):
    config_file('regoin = "us-central1"\n')
    result = CliRunner().invoke(cli, ["cost", "a100-spot"])
    assert result.exit_code == 2 and "regoin" in result.stderr


def test_debug_env_shows_traceback(monkeypatch):
    monkeypatch.setenv("GPUCTL_DEBUG", "1")
    result = CliRunner().invoke(cli, ["cost", "nope"])
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "ProfileError"


def _modules_loaded_by(args: list[str]) -> list[str]:
    """Run the CLI in a fresh interpreter and list the heavy libraries it imported."""
    code = (
        "import sys, json\n"
        "from gpuctl.cli.main import cli\n"
        f"try:\n    cli.main({args!r}, prog_name='gpuctl')\nexcept SystemExit:\n    pass\n"
        "heavy = ('google', 'pulumi', 'pulumi_gcp', 'kubernetes', 'fabric', 'paramiko', 'grpc')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_imports_no_cloud_library():
    assert _modules_loaded_by(["--help"]) == []


def test_offline_price_commands_import_no_cloud_library():
    assert _modules_loaded_by(["profiles"]) == []
    assert _modules_loaded_by(["cost", "a100-spot"]) == []


def test_dry_run_really_runs_the_pulumi_program():
    assert "pulumi_gcp.compute" in _modules_loaded_by(["up", "a100-spot", "--dry-run", "--json"])


def test_installed_console_script_runs_the_plan(tmp_path):
    assert GPUCTL, "the gpuctl console script must be installed next to this interpreter"
    env = dict(os.environ, GPUCTL_HOME=str(tmp_path / "home"), GPUCTL_CONFIG=str(tmp_path / "c.toml"))
    out = subprocess.run([GPUCTL, "up", "a100-spot", "--dry-run", "--json"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["profile"] == "a100-spot"
    version = subprocess.run([GPUCTL, "--version"], capture_output=True, text=True, env=env)
    assert version.stdout.startswith("gpuctl 0.1.0 (gpuctl-gcp); bundled prices as of 2026-12-01")


def test_error_lines_follow_no_color():
    from click.testing import CliRunner

    from gpuctl.cli.main import cli

    coloured = CliRunner().invoke(cli, ["cost", "no-such-profile"], color=True)
    plain = CliRunner().invoke(cli, ["cost", "no-such-profile"], color=True, env={"NO_COLOR": "1"})
    assert coloured.exit_code == plain.exit_code != 0
    assert "\x1b[" in coloured.stderr and "\x1b[" not in plain.stderr
    assert plain.stderr.startswith("error: ")


def test_cost_shows_the_deadline_and_the_hard_cap():
    data = json.loads(run("cost", "a100-spot", "--ttl", "6h", "--cap", "24h", "--json").stdout)
    limits = data["limits"]
    assert (limits["deadline_hours"], limits["cap_hours"]) == (6, 24)
    assert limits["cap_usd"] == pytest.approx(4 * limits["deadline_usd"], abs=0.02)
    refused = CliRunner().invoke(cli, ["cost", "a100-spot", "--ttl", "6h"])
    assert refused.exit_code == 2 and "--ttl and --cap go together" in refused.stderr


def test_cost_refuses_a_region_without_the_offer_and_marks_a_partial_total():
    absent = CliRunner().invoke(cli, ["cost", "l4-spot", "--region", "me-west1"])
    assert absent.exit_code == 2 and "is not offered in me-west1" in absent.stderr
    assert "--region with one of" in absent.stderr
    partial = CliRunner().invoke(cli, ["cost", "l4-spot", "--region", "europe-west4"], env={"COLUMNS": "120"})
    total = next(line for line in partial.stdout.splitlines() if "total" in line)
    assert "+" in total  # local SSD and boot disk have no price there: the total is a floor
