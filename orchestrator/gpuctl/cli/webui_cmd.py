"""`gpuctl webui up | down | status | open`: the Web UI on GKE, at zero replicas when unused."""

from __future__ import annotations

import click

from .kube_options import connect, kube_options, resolve_namespace
from .options import json_option


@click.group()
def webui() -> None:
    """A Web UI on a spot GPU node of gpuctl's GKE cluster, behind a token; an in-cluster
    idle rule scales it to zero so the GPU pool drains.

    \b
      gpuctl webui up --dry-run    the manifests, offline
      gpuctl webui up              scale it 0 -> 1 (waits for the GPU node)
      gpuctl webui open            connect through a port-forward on 127.0.0.1
      gpuctl webui status          state, last use, when it scales down, cost while up
      gpuctl webui down            remove everything it made
    """


@webui.command()
@click.option("--dry-run", is_flag=True, help="Print the manifests as YAML; contact nothing.")
@click.option("--validate", is_flag=True,
              help="Have the cluster validate the manifests (server-side dry run); change nothing.")
@click.option("--accelerator", default="nvidia-l4", show_default=True, help="GPU for the UI.")
@click.option("--on-demand", is_flag=True, help="Use on-demand GPU nodes instead of spot.")
@click.option("--idle-minutes", type=click.FloatRange(0, 1440),
              help="Scale to zero after this many minutes without a request "
                   "(default: idle_minutes from config, 30); 0 turns the rule off.")
@click.option("--image", help="UI image (default: images/images.toml).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the UI is ready.")
@click.option("--timeout", default=900, show_default=True, help="Seconds to wait for ready.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@kube_options
@json_option
def up(dry_run, validate, accelerator, on_demand, idle_minutes, image, wait, timeout, yes,
       kubeconfig, context, namespace, as_json) -> None:
    """Apply the Web UI and scale it 0 -> 1."""
    from ..gke.images import require_real_image, webui_image
    from ..gke.manifests import manifests_yaml
    from ..gke.webui import TOKEN_SECRET, render_webui, webui_up

    settings = _settings(namespace, accelerator, on_demand, idle_minutes, image)
    if dry_run:
        objects = render_webui(settings, replicas=1)
        if as_json:
            from . import render

            render.print_json({"manifests": objects})
            return
        click.echo(f"# Secret {TOKEN_SECRET}: a random token made by gpuctl on the first `up`; "
                   "never printed")
        click.echo(manifests_yaml(objects), nl=False)
        return
    kube = connect(kubeconfig, context)
    if validate:
        for obj in render_webui(settings, replicas=1):
            kube.apply(obj, dry_run=True)
        click.echo("validated by the cluster; nothing was changed")
        return
    require_real_image(webui_image(settings.image))
    cost = _cost(settings.accelerator, settings.spot)
    if not yes and not as_json:
        click.echo(f"Web UI in namespace {settings.namespace} on 1x {settings.accelerator} "
                   f"({'spot' if settings.spot else 'on-demand'}): {_cost_text(cost)}; "
                   f"scales to zero after {settings.idle_minutes:g} min without a request")
        click.confirm("Scale it up?", abort=True)
    if not settings.idle_minutes and not as_json:
        click.secho("warning: --idle-minutes 0 turns the idle rule off: the GPU node bills "
                    "until `gpuctl webui down`", fg="yellow", err=True)
    result = webui_up(kube, settings)
    if not as_json:
        click.echo(f"applied {len(result['applied'])} objects in {settings.namespace}; "
                   "replicas 0 -> 1" + ("; made a new access token" if result["token_created"] else ""))
    if wait:
        pod = _wait(kube, settings.namespace, timeout, quiet=as_json)
        result["pod"] = pod
        if not as_json:
            click.echo(f"ready: pod {pod}. Connect with: gpuctl webui open")
    if as_json:
        from . import render

        render.print_json({**result, "cost": cost})


@webui.command()
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@kube_options
@json_option
def down(dry_run, yes, kubeconfig, context, namespace, as_json) -> None:
    """Delete the Web UI, its idle rule, token and activity record."""
    from ..errors import GpuctlError
    from ..gke.webui import webui_down, webui_objects

    ns = resolve_namespace(namespace)
    kube = connect(kubeconfig, context)
    if not dry_run and not yes and not as_json:
        found = webui_objects(kube, ns)
        if not found:
            click.echo(f"nothing of the Web UI in namespace {ns}")
            return
        click.echo(f"deletes {len(found)} objects in {ns}: "
                   + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in found))
        click.confirm("Delete them?", abort=True)
    result = webui_down(kube, ns, dry_run=dry_run)
    if as_json:
        from . import render

        render.print_json(result)
    elif dry_run:
        click.echo("would delete: " + (", ".join(result["would_delete"]) or "nothing"))
    else:
        click.echo(f"deleted {len(result['deleted'])} objects in {ns}")
    if result["left"]:
        raise GpuctlError(f"still there after down: {', '.join(result['left'])}",
                          "run `gpuctl webui down` again, or look with kubectl")


