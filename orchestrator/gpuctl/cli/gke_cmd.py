"""`gpuctl gke`: a GKE cluster with spot GPU node pools. Thin: each command parses, calls one
function of gpuctl.gke, and renders the result (rich tables, or --json). Everything heavy is
imported inside the commands: `gpuctl --help` loads none of it."""

from __future__ import annotations

import click

from .options import json_option

name_option = click.option("--name", default="gpuctl", show_default=True,
                           help="Cluster name (also its stack gke-NAME and kube context gpuctl-NAME).")


@click.group()
def gke() -> None:
    """A GKE cluster whose spot GPU node pools scale from zero: up, down, status."""


def _event_printer(as_json: bool):
    from . import render

    out = render.console()

    def show(kind: str, text: str) -> None:
        if as_json or kind == "engine":
            return
        style = {"warn": "yellow", "rollback": "yellow", "ready": "green"}.get(kind, "dim")
        out.print(f"[{style}]{text}[/]")
    return show


@gke.command()
@name_option
@click.option("--zone", help="Zone (default: the first zone of your region with every GPU asked for).")
@click.option("--pools", default="l4", show_default=True,
              help="GPU pools: GPU[@MACHINE][:MAX],... e.g. l4:2,t4 (GPUs: t4, l4, a100).")
@click.option("--max-nodes", type=int, default=2, show_default=True,
              help="Max nodes of a pool that does not say :MAX.")
@click.option("--api-from", help="The one address the control plane answers (default: ssh_from, "
              "else your detected public address).")
@click.option("--dry-run", is_flag=True, help="Show the plan and its cost; create nothing. No credentials needed.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def up(name: str, zone: str | None, pools: str, max_nodes: int, api_from: str | None, dry_run: bool,
       yes: bool, as_json: bool) -> None:
    """Create (or update) the cluster, and a kube context for it in gpuctl's kubeconfig."""
    from dataclasses import replace

    from ..context import load_context
    from ..gke.plan import GkeOptions, plan_gke, plan_to_dict
    from . import render

    ctx = load_context()
    options = GkeOptions(name=name, zone=zone, pools=pools, max_nodes=max_nodes, api_from=api_from)
    if dry_run:
        plan = plan_gke(ctx, options)  # a bad flag fails here, before anything else
        report = plan_to_dict(plan, ctx)
        render.print_json(report) if as_json else _render_plan(report)
        return
    from ..gke.cluster import gke_deps, gke_up
    from ..gke.plan import build_spec

    build_spec(ctx, options)  # a bad flag fails before credentials are looked for
    deps = gke_deps(ctx)
    from ..lifecycle.deps import caller_cidr

    plan = plan_gke(ctx, replace(options, project=deps.project, api_from=caller_cidr(ctx, api_from)))
    report = plan_to_dict(plan, ctx)
    if not as_json:
        _render_plan(report)
    if not yes and not click.confirm(f"create cluster {name} in {plan.spec.zone}?", default=False):
        raise click.Abort()
    result = gke_up(plan.spec, deps, _event_printer(as_json))
    if as_json:
        render.print_json({**result.as_dict(), "plan": report})
        return
    click.echo(f"cluster {name} is {result.cluster.status} at {result.cluster.endpoint}; "
               f"kube context {result.context} in {result.kubeconfig}")
    click.echo(f"  kubectl --kubeconfig {result.kubeconfig} --context {result.context} get nodes")


@gke.command()
@name_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def down(name: str, yes: bool, as_json: bool) -> None:
    """Delete the cluster and its pools, verify it is gone, remove its kube context."""
    from ..context import load_context
    from ..gke.cluster import gke_deps, gke_down
    from . import render

    if not yes and not click.confirm(f"delete cluster {name}?", default=False):
        raise click.Abort()
    deps = gke_deps(load_context())
    result = gke_down(name, deps, _event_printer(as_json))
    if as_json:
        render.print_json(result.as_dict())
    elif not result.existed:
        click.echo(f"cluster {name}: nothing to delete (already gone)")
    else:
        click.echo(f"cluster {name}: deleted; the GKE API no longer lists it"
                   + (" (deleted directly: the stack had lost it)" if result.deleted_directly else ""))


