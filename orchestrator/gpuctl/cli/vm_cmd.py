"""Commands for live VMs: status (list), ssh, extend, down, sweep. Thin: each calls one
lifecycle function and renders its result."""

from __future__ import annotations

import click

from .options import json_option


def _check_names(names) -> None:
    """A name GCE could never have is refused before credentials or the network are asked."""
    from ..validation import gce_name

    for name in names:
        gce_name(name, "VM name")


def _deps(need_engine: bool = True):
    from ..context import load_context
    from ..lifecycle.deps import live_deps

    ctx = load_context()
    return ctx, live_deps(ctx, need_engine=need_engine)


def _event_printer(as_json: bool):
    from . import render

    out = render.console()

    def show(kind: str, text: str) -> None:
        if not as_json:
            style = {"warn": "yellow", "rollback": "yellow", "attempt": "yellow"}.get(kind, "dim")
            out.print(f"[{style}]{text}[/]")
    return show


def duration_text(seconds: float | None) -> str:
    from ..units import format_duration

    return "-" if seconds is None else format_duration(max(0, int(seconds)))


@click.command()
@click.argument("name", required=False)
@json_option
def status(name: str | None, as_json: bool) -> None:
    """Every gpuctl VM (or NAME): state, zone, uptime, cost so far, time until a guard fires.
    Without a network: gpuctl's local records, marked not live, and a non-zero exit."""
    from ..lifecycle.status import status_report
    from . import render

    _, deps = _deps(need_engine=False)
    report = status_report(deps, name)
    rows = report.rows
    if as_json:
        render.print_json(rows)  # each row says "live": false when it is a local record
    elif not rows:
        click.echo("no gpuctl VMs" if report.live else "gpuctl has no local record of any VM")
    else:
        _status_table(rows, report.live)
    if report.error is not None:
        # Not live: the records above are what gpuctl wrote down, not what runs. Exit
        # non-zero all the same, so a script never takes them for Google's answer.
        raise report.error


def _status_table(rows: list[dict], live: bool) -> None:
    from rich.table import Table

    from . import render

    title = None if live else ("NOT LIVE: Compute Engine could not be reached; "
                               "these are gpuctl's local records")
    table = Table("name", "state", "zone", "address", "uptime", "cost so far", "guard fires in",
                  title=title, title_justify="left", title_style="bold yellow")
    for row in rows:
        guards = ", ".join(f"{g['kind']} {duration_text(g['fires_in_seconds'])}" for g in row["guards"])
        cost = "-" if row["cost_so_far_usd"] is None else f"${row['cost_so_far_usd']:,.2f}"
        address = row["address"] or ("IAP" if row.get("iap") else "-")
        table.add_row(row["name"], row["state"], row["zone"] or "-", address,
                      duration_text(row["uptime_seconds"]), cost, guards or "none")
    render.console().print(table)
    recovering = [row["recover"] for row in rows if row.get("recover")]
    if recovering:
        from .runs_cmd import _currency, recover_line

        cur = _currency()
        for group in recovering:
            render.console().print(recover_line(group, cur))


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--print", "print_only", is_flag=True, help="Print the ssh command instead of running it.")
def ssh(name: str, command: tuple[str, ...], print_only: bool) -> None:
    """Open a shell on VM NAME, or run COMMAND there (after --). The host key is the one pinned
    when the VM was created; a different one stops the connection."""
    import os
    import shlex

    from ..lifecycle.access import ssh_command

    _check_names([name])

    argv = ssh_command(name, list(command) or None)
    if print_only:
        click.echo(shlex.join(argv))
        return
    os.execvp(argv[0], argv)


