"""The provisioning steps `gpuctl up` will run over SSH once the VM answers, as plan items.

This is the plan view only: which steps, with which parameters. Each step is applied later by
the provisioning runner (facts + steps, idempotent); listing them here lets a dry run show
exactly what will happen on the host.
"""

from __future__ import annotations

from dataclasses import dataclass

from .guards import GuardPlan
from .profiles import Profile

NVME_MOUNT = "/mnt/disks/nvme"


@dataclass(frozen=True)
class PlannedStep:
    id: str
    summary: str

    def as_dict(self) -> dict:
        return {"id": self.id, "summary": self.summary}


def _nvme_step(profile: Profile) -> PlannedStep | None:
    count = profile.local_ssd_total
    if count == 0:
        return None
    if count == 1:
        how = "format google-local-nvme-ssd-0 as ext4"
    else:
        how = f"join {count} local NVMe SSDs in mdadm RAID0, format ext4"
    return PlannedStep("nvme", f"{how}; mount at {NVME_MOUNT} by UUID "
                               "(discard,defaults,nofail), writable by the login user")


def _summaries(profile: Profile, guards: GuardPlan, time_zone: str | None,
               idle_minutes: int) -> dict[str, str | None]:
    """What each provisioning step will do with these settings (None: it has nothing to do)."""
    zone = guards.daily_stop.time_zone if guards.daily_stop else time_zone
    stop = guards.daily_stop
    nvme = _nvme_step(profile)
    return {
        "nvme": nvme.summary if nvme else None,
        "caches": f"point HF_HOME, pip/uv and torch caches at {NVME_MOUNT}" if nvme else None,
        "timezone": f"set the time zone to {zone}" if zone else None,
        "shutdown-cron": (f"root cron `{stop.cron} /sbin/shutdown -h now` ({stop.clock} "
                          f"{stop.time_zone}), one line only") if stop else None,
        "idle-watchdog": (f"power off after {idle_minutes} idle minutes (GPU idle, no SSH session, "
                          "no gpuctl job)") if idle_minutes else None,
        "nvidia-driver": f"NVIDIA driver {profile.driver} (reboots once if needed)",
        "cuda": f"CUDA toolkit {profile.cuda}",
        "python": (f"Python {profile.python} with a virtualenv at ~/venv whose pip works "
                   f"(installs python{profile.python}-venv where the image lacks it)"),
        "verify": f"nvidia-smi sees {profile.gpu_total} GPU(s); nvcc reports CUDA {profile.cuda}",
    }


def provisioning_steps(profile: Profile, guards: GuardPlan, time_zone: str | None,
                       idle_minutes: int) -> list[PlannedStep]:
    """The steps the runner will apply, in its order (provision.runner.default_steps), each
    with what it will do here; a step added to the runner without a summary fails loudly."""
    from .provision.runner import default_steps

    summaries = _summaries(profile, guards, time_zone, idle_minutes)
    steps = [PlannedStep("connect", "wait for SSH; verify the host key published in guest attributes"),
             PlannedStep("facts", "read OS, GPUs, disks and installed versions")]
    for step in default_steps():
        if step.id not in summaries:
            raise KeyError(f"provisioning step {step.id!r} has no plan summary in provision_plan.py")
        if summaries[step.id]:
            steps.append(PlannedStep(step.id, summaries[step.id]))
    return steps
