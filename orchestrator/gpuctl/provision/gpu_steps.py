"""NVIDIA driver, CUDA toolkit, Python and the final check, at the versions asked for.

Packages come from the distribution (Ubuntu's nvidia-driver-NNN) or NVIDIA's CUDA apt
repository; each step is a no-op with a reason when the host is already at that version.
On a host without an NVIDIA GPU the GPU steps are skipped unless run in check mode, where
they show what they would do.
"""

from __future__ import annotations

import shlex

from . import facts
from .base import Host, StepPlan, noop, read, skip
from .settings import ProvisionSettings

CUDA_REPO = "https://developer.download.nvidia.com/compute/cuda/repos/{slug}/x86_64"
# NVIDIA's CUDA repositories per OS; CUDA 11.8 predates Ubuntu 24.04 and Debian 12 repos.
REPO_SLUGS = {"ubuntu-22.04": "ubuntu2204", "ubuntu-24.04": "ubuntu2404", "debian-12": "debian12"}
OLDEST_CUDA = {"ubuntu-22.04": (11, 7), "ubuntu-24.04": (12, 5), "debian-12": (12, 1)}
APT = "DEBIAN_FRONTEND=noninteractive apt-get -y -q"


def has_nvidia_gpu(host: Host) -> bool:
    """PCI vendor 10de, read from sysfs (lspci may not be installed)."""
    out = host.run("cat /sys/bus/pci/devices/*/vendor 2>/dev/null || true", check=False).stdout
    return "0x10de" in out


def cuda_repo_setup(os_info: facts.OsInfo) -> list[str]:
    slug = REPO_SLUGS[os_info.slug]
    repo = CUDA_REPO.format(slug=slug)
    return [f"curl -fsSLo /tmp/cuda-keyring.deb {repo}/cuda-keyring_1.1-1_all.deb",
            "dpkg -i /tmp/cuda-keyring.deb", f"{APT} update"]


def _supported(os_info: facts.OsInfo) -> str | None:
    if os_info.slug not in REPO_SLUGS:
        return f"{os_info.pretty_name} is not supported (Ubuntu 22.04/24.04, Debian 12 are)"
    return None


class _GpuPackageStep:
    """Installs packages that only make sense with an NVIDIA GPU present."""

    def __init__(self, check_only_without_gpu: bool = True):
        # False lets a GPU-less host show the install in check mode (tests, `--check`).
        self.check_only_without_gpu = check_only_without_gpu

    def _install(self, host: Host, cmds: list[str]) -> StepPlan:
        plan = StepPlan(actions=list(cmds), apply=lambda h: [h.run(c, sudo=True) for c in cmds])
        if not has_nvidia_gpu(host):
            plan.reason = "no NVIDIA GPU on this host"
            plan.skipped = self.check_only_without_gpu
        return plan


class DriverStep(_GpuPackageStep):
    id = "nvidia-driver"

    def plan(self, host: Host, s: ProvisionSettings) -> StepPlan:
        gpus = read(host, facts.GPUS)
        if gpus and all(g.driver.split(".")[0] == s.driver for g in gpus):
            return noop(f"driver {gpus[0].driver} on {len(gpus)} GPU(s)")
        os_info = read(host, facts.OS_RELEASE)
        problem = _supported(os_info)
        if problem:
            return skip(problem)
        if os_info.id == "ubuntu":
            cmds = [f"{APT} update", f"{APT} install --no-install-recommends nvidia-driver-{s.driver}-server"]
        else:
            cmds = [*cuda_repo_setup(os_info), f"{APT} install cuda-drivers-{s.driver}"]
        plan = self._install(host, cmds)
        plan.actions.append("reboot if nvidia-smi cannot load the new module, then reconnect")
        install = plan.apply

        def apply(h: Host) -> None:
            install(h)
            if h.run("nvidia-smi", check=False).exit_code != 0:
                h.reboot_and_wait()  # the kernel module loads on the next boot
                h.run("nvidia-smi", sudo=True)
        plan.apply = apply
        return plan


