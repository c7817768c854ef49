"""Checkpoints that outlive the machine: where a run's checkpoints go, on the host and in Cloud
Storage.

A run with `checkpoints:` in its spec writes to $GPUCTL_CHECKPOINT_DIR, a folder on the VM's
local NVMe (fast, but lost with the VM: https://cloud.google.com/compute/docs/disks/local-ssd,
"data persistence"), and the host's syncer copies each new checkpoint to
gs://BUCKET/PREFIX/<run>/ ($GPUCTL_CHECKPOINT_URL), which outlives a preempted spot VM.
"""

from __future__ import annotations

from dataclasses import dataclass

from .adapters.storage import CheckpointLocation, StorageApi, default_bucket_name, parse_location
from .jobspec import AUTO_CHECKPOINTS, JobSpec

HOST_FOLDER = "checkpoints"  # under the run base (<NVMe mount>/gpuctl): <base>/checkpoints/<run>
DIR_ENV = "GPUCTL_CHECKPOINT_DIR"
URL_ENV = "GPUCTL_CHECKPOINT_URL"


@dataclass(frozen=True)
class RunCheckpoints:
    location: CheckpointLocation  # gs://BUCKET/PREFIX/<run>
    host_dir: str  # <base>/checkpoints/<run>

    def as_dict(self) -> dict:
        return {"url": self.location.url, "dir": self.host_dir}

    def env(self) -> dict[str, str]:
        return {DIR_ENV: self.host_dir, URL_ENV: self.location.url}


def host_dir(base: str, run: str) -> str:
    return f"{base.rstrip('/')}/{HOST_FOLDER}/{run}"


def run_location(spec: JobSpec, run: str, project: str) -> CheckpointLocation:
    """gs://BUCKET/PREFIX/<run>: the one place a run's checkpoints live, on a VM or on GKE."""
    if spec.checkpoints == AUTO_CHECKPOINTS:
        location = CheckpointLocation(default_bucket_name(project), "")
    else:
        location = parse_location(spec.checkpoints)
    return location.for_run(run)


def plan_checkpoints(spec: JobSpec, run: str, base: str, project: str) -> RunCheckpoints:
    """Where `run`'s checkpoints go; pure (nothing is created)."""
    return RunCheckpoints(run_location(spec, run, project), host_dir(base, run))


def prepare_checkpoints(spec: JobSpec, run: str, base: str, vm: str | None,
                        create: bool = True) -> RunCheckpoints:
    """The run's checkpoint places, with the bucket made when missing (unless `create` is
    False, for a dry run). A new bucket goes in the VM's region (the config's region for an
    SSH host), so checkpoints cross no region on the way."""
    from .context import load_context
    from .lifecycle.deps import resolve_project

    ctx = load_context()
    # A named bucket needs no project until it is created; `auto` is named after the project.
    project = resolve_project(ctx) if create or spec.checkpoints == AUTO_CHECKPOINTS else ""
    planned = plan_checkpoints(spec, run, base, project)
    if create:
        url = None if spec.checkpoints == AUTO_CHECKPOINTS else spec.checkpoints
        StorageApi(project).ensure_checkpoints(url, ctx.config.resolved_owner(), _region(ctx, vm))
    return planned


def _region(ctx, vm: str | None) -> str:
    if vm:
        from .lifecycle import records

        record = records.load(vm)
        if record is not None and record.zone:
            return record.zone.rsplit("-", 1)[0]
    return ctx.config.region
