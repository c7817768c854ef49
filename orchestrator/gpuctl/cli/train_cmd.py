"""`gpuctl train --gke SPEC`: an alias of `gpuctl run --gke SPEC` (one job model, one path)."""

from __future__ import annotations

from pathlib import Path

import click

from .kube_options import kube_options
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
    """Run the job spec SPEC (YAML) on GKE, as `gpuctl run --gke SPEC` does: one node becomes
    a Job, several an Indexed Job with a headless Service and torchrun's rendezvous environment.

    \b
      gpuctl train --gke job.yaml --dry-run    the manifests, offline
      gpuctl train --gke job.yaml -f           submit, then follow rank 0's output
    """
    from ..backends import SubmitRequest, backend_for
    from ..errors import UsageError
    from .runs_cmd import build_spec, submit_and_render

    if not on_gke:
        raise UsageError("train runs job specs on GKE; say so with --gke",
                         f"for a VM use `gpuctl run VM {spec}`; for GKE `gpuctl train --gke {spec}`")
    job_spec, spec_dir = build_spec((str(spec),), job_file_only=True)
    backend = backend_for(True, kubeconfig=kubeconfig, context=context, namespace=namespace)
    request = SubmitRequest(spec=job_spec, spec_dir=spec_dir, dry_run=dry_run, validate=validate)
    submit_and_render(backend, request, follow=follow, yes=yes, as_json=as_json)
