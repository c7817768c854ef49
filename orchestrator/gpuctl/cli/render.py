"""Rich rendering of reports and plans. Only the CLI imports this; library code never prints."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..money import DisplayCurrency, format_amount
from ..units import format_duration


def console() -> Console:
    # Piped output has no terminal width; rich would assume 80 and truncate wide tables. A
    # COLUMNS the user set wins (rich reads it itself when no width is forced).
    import os

    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160
    return Console(highlight=False, soft_wrap=False, width=width)


def print_json(data: Any) -> None:
    """Strict JSON (RFC 8259): a NaN or infinite figure (a diverged loss, an unbounded worst
    case) becomes null, since `Infinity` is not JSON and breaks every parser but Python's."""
    click.echo(json.dumps(_finite(data), indent=2, default=str, allow_nan=False))


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data


def money(usd: float | None, cur: dict | DisplayCurrency, digits: int = 2) -> str:
    """'$1.93' or '$1.93 / ¥290' when a display currency is set."""
    if usd is None:
        return "?"
    text = f"${usd:,.{digits}f}"
    code = cur.code if isinstance(cur, DisplayCurrency) else cur["code"]
    rate = cur.rate if isinstance(cur, DisplayCurrency) else cur["rate"]
    if code != "USD":
        text += f" / {format_amount(usd * rate, code)}"
    return text


def currency_note(cur: dict) -> str:
    if cur["code"] == "USD":
        return ""
    return f"1 USD = {cur['rate']:g} {cur['code']} ({cur['source']}, {cur['as_of']})"


def prices_note(report: dict) -> str:
    return f"prices as of {report['prices_as_of']}: {report['prices_source']}"


def breakdown_table(cost: dict, cur: dict) -> Table:
    table = Table(title=f"Hourly cost in {cost['region']} ({'spot' if cost['spot'] else 'on-demand'})",
                  title_justify="left")
    table.add_column("item")
    table.add_column("what")
    table.add_column("per hour", justify="right")
    table.add_column("bills when stopped")
    for line in cost["breakdown"]:
        table.add_row(line["item"], line["detail"], money(line["usd_per_hour"], cur, 4),
                      "yes" if line["bills_when_stopped"] else "no")
    # A total over items the data has no price for is a floor, and says so with a "+".
    partial = "+" if any(line["usd_per_hour"] is None for line in cost["breakdown"]) else ""
    table.add_row("[bold]total[/]", "", f"[bold]{money(cost['hourly_usd'], cur, 4)}{partial}[/]",
                  money(cost["stopped_hourly_usd"], cur, 4) + partial)
    return table


def forgotten_table(cost: dict, cur: dict) -> Table:
    guarded = any("guarded_usd" in row for row in cost["forgotten"])
    table = Table(title="If you forget it", title_justify="left")
    table.add_column("for")
    table.add_column("left running", justify="right")
    table.add_column("stopped, not deleted", justify="right")
    if guarded:
        table.add_column("with these guards", justify="right", style="green")
    for row in cost["forgotten"]:
        cells = [row["period"], money(row["running_usd"], cur), money(row["stopped_usd"], cur)]
        if guarded:
            cells.append(money(row["guarded_usd"], cur))
        table.add_row(*cells)
    return table


def _gpu_summary(inputs: dict) -> str:
    accels = inputs.get("guestAccelerators") or []
    return ", ".join(f"{a['count']}x {a['type']}" for a in accels) or "built into machine type"


def resource_summary(resource: dict) -> str:
    """The few inputs a person checks before saying yes."""
    inputs = resource["inputs"]
    kind = resource["type"].rsplit(":", 1)[-1]
    if kind == "Instance":
        sched = inputs.get("scheduling", {})
        boot = inputs.get("bootDisk", {}).get("initializeParams", {})
        parts = [
            f"{inputs.get('machineType')} in {inputs.get('zone')}",
            f"GPU: {_gpu_summary(inputs)}",
            f"scratch NVMe: {len(inputs.get('scratchDisks') or [])}",
            f"boot: {boot.get('size', 0):g} GB {boot.get('type')} {boot.get('image', '').rsplit('/', 1)[-1]}",
            f"{sched.get('provisioningModel')}, on maintenance {sched.get('onHostMaintenance')}, "
            f"restart {str(sched.get('automaticRestart')).lower()}",
        ]
        if "maxRunDuration" in sched:
            parts.append(f"max run {format_duration(sched['maxRunDuration']['seconds'])} then "
                         f"{sched.get('instanceTerminationAction')}")
        if "terminationTime" in sched:
            parts.append(f"terminate at {sched['terminationTime']} ({sched.get('instanceTerminationAction')})")
        parts.append("labels: " + ", ".join(f"{k}={v}" for k, v in sorted(inputs.get("labels", {}).items())))
        return "\n".join(parts)
    if kind == "Firewall":
        ports = ",".join(p for a in inputs.get("allows", []) for p in a.get("ports", []))
        return (f"{inputs.get('direction')} tcp:{ports} from {', '.join(inputs.get('sourceRanges', []))} "
                f"to tag {', '.join(inputs.get('targetTags', []))}")
    if kind == "ResourcePolicy":
        sched = inputs.get("instanceSchedulePolicy", {})
        return (f"stop on cron '{sched.get('vmStopSchedule', {}).get('schedule')}' "
                f"in {sched.get('timeZone')}, region {inputs.get('region')}")
    return ""


