from __future__ import annotations

import click

from .options import complete_profiles, json_option


@click.command()
@click.argument("profile", required=False, shell_complete=complete_profiles)
@click.option("--gpu", help="Instead of a profile: GPU[:COUNT], e.g. A100:2 or L4:4 (the smallest "
              "machine type that carries them).")
@click.option("--on-demand", is_flag=True, help="With --gpu: on demand instead of spot.")
@click.option("--name", help="VM name (default: OWNER-PROFILE).")
@click.option("--zone", help="Zone to use (default: every zone with the GPU, in order).")
@click.option("--region", help="Region(s) to choose from, cheapest zone first: a name, a pattern "
              "such as 'europe-*', or a comma list (default: the profile's or your config's).")
@click.option("--ttl", help="Server-side run limit, e.g. 6h or 1d12h; 'none' to omit (config: ttl).")
@click.option("--budget", help="Run limit from money: stop spending at 20, $20 or 3000JPY.")
@click.option("--cap", help="Hard cap above --ttl, e.g. 24h: the ttl becomes a deadline that "
              "`gpuctl extend` moves while the VM runs (config: cap).")
@click.option("--until", help="Delete at this time (RFC 3339), e.g. 2026-11-24T06:00+09:00.")
@click.option("--stop-at", help="Stop daily at HH:MM (server schedule + on-host cron).")
@click.option("--tz", "time_zone", help="Time zone of --stop-at, e.g. Asia/Tokyo.")
@click.option("--on-limit", "termination_action", type=click.Choice(["delete", "stop"]),
              help="What the run limit does (default delete: nothing keeps billing).")
@click.option("--idle-minutes", type=click.IntRange(0, 1440),
              help="On-host idle watchdog; 0 disables it.")
@click.option("--ssh-from", help="Your public address for the SSH rule (default: detected).")
@click.option("--iap", is_flag=True,
              help="SSH through Identity-Aware Proxy: no external address, port 22 open only to "
              "IAP, egress through Cloud NAT; needs gcloud (config: iap = true).")
@click.option("--checkpoints", help="gs://BUCKET/PREFIX or 'auto': the VM gets its own service "
              "account with object read/write on that one bucket, so runs can save checkpoints "
              "there (config: checkpoints). Without it the VM has no cloud credentials.")
@click.option("--unguarded", is_flag=True,
              help="Allow a VM with no server-side guard (it bills until deleted).")
@click.option("--any-region", is_flag=True,
              help="Choose from every region of the catalog (cheapest zone first).")
@click.option("--flex-start", is_flag=True,
              help="Dynamic Workload Scheduler flex-start VM (FLEX_START): needs --ttl of at "
              "most 7d; cannot be stopped or scheduled.")
@click.option("--fallback", help="Provisioning models to try in order, e.g. "
              "spot,flex-start,on-demand (default: the profile's).")
@click.option("--no-provision", "skip_provision", is_flag=True,
              help="Create and reach the VM, but do not provision it.")
@click.option("--dry-run", is_flag=True, help="Show the plan; create nothing. No credentials needed.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def up(profile: str | None, dry_run: bool, yes: bool, as_json: bool, any_region: bool,
       skip_provision: bool, **options) -> None:
    """Create a guarded GPU VM from PROFILE (or --gpu A100:2). Shows the plan and its cost first."""
    from ..context import load_context
    from ..plan import UpOptions, plan_to_dict, plan_vm
    from . import render

    ctx = load_context()
    plan = plan_vm(ctx, UpOptions(profile=profile, any_region=any_region, **options))
    report = plan_to_dict(plan, ctx)
    if dry_run:
        if as_json:
            render.print_json(report)
        else:
            render.render_plan(report)
            _choice_lines(report)
        return
    from ..lifecycle.deps import live_deps

    # Fails fast, naming what is missing; with IAP, gcloud instead of the caller's address.
    extra = {"iap": True} if plan.spec.iap else {}
    deps = live_deps(ctx, ssh_from=options.get("ssh_from"), **extra)
    if not as_json:
        render.render_plan(report)
        _choice_lines(report)
    if not yes and not click.confirm(f"create {plan.spec.name}?", default=False):
        raise click.Abort()
    _apply(ctx, plan, deps, any_region, skip_provision, as_json)


