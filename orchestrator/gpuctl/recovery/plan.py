"""`gpuctl run NAME job.yaml --recover --dry-run`: the plan of a run Google Cloud restarts by
itself, before anything exists: the resources (from the real RecoveringVm program under Pulumi's
mocks), the bundle it uploads next to the checkpoints, and the worst case across every
replacement (recovery/guards.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..jobspec import JobSpec
from ..units import parse_duration
from .bundle import DEFAULT_MOUNT, FOLDER, HELPERS
from .guards import DEFAULT_PREEMPTIONS, DEFAULT_RESTART_MINUTES, plan_recovery, termination_time

PLACEHOLDER_ACCOUNT = "gpuctl-{name}@PROJECT.iam.gserviceaccount.com"


@dataclass(frozen=True)
class RecoverOptions:
    name: str  # the group's (and its VM's) name
    profile: str | None = None
    region: str | None = None
    ttl: str | None = None
    budget: str | None = None
    preemptions: int = DEFAULT_PREEMPTIONS
    restart_minutes: float = DEFAULT_RESTART_MINUTES
    checkpoint_minutes: float | None = None
    run_hours: float | None = None


def plan_recover_run(ctx, spec: JobSpec, options: RecoverOptions, workdir: Path | None) -> dict:
    from gpuctl_infra.mock_run import run_under_mocks
    from gpuctl_infra.recovering_vm import RecoveringVm, RecoverSpec

    from ..checkpoints import run_location
    from ..plan import UpOptions, plan_vm
    from ..targets import is_vm_name

    if not is_vm_name(options.name):
        raise UsageError(f"--recover makes its own VM group: {options.name!r} must be a new VM name",
                         "e.g. gpuctl run llama job.yaml --recover --profile a100-spot")
    if not spec.checkpoints:
        raise UsageError("--recover needs `checkpoints:` in the job spec (gs://BUCKET/PREFIX or auto)",
                         "a replacement VM resumes from the checkpoints in Cloud Storage")
    if spec.secrets:
        raise UsageError(f"--recover cannot carry secrets yet ({', '.join(sorted(spec.secrets))})",
                         "drop `secrets:` for a --recover run; Secret Manager support is planned")
    vm = plan_vm(ctx, UpOptions(profile=options.profile, name=options.name, region=options.region,
                                ttl=options.ttl, budget=options.budget, stop_at="none"), with_resources=False)
    region = vm.spec.region
    zones = tuple(z for z in vm.zones if z.rsplit("-", 1)[0] == region)
    price = vm.hourly.running
    budget = float(options.budget) if options.budget else None
    if budget is None:  # the run limit plan_vm chose (--ttl, or the config's default)
        ttl_hours = vm.spec.max_run_seconds / 3600 if vm.spec.max_run_seconds else None
    else:  # plan_vm folds the budget into its run limit; here the two stay apart, to say which binds
        ttl_hours = parse_duration(options.ttl) / 3600 if options.ttl else None
    guards = plan_recovery(price, ttl_hours=ttl_hours, budget_usd=budget, run_hours=options.run_hours,
                           preemptions=options.preemptions, restart_minutes=options.restart_minutes,
                           checkpoint_minutes=options.checkpoint_minutes)
    project = ctx.config.project or "PROJECT"
    folder = run_location(spec, spec.name, project).url.rstrip("/")
    bundle_url = f"{folder}/{FOLDER}"
    cap = termination_time(ctx.now, guards)
    recover = RecoverSpec(
        name=options.name, region=region, zones=zones, machine_type=vm.spec.machine_type, image=vm.spec.image,
        boot_disk_gb=vm.spec.boot_disk_gb, boot_disk_type=vm.spec.boot_disk_type, termination_time=cap,
        bootstrap_url=f"{bundle_url}/bootstrap.py", recover_url=f"{bundle_url}/recover.json",
        service_account_email=PLACEHOLDER_ACCOUNT.format(name=options.name),
        accelerator_type=vm.spec.accelerator_type, accelerator_count=vm.spec.accelerator_count,
        local_ssd_count=vm.spec.local_ssd_count, labels=dict(vm.spec.labels), project=ctx.config.project)
    resources = run_under_mocks(lambda: RecoveringVm(recover), project=project)
    # The job fires at the cap's minute: Scheduler deletes the group as GCE's cap ends the VM.
    deadline = dt.datetime.fromisoformat(cap.replace("Z", "+00:00"))
    return {
        "name": options.name, "run": spec.name, "dry_run": True, "profile": vm.profile.name,
        "machine_type": vm.spec.machine_type, "region": region, "zones": list(zones),
        "checkpoints": folder, "mount": DEFAULT_MOUNT,
        "uploads": [f"{bundle_url}/{n}" for n in ("recover.json", "code.tar.gz", *HELPERS)],
        "code": str(workdir) if workdir else None,
        "resources": [{"type": r.short_type, "name": r.name} for r in resources
                      if not r.short_type.startswith("vm.")],
        "guards": {
            "deadline": {"at": deadline.isoformat(), "hours": round(guards.deadline_hours, 3),
                         "from": guards.deadline_reason,
                         "action": f"Cloud Scheduler deletes group {options.name} and every VM it would make"},
            "hard_cap": {"termination_time": cap, "action": "GCE deletes any replacement at this time"},
            "daily_stop": "not used with --recover: a stopped VM in a group is recreated",
        },
        "cost": guards.as_dict(),
    }
