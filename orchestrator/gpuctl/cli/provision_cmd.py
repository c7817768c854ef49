from __future__ import annotations

from pathlib import Path

import click

from .options import json_option


@click.command()
@click.argument("host")
@click.option("--ssh-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Private key for the login (mode 0600).")
@click.option("--known-hosts", type=click.Path(dir_okay=False, path_type=Path),
              help="known_hosts with the host's key (default: gpuctl's, then ~/.ssh/known_hosts).")
@click.option("--profile", help="Take driver, CUDA and Python versions from this profile.")
@click.option("--tz", "time_zone", help="Time zone for the host, e.g. Asia/Tokyo.")
@click.option("--stop-at", help="Daily power-off at HH:MM (host time zone).")
@click.option("--idle-minutes", type=click.IntRange(0, 1440), help="Idle watchdog; 0 disables it.")
@click.option("--python", "python_version", help="Python version for the virtualenv, e.g. 3.11.")
@click.option("--format-in-use", is_flag=True, help="Wipe local disks that already hold data.")
@click.option("--check", is_flag=True, help="Show what would change; change nothing.")
@json_option
def provision(host: str, ssh_key, known_hosts, profile, time_zone, stop_at, idle_minutes,
              python_version, format_in_use, check, as_json) -> None:
    """Make HOST (a gpuctl VM name or user@host[:port]) ready: NVMe, time zone, guards, driver, CUDA, Python."""
    from ..context import load_context
    from ..errors import GpuctlError
    from ..provision.service import provision_host, settings_for
    from ..targets import resolve_target
    from . import render

    target, known = resolve_target(host, ssh_key, known_hosts)
    settings = settings_for(load_context(), target.user, profile, time_zone=time_zone,
                            stop_at=stop_at, idle_minutes=idle_minutes,
                            format_in_use=format_in_use, python=python_version)
    out = render.console()
    status = None if as_json else out.status(f"provisioning {target.label}")

    def show(outcome) -> None:
        if status is not None:
            out.print(render.step_line(outcome.as_dict(), check))

    if status is not None:
        status.start()
    try:
        report = provision_host(target, settings, check=check, known_hosts=known,
                                on_step=show)
    finally:
        if status is not None:
            status.stop()
    if as_json:
        render.print_json(report.as_dict())
    else:
        verb = "would change" if check else "changed"
        out.print(f"{report.changed} step(s) {verb}, {report.round_trips} SSH round trips, "
                  f"{report.seconds:.1f}s")
    if not report.ok:
        failed = next(s for s in report.steps if s.status == "failed")
        raise GpuctlError(f"step {failed.id} failed: {failed.error}",
                          failed.hint or "fix the cause and rerun: finished steps are not redone")


@click.command()
@click.argument("host")
@click.option("--ssh-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--known-hosts", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--lines", default=20, show_default=True, help="Watchdog log lines to show.")
@json_option
def guards(host: str, ssh_key, known_hosts, lines: int, as_json: bool) -> None:
    """Show HOST's on-host guards and the idle watchdog's latest decisions."""
    from ..provision.service import guard_status
    from ..targets import resolve_target
    from . import render

    target, known = resolve_target(host, ssh_key, known_hosts)
    data = guard_status(target, known, lines)
    if as_json:
        render.print_json(data)
        return
    click.echo(f"shutdown cron: {data['shutdown_cron'] or 'none'}")
    click.echo(f"idle watchdog: {data['idle_watchdog_config'] or 'not installed'}")
    for line in data["idle_watchdog_log"]:
        click.echo(f"  {line}")
