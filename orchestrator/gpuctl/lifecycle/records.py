"""The local record of each VM gpuctl made: what was intended, where it landed, how to reach it.

One JSON file per VM under <gpuctl home>/vms/, written atomically (temp file + rename) so a
crash never leaves half a record. The record is the intent log for rollback: it exists from
before the first resource is created until `down` has verified that nothing is left.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import GpuctlError
from ..paths import gpuctl_home

State = Literal["creating", "ready", "unreachable", "destroying"]


@dataclass
class Attempt:
    zone: str
    outcome: str  # created | stockout | unsupported | quota | transient | fatal
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class VmRecord:
    name: str
    profile: str
    project: str
    state: State
    stack: str
    zones_to_try: list[str]
    created_at: str  # RFC 3339, when intent was recorded
    hourly_usd: float
    stopped_hourly_usd: float
    termination_action: str  # DELETE | STOP
    zone: str | None = None
    address: str | None = None  # the external address; None for a VM reached through IAP
    # Made with --iap: no external address; SSH goes through an IAP tunnel and the host key is
    # pinned under the VM's name (see access.py).
    iap: bool = False
    ssh_user: str = "gpuctl"
    key_file: str | None = None
    max_run_seconds: int | None = None  # GCE's own limit (the hard cap when a deadline is set)
    deadline_seconds: int | None = None  # the movable deadline from creation, if any
    termination_time: str | None = None
    daily_stop: dict | None = None  # {"cron", "time_zone", "clock"}
    running_since: str | None = None  # when GCE reported RUNNING
    attempts: list[Attempt] = field(default_factory=list)
    provision: str | None = None  # ok | failed: ... | skipped
    # Made with --checkpoints: the VM's own service account may read and write objects in this
    # one bucket (gpu_vm.checkpoint_identity). None: the VM has no cloud credentials at all.
    checkpoint_bucket: str | None = None
    service_account: str | None = None  # its email
    # Made by `gpuctl run NAME job.yaml --recover`: not one VM but a regional managed instance
    # group of one spot VM that Google recreates after each preemption (recovery/apply.py):
    # {"region", "template", "run", "checkpoints", "deadline" (RFC 3339), "worst_case_usd",
    #  "cancelled_at" (RFC 3339, set by `gpuctl cancel`)}. `zone` stays None: the VM moves.
    group: dict | None = None

    @property
    def region(self) -> str | None:
        """Its region (where its deadline job lives): the group's, or its VM's zone's."""
        if self.group:
            return self.group["region"]
        return self.zone.rsplit("-", 1)[0] if self.zone else None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VmRecord":
        data = dict(data)
        data["attempts"] = [Attempt(**a) for a in data.get("attempts", [])]
        return cls(**data)


def records_dir() -> Path:
    return gpuctl_home() / "vms"


def record_path(name: str) -> Path:
    return records_dir() / f"{name}.json"


def save(record: VmRecord) -> None:
    directory = records_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = directory / f".{record.name}.json.tmp"
    tmp.write_text(json.dumps(record.as_dict(), indent=2) + "\n")
    os.replace(tmp, record_path(record.name))


def load(name: str) -> VmRecord | None:
    path = record_path(name)
    if not path.exists():
        return None
    try:
        return VmRecord.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise GpuctlError(f"the record of VM {name} ({path}) is damaged: {exc}",
                          "run `gpuctl sweep` to find its resources, then delete the file") from None


def require(name: str) -> VmRecord:
    record = load(name)
    if record is None:
        known = ", ".join(r.name for r in all_records()) or "none"
        raise GpuctlError(f"gpuctl has no VM named {name}", f"known VMs: {known} (gpuctl status)")
    return record


def all_records() -> list[VmRecord]:
    directory = records_dir()
    if not directory.exists():
        return []
    return [r for r in (load(p.stem) for p in sorted(directory.glob("*.json"))) if r]


def remove(name: str) -> None:
    record_path(name).unlink(missing_ok=True)
