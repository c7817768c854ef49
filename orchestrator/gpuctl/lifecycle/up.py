"""`gpuctl up`: apply the VM program zone by zone until one has capacity, then reach the VM.

The order of events, and why:
 1. record intent (records.py) before anything exists, so any interruption can be rolled back;
 2. make the VM's key pair locally; only the public half goes into metadata;
 3. apply the program in the first candidate zone; on stockout, a zone without the machine
    or GPU, or a regional quota error, destroy what was made and try the next zone. With
    --iap, the region's shared Cloud NAT is made (or joined) first, in a stack of its own
    (shared_nat.py): the VM boots with its way out in place;
 4. wait for RUNNING, pin the host key the guest agent publishes, wait for SSH;
 5. mark the record ready. Anything that fails before step 5 destroys what was made.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Callable

from gpuctl_infra import rules
from gpuctl_infra.catalog import REGIONS, region_of
from gpuctl_infra.spec import VmSpec

from ..adapters.pulumi_engine import StackError
from ..adapters.ssh import RemoteHost, SshError
from ..context import Context
from ..cost import hourly_cost
from ..errors import GpuctlError
from ..plan import MODEL_NAMES, VmPlan, zones_for
from . import access, hostkeys, keys, records, shared_nat
from .deps import LiveDeps
from .failover import Candidate, classify, order_zones, short_reason, skip_after
from .records import Attempt, VmRecord

OnEvent = Callable[[str, str], None]  # (kind, text): kinds attempt, wait, rollback, ready
TRANSIENT_RETRIES = 2


class CapacityError(GpuctlError):
    exit_code = 4


@dataclass
class UpResult:
    record: VmRecord
    attempts: list[Attempt] = field(default_factory=list)


def candidates(ctx: Context, plan: VmPlan, any_region: bool) -> list[Candidate]:
    """The plan's zone choices, in its order: cheapest first within each provisioning model of
    the fallback order, across the allowed regions. With --any-region and a plan made without
    it, every other region's zones are added (cheapest first, after the plan's)."""
    found = [Candidate(c.zone, c.hourly_usd, c.model) for c in plan.choices]
    if not found:  # a plan built by hand (tests): its zones at its price
        found = [Candidate(zone, plan.hourly.running) for zone in plan.zones]
    if not any_region or plan.profile.zones or len({c.region for c in found}) > 1:
        return found
    extra: list[Candidate] = []
    model = plan.spec.provisioning_model
    for region in REGIONS:
        if region == plan.spec.region:
            continue
        zones = zones_for(plan.profile, region, model)
        if not zones:
            continue
        hourly = hourly_cost(plan.profile, region, ctx.prices, iap=plan.spec.iap)
        if hourly.unknown:
            continue  # no full price, no estimate: never create what we cannot cost
        for zone in zones:
            if not rules.violations(replace(plan.spec, zone=zone)):
                extra.append(Candidate(zone, hourly.running, model))
    return found + order_zones(extra)


def vm_program(spec: VmSpec) -> Callable[[], None]:
    def program() -> None:
        import pulumi
        from gpuctl_infra.gpu_vm import GpuVm

        vm = GpuVm(spec)
        pulumi.export("instance_name", vm.instance.name)
        pulumi.export("zone", vm.instance.zone)
        pulumi.export("iap", spec.iap)  # how to reach it, next to the VM in the stack's outputs
    return program


def up_vm(ctx: Context, plan: VmPlan, deps: LiveDeps, *, any_region: bool = False,
          on_event: OnEvent | None = None) -> UpResult:
    emit = on_event or (lambda kind, text: None)
    name = plan.spec.name
    existing = records.load(name)
    if existing and existing.state in ("ready", "unreachable") and _gone(existing, deps):
        # Its guard (or a preemption with DELETE) removed it: what the stack still lists is
        # stale, and destroying it is a no-op for GCE (a 404 on delete counts as deleted).
        emit("rollback", f"{name} was deleted outside gpuctl (a guard or a preemption); "
                         "clearing its stack")
        existing.state = "destroying"
    if existing and existing.state in ("ready", "unreachable"):
        raise GpuctlError(f"VM {name} already exists ({existing.zone})",
                          f"use it (`gpuctl ssh {name}`), remove it (`gpuctl down {name}`), "
                          "or pass --name")
    if existing:  # an earlier up was interrupted: finish its rollback before starting over
        emit("rollback", f"an earlier `up` of {name} did not finish; removing what it made")
        from .down import destroy_everything

        destroy_everything(existing, deps, emit)

    plan = _with_checkpoint_bucket(ctx, plan, deps, emit)
    order = candidates(ctx, plan, any_region)
    key = keys.ensure_key_pair(name)
    record = VmRecord(
        name=name, profile=plan.profile.name, project=deps.project, state="creating", stack=name,
        zones_to_try=[c.zone for c in order], created_at=deps.clock().isoformat(),
        hourly_usd=plan.hourly.running, stopped_hourly_usd=plan.hourly.stopped,
        termination_action=plan.guards.termination_action, ssh_user=plan.spec.ssh_user,
        key_file=str(key.private_path), max_run_seconds=plan.spec.max_run_seconds,
        termination_time=plan.spec.termination_time, iap=plan.spec.iap,
        daily_stop=({"cron": plan.spec.daily_stop.cron, "clock": plan.spec.daily_stop.clock,
                     "time_zone": plan.spec.daily_stop.time_zone} if plan.spec.daily_stop else None),
        checkpoint_bucket=plan.spec.checkpoint_bucket,
        service_account=(f"{plan.spec.service_account_id}@{deps.project}.iam.gserviceaccount.com"
                         if plan.spec.checkpoint_bucket else None))
    records.save(record)  # intent first: from here on, any failure is rolled back
    from .down import rollback_on_failure

    with rollback_on_failure(record, deps, emit):
        _apply_with_failover(plan, record, order, key.public_line, deps, emit)
        _set_deadline(plan, record, deps, emit)
        _reach(record, deps, emit)
    record.state = "ready"
    records.save(record)
    where = "through IAP (no external address)" if record.iap else f"at {record.address}"
    emit("ready", f"{name} is ready {where} ({record.zone})")
    return UpResult(record, record.attempts)


def _apply_with_failover(plan: VmPlan, record: VmRecord, order: list[Candidate], public_key: str,
                         deps: LiveDeps, emit: OnEvent) -> None:
    nat_regions: dict[str, str] = {}  # region -> "created" | "joined": shared NATs this up made or joined
    try:
        _failover(plan, record, order, public_key, deps, emit, nat_regions)
    finally:
        # A NAT made for a region failover left is removed when nothing else uses it; the
        # region the VM is in (or the last one tried, on failure: rollback) is down's to release.
        for region in sorted(set(nat_regions) - {record.region}):
            try:
                shared_nat.release(deps, deps.project, region, emit, excluding=record.name,
                                   network=plan.spec.network)
            except GpuctlError as exc:
                emit("warn", f"the shared Cloud NAT of {region} was left: {exc.message} "
                             "(`gpuctl sweep` lists it)")


def _failover(plan: VmPlan, record: VmRecord, order: list[Candidate], public_key: str,
              deps: LiveDeps, emit: OnEvent, nat_regions: dict[str, str]) -> None:
    pending = list(order)
    while pending:
        candidate = pending.pop(0)
        spec = replace(plan.spec, zone=candidate.zone, ssh_public_key=public_key,
                       ssh_source_cidr=deps.caller_cidr or plan.spec.ssh_source_cidr,
                       project=deps.project)
        if candidate.model:
            spec = replace(spec, spot=candidate.model == "SPOT",
                           flex_start=candidate.model == "FLEX_START")
        record.zone = candidate.zone
        record.hourly_usd = candidate.hourly_usd
        records.save(record)  # from here this up counts as a user of the region's shared NAT
        nat = shared_nat.nat_spec(deps.project, spec.region, spec.network,
                                  plan.spec.labels.get("gpuctl-owner", "gpuctl"))
        if spec.iap and spec.region not in nat_regions:
            nat_regions[spec.region] = shared_nat.ensure(deps, nat, emit)
        outcome, reason = _try_zone(spec, record, deps, emit)
        if outcome == "created" and spec.iap and not shared_nat.still_there(deps, nat):
            # A `down` elsewhere saw no user (this VM did not exist yet) and removed it meanwhile.
            nat_regions[spec.region] = shared_nat.ensure(deps, nat, emit)
        if candidate.model and candidate.model != plan.spec.provisioning_model:
            reason = f"{MODEL_NAMES[candidate.model]}: {reason}"
        record.attempts.append(Attempt(candidate.zone, outcome, reason))
        records.save(record)
        if outcome == "created":
            return
        emit("attempt", f"{candidate.zone}: {outcome}: {reason}")
        deps.engine.destroy(record.stack)  # leave nothing from the failed zone behind
        if outcome == "fatal":
            raise GpuctlError(f"creating {spec.name} failed: {reason}",
                              "fix the cause above; trying other zones would not help")
        pending = skip_after(outcome, candidate, pending)
    tried = ", ".join(f"{a.zone} ({a.outcome})" for a in record.attempts)
    raise CapacityError(f"no zone could create {plan.spec.name}; tried {len(record.attempts)}: {tried}",
                        "try later, pass --any-region to widen the search, or pick an on-demand profile")


def _try_zone(spec: VmSpec, record: VmRecord, deps: LiveDeps, emit: OnEvent) -> tuple[str, str]:
    emit("apply", f"creating {spec.name} in {spec.zone}")
    for attempt in range(TRANSIENT_RETRIES + 1):
        try:
            deps.engine.up(record.stack, vm_program(spec), {"gcp:project": deps.project,
                                                            "gcp:zone": spec.zone})
            return "created", "ok"
        except StackError as exc:
            outcome = classify(exc.detail)
            reason = short_reason(exc.detail)
            if outcome != "transient" or attempt == TRANSIENT_RETRIES:
                return outcome, reason
            emit("attempt", f"{spec.zone}: {reason}; retrying")
            deps.sleep(2.0 * 2 ** attempt)
    return "transient", "retries exhausted"  # pragma: no cover - the loop always returns


def _with_checkpoint_bucket(ctx: Context, plan: VmPlan, deps: LiveDeps, emit: OnEvent) -> VmPlan:
    """The bucket the VM's account is granted on, before anything is created: gpuctl's own
    bucket (`auto`) is made when missing (adapters/storage.py); a user's bucket must exist,
    because gpuctl never creates or changes a bucket the user named."""
    if not plan.checkpoints:
        return plan
    from ..adapters.storage import default_bucket_name, parse_location

    storage = deps.storage_api()
    if plan.checkpoints == "auto":
        bucket = default_bucket_name(deps.project)
        emit("apply", f"checkpoint bucket gs://{bucket}")
        storage.ensure_checkpoints(None, ctx.config.resolved_owner(), plan.spec.region)
    else:
        bucket = parse_location(plan.checkpoints).bucket
        storage.require_bucket(bucket)
    spec = replace(plan.spec, checkpoint_bucket=bucket)
    rules.check(spec)
    return replace(plan, spec=spec)


def _gone(record: VmRecord, deps: LiveDeps) -> bool:
    return bool(record.zone) and deps.compute.instance(record.zone, record.name) is None


def _set_deadline(plan: VmPlan, record: VmRecord, deps: LiveDeps, emit: OnEvent) -> None:
    """The movable deadline under the hard cap: a Cloud Scheduler job that deletes the VM. If it
    cannot be made, up fails and rolls back: the user asked for that limit."""
    seconds = plan.guards.deadline_seconds
    if not seconds:
        return
    fires = deps.deadline_api(region_of(record.zone)).set(record.name, record.zone,
                                               deps.clock() + dt.timedelta(seconds=seconds))
    record.deadline_seconds = seconds
    records.save(record)
    emit("guard", f"deadline: Cloud Scheduler deletes {record.name} at {fires.isoformat()}")


def _reach(record: VmRecord, deps: LiveDeps, emit: OnEvent) -> None:
    """RUNNING, then host keys from guest attributes, then SSH with the pinned key."""
    timeouts = deps.timeouts
    emit("wait", f"waiting for {record.name} to be RUNNING")
    view = _poll(lambda: deps.compute.instance(record.zone, record.name),
                 lambda v: v is not None and v.status == "RUNNING", timeouts.running_s, deps,
                 f"{record.name} did not reach RUNNING")
    record.address = view.address  # None through IAP: the VM has no external address
    record.running_since = (view.last_start or deps.clock()).isoformat()
    records.save(record)
    if not view.address and not record.iap:
        raise GpuctlError(f"{record.name} has no external address", "check the network settings")
    emit("wait", "reading the VM's host keys from its guest attributes")
    published = _poll(lambda: deps.compute.host_keys(record.zone, record.name), bool,
                      timeouts.host_keys_s, deps, f"{record.name} published no SSH host keys")
    pinned_as = access.host_key_name(record)
    lines = hostkeys.host_key_lines(pinned_as, published)
    if not lines:
        raise GpuctlError(f"{record.name} published no usable host key",
                          "use an image with the Google guest environment")
    hostkeys.pin(pinned_as, lines)
    target = access.target_for_record(record)
    emit("wait", f"waiting for SSH on {pinned_as}" + (" through IAP" if record.iap else ""))
    host = RemoteHost(target)
    host.load_known_hosts(hostkeys.known_hosts_path())
    try:
        host.wait_for_ssh(timeouts.ssh_s, timeouts.poll_s, tolerate_auth=True)
    except SshError as exc:
        raise GpuctlError(f"{record.name} did not answer on SSH: {exc.message}", exc.hint) from None
    finally:
        host.close()


def _poll(read, done, timeout_s: float, deps: LiveDeps, failure: str):
    """Read until done; counts polls rather than reading the clock, so tests with a frozen
    clock and no-op sleep still end."""
    polls = max(1, int(timeout_s / max(deps.timeouts.poll_s, 0.001)))
    for _ in range(polls + 1):
        value = read()
        if done(value):
            return value
        if value is not None and getattr(value, "status", "") == "TERMINATED":
            raise GpuctlError(f"{failure}: it was TERMINATED (preempted at once?)",
                              "spot capacity is tight; rerun `gpuctl up` or try another zone")
        deps.sleep(deps.timeouts.poll_s)
    raise GpuctlError(f"{failure} within {timeout_s:.0f}s",
                      "check the VM's serial console in the Cloud Console")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
