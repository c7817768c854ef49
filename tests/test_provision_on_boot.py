"""Provisioning on the machine itself (provision/local_host.py, provision/on_boot.py): what a
`run --recover` replacement VM runs at boot. The full run on a real host is in
tests/test_recover_host.py (assert_provisioned); here: the packed zip stands alone, the local
Host reads the machine as the login user would, and a reboot ends the steps cleanly."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile

import pytest

from gpuctl.adapters.ssh import CommandFailed
from gpuctl.provision.base import RebootRequested, StepPlan
from gpuctl.provision.checks import TODO, Check, Verdict
from gpuctl.provision.local_host import LocalHost
from gpuctl.provision.on_boot import MODULES, pack, settings_document, settings_from
from gpuctl.provision.runner import run_steps
from gpuctl.provision.settings import ProvisionSettings
from gpuctl.runs.host_scripts import bootstrap


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    path = tmp_path_factory.mktemp("pyz") / "provision.pyz"
    path.write_bytes(pack())
    return path


def pristine(*argv: str, stdin: str = "") -> subprocess.CompletedProcess:
    """The system's python3 with no site-packages and no environment: what a stock VM has."""
    return subprocess.run(["/usr/bin/python3", "-I", "-S", *argv], input=stdin, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=60)


def test_the_packed_steps_import_on_an_interpreter_with_nothing_installed(packed):
    modules = [f"{pkg}.{path[:-3].replace('/', '.')}".removesuffix(".__init__")
               for pkg, paths in MODULES.items() for path in paths]
    probe = (f"import sys; sys.path.insert(0, {str(packed)!r}); import importlib\n"
             f"for m in {modules!r}: importlib.import_module(m)\n"
             "from gpuctl.provision.runner import default_steps\n"
             "print(' '.join(s.id for s in default_steps()))\n"
             "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('pulumi', 'fabric', 'paramiko', 'click', 'rich')))\n"
             # the watchdog step reads its script with importlib.resources, from inside the zip
             "from importlib import resources\n"
             "print(len(resources.files('gpuctl.provision.host_scripts').joinpath('idle_watchdog.py').read_bytes()))")
    done = pristine("-c", probe)
    assert done.returncode == 0, done.stderr
    ids, third_party, watchdog_bytes = done.stdout.splitlines()
    assert ids == "nvme caches timezone shutdown-cron idle-watchdog nvidia-driver cuda python verify"
    assert third_party == "[]"
    assert int(watchdog_bytes) > 1000


@pytest.mark.parametrize("stdin", ["", "{", "[1, 2]", '{"login_user": "u", "idle_minutes": {"a": 1}}x',
                                   '{"python": "3.11"}', "\x00\xff" * 100])
def test_bad_settings_get_one_json_line_and_exit_1_without_touching_the_host(packed, stdin):
    done = pristine(str(packed), stdin=stdin)
    assert done.returncode == 1 and done.stderr == ""
    [line] = done.stdout.splitlines()
    answer = json.loads(line)
    assert answer["ok"] is False and answer["error"].startswith("bad settings")


def test_settings_travel_as_json_without_the_daily_stop():
    from gpuctl_infra.spec import DailyStop

    settings = ProvisionSettings(login_user="gpuctl", time_zone="Asia/Tokyo", daily_stop=DailyStop(6, 0, "Asia/Tokyo"),
                                 idle_minutes=0, python="3.11", requirements=("torch==2.4.0",), cuda="12.4")
    document = json.loads(json.dumps(settings_document(settings)))
    assert "daily_stop" not in document
    back = settings_from(document)
    assert back == ProvisionSettings(login_user="gpuctl", time_zone="Asia/Tokyo", idle_minutes=0, python="3.11",
                                     requirements=("torch==2.4.0",), cuda="12.4")


def test_commands_run_as_the_login_user_in_a_plain_environment_and_as_root_with_sudo(monkeypatch):
    monkeypatch.setenv("GPUCTL_SECRET_OF_THE_CALLER", "x")
    host = LocalHost("nobody")
    mine = host.run("id -un; echo home=$HOME; env | grep -c GPUCTL_SECRET || true")
    assert mine.stdout.split() == ["nobody", "home=/home/nobody", "0"]
    assert host.run("id -un", sudo=True).stdout.strip() == "root"
    failed = host.run("echo oops >&2; exit 7", check=False)
    assert (failed.exit_code, failed.stderr.strip()) == (7, "oops")
    with pytest.raises(CommandFailed) as caught:
        host.run("echo no such thing >&2; exit 3")
    assert caught.value.exit_code == 3 and "no such thing" in caught.value.message
    assert host.run("sleep 5", check=False, timeout=1).exit_code == 124
    assert host.round_trips == 5


