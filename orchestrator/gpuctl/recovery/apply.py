"""`gpuctl run NAME job.yaml --recover`: make the group that runs the job with no laptop.

The order of events, and why (as lifecycle/up.py does for one VM):
 1. record intent (lifecycle/records.py, a VmRecord with `group`) before anything exists, so any
    interruption is rolled back by the next `down` or `sweep`;
 2. the checkpoint bucket: gpuctl's own (`auto`) made when missing, a user's must exist (the same
    step as `up --checkpoints`);
 3. the bundle next to the checkpoints (recovery/bundle.py through adapters/storage.py): every VM
    the group makes reads it at boot, so it is there before the group;
 4. the RecoveringVm stack through the AutomationEngine: the run's own service account and its one
    bucket grant, the template, the group of one, the SSH rule;
 5. the deadline job that deletes the group (recovery/deadline.py);
 6. mark the record ready. Anything failing before 6 destroys what was made (down.destroy_everything).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from ..errors import GpuctlError
from ..jobspec import JobSpec
from .plan import RecoverOptions, for_apply, recover_setup, setup_report

OnEvent = Callable[[str, str], None]


def recover_program(spec) -> Callable[[], None]:
    def program() -> None:
        from gpuctl_infra.recovering_vm import RecoveringVm

        RecoveringVm(spec)
    return program


def group_deadline_api(deps, region: str):
    from .deadline import GroupDeadlineApi

    return GroupDeadlineApi.like(deps.deadline_api(region))


def start_recover_run(ctx, spec: JobSpec, options: RecoverOptions, workdir: Path | None, deps, *,
                      cwd: str | None = None, on_event: OnEvent | None = None) -> dict:
    from gpuctl_infra.spec import account_id_for

    from ..lifecycle import keys, records
    from ..lifecycle.down import rollback_on_failure
    from ..lifecycle.records import VmRecord
    from ..lifecycle.up import _with_checkpoint_bucket
    from .bundle import build_bundle, upload_bundle

    emit = on_event or (lambda kind, text: None)
    name = options.name
    if records.load(name) is not None:
        raise GpuctlError(f"{name} already exists (a VM or a --recover run)",
                          f"pick another name, or remove it first: `gpuctl down {name}`")
    ctx = dataclasses.replace(ctx, now=deps.clock())
    setup = recover_setup(ctx, spec, options, deps.project)
    _with_checkpoint_bucket(ctx, setup.vm, deps, emit)
    key = keys.ensure_key_pair(name)
    setup = for_apply(setup, project=deps.project, public_key=key.public_line,
                      caller_cidr=deps.caller_cidr or setup.spec.ssh_source_cidr)
    region = setup.spec.region
    record = VmRecord(
        name=name, profile=setup.vm.profile.name, project=deps.project, state="creating", stack=name,
        zones_to_try=list(setup.zones), created_at=ctx.now.isoformat(), hourly_usd=setup.guards.price_per_hour,
        stopped_hourly_usd=0.0, termination_action="DELETE", ssh_user=setup.spec.ssh_user,
        key_file=str(key.private_path), termination_time=setup.spec.termination_time,
        checkpoint_bucket=setup.spec.checkpoint_bucket,
        service_account=f"{account_id_for(name)}@{deps.project}.iam.gserviceaccount.com",
        group={"region": region, "template": f"{name}-tpl", "run": spec.name, "checkpoints": setup.folder,
               "deadline": setup.deadline.isoformat(), "worst_case_usd": setup.guards.worst_case_usd,
               "vm": None, "cancelled_at": None})
    records.save(record)  # intent first: from here on, any failure is rolled back
    with rollback_on_failure(record, deps, emit):
        bundle = build_bundle(spec, spec.name, setup.folder, workdir, user=setup.spec.ssh_user, cwd=cwd,
                              group=name, region=region, project=deps.project, provision=setup.provision)
        emit("apply", f"uploading the run's bundle to {bundle.url}/")
        uploaded = upload_bundle(bundle, deps.storage_api())
        emit("apply", f"creating group {name} of one spot VM in {region} ({', '.join(setup.zones)})")
        deps.engine.up(record.stack, recover_program(setup.spec), {"gcp:project": deps.project,
                                                                   "gcp:region": region})
        members = deps.compute.managed_vms(region, name) or []
        record.group["vm"] = members[0].name if members else None
        fires = group_deadline_api(deps, region).set(name, region, setup.deadline)
        record.deadline_seconds = int((fires - ctx.now).total_seconds())
        records.save(record)
        emit("guard", f"deadline: Cloud Scheduler deletes group {name} at {fires.isoformat()}")
    record.state = "ready"
    records.save(record)
    return {**setup_report(setup, spec, workdir), "dry_run": False, "uploaded": uploaded,
            "vm": record.group["vm"], "next_steps": ["gpuctl jobs", f"gpuctl status {name}",
                                                    f"gpuctl cancel {name}", f"gpuctl down {name}"]}