@click.command()
@click.argument("name")
@click.option("--hours", type=float, required=True, help="Hours to add to the deadline.")
@json_option
def extend(name: str, hours: float, as_json: bool) -> None:
    """Move VM NAME's deadline by HOURS while it runs (up to its hard cap); show the new worst case.
    A `run --recover` group keeps the deadline it started with (its cap is in its template)."""
    from ..lifecycle import records
    from ..lifecycle.extend import extend_vm, refuse_recovering
    from . import render

    _check_names([name])
    record = records.load(name)
    if record is not None:  # a --recover run is refused before credentials are asked for
        refuse_recovering(record)
    _, deps = _deps(need_engine=False)
    result = extend_vm(name, hours, deps)
    if as_json:
        render.print_json(result)
        return
    left = duration_text(result["time_left_seconds"])
    worst = "-" if result["worst_case_usd"] is None else f"${result['worst_case_usd']:,.2f}"
    click.echo(f"{name}: deadline moved by {hours:g}h to {result['deadline']} (was "
               f"{result['previous_deadline'] or 'none'}); hard cap {result['hard_cap'] or 'none'}. "
               f"Ends in {left}, then the VM is {result['then']}. Worst case from now: {worst}.")


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_vms", is_flag=True, help="Every VM gpuctl knows about.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def down(names: tuple[str, ...], all_vms: bool, yes: bool, as_json: bool) -> None:
    """Delete VM NAME and everything made for it, verify nothing is left, report the cost."""
    from ..errors import UsageError
    from ..lifecycle import records
    from ..lifecycle.down import down_vm
    from . import render

    if all_vms == bool(names):
        raise UsageError("name the VMs to delete, or pass --all", "`gpuctl status` lists them")
    _check_names(names)
    targets = [r.name for r in records.all_records()] if all_vms else list(names)
    if not targets:
        click.echo("no gpuctl VMs")
        return
    if not yes and not click.confirm(f"delete {', '.join(targets)}?", default=False):
        raise click.Abort()
    _, deps = _deps(need_engine=True)
    results = [down_vm(name, deps, _event_printer(as_json)).as_dict() for name in targets]
    if as_json:
        render.print_json(results)
        return
    for result in results:
        if not result["existed"]:
            click.echo(f"{result['name']}: nothing to delete (already gone)")
            continue
        cost = result["final_cost_usd"]
        click.echo(f"{result['name']}: deleted; nothing labelled for it is left. "
                   f"Ran {duration_text((result['running_hours'] or 0) * 3600)}, "
                   f"cost about ${cost or 0:,.2f}.")


@click.command()
@click.option("--delete", "delete_them", is_flag=True, help="Delete the orphans and stale stacks found.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def sweep(delete_them: bool, yes: bool, as_json: bool) -> None:
    """Find gpuctl resources left behind: orphans with no stack, stacks with no resources."""
    from rich.table import Table

    from ..lifecycle.sweep import delete_leftovers, find_leftovers
    from . import render

    ctx, deps = _deps(need_engine=True)
    found = find_leftovers(ctx, deps)
    deleted: list[str] = []
    actionable = [f for f in found if f.kind != "tracked"]
    if delete_them and actionable:
        if yes or as_json or click.confirm(f"delete {len(actionable)} leftover(s)?", default=False):
            deleted = delete_leftovers(found, deps)
    if as_json:
        render.print_json({"found": [f.as_dict() for f in found], "deleted": deleted})
        return
    if not found:
        click.echo("nothing left behind")
        return
    table = Table("kind", "vm", "resource", "where", "per day")
    for item in found:
        r = item.resource
        per_day = "?" if item.usd_per_day is None else f"${item.usd_per_day:,.2f}"
        table.add_row(item.kind, item.vm, f"{r.kind}/{r.name}" if r else "(stack only)",
                      r.location if r else "-", per_day)
    render.console().print(table)
    if deleted:
        click.echo(f"deleted {len(deleted)}: {', '.join(deleted)}")
    elif actionable:
        click.echo("run `gpuctl sweep --delete` to remove the orphans and stale stacks; "
                   "tracked VMs go with `gpuctl down NAME`")
