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


def provisioning_steps(profile: Profile, guards: GuardPlan, time_zone: str | None,
                       idle_minutes: int) -> list[PlannedStep]:
    steps = [PlannedStep("connect", "wait for SSH; verify the host key published in guest attributes"),
             PlannedStep("facts", "read OS, GPUs, disks and installed versions")]
    nvme = _nvme_step(profile)
    if nvme:
        steps.append(nvme)
        steps.append(PlannedStep("caches", f"point HF_HOME, pip/uv and torch caches at {NVME_MOUNT}"))
    zone = guards.daily_stop.time_zone if guards.daily_stop else time_zone
    if zone:
        steps.append(PlannedStep("timezone", f"set the time zone to {zone}"))
    if guards.daily_stop:
        stop = guards.daily_stop
        steps.append(PlannedStep("shutdown-cron", f"root cron `{stop.cron} /sbin/shutdown -h now` "
                                                  f"({stop.clock} {stop.time_zone}), one line only"))
    if idle_minutes:
        steps.append(PlannedStep("idle-watchdog", f"power off after {idle_minutes} idle minutes "
                                                  "(GPU idle, no SSH session, no gpuctl job)"))
    steps += [
        PlannedStep("nvidia-driver", f"NVIDIA driver {profile.driver} (reboots once if needed)"),
        PlannedStep("cuda", f"CUDA toolkit {profile.cuda}"),
        PlannedStep("python", f"Python {profile.python} with a virtualenv at ~/venv whose pip works "
                              f"(installs python{profile.python}-venv where the image lacks it)"),
        PlannedStep("verify", "nvidia-smi sees "
                              f"{profile.gpu_total} GPU(s); nvcc reports CUDA {profile.cuda}"),
    ]
    return steps