class CudaStep(_GpuPackageStep):
    id = "cuda"

    def plan(self, host: Host, s: ProvisionSettings) -> StepPlan:
        current = read(host, facts.NVCC)
        if current == s.cuda:
            return noop(f"CUDA {current} installed")
        os_info = read(host, facts.OS_RELEASE)
        problem = _supported(os_info)
        if problem:
            return skip(problem)
        wanted = tuple(int(x) for x in s.cuda.split(".")[:2])
        oldest = OLDEST_CUDA[os_info.slug]
        if wanted < oldest:
            return skip(f"CUDA {s.cuda} is not packaged for {os_info.pretty_name}; "
                        f"use {oldest[0]}.{oldest[1]} or newer, or Ubuntu 22.04")
        package = f"cuda-toolkit-{s.cuda.replace('.', '-')}"
        cmds = [*cuda_repo_setup(os_info), f"{APT} install --no-install-recommends {package}",
                f"ln -sfn /usr/local/cuda-{s.cuda} /usr/local/cuda",
                "echo 'export PATH=/usr/local/cuda/bin:$PATH' > /etc/profile.d/gpuctl-cuda.sh"]
        return self._install(host, cmds)


class PythonStep:
    """The requested Python with a virtualenv in the login user's home."""

    id = "python"

    def plan(self, host: Host, s: ProvisionSettings) -> StepPlan:
        venv_python = f"{s.venv}/bin/python"
        in_venv = facts.parse_python_version(
            host.run(f"{venv_python} --version 2>&1 || true", check=False).stdout)
        if in_venv == s.python and not s.requirements:
            return noop(f"Python {in_venv} virtualenv at {s.venv}")
        have = read(host, facts.python_version_fact(s.python))
        cmds: list[str] = []
        if have != s.python:
            os_info = read(host, facts.OS_RELEASE)
            if os_info.id != "ubuntu":
                return skip(f"Python {s.python} is not packaged for {os_info.pretty_name}; "
                            "pick the system version (python = \"3.11\" on Debian 12)")
            cmds += [f"{APT} install software-properties-common",
                     "add-apt-repository -y ppa:deadsnakes/ppa", f"{APT} update",
                     f"{APT} install python{s.python} python{s.python}-venv"]
        user = shlex.quote(s.login_user)
        venv_cmd = f"python{s.python} -m venv {shlex.quote(s.venv)}"
        if in_venv != s.python:
            cmds.append(f"rm -rf {shlex.quote(s.venv)} && {venv_cmd} && chown -R {user}: {shlex.quote(s.venv)}")
        if s.requirements:
            reqs = " ".join(shlex.quote(r) for r in s.requirements)
            cmds.append(f"{s.venv}/bin/pip install -q {reqs} && chown -R {user}: {shlex.quote(s.venv)}")
        return StepPlan(actions=cmds, apply=lambda h: [h.run(c, sudo=True) for c in cmds])


class VerifyStep:
    """Reads the result rather than changing anything: a no-op when the GPU stack answers."""

    id = "verify"
    verifies = True  # the runner skips it in check mode after steps that would change things

    def plan(self, host: Host, s: ProvisionSettings) -> StepPlan:
        if not has_nvidia_gpu(host):
            return skip("no NVIDIA GPU on this host: nothing to verify")
        gpus = read(host, facts.GPUS)
        if not gpus:
            raise RuntimeError("nvidia-smi sees no GPU after the driver install")
        cuda = read(host, facts.NVCC)
        if cuda != s.cuda:
            raise RuntimeError(f"nvcc reports CUDA {cuda}, wanted {s.cuda}")
        return noop(f"{len(gpus)}x {gpus[0].name}, driver {gpus[0].driver}, CUDA {cuda}")