class _DriverThatNeedsAReboot:
    id = "nvidia-driver"

    def check(self, settings):
        return Check(None, lambda _text: Verdict(TODO, "driver 535 wanted"))

    def plan(self, host, settings, verdict=None):
        return StepPlan(actions=["install", "reboot"], apply=lambda h: h.reboot_and_wait())


class _Later:
    id = "later"
    ran = False

    def plan(self, host, settings):
        _Later.ran = True
        return StepPlan(reason="done")


def test_a_reboot_ends_the_steps_and_says_so_and_a_second_one_fails_the_step(tmp_path):
    asked = tmp_path / "reboot-asked"
    host = LocalHost("root", reboot_argv=("touch", str(asked)), rebooted_marker=str(tmp_path / "state/rebooted"))
    with pytest.raises(RebootRequested, match="next boot"):
        run_steps(host, ProvisionSettings(login_user="root"), [_DriverThatNeedsAReboot(), _Later()])
    assert asked.exists() and not _Later.ran  # the reboot was asked for; nothing ran after it
    # The next boot: the driver still does not load. No second reboot (a loop would bill until
    # the deadline): the step fails, as it would over SSH.
    asked.unlink()
    report = run_steps(host, ProvisionSettings(login_user="root"), [_DriverThatNeedsAReboot(), _Later()])
    [driver, later] = report.steps
    assert (driver.status, later.status) == ("failed", "skipped") and "still not working after a reboot" in driver.error
    assert not asked.exists()


def test_a_refused_reboot_fails_the_step_instead_of_waiting(tmp_path):
    host = LocalHost("root", reboot_argv=("false",), rebooted_marker=str(tmp_path / "rebooted"))
    report = run_steps(host, ProvisionSettings(login_user="root"), [_DriverThatNeedsAReboot()])
    assert report.steps[0].status == "failed" and "`false` exited 1" in report.steps[0].error


def fake_pyz(code: int, answer: dict) -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        archive.writestr("__main__.py", f"import sys\nsys.stdin.read()\nprint({json.dumps(json.dumps(answer))})\n"
                                        f"sys.exit({code})\n")
    return sink.getvalue()


@pytest.mark.parametrize("code,answer,outcome", [
    (3, {"ok": False, "rebooting": True, "reason": "the NVIDIA driver loads after a reboot"}, "rebooting"),
    (1, {"ok": False, "steps": [{"id": "nvme", "status": "changed"},
                                {"id": "python", "status": "failed", "error": "could not install python3.11-venv"}]},
     "provisioning failed at python: could not install python3.11-venv"),
    (0, {"ok": True, "steps": [{"id": "nvme", "status": "changed"}]}, "provisioned"),
])
def test_the_bootstrap_reads_the_provisioning_outcome(monkeypatch, tmp_path, capsys, code, answer, outcome):
    packed = fake_pyz(code, answer)  # once: a zip records the time each member was written
    monkeypatch.setattr(bootstrap, "need", lambda url: packed)
    spec = {"bundle": "gs://b/p/run/.gpuctl", "provision": {"login_user": "gpuctl"}}
    if outcome.startswith("provisioning failed"):
        with pytest.raises(bootstrap.BootstrapError) as caught:
            bootstrap.provision(spec, str(tmp_path))
        assert str(caught.value) == outcome
    else:
        report = bootstrap.provision(spec, str(tmp_path))
        assert bool(report.get("rebooting")) == (outcome == "rebooting")
    said = capsys.readouterr().out
    if outcome == "rebooting":
        assert "gpuctl-bootstrap: rebooting: the NVIDIA driver loads after a reboot" in said
    for step in answer.get("steps", []):
        assert f"gpuctl-bootstrap: provision {step['id']}: {step['status']}" in said
    assert (tmp_path / "provision.pyz").read_bytes() == packed