@webui.command()
@kube_options
@json_option
def status(kubeconfig, context, namespace, as_json) -> None:
    """State, pod and node, last request, when the idle rule scales it down, cost while up."""
    from ..gke.webui import webui_status

    ns = resolve_namespace(namespace)
    data = webui_status(connect(kubeconfig, context), ns)
    if data.get("accelerator"):
        data["cost"] = _cost(data["accelerator"], data["spot"])
        running = data["replicas"] > 0 or any(not p["deleting"] for p in data["pods"])
        data["cost"]["billing_now"] = running
    if as_json:
        from . import render

        render.print_json(data)
        return
    from rich.table import Table

    from . import render

    table = Table(title=f"Web UI in namespace {ns}", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("state", data["state"])
    if data["installed"]:
        table.add_row("replicas", f"{data['ready']}/{data['replicas']} ready")
        for pod in data["pods"]:
            where = pod["node"] or (pod["message"] or "not scheduled yet")
            table.add_row("pod", f"{pod['name']} {pod['phase']} on {where}")
        table.add_row("GPU", f"1x {data['accelerator']} ({'spot' if data['spot'] else 'on-demand'})")
        table.add_row("last request", _when(data["last_request_at"]) or "none recorded")
        rule = (f"scale to zero after {data['idle_minutes']:g} min idle" if data["idle_minutes"]
                else "off") if data["idle_rule"] else "missing"
        table.add_row("idle rule", f"{rule}: {data['idle_decision']}")
        if data["scale_down_at"]:
            table.add_row("scales down at", _when(data["scale_down_at"]))
        cost = data.get("cost")
        if cost:
            now = _cost_text(cost) if cost["billing_now"] else "$0/hour for the GPU node (scaled to zero)"
            table.add_row("cost now", now)
            table.add_row("cost while up", _cost_text(cost))
    render.console().print(table)


@webui.command(name="open")
@click.option("--port", default=0, show_default=True, help="Local port on 127.0.0.1 (0: any free).")
@click.option("--show-token", is_flag=True,
              help="Also print the access token (for curl or API clients); keep it secret.")
@click.option("--browser/--no-browser", default=False, show_default=True,
              help="Open the URL in a browser.")
@click.option("--timeout", default=900, show_default=True, help="Seconds to wait for ready.")
@kube_options
def open_(port, show_token, browser, timeout, kubeconfig, context, namespace) -> None:
    """Connect to the Web UI through a port-forward on 127.0.0.1 (the token is added for you).

    Runs until Ctrl-C. Each request counts as use, so the idle rule keeps the UI up."""
    import time

    from ..gke.webui import open_local

    ns = resolve_namespace(namespace)
    kube = connect(kubeconfig, context)
    forward, pod = open_local(kube, ns, port=port, timeout=timeout, on_wait=_progress(False),
                              on_error=lambda msg: click.secho(f"gpuctl: {msg}", err=True,
                                                               fg="yellow"))
    token = forward.token
    try:
        click.echo(f"Web UI: {forward.url}  (pod {pod}; Ctrl-C to stop)")
        if show_token:
            click.echo(f"token: {token}  (send as `Authorization: Bearer <token>`)")
        if browser:
            import webbrowser

            webbrowser.open(forward.url)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("closed")
    finally:
        forward.stop()


def _when(iso: str | None) -> str | None:
    """'2026-11-23 04:30:34 UTC' from an ISO timestamp."""
    if not iso:
        return None
    return iso[:19].replace("T", " ") + " UTC"


def _settings(namespace, accelerator, on_demand, idle_minutes, image):
    from ..config import load_config
    from ..gke.webui import WebuiSettings

    config = load_config()
    return WebuiSettings(owner=config.resolved_owner(), namespace=resolve_namespace(namespace),
                         accelerator=accelerator, spot=not on_demand,
                         idle_minutes=idle_minutes if idle_minutes is not None else config.idle_minutes,
                         image=image)


def _cost(accelerator: str, spot: bool) -> dict:
    from ..context import load_context
    from ..gke.pricing import gpu_node_hourly

    ctx = load_context()
    return gpu_node_hourly(ctx.prices, ctx.config.region, accelerator, 1, spot)


def _cost_text(cost: dict) -> str:
    if cost["usd_per_hour"] is None:
        return f"cost unknown ({cost['detail']})"
    return f"about ${cost['usd_per_hour']:.2f}/hour ({cost['detail']})"


def _progress(quiet: bool):
    """An on_wait callback that prints each new state once."""
    seen = set()

    def progress(status: dict) -> None:
        if quiet or status["state"] in seen:
            return
        seen.add(status["state"])
        hint = " (a GPU node from zero takes 4-10 minutes)" if "node" in status["state"] else ""
        click.secho(f"gpuctl: {status['state']}{hint}", err=True, fg="cyan")

    return progress


def _wait(kube, namespace: str, timeout: float, quiet: bool) -> str:
    from ..gke.webui import ready_pod, wait_ready

    return ready_pod(kube, namespace) or wait_ready(kube, namespace, timeout=timeout,
                                                    on_wait=_progress(quiet))
