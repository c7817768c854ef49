"""Provision a host: resolve settings, connect with a verified host key, run the steps."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from gpuctl_infra.spec import DailyStop

from ..adapters.ssh import SshTarget
from ..hosts import open_host
from ..context import Context
from ..errors import UsageError
from ..paths import gpuctl_home
from ..profiles import get_profile
from ..units import parse_clock
from .runner import ProvisionReport, StepOutcome, default_steps, run_steps
from .settings import ProvisionSettings
from .system_steps import SHUTDOWN_CRON, WATCHDOG_CONFIG, WATCHDOG_LOG


def known_hosts_files(explicit: Path | None) -> list[Path]:
    """gpuctl's own pins first, then the user's ~/.ssh/known_hosts: keys they already checked."""
    if explicit:
        if not explicit.exists():
            raise UsageError(f"known_hosts file {explicit} does not exist", "check --known-hosts")
        return [explicit]
    return [p for p in (gpuctl_home() / "known_hosts", Path.home() / ".ssh" / "known_hosts")
            if p.exists()]


def settings_for(ctx: Context, login_user: str, profile_name: str | None = None, *,
                 time_zone: str | None = None, stop_at: str | None = None,
                 idle_minutes: int | None = None, format_in_use: bool = False,
                 python: str | None = None, requirements: tuple[str, ...] = ()) -> ProvisionSettings:
    profile = get_profile(ctx.profiles, profile_name) if profile_name else None
    zone = time_zone or ctx.config.time_zone
    clock = stop_at or ctx.config.daily_stop
    daily_stop = None
    if clock:
        hour, minute = parse_clock(clock)
        daily_stop = DailyStop(hour, minute, zone or "UTC")
    return ProvisionSettings(
        login_user=login_user,
        time_zone=zone,
        daily_stop=daily_stop,
        idle_minutes=ctx.config.idle_minutes if idle_minutes is None else idle_minutes,
        driver=profile.driver if profile else "535",
        cuda=profile.cuda if profile else "11.8",
        python=python or (profile.python if profile else "3.10"),
        requirements=requirements,
        format_in_use=format_in_use,
    )


def provision_host(target: SshTarget, settings: ProvisionSettings, *, check: bool = False,
                   known_hosts: list[Path] = (), steps=None,
                   on_step: Callable[[StepOutcome], None] | None = None) -> ProvisionReport:
    with open_host(target, list(known_hosts)) as host:
        return run_steps(host, settings, steps or default_steps(), check=check, on_step=on_step,
                         label=target.label)


def guard_status(target: SshTarget, known_hosts: list[Path] = (), lines: int = 20) -> dict:
    """What the on-host guards are set to, and the watchdog's latest decisions."""
    with open_host(target, list(known_hosts)) as host:
        def cat(path: str) -> str:
            return host.run(f"cat {path} 2>/dev/null || true", sudo=True, check=False).stdout
        log = host.run(f"tail -n {int(lines)} {WATCHDOG_LOG} 2>/dev/null || true", sudo=True,
                       check=False).stdout
        return {"host": target.label, "shutdown_cron": cat(SHUTDOWN_CRON).strip() or None,
                "idle_watchdog_config": cat(WATCHDOG_CONFIG).strip() or None,
                "idle_watchdog_log": [line for line in log.splitlines() if line.strip()]}
