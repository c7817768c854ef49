"""Every example of bad input from issue 15, through the CLI: one `error: ... (hint: ...)` line on
stderr, a non-zero exit, nothing created, no traceback; or, for what used to be accepted with
a wrong meaning, the right value."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuctl.cli.main import cli

LOGS = Path(__file__).parent / "data" / "logs"


def invoke(*args: str, env: dict | None = None, input: bytes | None = None):
    """Run the CLI; whatever it answers, it must leave the gpuctl home as it found it."""
    before = home_files()
    result = CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=True)
    assert home_files() == before, "the command created files"
    return result


def refused(result, *words: str) -> str:
    """Assert the one-line refusal; return the line. `words` must appear in it."""
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"raised {result.exception!r}"
    assert result.exit_code not in (0, None), result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: ") and "(hint: " in line and line.endswith(")"), line
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in line, line
    return line


def home_files() -> list[str]:
    home = Path(os.environ["GPUCTL_HOME"])
    return sorted(str(p.relative_to(home)) for p in home.rglob("*")) if home.exists() else []


@pytest.fixture
def write(tmp_path):
    def make(name: str, data: bytes | str) -> Path:
        path = tmp_path / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path
    return make


# --- overflow ------------------------------------------------------------------------------

def test_budget_of_308_nines():
    refused(invoke("up", "a100-spot", "--dry-run", "--budget", "9" * 308), "amount of money")


def test_tiny_fx_rate(config_file):
    config_file('currency = "JPY"\nfx_rate = 1e-300\n')
    refused(invoke("cost", "a100-spot", "--budget", "3000JPY"), "fx_rate")


# --- depth -----------------------------------------------------------------------------------

def test_config_5000_deep(config_file):
    config_file("a = " + "[" * 5000 + "]" * 5000 + "\n")
    refused(invoke("profiles"), "nested deeper")


@pytest.mark.parametrize("closed", [False, True])
def test_job_spec_50000_deep(write, closed):
    spec = write("job.yaml", "[" * 50000 + ("]" * 50000 if closed else ""))
    refused(invoke("train", "--gke", str(spec), "--dry-run"), "job spec")


def test_price_cache_100000_deep():
    home = Path(os.environ["GPUCTL_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "prices.json").write_text("[" * 100000 + "]" * 100000)
    refused(invoke("cost", "a100-spot"), "nested deeper", "price file")


def test_zero_prices_in_a_price_cache():
    home = Path(os.environ["GPUCTL_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    rate = {"spot": 0, "ondemand": 0}
    book = {"as_of": "2026-01-01", "source": "test", "regions": {"us-central1": {
        "machines": {"a2-highgpu-1g": rate}, "gpus": {"nvidia-tesla-a100": rate}}}}
    (home / "prices.json").write_text(json.dumps(book))
    refused(invoke("up", "a100-spot", "--dry-run", "--budget", "20"), "price file")


# --- encodings -------------------------------------------------------------------------------

def test_job_spec_in_utf16(write):
    spec = write("job.yaml", "name: x\ncommand: [python, t.py]\n".encode("utf-16"))
    refused(invoke("train", "--gke", str(spec), "--dry-run"), "UTF-16")


def test_job_spec_of_random_bytes(write):
    spec = write("job.yaml", bytes(range(128, 256)) * 3)
    refused(invoke("train", "--gke", str(spec), "--dry-run"), "not UTF-8")


def test_file_secret_with_ff_fe(write, tmp_path):
    secret = write("token", b"\xff\xfehf_notshown")
    spec = write("job.yaml", f"name: x\ncommand: [python, t.py]\nsecrets: {{HF_TOKEN: 'file:{secret}'}}\n")
    line = refused(invoke("run", "alice@127.0.0.1", str(spec), "--dry-run", "--no-sync"), "HF_TOKEN")
    assert "notshown" not in line


# --- special files ---------------------------------------------------------------------------

def test_config_is_dev_zero():
    started = time.monotonic()
    refused(invoke("profiles", env={"GPUCTL_CONFIG": "/dev/zero"}), "not a regular file")
    assert time.monotonic() - started < 10


def test_fifo_as_config_and_as_job_spec(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    refused(invoke("profiles", env={"GPUCTL_CONFIG": str(fifo)}), "FIFO")
    refused(invoke("train", "--gke", str(fifo), "--dry-run"), "FIFO")
    refused(invoke("progress", str(fifo)), "FIFO")


def test_300_character_file_name(tmp_path):
    refused(invoke("train", "--gke", str(tmp_path / ("a" * 300 + ".yaml")), "--dry-run"),
            "too long")
    refused(invoke("profiles", env={"GPUCTL_CONFIG": str(tmp_path / ("c" * 300))}), "too long")


def test_300_character_vm_name():
    refused(invoke("run", "a" * 300, "--dry-run", "--no-sync", "--", "python", "t.py"),
            "VM name")


# --- others ----------------------------------------------------------------------------------

@pytest.mark.parametrize("target,word", [
    ("user@127.0.0.1:²", "port"), ("user@127.0.0.1:0", "port"), ("user@127.0.0.1:99999", "port"),
    ("user@bad_host!:22", "host"), ("us er@127.0.0.1", "login name"),
])
def test_bad_ssh_targets(target, word):
    refused(invoke("run", target, "--dry-run", "--no-sync", "--", "python", "t.py"), word)


def test_kubeconfig_is_etc_passwd():
    refused(invoke("webui", "status", env={"GPUCTL_KUBECONFIG": "/etc/passwd"}), "kubeconfig")


def test_plot_into_proc(tmp_path):
    refused(invoke("plot", str(LOGS / "trainer_a100_lora.log"), "-o", "/proc/nope/out.png"),
            "cannot write")


# --- accepted before, refused (or right) now -------------------------------------------------

def test_ttl_in_full_width_digits():
    refused(invoke("up", "a100-spot", "--dry-run", "--ttl", "６h"), "duration")


def test_ssh_from_anywhere_in_config(config_file):
    config_file('ssh_from = "0.0.0.0"\n')
    refused(invoke("up", "a100-spot", "--dry-run"), "ssh_from")


def test_project_with_shell_in_it(config_file):
    config_file("project = 'a;rm -rf /'\n")
    refused(invoke("up", "a100-spot", "--dry-run"), "project")


def test_region_on_mars_is_not_priced_as_us_central1(config_file):
    config_file("region = 'mars-north1'\n")
    refused(invoke("cost", "a100-spot"), "mars-north1")


def test_t4_override_on_an_a2_machine(config_file):
    config_file('[profiles.a100-spot]\ngpu = "nvidia-tesla-t4"\n')
    refused(invoke("up", "a100-spot", "--dry-run"), "nvidia-tesla-t4")


def test_empty_image(config_file):
    config_file('[profiles.a100-spot]\nimage = ""\n')
    refused(invoke("cost", "a100-spot"), "image")


@pytest.mark.parametrize("namespace", ["BAD NS", "../../x", "", "a" * 64])
def test_namespaces_not_rendered(write, namespace):
    spec = write("job.yaml", "name: x\ncommand: [python, t.py]\nimage: python:3.12\n"
                             "gpus_per_node: 0\n")
    refused(invoke("train", "--gke", str(spec), "--dry-run", "-n", namespace), "namespace")
    refused(invoke("webui", "up", "--dry-run", "-n", namespace), "namespace")


def test_webui_model_server_image_with_shell_in_it():
    # --image replaces the model server's pinned vLLM: it lands in a manifest, so it is checked.
    refused(invoke("webui", "up", "--dry-run", "--image", "x;rm -rf /"), "not an image reference")


def test_json_output_is_strict_json(write):
    log = write("diverged.log", "{'loss': inf, 'epoch': 1.0}\n{'eval_loss': nan, 'epoch': 1.0}\n")
    result = invoke("progress", str(log), "--json")
    assert result.exit_code == 0, result.stderr

    def no_constants(name):
        raise AssertionError(f"{name} in --json output")

    data = json.loads(result.stdout, parse_constant=no_constants)
    assert data["loss"] is None and data["loss_finite"] is False


# --- slow --------------------------------------------------------------------------------------

def test_a_4_5_mb_command_list_is_refused_fast(write):
    spec = write("job.yaml", "name: x\ncommand:\n" + "  - python\n" * 450_000)
    started = time.monotonic()
    refused(invoke("train", "--gke", str(spec), "--dry-run"), "larger than")
    assert time.monotonic() - started < 5


def test_progress_on_100_lines_of_70_kb(write):
    log = write("wide.log", ("x" * 70_000 + "\n") * 100)
    started = time.monotonic()
    result = invoke("progress", str(log))
    assert result.exit_code == 0, result.stderr
    assert time.monotonic() - started < 5


def test_ssh_from_anywhere_flag_is_refused():
    refused(invoke("up", "a100-spot", "--dry-run", "--ssh-from", "0.0.0.0"), "--ssh-from")


def test_a_vm_name_gce_could_never_have_is_refused_before_credentials():
    result = invoke("down", "x" * 300, "-y")
    refused(result, "VM name")
    assert "credentials" not in result.output