def render_plan(plan: dict) -> None:
    out = console()
    cur = plan["currency"]
    out.print(f"[bold]Plan for {plan['profile']}[/] → VM [bold]{plan['name']}[/] in {plan['zone']} "
              f"({'spot' if plan['spot'] else 'on-demand'}); zones to try: {', '.join(plan['zones_to_try'])}")
    out.print("[yellow]dry run: nothing was created[/]")

    resources = Table(title="Resources", title_justify="left", show_lines=True)
    resources.add_column("type")
    resources.add_column("name")
    resources.add_column("key inputs")
    for res in plan["resources"]:
        if res["type"].startswith("gcp:"):
            resources.add_row(res["type"].split(":")[1].replace("/", "."), res["name"], resource_summary(res))
    out.print(resources)

    steps = Table(title="Provisioning over SSH", title_justify="left")
    steps.add_column("#", justify="right")
    steps.add_column("step")
    steps.add_column("what it does")
    for i, step in enumerate(plan["provisioning"], 1):
        steps.add_row(str(i), step["id"], step["summary"])
    out.print(steps)

    guards = Table(title="Guards", title_justify="left")
    guards.add_column("side")
    guards.add_column("guard")
    guards.add_column("then")
    guards.add_column("fires in", justify="right")
    for g in plan["guards"]:
        fires = format_duration(g["fires_in_seconds"]) if g["fires_in_seconds"] is not None else "when idle"
        guards.add_row(g["side"], g["summary"], g["action"], fires)
    out.print(guards)

    out.print(breakdown_table(plan["cost"], cur))
    out.print(forgotten_table(plan["cost"], cur))
    worst = plan["worst_case"]
    style = "green" if worst["bounded"] else "yellow"
    out.print(f"[{style}]worst case: {worst['summary']}[/]")
    for note in (prices_note(plan["cost"]), currency_note(cur)):
        if note:
            out.print(f"[dim]{note}[/]")


STATUS_STYLE = {"changed": "yellow", "unchanged": "green", "skipped": "dim", "failed": "red"}


def step_line(step: dict, check: bool) -> str:
    status = "would change" if check and step["status"] == "changed" else step["status"]
    detail = step.get("error") or step.get("reason") or "; ".join(step.get("actions", []))[:100]
    style = STATUS_STYLE.get(step["status"], "")
    return f"[{style}]{status:>12}[/] {step['id']:<14} {step['seconds']:6.2f}s  {detail}"


# --- jobs (both backends) -----------------------------------------------------------------------

def warn_line(text: str, prefix: str = "warning: ", color: str = "yellow") -> None:
    """A warning or note on stderr; plain when NO_COLOR is set (click.secho colours regardless)."""
    if _colour():
        click.secho(f"{prefix}{text}", err=True, fg=color)
    else:  # secho would still end the line with a reset sequence
        click.echo(f"{prefix}{text}", err=True)


def _colour() -> bool:
    import os

    return not os.environ.get("NO_COLOR")


def next_steps(lines: list[str]) -> None:
    if lines:
        click.echo("next: " + "   ".join(lines))


def preview(p) -> None:
    """The confirmation summary of a GKE submit."""
    click.echo(p.summary[0])
    for line in p.summary[1:]:
        click.echo(f"  {line}")
    for warning in p.warnings:
        warn_line(warning, prefix="  warning: ")
    for note in p.notes:
        warn_line(note, prefix="  note: ")


def gke_submitted(s) -> None:
    if s.dry_run and "manifests" in s.detail:
        from ..gke.manifests import manifests_yaml

        for note in s.notes:
            click.echo(f"# note: {note}")
        click.echo(manifests_yaml(s.detail["manifests"]), nl=False)
        return
    verb = "validated by the cluster; nothing was created" if s.dry_run else "submitted"
    click.echo(f"{verb}: {', '.join(s.detail['objects'])} in namespace {s.where}")
    next_steps(s.next_steps)


def gke_jobs(rows: list[dict]) -> None:
    table = Table(title="GKE jobs", title_justify="left")
    for column in ("job", "status", "pods", "restarts", "steps lost", "nodes", "GPUs", "age"):
        table.add_column(column)
    for r in rows:
        pods = r["pods"]
        gpus = (f"{r['gpus_per_node']}x {r['accelerator']}" if r["gpus_per_node"] else "-")
        age = format_duration(r["age_seconds"]) if r["age_seconds"] is not None else "-"
        table.add_row(r["name"], r["status"] + (f" ({r['reason']})" if r["reason"] else ""),
                      f"{pods['active']} active, {pods['succeeded']}/{pods['completions']} done, "
                      f"{pods['failed']} failed", str(r["restarts"]), steps_lost_text(r),
                      ", ".join(r["nodes"]) or "-", gpus, age)
    console().print(table)
    for r in rows:
        if r.get("steps_note"):
            console().print(f"[dim]{r['name']}: {r['steps_note']}[/]")


def steps_lost_text(row: dict) -> str:
    """'17, 0' (each restart, oldest first), 'unknown' where not known, '-' without restarts."""
    if not row["restarts"]:
        return "-"
    lost = row.get("steps_lost")
    if not lost:
        return "unknown"
    return ", ".join("unknown" if n is None else str(n) for n in lost)
