"""Done means working, on hosts shaped like stock cloud images (no python3-venv, no mirror
unless the test serves one): a failure is never reported as unchanged, a step interrupted
half-way is finished by the rerun, and every step's check says "not done" to a broken result."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gpuctl.adapters.ssh import RemoteHost
from gpuctl.provision.checks import run_check
from gpuctl.provision.gpu_steps import CudaStep, DriverStep
from gpuctl.provision.nvme import NvmeStep
from gpuctl.provision.python_step import PythonStep
from gpuctl.provision.runner import default_steps, run_steps
from gpuctl.provision.service import provision_host
from gpuctl.provision.system_steps import (CachesStep, IdleWatchdogStep, ShutdownCronStep,
                                           TimezoneStep)
from tests.hosts.debs import PackageSource
from tests.hosts.fixtures import no_mirror, stock_host, venv_debs  # noqa: F401
from tests.hosts.host import ThrowawayHost

from tests.hosts.provisioning import MOUNT, settings, target  # noqa: E402


def outcome(report, step_id: str):
    return next(s for s in report.steps if s.id == step_id)


def cli_provision(host):
    from gpuctl.cli.main import cli

    return CliRunner().invoke(cli, ["provision", f"{host.user}@{host.address}:{host.port}",
                                    "--ssh-key", str(host.key_path), "--known-hosts",
                                    str(host.known_hosts_path), "--python", "3.11",
                                    "--idle-minutes", "0"])


def pip_works(host) -> bool:
    venv = f"/home/{host.user}/venv"
    return host.run_local(f"su {host.user} -c '{venv}/bin/pip --version'",
                          check=False).returncode == 0


# -- the Python step on a stock image ------------------------------------------------------

def test_without_the_venv_package_and_a_mirror_every_run_fails_until_one_is_reachable(
        throwaway_host, venv_debs):
    host = throwaway_host
    no_mirror(host)
    for _ in range(2):  # the bug: the second run called the broken venv "unchanged"
        result = cli_provision(host)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: step python failed: could not "
                                                       "install python3.11-venv"), result.stderr
        assert "hint:" in lines[0] or "apt mirror" in result.stderr
        assert "Traceback" not in result.output
    report = provision_host(target(host), settings(host))
    assert outcome(report, "python").status == "failed" and not report.ok
    assert host.run_local(f"test -e /home/{host.user}/venv", check=False).returncode != 0

    with PackageSource(host, venv_debs) as source:
        source.make_only_apt_source()
        fixed = provision_host(target(host), settings(host))
    assert fixed.ok and outcome(fixed, "python").status == "changed", fixed.as_dict()
    assert pip_works(host)
    again = provision_host(target(host), settings(host))
    assert outcome(again, "python").status == "unchanged"


def test_a_venv_left_without_pip_by_an_earlier_failure_is_rebuilt(stock_host):
    host = stock_host
    venv = f"/home/{host.user}/venv"
    # What `python3.11 -m venv` leaves on a stock image: bin/python, no pip (ensurepip died).
    made = host.run_local(f"su {host.user} -c 'python3.11 -m venv {venv}'", check=False)
    assert made.returncode != 0 and host.run_local(f"test -x {venv}/bin/python",
                                                   check=False).returncode == 0
    with RemoteHost(target(host)) as remote:
        verdict = run_check(remote, PythonStep().check(settings(host)))
    assert not verdict.done and "no working pip" in verdict.reason
    report = run_steps_on(host, [PythonStep()])
    assert outcome(report, "python").status == "changed" and report.ok
    assert pip_works(host)


def run_steps_on(host, steps, **changes):
    with RemoteHost(target(host)) as remote:
        return run_steps(remote, settings(host, **changes), steps)


# -- interrupted half-way: the rerun finishes the job and says it changed something --------

KILL_SHIM = """#!/bin/sh
# One-shot: the first call whose arguments contain the pattern runs the real program, then
# dies by SIGKILL, so the command line that called it stops half-way.
case "$*" in *"{pattern}"*) rm -f "$0"; PATH=/usr/sbin:/usr/bin:/sbin:/bin {prog} "$@"; kill -KILL $$;; esac
PATH=/usr/sbin:/usr/bin:/sbin:/bin exec {prog} "$@"
"""


def arm_kill(host, prog: str, pattern: str) -> None:
    """Steps run their commands under sudo, whose secure_path starts with /usr/local/sbin."""
    path = f"/usr/local/sbin/{prog}"
    (host.root / path.lstrip("/")).write_text(KILL_SHIM.format(prog=prog, pattern=pattern))
    host.run_local(f"chmod 0755 {path}")


def steps_until(step_id: str):
    steps = default_steps()
    ids = [s.id for s in steps]
    return steps[:ids.index(step_id) + 1]


INTERRUPTS = [  # step, program killed right after it ran, pattern in its arguments
    ("nvme", "mount", "discard"),  # mounted; fstab and ownership not yet written
    ("caches", "chown", "cache"),  # directories made; the profile file not written
    ("timezone", "ln", "zoneinfo"),  # /etc/localtime switched; /etc/timezone not
    ("shutdown-cron", "chmod", "gpuctl-shutdown"),  # temp file written, never renamed
    ("idle-watchdog", "mv", "idle-watchdog.json"),  # script in place, config not
    ("python", "python3.11", "-m venv"),  # venv made, then the command dies before chown
]


@pytest.mark.parametrize("step_id,prog,pattern", INTERRUPTS, ids=[i[0] for i in INTERRUPTS])
def test_a_step_killed_half_way_is_finished_by_the_rerun(stock_host, step_id, prog, pattern):
    host = stock_host
    steps = steps_until(step_id)
    arm_kill(host, prog, pattern)
    first = run_steps_on(host, steps)
    assert outcome(first, step_id).status == "failed", first.as_dict()
    assert host.run_local(f"test -e /usr/local/sbin/{prog}", check=False).returncode != 0
    rerun = run_steps_on(host, steps_until(step_id))
    assert rerun.ok, rerun.as_dict()
    assert outcome(rerun, step_id).status == "changed"
    last = run_steps_on(host, steps_until(step_id))
    assert outcome(last, step_id).status == "unchanged", last.as_dict()


def test_python_step_cut_off_after_the_package_install_is_finished(stock_host):
    from tests.test_provision_hosts import CuttingHost
    from gpuctl.adapters.ssh import SshError

    host = stock_host
    with CuttingHost(target(host), host, "apt-get") as flaky:
        with pytest.raises(SshError):
            run_steps(flaky, settings(host), [PythonStep()])
    assert host.run_local("dpkg -s python3.11-venv", check=False).returncode == 0
    rerun = run_steps_on(host, [PythonStep()])
    assert outcome(rerun, "python").status == "changed" and pip_works(host)


# -- each step's "done" check against a deliberately broken result ------------------------

@pytest.fixture(scope="module")
def ready_host(host_rootfs, venv_debs):
    """One host provisioned completely, shared: each case breaks it, checks, repairs it."""
    with ThrowawayHost(disks=1, rootfs=host_rootfs) as host:
        with PackageSource(host, venv_debs) as source:
            source.make_only_apt_source()
            report = provision_host(target(host), settings(host))
            assert report.ok, report.as_dict()
            yield host


BREAKAGES = [  # step, how its result is broken, words the check's reason must contain
    (NvmeStep, f"umount {MOUNT}", "nothing is mounted"),
    (NvmeStep, f"sed -i 's/^UUID=[^ ]*/UUID=0000-1111/' /etc/fstab", "fstab mounts UUID=0000-1111"),
    (NvmeStep, f"line=$(grep {MOUNT} /etc/fstab) && echo \"$line\" >> /etc/fstab", "2 entries"),
    (NvmeStep, f"mount -o remount,ro {MOUNT}", "not writable"),
    (NvmeStep, f"chown root: {MOUNT} && chmod 0755 {MOUNT}", "not writable"),
    (CachesStep, f"rmdir {MOUNT}/cache/torch", "cache/torch is missing"),
    (CachesStep, "echo 'export HF_HOME=/tmp' >> /etc/profile.d/gpuctl-caches.sh", "differ"),
    (TimezoneStep, "echo Etc/UTC > /etc/timezone", "Etc/UTC"),
    (TimezoneStep, "ln -sf /usr/share/zoneinfo/Asia/Nowhere /etc/localtime", "time zone is"),
    (ShutdownCronStep, "chmod 0666 /etc/cron.d/gpuctl-shutdown", "gpuctl-shutdown differ"),
    (ShutdownCronStep, "sed -i 's/^0 6/0 7/' /etc/cron.d/gpuctl-shutdown", "gpuctl-shutdown differ"),
    (IdleWatchdogStep, "chmod 0644 /usr/local/sbin/gpuctl-idle-watchdog", "idle-watchdog differ"),
    (IdleWatchdogStep, "rm /etc/cron.d/gpuctl-idle-watchdog", "differ"),
    (PythonStep, "rm -rf /home/gpuctl/venv/lib/python3.11/site-packages/pip", "no working pip"),
    (PythonStep, "sed -i '1s|.*|#!/usr/bin/python3.11|' /home/gpuctl/venv/bin/pip", "pip script"),
    (PythonStep, "chown -R root: /home/gpuctl/venv", "not writable"),
]


@pytest.mark.parametrize("step_class,breakage,reason", BREAKAGES,
                         ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BREAKAGES)])
def test_the_done_check_says_not_done_to_a_broken_result(ready_host, step_class, breakage, reason):
    host = ready_host
    s = settings(host)
    with RemoteHost(target(host)) as remote:
        assert run_check(remote, step_class().check(s)).done  # the check can say yes ...
        host.run_local(breakage)
        verdict = run_check(remote, step_class().check(s))
    assert not verdict.done and reason in verdict.reason, verdict  # ... and no
    repaired = provision_host(target(host), s)
    assert repaired.ok, repaired.as_dict()
    assert outcome(repaired, step_class.id).status == "changed"
    with RemoteHost(target(host)) as remote:
        assert run_check(remote, step_class().check(s)).done


def test_cron_missing_means_the_guards_are_not_scheduled(ready_host):
    host = ready_host
    s = settings(host)
    host.run_local("mv /usr/sbin/cron /usr/sbin/cron.away")
    try:
        with RemoteHost(target(host)) as remote:
            for step in (ShutdownCronStep(), IdleWatchdogStep()):
                verdict = run_check(remote, step.check(s))
                assert not verdict.done and "cron is not installed" in verdict.reason
    finally:
        host.run_local("mv /usr/sbin/cron.away /usr/sbin/cron")


FAKE = "#!/bin/sh\n{body}\n"


@pytest.mark.parametrize("body,done", [
    ("echo 'NVIDIA L4, 535.183.01, 23034, 0'", True),
    ("echo 'NVIDIA L4, 470.256.02, 23034, 0'", False),  # the wrong driver answers
    ("echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"; "
     "exit 9", False),  # installed, not loaded
])
def test_driver_is_done_only_when_nvidia_smi_answers_at_the_wanted_version(ready_host, body, done):
    host = ready_host
    (host.root / "usr/local/bin/nvidia-smi").write_text(FAKE.format(body=body))
    host.run_local("chmod 0755 /usr/local/bin/nvidia-smi")
    try:
        with RemoteHost(target(host)) as remote:
            step = DriverStep(check_only_without_gpu=False)
            assert run_check(remote, step.check(settings(host))).done is done
    finally:
        host.run_local("rm -f /usr/local/bin/nvidia-smi")


@pytest.mark.parametrize("release,done", [("12.4", True), ("12.1", False)])
def test_cuda_is_done_only_when_nvcc_reports_the_pinned_version(ready_host, release, done):
    host = ready_host
    (host.root / "usr/local/bin/nvcc").write_text(FAKE.format(
        body=f"echo 'Cuda compilation tools, release {release}, V{release}.131'"))
    host.run_local("chmod 0755 /usr/local/bin/nvcc")
    try:
        with RemoteHost(target(host)) as remote:
            step = CudaStep(check_only_without_gpu=False)
            assert run_check(remote, step.check(settings(host, cuda="12.4"))).done is done
    finally:
        host.run_local("rm -f /usr/local/bin/nvcc")


def _wheel(directory, name: str, version: str, module_body: str):
    """A minimal pure-Python wheel, built here: the host has no index to fetch one from."""
    import base64
    import hashlib
    import zipfile

    dist = f"{name.replace('-', '_')}-{version}"
    module = name.replace("-", "_")
    files = {f"{module}/__init__.py": module_body,
             f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: gpuctl-test\n"
                                        "Root-Is-Purelib: true\nTag: py3-none-any\n",
             f"{dist}.dist-info/top_level.txt": f"{module}\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    path = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name_in_zip, text in files.items():
            zf.writestr(name_in_zip, text)
    return path


def test_requirements_are_done_only_when_they_import(ready_host):
    host = ready_host
    wheels = host.root / "srv/wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    _wheel(wheels, "gpuctl-probe", "1.0", "VALUE = 1\n")
    # pip's own package source on the host, as /etc/apt/sources.list is apt's.
    (host.root / "etc/pip.conf").write_text("[global]\nno-index = true\nfind-links = /srv/wheels\n")
    s = settings(host, requirements=("gpuctl-probe==1.0",))
    with RemoteHost(target(host)) as remote:
        before = run_check(remote, PythonStep().check(s))
        assert not before.done and "gpuctl-probe==1.0" in before.reason
        first = run_steps(remote, s, [PythonStep()])
        assert outcome(first, "python").status == "changed", first.as_dict()
        assert run_check(remote, PythonStep().check(s)).done
        host.run_local("echo 'raise ImportError(\"broken\")' > "
                       "/home/gpuctl/venv/lib/python3.11/site-packages/gpuctl_probe/__init__.py")
        broken = run_check(remote, PythonStep().check(s))
        assert not broken.done and "not importable" in broken.reason
        repaired = run_steps(remote, s, [PythonStep()])
        assert outcome(repaired, "python").status == "changed", repaired.as_dict()
        assert run_check(remote, PythonStep().check(s)).done


def test_check_mode_json_on_a_ready_host_is_one_round_trip(ready_host):
    from gpuctl.cli.main import cli

    host = ready_host
    result = CliRunner().invoke(cli, [
        "provision", f"{host.user}@{host.address}:{host.port}", "--ssh-key", str(host.key_path),
        "--known-hosts", str(host.known_hosts_path), "--tz", "Asia/Tokyo", "--stop-at", "06:00",
        "--idle-minutes", "30", "--python", "3.11", "--check", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["changed"] == 0 and data["round_trips"] == 1, data
