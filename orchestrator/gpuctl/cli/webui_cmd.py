"""`gpuctl webui up | down | status | open`: Open WebUI over vLLM on GKE, the GPU at zero when unused."""

from __future__ import annotations

import click

from .kube_options import connect, kube_options, resolve_namespace
from .options import json_option


@click.group()
def webui() -> None:
    """Chat with your model: Open WebUI in front of vLLM's OpenAI-compatible server on a spot
    GPU of gpuctl's GKE cluster, from public pinned images. The GPU server scales to zero when
    idle and wakes on use; the UI has its own login and is reached by port-forward.

    \b
      gpuctl webui up --model Qwen/Qwen2.5-0.5B-Instruct --dry-run   the plan, offline
      gpuctl webui up --model ORG/NAME --adapter mine=gs://B/run/out   apply it
      gpuctl webui open            connect through a port-forward on 127.0.0.1
      gpuctl webui status          state, last use, cost per hour up and idle
      gpuctl webui down            remove everything it made
    """


@webui.command()
@click.option("--model", default="Qwen/Qwen2.5-0.5B-Instruct", show_default=True,
              help="Base model: a Hugging Face id (ORG/NAME) or gs://BUCKET/PATH.")
@click.option("--adapter", "adapters", multiple=True, metavar="NAME=gs://PATH",
              help="A LoRA adapter a gpuctl run wrote, served by NAME (repeatable).")
@click.option("--gpu", "--accelerator", "accelerator", default="nvidia-l4", show_default=True,
              help="GPU for the model server (nvidia-tesla-t4, nvidia-l4, nvidia-tesla-a100, ...).")
@click.option("--params", help="The model's parameter count (e.g. 8B) when its name does not say.")
@click.option("--hf-token", metavar="REF",
              help="Hugging Face token by reference: k8s:SECRET/KEY, env:NAME or file:PATH.")
@click.option("--dry-run", is_flag=True, help="Print the plan; contact nothing.")
@click.option("--manifests", is_flag=True, help="With --dry-run: also print the manifests.")
@click.option("--validate", is_flag=True,
              help="Have the cluster validate the manifests (server-side dry run); change nothing.")
@click.option("--on-demand", is_flag=True, help="Use an on-demand GPU node instead of spot.")
@click.option("--idle-minutes", type=click.FloatRange(0, 1440),
              help="Scale the model server to zero after this many minutes without a request "
                   "(default: idle_minutes from config, 30); 0 turns the rule off.")