def _choice_lines(report: dict) -> None:
    """Where and why, the fallback order, the budget in the user's currency, unpriced items."""
    from . import render

    out = render.console()
    out.print(f"region: {report['region_reason']}")
    models = list(dict.fromkeys(c["model"] for c in report["choices"]))
    if len(models) > 1:
        out.print(f"fallback: {' → '.join(models)}")
    if "budget" in report:
        out.print(f"budget: {report['budget']}")
    access = report.get("checkpoint_access")
    out.print(f"cloud access: {access['summary']}" if access
              else "cloud access: none (no service account; pass --checkpoints to let runs save to a bucket)")
    if report.get("cloud_nat"):
        out.print(f"cloud NAT: {report['cloud_nat']['summary']}")
    cost = report["cost"]
    if cost["unpriced"]:
        out.print(f"[yellow]no price in the data for: {', '.join(cost['unpriced'])} "
                  "(not in the totals above)[/]")
    for note in cost["price_notes"]:
        out.print(f"[dim]{note}[/]")
    for warning in report["warnings"]:
        render.warn_line(warning)


def _apply(ctx, plan, deps, any_region: bool, skip_provision: bool, as_json: bool) -> None:
    from ..lifecycle.up import up_vm
    from . import render

    out = render.console()
    status = None if as_json else out.status(f"creating {plan.spec.name}")

    def show(kind: str, text: str) -> None:
        if status is not None:
            status.update(text)
            if kind in ("attempt", "rollback", "ready"):
                out.print(("[yellow]" if kind != "ready" else "[green]") + text + "[/]")

    if status is not None:
        status.start()
    try:
        result = up_vm(ctx, plan, deps, any_region=any_region, on_event=show)
    finally:
        if status is not None:
            status.stop()
    record = result.record
    provision = None if skip_provision else _provision(ctx, record, as_json)
    summary = {"name": record.name, "zone": record.zone, "address": record.address, "iap": record.iap,
               "attempts": [a.as_dict() for a in record.attempts],
               "ssh": f"gpuctl ssh {record.name}", "guards": [g.as_dict() for g in plan.guards.guards],
               "worst_case": plan.worst_case, "provision": provision}
    if as_json:
        render.print_json(summary)
        return
    where = "through IAP (no external address)" if record.iap else f"at {record.address}"
    out.print(f"[green]{record.name}[/] is up in {record.zone} {where}: "
              f"`gpuctl ssh {record.name}`")
    for guard in plan.guards.guards:
        out.print(f"  guard: {guard.summary}")
    out.print(f"  worst case: {plan.worst_case['summary']}")


def _provision(ctx, record, as_json: bool) -> dict:
    """Provisioning runs right after up; a failure keeps the VM (it is guarded, and reruns
    resume) and says how to finish."""
    from ..errors import GpuctlError
    from ..lifecycle import records
    from ..provision.service import provision_host, settings_for
    from ..targets import resolve_target

    target, known = resolve_target(record.name)
    settings = settings_for(ctx, target.user, record.profile)
    try:
        report = provision_host(target, settings, known_hosts=known)
    except GpuctlError as exc:
        record.provision = f"failed: {exc.message}"
        records.save(record)
        raise GpuctlError(f"{record.name} is up, but provisioning failed: {exc.message}",
                          f"rerun `gpuctl provision {record.name}` (finished steps are kept)") from None
    record.provision = "ok" if report.ok else "failed"
    records.save(record)
    if not report.ok:
        raise GpuctlError(f"{record.name} is up, but a provisioning step failed",
                          f"rerun `gpuctl provision {record.name} --json` for the step report")
    return report.as_dict()
