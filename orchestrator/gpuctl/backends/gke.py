"""The GKE backend: a job spec becomes a Job (or an Indexed Job) on gpuctl's cluster.

Rendering is offline (gke/manifests.py); the cluster is reached only when a call needs it, so
`--dry-run` works without a kubeconfig. The workdir travels as a ConfigMap, env:/file: secrets
as a Secret read here at submit time; both are owned by the Job and go with it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import NotAvailableYet
from .base import Cancelled, Fetched, JobView, LogEnd, Notice, Preview, SubmitRequest, Submitted, Write


class GkeBackend:
    name = "gke"

    def __init__(self, *, kubeconfig: str | None = None, context: str | None = None,
                 namespace: str | None = None):
        from ..gke.kubeconfig import DEFAULT_NAMESPACE
        from ..validation import namespace as checked_namespace

        self.kubeconfig, self.context = kubeconfig, context
        # `BAD NS` or `../../x` would otherwise be rendered into manifests and API paths.
        self.namespace = checked_namespace(DEFAULT_NAMESPACE if namespace is None else namespace)
        self._kube = None

    @property
    def kube(self):
        if self._kube is None:
            from ..adapters.kube import connect

            self._kube = connect(self.kubeconfig, self.context)
        return self._kube

    # --- submit ----------------------------------------------------------------------------

    def _manifests(self, request: SubmitRequest, secrets: dict[str, str] | None) -> list[dict]:
        from ..gke.manifests import build_job_manifests
        from ..runs.sync import pack

        code = None
        if request.ship_code and request.spec.workdir is not None:
            code = pack(request.workdir)
        return build_job_manifests(request.spec, namespace=self.namespace, owner=_owner(),
                                   code=code, secret_values=secrets, project=_project(request))

    def preview(self, request: SubmitRequest) -> Preview:
        from ..gke.manifests import job_notes

        spec = request.spec
        manifests = self._manifests(request, None)
        job = manifests[-1]["spec"]["template"]["spec"]
        accelerator = (job.get("nodeSelector") or {}).get("cloud.google.com/gke-accelerator")
        image = job["containers"][0]["image"]
        cost = job_cost(accelerator, spec.gpus_per_node, spec.nodes, spec.spot)
        gpus = f"{spec.gpus_per_node}x {accelerator}" if spec.gpus_per_node else "no GPU"
        kind = "Indexed Job" if spec.nodes > 1 else "Job"
        summary = [f"{kind} {spec.name} in namespace {self.namespace}: {spec.nodes} node(s) x "
                   f"{gpus}, {'spot' if spec.spot else 'on-demand'}, image {image}",
                   cost_line(cost)]
        warnings = []
        if cost is not None and not cost["node"]["fits_default_pool"]:
            warnings.append(f"{cost['node']['detail'].split('; ')[-1]}; without such a pool the "
                            "pod stays Pending")
        notes = job_notes(spec)
        if spec.checkpoints:
            from ..gke.manifests import checkpoint_grant_note, checkpoint_location

            notes.append(checkpoint_grant_note(checkpoint_location(spec, _project(request)),
                                               self.namespace, _project(request)))
        return Preview("gke", spec.name, self.namespace, notes, summary, warnings,
                       manifests, cost)

    def submit(self, request: SubmitRequest, on_notice: Notice | None = None) -> Submitted:
        from ..gke import jobs
        from ..jobspec import read_local_secrets

        preview = self.preview(request)
        if request.dry_run:
            return Submitted("gke", preview.name, self.namespace, True, preview.notes,
                             preview.warnings, [], {"manifests": preview.manifests,
                                                    "cost": preview.cost})
        if request.validate:
            result = jobs.submit(self.kube, preview.manifests, dry_run=True)
        else:
            secrets = read_local_secrets(request.spec)
            manifests = self._manifests(request, secrets)
            access = _bucket_access() if request.spec.checkpoints else None
            result = jobs.submit(self.kube, manifests, bucket_access=access)
            _tell_grant(result.get("bucket_grant"), on_notice)
        name = result["job"]
        steps = [] if result["dry_run"] else [f"gpuctl logs --gke -f {name}",
                                              "gpuctl jobs --gke", f"gpuctl cancel --gke {name}"]
        return Submitted("gke", name, self.namespace, result["dry_run"], preview.notes,
                         preview.warnings, steps, {**result, "cost": preview.cost})

    # --- the rest of the job's life --------------------------------------------------------

    def list(self, names: list[str] | None = None) -> list[JobView]:
        from ..gke.jobs import list_jobs

        rows = list_jobs(self.kube, self.namespace)
        if names:
            rows = [r for r in rows if r["name"] in names]
        _steps_lost(rows)
        return [JobView("gke", r["name"], r["namespace"], r["status"], r) for r in rows]

    def status(self, name: str) -> JobView:
        import datetime as dt

        from ..gke.jobs import get_job, job_pods, job_row

        row = job_row(get_job(self.kube, self.namespace, name),
                      job_pods(self.kube, self.namespace, name),
                      dt.datetime.now(dt.timezone.utc))
        _steps_lost([row])
        return JobView("gke", name, self.namespace, row["status"], row)

    def logs(self, name: str, write: Write, *, follow: bool = False,
             tail_lines: int | None = None, on_notice: Notice | None = None) -> LogEnd:
        from ..gke.jobs import stream_logs

        code = stream_logs(self.kube, self.namespace, name, follow,
                           lambda text: write(text.encode()), notify=on_notice,
                           tail_lines=tail_lines)
        if not follow:
            return LogEnd(name, None, None)
        return LogEnd(name, "succeeded" if code == 0 else "failed", code)

    def cancel(self, name: str, grace_seconds: float = 30.0) -> Cancelled:
        from ..gke.jobs import cancel_job

        result = cancel_job(self.kube, self.namespace, name, int(grace_seconds))
        return Cancelled("gke", name, "cancelled", False, result)

    def fetch(self, name: str, path: str, dest: Path) -> Fetched:
        raise NotAvailableYet(f"job {name}'s files live in its pod on GKE and go with it",
                              "write outputs to a bucket (output_dir: gs://...) and copy them "
                              "with `gcloud storage cp`; `gpuctl fetch` copies from VMs")


def _project(request: SubmitRequest) -> str | None:
    """The project that names `checkpoints: auto`'s bucket: the config's (no credentials are
    read to render manifests)."""
    if request.spec.checkpoints is None:
        return None
    from ..context import load_context

    return load_context().config.project


def _bucket_access():
    """ensure_grant bound to the project in use: the principal names its Workload Identity pool
    by id and number (Resource Manager projects.get), read once, when the grant is made."""
    from ..adapters.resourcemanager import project_number
    from ..adapters.storage import StorageApi
    from ..context import load_context
    from ..gke.bucket_access import ensure_grant
    from ..lifecycle.deps import resolve_project

    def grant(bucket: str, namespace: str, account: str) -> dict:
        from ..adapters.storage import default_bucket_name

        ctx = load_context()
        project = resolve_project(ctx)
        storage = StorageApi(project)
        if bucket == default_bucket_name(project):
            # `checkpoints: auto`: gpuctl's bucket, made when missing, as for a VM run.
            storage.ensure_checkpoints(None, ctx.config.resolved_owner(), ctx.config.region)
        return ensure_grant(storage, project, project_number(project), bucket, namespace, account)
    return grant


def _tell_grant(grant: dict | None, on_notice: Notice | None) -> None:
    if not grant or on_notice is None:
        return
    if grant.get("warning"):
        on_notice(f"warning: {grant['warning']}")
    elif grant["granted"]:
        on_notice(f"granted {grant['role']} on gs://{grant['bucket']} to {grant['member']}")


def _steps_lost(rows: list[dict]) -> None:
    """The steps each restart lost (gke/jobs.py add_steps_lost), read from the jobs' bucket
    folders with the laptop's Cloud Storage access; without it, unknown and why."""
    if not any(r["checkpoints"] and r["restarts"] for r in rows):
        return
    from ..adapters.storage import StorageApi
    from ..context import load_context
    from ..errors import GpuctlError
    from ..gke.jobs import add_steps_lost
    from ..lifecycle.deps import resolve_project

    try:
        storage = StorageApi(resolve_project(load_context()))
    except GpuctlError as exc:
        for row in rows:
            if row["checkpoints"] and row["restarts"]:
                row["steps_note"] = f"the steps lost are not known: {exc.message}"
        return
    add_steps_lost(rows, storage)


def _owner() -> str:
    from ..config import load_config

    return load_config().resolved_owner()


def job_cost(accelerator: str | None, gpus: int, nodes: int, spot: bool) -> dict | None:
    """USD per hour of the job's nodes while it runs (None without GPUs: CPU nodes)."""
    if not gpus or not accelerator:
        return None
    from ..context import load_context
    from ..gke.pricing import gpu_node_hourly

    ctx = load_context()
    node = gpu_node_hourly(ctx.prices, ctx.config.region, accelerator, gpus, spot)
    total = node["usd_per_hour"] * nodes if node["usd_per_hour"] is not None else None
    return {"usd_per_hour": total, "nodes": nodes, "node": node}


def cost_line(cost: dict | None) -> str:
    if cost is None:
        return "no GPUs: it runs on the cluster's CPU nodes"
    if cost["usd_per_hour"] is None:
        return f"cost unknown ({cost['node']['detail']})"
    return (f"about ${cost['usd_per_hour']:.2f}/hour while it runs "
            f"({cost['nodes']} x {cost['node']['detail']}); GPU nodes scale back to zero after")
