"""NVIDIA driver, CUDA toolkit and the final check, at the versions asked for.

Packages come from the distribution (Ubuntu's nvidia-driver-NNN) or NVIDIA's CUDA apt
repository; each step is a no-op only when the thing answers: nvidia-smi lists the GPUs at
the wanted driver, nvcc reports the pinned CUDA.
On a host without an NVIDIA GPU the GPU steps are skipped unless run in check mode, where
they show what they would do.
"""

from __future__ import annotations

from . import facts
from .base import Host, StepPlan, ask, read, settled, skip
from .checks import DONE, SKIP, TODO, Check, Verdict, keyed
from .packages import APT
from .settings import ProvisionSettings

CUDA_REPO = "https://developer.download.nvidia.com/compute/cuda/repos/{slug}/x86_64"
# NVIDIA's CUDA repositories per OS; CUDA 11.8 predates Ubuntu 24.04 and Debian 12 repos.
REPO_SLUGS = {"ubuntu-22.04": "ubuntu2204", "ubuntu-24.04": "ubuntu2404", "debian-12": "debian12"}
OLDEST_CUDA = {"ubuntu-22.04": (11, 7), "ubuntu-24.04": (12, 5), "debian-12": (12, 1)}
NO_GPU = "no NVIDIA GPU on this host"

# PCI vendor 10de read from sysfs (lspci may not be installed); nvidia-smi and nvcc asked
# only where there is a GPU, so a GPU-less host answers all three GPU checks at once.
GPU_PROBE = "cat /sys/bus/pci/devices/*/vendor 2>/dev/null | grep -qx 0x10de && echo gpu yes"
SMI_PROBE = ("nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu "
             "--format=csv,noheader,nounits 2>/dev/null | sed 's/^/smi /'")
NVCC_PROBE = ("(nvcc --version || /usr/local/cuda/bin/nvcc --version) 2>/dev/null "
              "| grep release | sed 's/^/nvcc /'")


def gpu_probe(*inner: str) -> str:
    return f"{GPU_PROBE}\n" + "\n".join(inner)


def answered(text: str) -> tuple[bool, list[facts.GpuInfo], str | None]:
    """(has a GPU, what nvidia-smi lists, what nvcc reports) from a gpu_probe answer."""
    answers = keyed(text)
    gpus = facts.parse_nvidia_smi("\n".join(answers.get("smi", [])))
    cuda = facts.parse_nvcc_version("\n".join(answers.get("nvcc", [])))
    return "gpu" in answers, gpus, cuda


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

    def _install(self, host: Host, cmds: list[str], gpu: bool) -> StepPlan:
        plan = StepPlan(actions=list(cmds), apply=lambda h: [h.run(c, sudo=True) for c in cmds])
        if not gpu:
            plan.reason = NO_GPU
            plan.skipped = self.check_only_without_gpu
        return plan


class DriverStep(_GpuPackageStep):
    id = "nvidia-driver"

    def check(self, s: ProvisionSettings) -> Check:
        def judge(text: str) -> Verdict:
            gpu, gpus, _ = answered(text)
            if gpus and all(g.driver.split(".")[0] == s.driver for g in gpus):
                return Verdict(DONE, f"driver {gpus[0].driver} answers on {len(gpus)} GPU(s)")
            if not gpu and self.check_only_without_gpu:
                return Verdict(SKIP, NO_GPU)
            have = gpus[0].driver if gpus else "no answer from nvidia-smi"
            return Verdict(TODO, f"driver {s.driver} wanted, {have}", {"gpu": gpu})
        return Check(gpu_probe(SMI_PROBE), judge)

    def plan(self, host: Host, s: ProvisionSettings, verdict: Verdict | None = None) -> StepPlan:
        verdict = ask(host, self.check(s), verdict)
        done = settled(verdict)
        if done:
            return done
        os_info = read(host, facts.OS_RELEASE)
        problem = _supported(os_info)
        if problem:
            return skip(problem)
        if os_info.id == "ubuntu":
            cmds = [f"{APT} update", f"{APT} install --no-install-recommends nvidia-driver-{s.driver}-server"]
        else:
            cmds = [*cuda_repo_setup(os_info), f"{APT} install cuda-drivers-{s.driver}"]
        plan = self._install(host, cmds, verdict.data.get("gpu", False))
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

    def check(self, s: ProvisionSettings) -> Check:
        def judge(text: str) -> Verdict:
            gpu, _, cuda = answered(text)
            if cuda == s.cuda:
                return Verdict(DONE, f"nvcc reports CUDA {cuda}")
            if not gpu and self.check_only_without_gpu:
                return Verdict(SKIP, NO_GPU)
            return Verdict(TODO, f"CUDA {s.cuda} wanted, nvcc reports {cuda or 'nothing'}",
                           {"gpu": gpu})
        return Check(gpu_probe(NVCC_PROBE), judge)

    def plan(self, host: Host, s: ProvisionSettings, verdict: Verdict | None = None) -> StepPlan:
        verdict = ask(host, self.check(s), verdict)
        done = settled(verdict)
        if done:
            return done
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
        return self._install(host, cmds, verdict.data.get("gpu", False))


class VerifyStep:
    """Reads the result rather than changing anything: a no-op when the GPU stack answers."""

    id = "verify"
    verifies = True  # the runner skips it in check mode after steps that would change things

    def check(self, s: ProvisionSettings) -> Check:
        def judge(text: str) -> Verdict:
            gpu, gpus, cuda = answered(text)
            if not gpu:
                return Verdict(SKIP, "no NVIDIA GPU on this host: nothing to verify")
            if gpus and cuda == s.cuda:
                return Verdict(DONE, f"{len(gpus)}x {gpus[0].name}, driver {gpus[0].driver}, "
                                     f"CUDA {cuda}")
            problem = ("nvidia-smi sees no GPU after the driver install" if not gpus
                       else f"nvcc reports CUDA {cuda}, wanted {s.cuda}")
            return Verdict(TODO, problem)
        return Check(gpu_probe(SMI_PROBE, NVCC_PROBE), judge)

    def plan(self, host: Host, s: ProvisionSettings, verdict: Verdict | None = None) -> StepPlan:
        verdict = ask(host, self.check(s), verdict)
        done = settled(verdict)
        if done:
            return done
        raise RuntimeError(verdict.reason)  # nothing to apply: the stack above did not work
