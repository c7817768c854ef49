"""`gpuctl run NAME job.yaml --recover`: the plan of a run Google Cloud restarts by itself, made
before anything exists: the resources (from the real RecoveringVm program under Pulumi's mocks),
the bundle it uploads next to the checkpoints, and the worst case across every replacement
(recovery/guards.py). `--dry-run` prints it; the apply path (recovery/apply.py) applies the same
RecoverSpec with the caller's address, key and project filled in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import UsageError
from ..jobspec import JobSpec
from ..units import parse_duration
from .bundle import DEFAULT_MOUNT, FOLDER, HELPERS
from .guards import DEFAULT_PREEMPTIONS, DEFAULT_RESTART_MINUTES, RecoverPlan, plan_recovery, termination_time


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


@dataclass(frozen=True)
class RecoverSetup:
    """Everything the dry run shows and the apply path applies."""

    vm: object  # the VmPlan the group's VM is priced and shaped from (plan.plan_vm)
    spec: object  # gpuctl_infra.recovering_vm.RecoverSpec
    guards: RecoverPlan
    folder: str  # gs://BUCKET/PREFIX/<run>
    deadline: dt.datetime  # the Scheduler job and the template's cap, the same minute
    provision: object  # ProvisionSettings: what every VM of the group is provisioned with at boot

    @property
    def zones(self) -> tuple[str, ...]:
        return self.spec.zones


def recover_setup(ctx, spec: JobSpec, options: RecoverOptions, project: str) -> RecoverSetup:
    from gpuctl_infra.recovering_vm import RecoverSpec

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
                                ttl=options.ttl, budget=options.budget, stop_at="none",
                                checkpoints=spec.checkpoints), with_resources=False)
    region = vm.spec.region
    zones = tuple(z for z in vm.zones if z.rsplit("-", 1)[0] == region)
    budget = vm.budget_usd  # in USD, however the user wrote it ($20, 3000JPY): plan_vm's reading
    if budget is None:  # the run limit plan_vm chose (--ttl, or the config's default)
        ttl_hours = vm.spec.max_run_seconds / 3600 if vm.spec.max_run_seconds else None
    else:  # plan_vm folds the budget into its run limit; here the two stay apart, to say which binds
        ttl_hours = parse_duration(options.ttl) / 3600 if options.ttl else None
    guards = plan_recovery(vm.hourly.running, ttl_hours=ttl_hours, budget_usd=budget, run_hours=options.run_hours,
                           preemptions=options.preemptions, restart_minutes=options.restart_minutes,
                           checkpoint_minutes=options.checkpoint_minutes)
    location = run_location(spec, spec.name, project)
    folder = location.url.rstrip("/")
    bundle_url = f"{folder}/{FOLDER}"
    cap = termination_time(ctx.now, guards)
    recover = RecoverSpec(
        name=options.name, region=region, zones=zones, machine_type=vm.spec.machine_type, image=vm.spec.image,
        boot_disk_gb=vm.spec.boot_disk_gb, boot_disk_type=vm.spec.boot_disk_type, termination_time=cap,
        bootstrap_url=f"{bundle_url}/bootstrap.py", recover_url=f"{bundle_url}/recover.json",
        checkpoint_bucket=location.bucket, accelerator_type=vm.spec.accelerator_type,
        accelerator_count=vm.spec.accelerator_count, local_ssd_count=vm.spec.local_ssd_count,
        labels=dict(vm.spec.labels), project=ctx.config.project)
    # The job fires at the cap's minute: Scheduler deletes the group as GCE's cap ends the VM.
    deadline = dt.datetime.fromisoformat(cap.replace("Z", "+00:00"))
    return RecoverSetup(vm, recover, guards, folder, deadline,
                        recover_provision_settings(ctx, recover.ssh_user, vm.profile.name))


def recover_provision_settings(ctx, login_user: str, profile: str):
    """What `gpuctl up PROFILE` would provision, minus the on-host shutdowns: a VM its group
    stops is recreated (https://cloud.google.com/compute/docs/instance-groups: "If a VM in the
    group stops ... the MIG automatically recreates that VM"), so the daily stop and the idle
    watchdog would restart the run, not end the bill. The deadline job and the template's hard
    cap end it instead; the VM deletes its own group when the run finishes."""
    from ..provision.service import settings_for

    return replace(settings_for(ctx, login_user, profile), daily_stop=None, idle_minutes=0)


def for_apply(setup: RecoverSetup, *, project: str, caller_cidr: str, public_key: str) -> RecoverSetup:
    return replace(setup, spec=replace(setup.spec, project=project, ssh_source_cidr=caller_cidr,
                                       ssh_public_key=public_key))


def plan_recover_run(ctx, spec: JobSpec, options: RecoverOptions, workdir: Path | None) -> dict:
    """The dry run: what would exist and what it may cost, from the same setup the apply uses."""
    from gpuctl_infra.mock_run import run_under_mocks
    from gpuctl_infra.recovering_vm import RecoveringVm

    project = ctx.config.project or "PROJECT"
    setup = recover_setup(ctx, spec, options, project)
    resources = run_under_mocks(lambda: RecoveringVm(setup.spec), project=project)
    return {**setup_report(setup, spec, workdir), "dry_run": True,
            "resources": [{"type": r.short_type, "name": r.name} for r in resources
                          if not r.short_type.startswith("vm.")]}


def setup_report(setup: RecoverSetup, spec: JobSpec, workdir: Path | None) -> dict:
    name, bundle_url = setup.spec.name, f"{setup.folder}/{FOLDER}"
    return {
        "name": name, "run": spec.name, "profile": setup.vm.profile.name,
        "machine_type": setup.spec.machine_type, "region": setup.spec.region, "zones": list(setup.zones),
        "checkpoints": setup.folder, "mount": DEFAULT_MOUNT,
        "uploads": [f"{bundle_url}/{n}" for n in ("recover.json", "code.tar.gz", "provision.pyz", *HELPERS)],
        "provision": {"driver": setup.provision.driver, "cuda": setup.provision.cuda,
                      "python": setup.provision.python, "time_zone": setup.provision.time_zone,
                      "mount": setup.provision.mount_point,
                      "when": "at every boot of every VM the group makes, before the run starts"},
        "code": str(workdir) if workdir else None,
        "guards": {
            "deadline": {"at": setup.deadline.isoformat(), "hours": round(setup.guards.deadline_hours, 3),
                         "from": setup.guards.deadline_reason,
                         "action": f"Cloud Scheduler deletes group {name} and every VM it would make"},
            "hard_cap": {"termination_time": setup.spec.termination_time,
                         "action": "GCE deletes any replacement at this time"},
            "daily_stop": "not used with --recover: a stopped VM in a group is recreated",
        },
        "cost": setup.guards.as_dict(),
    }
