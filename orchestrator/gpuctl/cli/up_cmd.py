from __future__ import annotations

import click

from .options import json_option, profile_argument


@click.command()
@profile_argument
@click.option("--name", help="VM name (default: OWNER-PROFILE).")
@click.option("--zone", help="Zone to use (default: every zone with the GPU, in order).")
@click.option("--region", help="Region (default: the profile's or your config's).")
@click.option("--ttl", help="Server-side run limit, e.g. 6h or 1d12h; 'none' to omit (config: ttl).")
@click.option("--budget", help="Run limit from money: stop spending at 20, $20 or 3000JPY.")
@click.option("--until", help="Delete at this time (RFC 3339), e.g. 2026-11-24T06:00+09:00.")
@click.option("--stop-at", help="Stop daily at HH:MM (server schedule + on-host cron).")
@click.option("--tz", "time_zone", help="Time zone of --stop-at, e.g. Asia/Tokyo.")
@click.option("--on-limit", "termination_action", type=click.Choice(["delete", "stop"]),
              help="What the run limit does (default delete: nothing keeps billing).")
@click.option("--idle-minutes", type=click.IntRange(0, 1440),
              help="On-host idle watchdog; 0 disables it.")
@click.option("--ssh-from", help="Your public address for the SSH rule (default: detected).")
@click.option("--unguarded", is_flag=True,
              help="Allow a VM with no server-side guard (it bills until deleted).")
@click.option("--dry-run", is_flag=True, help="Show the plan; create nothing. No credentials needed.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def up(profile: str, dry_run: bool, yes: bool, as_json: bool, **options) -> None:
    """Create a guarded GPU VM from PROFILE. Shows the plan and its cost first."""
    from ..context import load_context
    from ..errors import NotAvailableYet
    from ..plan import UpOptions, plan_to_dict, plan_vm
    from . import render

    ctx = load_context()
    plan = plan_vm(ctx, UpOptions(profile=profile, **options))
    report = plan_to_dict(plan, ctx)
    if as_json:
        render.print_json(report)
    else:
        render.render_plan(report)
    if not dry_run:
        raise NotAvailableYet("live `gpuctl up` is not in this release; nothing was created",
                              "use --dry-run to see the plan")
