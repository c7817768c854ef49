"""The recovery bundle: everything a replacement VM needs to start the run by itself, kept in
the run's checkpoint folder so it outlives every VM and the laptop:

    gs://BUCKET/PREFIX/<run>/.gpuctl/recover.json      the run spec (no secrets: refused)
    gs://BUCKET/PREFIX/<run>/.gpuctl/code.tar.gz       the workdir, in run_host.py `apply` format
    gs://BUCKET/PREFIX/<run>/.gpuctl/run_host.py       the supervisor every gpuctl run uses
    gs://BUCKET/PREFIX/<run>/.gpuctl/checkpoint_sync.py
    gs://BUCKET/PREFIX/<run>/.gpuctl/bootstrap.py      the startup script (startup-script-url)
    gs://BUCKET/PREFIX/<run>/.gpuctl/provision.pyz     `gpuctl up`'s provisioning steps, run at boot

The instance template's metadata names only the first and last by address. The checkpoint syncer
only ever reads `<entry>/.gpuctl-complete` markers one level down, so `.gpuctl/` is never taken
for a checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import UsageError
from ..jobspec import JobSpec

FOLDER = ".gpuctl"
HELPERS = ("run_host.py", "checkpoint_sync.py", "bootstrap.py")
DEFAULT_MOUNT = "/mnt/disks/nvme"


@dataclass(frozen=True)
class Bundle:
    folder: str  # gs://BUCKET/PREFIX/<run>: the run's checkpoints
    objects: dict[str, bytes]  # name under <folder>/.gpuctl/ -> content

    @property
    def url(self) -> str:
        return f"{self.folder}/{FOLDER}"

    @property
    def recover_url(self) -> str:
        return f"{self.url}/recover.json"

    @property
    def bootstrap_url(self) -> str:
        return f"{self.url}/bootstrap.py"


def helper_source(name: str) -> bytes:
    return resources.files("gpuctl.runs.host_scripts").joinpath(name).read_bytes()


def recover_document(spec: JobSpec, run: str, folder: str, *, user: str, mount: str = DEFAULT_MOUNT,
                     cwd: str | None = None, launcher: str | None = None, group: str | None = None,
                     region: str | None = None, project: str | None = None) -> dict:
    """What the bootstrap reads: the run, as `gpuctl run` would start it, and the group it runs in
    (`project`, `region`, `group`: the VM deletes that group itself once the command exits 0).
    Refuses secrets: a replacement has no laptop to read them from, and metadata and buckets are
    no place for them."""
    if spec.secrets:
        raise UsageError(f"--recover cannot carry secrets yet ({', '.join(sorted(spec.secrets))})",
                         "drop `secrets:` for a --recover run; Secret Manager support is planned")
    return {
        "run": run, "user": user, "mount": mount, "checkpoints": folder, "bundle": f"{folder}/{FOLDER}",
        "argv": list(spec.argv), "env": dict(spec.env), "requirements": spec.requirements,
        "timeout": spec.timeout_seconds, "cwd": cwd, "launcher": launcher,
        "group": group, "region": region, "project": project,
    }


def build_bundle(spec: JobSpec, run: str, folder: str, workdir: Path | None, *, user: str,
                 mount: str = DEFAULT_MOUNT, cwd: str | None = None, launcher: str | None = None,
                 group: str | None = None, region: str | None = None, project: str | None = None,
                 provision=None) -> Bundle:
    """`provision`: the ProvisionSettings every VM of the group is provisioned with at boot
    (recovery/plan.py recover_provision_settings; tests pass their own)."""
    from ..provision import on_boot
    from ..runs.sync import pack

    folder = folder.rstrip("/")
    document = recover_document(spec, run, folder, user=user, mount=mount, cwd=cwd, launcher=launcher,
                                group=group, region=region, project=project)
    if provision is None:
        raise ValueError("a recovery bundle needs the settings its VMs are provisioned with")
    document["provision"] = on_boot.settings_document(provision)
    objects = {"recover.json": json.dumps(document, indent=2).encode(), "provision.pyz": on_boot.pack()}
    if workdir is not None:
        objects["code.tar.gz"] = pack(workdir)
    else:
        objects["code.tar.gz"] = pack_empty()
    for name in HELPERS:
        objects[name] = helper_source(name)
    return Bundle(folder, objects)


def pack_empty() -> bytes:
    """A code snapshot with no files (--no-sync): `apply` makes an empty code folder."""
    import gzip
    import io
    import tarfile

    sink = io.BytesIO()
    with gzip.GzipFile(fileobj=sink, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w|"):
        pass
    return sink.getvalue()


def upload_bundle(bundle: Bundle, storage) -> list[str]:
    """Write every object through the storage adapter (adapters/storage.py StorageApi); the code
    and helpers go first, recover.json last: a VM that reads the spec finds everything it names."""
    return storage.upload_objects(bundle.url, bundle.objects, last="recover.json")