@gke.command()
@json_option
def status(as_json: bool) -> None:
    """Every gpuctl cluster: pools, nodes now (of min..max), cost per hour now."""
    from ..context import load_context
    from ..gke.cluster import gke_deps, gke_status
    from . import render

    ctx = load_context()
    rows = gke_status(gke_deps(ctx, need_engine=False), ctx.prices)
    if as_json:
        render.print_json(rows)
        return
    if not rows:
        click.echo("no gpuctl GKE clusters")
        return
    _render_status(rows)


@gke.command(hidden=True)
def token() -> None:
    """Print an ExecCredential for kubectl (the kubeconfig's exec plugin runs this)."""
    import json

    from ..gke.kube_access import current_token, exec_credential, requested_api_version

    token_text, expiry = current_token()
    click.echo(json.dumps(exec_credential(token_text, expiry, requested_api_version())))


# --- rendering --------------------------------------------------------------------------------


def _usd(value: float | None, digits: int = 4) -> str:
    """'$0.1234', with the display currency beside it when one is set ('$0.1234 / ¥19')."""
    from . import render

    return render.money(value, _display_currency(), digits)


def _display_currency():
    from ..config import load_config
    from ..money import display_currency

    config = load_config()  # small TOML read; not cached: one process may see several configs
    return display_currency(config.currency, config.fx_rate)


def _render_plan(report: dict) -> None:
    from rich.table import Table

    from . import render

    out = render.console()
    out.print(f"[bold]GKE cluster {report['cluster']}[/] in {report['zone']} "
              f"(project {report['project']}, stack {report['stack']}, "
              f"kube context {report['kube_context']})")
    table = Table("resource", "name", "what", title="Resources", title_justify="left")
    for resource in report["resources"]:
        table.add_row(resource["type"], resource["name"], resource["summary"])
    out.print(table)
    cost = report["cost"]
    money = Table("item", "per hour", title=f"Cost in {cost['region']}", title_justify="left")
    money.add_row("cluster fee", _usd(cost["cluster_fee_usd_per_hour"]))
    system = cost["system_pool"]
    money.add_row(f"system pool: {system['min_nodes']}x {system['detail']}",
                  _usd(system["usd_per_node_hour"] * system["min_nodes"]))
    money.add_row("[bold]idle (no GPU node)[/]",
                  f"[bold]{_usd(cost['idle_usd_per_hour'])}[/] ({_usd(cost['idle_usd_per_day'], 2)}/day)")
    for pool in cost["gpu_pools"]:
        money.add_row(f"+ each {pool['pool']} node: {pool['detail']} (0..{pool['max_nodes']})",
                      _usd(pool["usd_per_node_hour"]))
    money.add_row("every pool at its max", _usd(cost["max_usd_per_hour"]))
    out.print(money)
    for guard in report["guards"]:
        out.print(f"guard: {guard}")
    out.print(f"[dim]{render.prices_note(report)}[/]")


def _render_status(rows: list[dict]) -> None:
    from rich.table import Table

    from . import render

    out = render.console()
    for row in rows:
        table = Table("pool", "machine", "GPUs", "spot", "nodes", "per node-hour", "per hour",
                      title=f"{row['name']} ({row['location']}, {row['status']}, context "
                            f"{row['kube_context']})", title_justify="left")
        for pool in row["pools"]:
            gpus = ", ".join(f"{a['count']}x {a['type']}" for a in pool["accelerators"]) or "-"
            nodes = "?" if pool["nodes"] is None else str(pool["nodes"])
            table.add_row(pool["name"], pool["machine_type"], gpus, "yes" if pool["spot"] else "no",
                          f"{nodes} of {pool['min_nodes']}..{pool['max_nodes']}",
                          _usd(pool["usd_per_node_hour"]), _usd(pool["usd_per_hour"]))
        table.add_row("cluster fee", "", "", "", "", "", _usd(row["cluster_fee_usd_per_hour"]))
        table.add_row("[bold]total now[/]", "", "", "", "", "", f"[bold]{_usd(row['usd_per_hour'])}[/]")
        out.print(table)
        for note in row["notes"]:
            out.print(f"[yellow]note: {note}[/]")
