"""What provisioning tests ask of a throwaway host: its SSH target and the settings they apply."""

from __future__ import annotations

from gpuctl.adapters.ssh import SshTarget
from gpuctl.provision.settings import ProvisionSettings
from gpuctl_infra.spec import DailyStop

MOUNT = "/mnt/disks/nvme"


def target(host) -> SshTarget:
    return SshTarget(host.address, host.user, host.port, host.key_path, host.known_hosts_path)


def settings(host, **changes) -> ProvisionSettings:
    """Tokyo time, a 06:00 stop, the watchdog and Python 3.11 (what Debian 12 packages)."""
    values = dict(login_user=host.user, time_zone="Asia/Tokyo",
                  daily_stop=DailyStop(6, 0, "Asia/Tokyo"), idle_minutes=30, python="3.11")
    values.update(changes)
    return ProvisionSettings(**values)
