"""What provisioning should make true on a host, from a profile, the config and flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpuctl_infra.spec import DailyStop

DEFAULT_MOUNT = "/mnt/disks/nvme"


@dataclass(frozen=True)
class ProvisionSettings:
    login_user: str
    mount_point: str = DEFAULT_MOUNT
    time_zone: str | None = None  # None: leave the host's zone alone
    daily_stop: DailyStop | None = None
    idle_minutes: int = 30
    gpu_util_threshold: int = 5
    driver: str = "535"
    cuda: str = "11.8"
    python: str = "3.10"
    requirements: tuple[str, ...] = field(default_factory=tuple)
    format_in_use: bool = False  # wipe disks that already hold data (never by default)

    @property
    def home(self) -> str:
        return "/root" if self.login_user == "root" else f"/home/{self.login_user}"

    @property
    def venv(self) -> str:
        return f"{self.home}/venv"