@click.option("--image", help="Model server image instead of the pinned vLLM.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the chat page is ready (the GPU server keeps starting after).")
@click.option("--timeout", default=300, show_default=True, help="Seconds to wait for the page.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@kube_options
@json_option
def up(model, adapters, accelerator, params, hf_token, dry_run, manifests, validate, on_demand,
       idle_minutes, image, wait, timeout, yes, kubeconfig, context, namespace, as_json) -> None:
    """Check the model fits the GPU, apply the stack, start the model server (0 -> 1)."""
    from ..gke.manifests import manifests_yaml
    from ..gke.webui import render_webui, require_fit, webui_up

    settings = _settings(namespace, model, adapters, accelerator, params, hf_token, on_demand,
                         idle_minutes, image)
    if dry_run:
        plan = _plan(settings)
        if as_json:
            from . import render

            render.print_json({**plan, **({"manifests": render_webui(settings)} if manifests else {})})
        else:
            _print_plan(plan)
            if manifests:
                click.echo("---")
                click.echo(manifests_yaml(render_webui(settings)), nl=False)
        if not plan["fit"]["fits"]:
            require_fit(settings)  # the refusal, as one error line with the GPU that would fit
        return
    require_fit(settings)
    kube = connect(kubeconfig, context)
    if validate:
        for obj in render_webui(settings, replicas=1):
            kube.apply(obj, dry_run=True)
        click.echo("validated by the cluster; nothing was changed")
        return
    plan = _plan(settings)
    if not yes and not as_json:
        _print_plan(plan)
        click.confirm("Apply it?", abort=True)
    if not settings.idle_minutes and not as_json:
        click.secho("warning: --idle-minutes 0 turns the idle rule off: the GPU node bills "
                    "until `gpuctl webui down`", fg="yellow", err=True)
    result = webui_up(kube, settings)
    password = result.pop("admin_password", None)
    if password and as_json:
        click.echo(f"Open WebUI admin: {result['admin_email']}  password: {password} "
                   "(shown this once)", err=True)
    if not as_json:
        click.echo(f"applied {len(result['applied'])} objects in {settings.namespace}; "
                   f"model server 0 -> 1 on {settings.accelerator}")
        if password:
            click.secho(f"Open WebUI admin: {result['admin_email']}  password: {password}\n"
                        "  (shown this once; it is kept in the Secret gpuctl-webui-auth)", bold=True)
    if wait:
        pod = _wait(kube, settings.namespace, timeout, quiet=as_json)
        result["pod"] = pod
        if not as_json:
            click.echo(f"the chat page is ready (pod {pod}). Connect with: gpuctl webui open\n"
                       "  the GPU server may still be starting; the chat says how long")
    if as_json:
        from . import render

        # The password goes to the terminal once, never into JSON that may be logged.
        render.print_json({**result, "admin_password_created": bool(password), "cost": plan["cost"]})


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
    """State of the chat page and the model server, last use, cost per hour up and idle."""
    from ..gke.webui import webui_status

    ns = resolve_namespace(namespace)
    data = webui_status(connect(kubeconfig, context), ns)
    if data.get("accelerator"):
        data["cost"] = _cost(data["accelerator"], data["spot"])
        data["cost"]["gpu_billing_now"] = data["replicas"] > 0 or any(
            not p["deleting"] for p in data["pods"])
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
        table.add_row("chat page", "ready" if data["ui_ready"] else "not ready")
        table.add_row("models", ", ".join(data["models"]) or "?")
        table.add_row("model server", f"{data['ready']}/{data['replicas']} ready")
        for pod in data["pods"]:
            where = pod["node"] or (pod["message"] or "not scheduled yet")
            table.add_row("pod", f"{pod['name']} {pod['phase']} on {where}")
        table.add_row("GPU", f"1x {data['accelerator']} ({'spot' if data['spot'] else 'on-demand'})")
        table.add_row("last request", _when(data["last_request_at"]) or "none recorded")
        rule = (f"scale to zero after {data['idle_minutes']:g} min idle"
                if data["idle_rule"] else "off")
        table.add_row("idle rule", f"{rule}: {data['idle_decision']}")
        if data["scale_down_at"]:
            table.add_row("scales down at", _when(data["scale_down_at"]))
        cost = data.get("cost")
        if cost:
            table.add_row("cost while up", _usd(cost["up_usd_per_hour"], cost["gpu_node"]["detail"]))
            table.add_row("cost while idle", _usd(cost["idle_usd_per_hour"], cost["cluster"]["detail"]))
            table.add_row("cost now", "while up" if cost["gpu_billing_now"] else "while idle")
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

    Runs until Ctrl-C. Log in with the admin account `webui up` printed. Each chat request
    counts as use, so the idle rule keeps the GPU server up while you chat."""
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


def _settings(namespace, model, adapters, accelerator, params, hf_token, on_demand,
              idle_minutes, image):
    from ..config import load_config
    from ..errors import UsageError
    from ..gke.serving_fit import parse_params
    from ..gke.webui import WebuiSettings

    pairs = []
    for item in adapters:
        name, sep, location = item.partition("=")
        if not sep or not name or not location:
            raise UsageError(f"--adapter {item[:100]!r} is not NAME=gs://PATH",
                             "e.g. --adapter mine=gs://my-bucket/runs/lora/output")
        pairs.append((name, location))
    config = load_config()
    return WebuiSettings(owner=config.resolved_owner(), namespace=resolve_namespace(namespace),
                         model=model, adapters=tuple(pairs), accelerator=accelerator,
                         spot=not on_demand,
                         idle_minutes=idle_minutes if idle_minutes is not None else config.idle_minutes,
                         params=parse_params(params) if params is not None else None,
                         hf_token=hf_token, image=image)


def _plan(settings) -> dict:
    from ..context import load_context
    from ..gke.webui_plan import plan_webui

    ctx = load_context()
    return plan_webui(settings, ctx.prices, ctx.config.region)


def _cost(accelerator: str, spot: bool) -> dict:
    from ..context import load_context
    from ..gke.webui_plan import webui_cost

    ctx = load_context()
    return webui_cost(ctx.prices, ctx.config.region, accelerator, spot)


def _usd(value, detail: str) -> str:
    return f"cost unknown ({detail})" if value is None else f"about ${value:.2f}/hour ({detail})"


def _print_plan(plan: dict) -> None:
    what, where, fit, cost = plan["what"], plan["where"], plan["fit"], plan["cost"]
    echo = click.echo
    echo(f"Web UI plan (namespace {where['namespace']})")
    echo(f"  what:    chat with {', '.join(what['served_as'])}"
         + (f" (base {what['model']})" if what["adapters"] else ""))
    for adapter in what["adapters"]:
        echo(f"           LoRA adapter {adapter['name']} from {adapter['location']}")
    if what["hf_token"]:
        echo(f"           Hugging Face token from {what['hf_token']} (a reference)")
    echo(f"  where:   {where['model_server']}")
    echo(f"           {where['chat_ui']}")
    echo("  images:  public, pinned by digest, nothing to build")
    for image in plan["images"]:
        echo(f"           {image['role']}: {image['image']}"
             + ("" if image["pinned"] else "  (NOT pinned by digest)"))
    echo(f"  GPU fit: {'ok' if fit['fits'] else 'REFUSED'}: {fit['reason']}")
    echo(f"  cost:    while up   {_usd(cost['up_usd_per_hour'], cost['gpu_node']['detail'] + ' + cluster')}")
    echo(f"           while idle {_usd(cost['idle_usd_per_hour'], cost['cluster']['detail'])}; "
         "the GPU pool is at zero nodes")
    low, high = plan["start_minutes"]
    echo(f"  wake-up: the first request after idle waits {low}-{high} min for a GPU node; the "
         "chat answers \"starting, about N minutes\" meanwhile")
    echo("  guards:")
    for guard in plan["guards"]:
        echo(f"           - {guard}")
    echo("  secrets: made on the first `up`, never shown in plans:")
    for secret in plan["secrets"]:
        echo(f"           - {secret}")
    if plan["bucket_grants"]:
        echo(f"  storage: the model server reads Cloud Storage as the Kubernetes service account "
             f"{plan['bucket_grants'][0]['account']} (Workload Identity); each bucket must grant "
             "it read access once:")
        for grant in plan["bucket_grants"]:
            echo(f"           {grant['command']}")


def _progress(quiet: bool):
    """An on_wait callback that prints each new state once."""
    seen = set()

    def progress(status: dict) -> None:
        if quiet or status["state"] in seen:
            return
        seen.add(status["state"])
        hint = " (a GPU node from zero takes 4-10 minutes)" if "GPU node" in status["state"] else ""
        click.secho(f"gpuctl: {status['state']}{hint}", err=True, fg="cyan")

    return progress


def _wait(kube, namespace: str, timeout: float, quiet: bool) -> str:
    from ..gke.webui import ready_pod, wait_ready

    return ready_pod(kube, namespace) or wait_ready(kube, namespace, timeout=timeout,
                                                    on_wait=_progress(quiet))
