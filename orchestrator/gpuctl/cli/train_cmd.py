"""`gpuctl train --gke SPEC`: a job spec becomes a Job (or an Indexed Job) on GKE."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .kube_options import connect, kube_options, resolve_namespace
from .options import json_option


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--gke", "on_gke", is_flag=True, help="Run it as a Job on gpuctl's GKE cluster.")
@click.option("--dry-run", is_flag=True, help="Print the manifests as YAML; contact nothing.")
@click.option("--validate", is_flag=True,
              help="Have the cluster validate and admit the manifests (server-side dry run); "
                   "create nothing.")
@click.option("-f", "--follow", is_flag=True, help="Stream the trainer's output until it ends.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@kube_options
@json_option
def train(spec: Path, on_gke: bool, dry_run: bool, validate: bool, follow: bool, yes: bool,
          kubeconfig, context, namespace, as_json: bool) -> None:
    """Run the job spec SPEC (YAML) on GKE: one node becomes a Job, several an Indexed Job
    with a headless Service and torchrun's rendezvous environment.

    \b
      gpuctl train --gke job.yaml --dry-run    the manifests, offline
      gpuctl train --gke job.yaml -f           submit, then follow rank 0's output
    """
    from ..errors import UsageError
    from ..gke.manifests import build_job_manifests, job_notes, manifests_yaml
    from ..jobspec import load_job_spec

    if not on_gke:
        raise UsageError("train runs job specs on GKE; say so with --gke",
                         f"for a VM use `gpuctl run VM {spec}`; for GKE `gpuctl train --gke {spec}`")
    job_spec = load_job_spec(spec)
    ns = resolve_namespace(namespace)
    manifests = build_job_manifests(job_spec, namespace=ns, owner=_owner())
    notes = job_notes(job_spec)
    if dry_run:
        if as_json:
            from . import render

            render.print_json({"manifests": manifests, "notes": notes})
        else:
            for note in notes:
                click.echo(f"# note: {note}")
            click.echo(manifests_yaml(manifests), nl=False)
        return

    from ..gke import jobs

    kube = connect(kubeconfig, context)
    if validate:
        result = jobs.submit(kube, manifests, dry_run=True)
        _report(result, notes, None, as_json, "validated by the cluster; nothing was created")
        return
    cost = _cost(job_spec)
    if not yes and not as_json:
        _summary(job_spec, ns, cost, notes)
        click.confirm("Submit it?", abort=True)
    result = jobs.submit(kube, manifests)
    _report(result, notes, cost, as_json, "submitted")
    if follow:
        code = jobs.stream_logs(kube, ns, job_spec.name, True, _write_out,
                                notify=lambda line: click.secho(f"gpuctl: {line}", err=True,
                                                                fg="cyan"))
        sys.exit(code)


def _owner() -> str:
    from ..config import load_config

    return load_config().resolved_owner()


def _cost(job_spec) -> dict | None:
    if not job_spec.gpus_per_node or not job_spec.accelerator:
        return None
    from ..context import load_context
    from ..gke.pricing import gpu_node_hourly

    ctx = load_context()
    node = gpu_node_hourly(ctx.prices, ctx.config.region, job_spec.accelerator,
                           job_spec.gpus_per_node, job_spec.spot)
    total = node["usd_per_hour"] * job_spec.nodes if node["usd_per_hour"] is not None else None
    return {"usd_per_hour": total, "nodes": job_spec.nodes, "node": node}


def _cost_line(cost: dict | None) -> str:
    if cost is None:
        return "no GPUs: it runs on the cluster's CPU nodes"
    if cost["usd_per_hour"] is None:
        return f"cost unknown ({cost['node']['detail']})"
    return (f"about ${cost['usd_per_hour']:.2f}/hour while it runs "
            f"({cost['nodes']} x {cost['node']['detail']}); GPU nodes scale back to zero after")


def _summary(job_spec, namespace: str, cost: dict | None, notes: list[str]) -> None:
    gpus = (f"{job_spec.gpus_per_node}x {job_spec.accelerator}" if job_spec.gpus_per_node
            else "no GPU")
    kind = "Indexed Job" if job_spec.nodes > 1 else "Job"
    click.echo(f"{kind} {job_spec.name} in namespace {namespace}: {job_spec.nodes} node(s) x "
               f"{gpus}, {'spot' if job_spec.spot else 'on-demand'}, image {job_spec.image}")
    click.echo(f"  {_cost_line(cost)}")
    if cost is not None and not cost["node"]["fits_default_pool"]:
        click.secho(f"  warning: {cost['node']['detail'].split('; ')[-1]}; without such a pool "
                    "the pod stays Pending", fg="yellow")
    for note in notes:
        click.secho(f"  note: {note}", fg="yellow")


def _report(result: dict, notes: list[str], cost: dict | None, as_json: bool, verb: str) -> None:
    if as_json:
        from . import render

        render.print_json({**result, "notes": notes, "cost": cost})
        return
    click.echo(f"{verb}: {', '.join(result['objects'])} in namespace {result['namespace']}")
    if not result["dry_run"]:
        click.echo(f"follow it: gpuctl logs --gke -f {result['job']}   "
                   f"cancel it: gpuctl cancel --gke {result['job']}")


def _write_out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
