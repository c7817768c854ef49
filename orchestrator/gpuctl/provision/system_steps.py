"""Host settings owned as whole files: caches on NVMe, time zone, shutdown cron, idle watchdog."""

from __future__ import annotations

import json
import shlex
from importlib import resources

from . import facts
from .base import Host, StepPlan, noop, read, skip
from .files import read_file_command, write_file_command
from .settings import ProvisionSettings

CACHES_FILE = "/etc/profile.d/gpuctl-caches.sh"
SHUTDOWN_CRON = "/etc/cron.d/gpuctl-shutdown"
WATCHDOG_BIN = "/usr/local/sbin/gpuctl-idle-watchdog"
WATCHDOG_CONFIG = "/etc/gpuctl/idle-watchdog.json"
WATCHDOG_CRON = "/etc/cron.d/gpuctl-idle-watchdog"
WATCHDOG_LOG = "/var/log/gpuctl/idle-watchdog.log"
CRON_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def ensure_files(host: Host, wanted: dict[str, tuple[str, str]], noop_reason: str) -> StepPlan:
    """Plan writing each path whose content differs: {path: (content, mode)}."""
    stale = [path for path, (content, _) in wanted.items()
             if host.run(read_file_command(path), sudo=True, check=False).stdout != content]
    if not stale:
        return noop(noop_reason)

    def apply(h: Host) -> None:
        for path in stale:
            content, mode = wanted[path]
            h.run(write_file_command(path, content, mode), sudo=True)

    return StepPlan(actions=[f"write {path}" for path in stale], apply=apply)


class CachesStep:
    """Model, pip/uv and torch caches on the NVMe: 126 GB checkpoints do not fit a boot disk."""

    id = "caches"

    def plan(self, host: Host, s: ProvisionSettings) -> StepPlan:
        mounted = any(len(m.split()) > 1 and m.split()[1] == s.mount_point
                      for m in read(host, facts.MOUNTS))
        if not mounted:
            return skip(f"{s.mount_point} is not mounted")
        base = f"{s.mount_point}/cache"
        content = "".join(f"export {k}={base}/{v}\n" for k, v in (
            ("HF_HOME", "huggingface"), ("PIP_CACHE_DIR", "pip"), ("UV_CACHE_DIR", "uv"),
            ("TORCH_HOME", "torch")))
        plan = ensure_files(host, {CACHES_FILE: (content, "0644")}, "caches already point at NVMe")
        missing = host.run(f"test -d {shlex.quote(base)}/huggingface", check=False).exit_code != 0
        if not missing:
            return plan
        user = shlex.quote(s.login_user)
        make_dirs = (f"mkdir -p {base}/huggingface {base}/pip {base}/uv {base}/torch && "
                     f"chown -R {user}: {base}")
        inner = plan.apply

        def apply(h: Host) -> None:
            h.run(make_dirs, sudo=True)
            if inner:
                inner(h)

        return StepPlan(actions=[make_dirs, *plan.actions], apply=apply)


class TimezoneStep:
    id = "timezone"

    def plan(self, host: Host, s: ProvisionSettings) -> StepPlan:
        if not s.time_zone:
            return skip("no time zone configured")
        current = read(host, facts.TIMEZONE)
        if current == s.time_zone:
            return noop(f"already {s.time_zone}")
        tz = shlex.quote(s.time_zone)
        # Works with or without systemd (timedatectl is absent in containers and chroots).
        cmd = (f"test -e /usr/share/zoneinfo/{tz} && ln -sf /usr/share/zoneinfo/{tz} /etc/localtime "
               f"&& echo {tz} > /etc/timezone")
        return StepPlan(actions=[f"set time zone {current} -> {s.time_zone}"],
                        apply=lambda h: h.run(cmd, sudo=True))


class ShutdownCronStep:
    id = "shutdown-cron"

    def plan(self, host: Host, s: ProvisionSettings) -> StepPlan:
        stop = s.daily_stop
        if stop is None:
            return skip("no daily stop configured")
        content = (f"# gpuctl: power off daily at {stop.clock} {stop.time_zone} (host clock)\n"
                   f"SHELL=/bin/sh\n{CRON_PATH}\n{stop.cron} root /sbin/shutdown -h now\n")
        return ensure_files(host, {SHUTDOWN_CRON: (content, "0644")},
                            f"shutdown at {stop.clock} already scheduled")


def watchdog_script() -> str:
    return resources.files("gpuctl.provision.host_scripts").joinpath("idle_watchdog.py").read_text()


class IdleWatchdogStep:
    id = "idle-watchdog"

    def plan(self, host: Host, s: ProvisionSettings) -> StepPlan:
        if not s.idle_minutes:
            return skip("idle watchdog disabled (idle_minutes = 0)")
        config = json.dumps({"idle_minutes": s.idle_minutes,
                             "gpu_util_threshold": s.gpu_util_threshold,
                             "log_file": WATCHDOG_LOG}, indent=2) + "\n"
        cron = (f"# gpuctl: idle watchdog, every minute\nSHELL=/bin/sh\n{CRON_PATH}\n"
                f"* * * * * root {WATCHDOG_BIN} --config {WATCHDOG_CONFIG}\n")
        return ensure_files(host, {WATCHDOG_BIN: (watchdog_script(), "0755"),
                                   WATCHDOG_CONFIG: (config, "0644"),
                                   WATCHDOG_CRON: (cron, "0644")},
                            f"watchdog installed ({s.idle_minutes} idle minutes)")
