"""Plan a VM: what will exist, what runs on it, which guards cap it, what it costs.

`gpuctl up --dry-run` shows this plan and stops; `gpuctl up` will apply the same spec. The
resource list comes from executing the real Pulumi program under Pulumi's mocks, so the plan
cannot drift from what apply would create.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

from gpuctl_infra import rules
from gpuctl_infra.catalog import GPUS, MACHINES, REGIONS, region_of
from gpuctl_infra.spec import CALLER_ADDRESS_PLACEHOLDER, DailyStop, VmSpec

from .config import label_safe
from .context import Context
from .cost import ForgottenRow, HourlyCost, forgotten_table, hourly_cost
from .errors import RuleViolation, UsageError
from .guards import GuardPlan, plan_guards, seconds_until_clock
from .money import budget_in_usd
from .profiles import Profile, get_profile
from .provision_plan import PlannedStep, provisioning_steps
from .units import format_duration, is_off, parse_clock, parse_duration

# Shown in the offline plan where apply generates a per-VM key pair on the user's machine.
GENERATED_KEY_PLACEHOLDER = "ssh-ed25519 KEY-GENERATED-AT-APPLY gpuctl"
MAX_RUN_SECONDS = rules.MAX_RUN_SECONDS
MIN_BUDGET_SECONDS = 60


@dataclass
class UpOptions:
    profile: str
    name: str | None = None
    zone: str | None = None
    region: str | None = None
    ttl: str | None = None  # None: the config default; "none": no run limit
    budget: str | None = None
    cap: str | None = None  # a hard cap above the ttl: the ttl becomes a movable deadline
    until: str | None = None  # RFC 3339 time for termination_time
    stop_at: str | None = None  # HH:MM daily stop
    time_zone: str | None = None
    termination_action: str | None = None  # delete | stop
    idle_minutes: int | None = None
    ssh_from: str | None = None
    unguarded: bool = False


@dataclass
class VmPlan:
    profile: Profile
    spec: VmSpec
    zones: list[str]  # zones to try, in order
    guards: GuardPlan
    hourly: HourlyCost
    forgotten: list[ForgottenRow]
    steps: list[PlannedStep]
    resources: list = field(default_factory=list)  # PlannedResource from the mocked program
    budget_usd: float | None = None
    warnings: list[str] = field(default_factory=list)  # guards that disagree, each with its fix

    @property
    def worst_case(self) -> dict:
        exposure = self.guards.exposure()
        if exposure.running_hours is None:
            return {"bounded": False, "summary": "no server-side guard: bills until deleted"}
        running_usd = exposure.running_hours * self.hourly.running
        after_per_day = 24 * self.hourly.stopped if exposure.after == "stopped" else 0.0
        return {"bounded": exposure.after == "deleted", "running_hours": round(exposure.running_hours, 3),
                "running_usd": round(running_usd, 2), "then": exposure.after,
                "then_usd_per_day": round(after_per_day, 2),
                "summary": worst_case_sentence(exposure.running_hours, running_usd, exposure.after,
                                               after_per_day)}


def worst_case_sentence(hours: float, usd: float, after: str, per_day: float) -> str:
    head = f"at most {format_duration(hours * 3600)} running, ${usd:,.2f}"
    if after == "deleted":
        return head + ", then the VM is deleted and billing ends"
    return head + f", then stopped: the boot disk bills ${per_day:,.2f}/day until `gpuctl down`"


def require_known_region(region: str, hint: str = "use one of") -> str:
    if region not in REGIONS:
        raise UsageError(f"gpuctl has no GPU data for region {region}",
                         f"{hint}: {', '.join(REGIONS)}")
    return region


def resolve_region_and_zones(profile: Profile, options: UpOptions, default_region: str) -> tuple[str, list[str]]:
    gpu = profile.gpu_type
    if options.zone:
        if not rules.ZONE_RE.fullmatch(options.zone):
            raise UsageError(f"'{options.zone}' is not a zone name",
                             "zones look like us-central1-a or asia-northeast1-c")
        region = require_known_region(region_of(options.zone), "use a zone in one of")
        return region, [options.zone]
    if profile.zones and not options.region:
        return region_of(profile.zones[0]), list(profile.zones)
    region = require_known_region(options.region or profile.region or default_region)
    zones = GPUS[gpu].zones_in(region) if gpu in GPUS else []
    if not zones:
        elsewhere = ", ".join(GPUS[gpu].regions) if gpu in GPUS else "none"
        raise RuleViolation(f"{GPUS[gpu].display if gpu in GPUS else gpu} is not offered in {region}",
                            f"pass --region with one of: {elsewhere}")
    return region, zones


def _run_limit(options: UpOptions, ctx: Context, hourly: HourlyCost) -> tuple[int | None, float | None]:
    """Max run seconds from --budget or --ttl (or the config default), and the budget in USD."""
    if options.budget and options.ttl:
        raise UsageError("--budget and --ttl both set a run limit", "pass one of them")
    if options.budget is not None:
        budget_usd = budget_in_usd(options.budget, ctx.currency)
        seconds = int(budget_usd / hourly.running * 3600)
        if seconds < MIN_BUDGET_SECONDS:
            raise UsageError(f"a budget of ${budget_usd:.2f} buys less than a minute at "
                             f"${hourly.running:.2f}/hour", "raise --budget")
        return min(seconds, MAX_RUN_SECONDS), budget_usd
    ttl = options.ttl if options.ttl is not None else ctx.config.ttl
    if ttl is None or str(ttl).strip().lower() in ("none", "off", "0"):
        return None, None
    seconds = parse_duration(ttl)
    if seconds > MAX_RUN_SECONDS:
        raise UsageError(f"TTL {ttl} is longer than GCE's 120-day maximum", "use --ttl 120d or less")
    if seconds < 30:
        raise UsageError(f"TTL {ttl} is shorter than GCE's 30-second minimum", "use --ttl 1m or more")
    return seconds, None


def _cap_and_deadline(run_limit: int | None, options: UpOptions, ctx: Context) -> tuple[int | None, int | None]:
    """With a hard cap above the run limit, GCE's own limit (maxRunDuration) becomes the cap and
    the run limit becomes a deadline that `gpuctl extend` can move while the VM runs: GCE moves
    maxRunDuration only on a stopped VM (instances.setScheduling, compute.v1), and a stop loses
    the local NVMe. Returns (GCE's limit, the movable deadline or None)."""
    cap = options.cap if options.cap is not None else ctx.config.cap
    if cap is None or is_off(cap):
        return run_limit, None
    if options.budget:
        raise UsageError("--budget already is the hard cap", "pass --budget with --ttl, or --cap with --ttl")
    if not run_limit:
        raise UsageError(f"a cap of {cap} needs a run limit under it", "pass --ttl 6h with --cap")
    seconds = parse_duration(cap)
    if seconds > MAX_RUN_SECONDS:
        raise UsageError(f"cap {cap} is longer than GCE's 120-day maximum", "use --cap 120d or less")
    if seconds < run_limit:
        raise UsageError(f"cap {cap} is shorter than the run limit {format_duration(run_limit)}",
                         "pass a --cap longer than --ttl, or --cap none")
    return seconds, (run_limit if run_limit < seconds else None)


def _termination_time(options: UpOptions, now: dt.datetime) -> dt.datetime | None:
    if not options.until:
        return None
    try:
        when = dt.datetime.fromisoformat(options.until)
    except ValueError:
        raise UsageError(f"'{options.until}' is not a time",
                         "write RFC 3339 with an offset, e.g. 2026-11-24T06:00+09:00") from None
    if when.tzinfo is None:
        raise UsageError(f"'{options.until}' has no time zone offset",
                         "add one, e.g. 2026-11-24T06:00+09:00 or ...Z")
    if when <= now or (when - now).total_seconds() > MAX_RUN_SECONDS:
        raise UsageError(f"--until {options.until} is not between now and 120 days from now",
                         "pick a later (or nearer) time")
    return when


def _daily_stop(options: UpOptions, ctx: Context) -> DailyStop | None:
    clock = options.stop_at or ctx.config.daily_stop
    if not clock or clock.strip().lower() in ("none", "off"):
        return None
    hour, minute = parse_clock(clock)
    tz = options.time_zone or ctx.config.time_zone or "UTC"
    if not rules.is_time_zone(tz):
        raise UsageError(f"'{tz}' is not a time zone", "use an IANA name such as Asia/Tokyo")
    return DailyStop(hour, minute, tz)


STOP_MARGIN_SECONDS = 15 * 60  # instance schedules may act up to 15 minutes late (Google's docs)


def _agree_with_daily_stop(max_run_seconds: int | None, stop: DailyStop | None, options: UpOptions,
                           now: dt.datetime) -> tuple[int | None, list[str]]:
    """A daily stop after the run limit never fires: the limit ends the VM (and its NVMe) first.
    With --stop-at and no explicit limit, the default limit grows to let the stop happen (still a
    server-side cap); with an explicit --ttl/--budget the plan says so and how to fix it."""
    if not stop or not max_run_seconds:
        return max_run_seconds, []
    until_stop = int(seconds_until_clock(stop, now))
    if until_stop + STOP_MARGIN_SECONDS <= max_run_seconds:
        return max_run_seconds, []
    needed = min(until_stop + STOP_MARGIN_SECONDS, MAX_RUN_SECONDS)
    explicit = options.ttl is not None or bool(options.budget)
    if options.stop_at and not explicit:
        return needed, [f"run limit raised from {format_duration(max_run_seconds)} to {format_duration(needed)} "
                        f"so the daily stop at {stop.clock} {stop.time_zone} "
                        f"(in {format_duration(until_stop)}) can happen first"]
    return max_run_seconds, [f"the daily stop at {stop.clock} {stop.time_zone} comes in "
                             f"{format_duration(until_stop)}, after the {format_duration(max_run_seconds)} run "
                             "limit: the limit ends the VM first and the stop never fires (fix: --ttl "
                             f"{-(-needed // 3600)}h, or an earlier --stop-at)"]


def _labels(owner: str, name: str, expiry: dt.datetime | None) -> dict[str, str]:
    return {
        "gpuctl-managed": "true",
        "gpuctl-owner": owner,
        "gpuctl-name": name,
        "gpuctl-expiry": expiry.strftime("%Y%m%dt%H%Mz") if expiry else "none",
    }


def default_vm_name(owner: str, profile: str) -> str:
    return label_safe(f"{owner}-{profile}", max_len=rules.MAX_NAME_LEN)


def build_spec(ctx: Context, profile: Profile, options: UpOptions, zone: str,
               guards: GuardPlan) -> VmSpec:
    owner = ctx.config.resolved_owner()
    name = options.name or default_vm_name(owner, profile.name)
    if guards.max_run_seconds:
        expiry = ctx.now + dt.timedelta(seconds=guards.max_run_seconds)
    else:
        expiry = guards.termination_time
    return VmSpec(
        name=name, zone=zone, machine_type=profile.machine_type, image=profile.image,
        boot_disk_gb=profile.boot_disk_gb, boot_disk_type=profile.boot_disk_type, spot=profile.spot,
        accelerator_type=None if MACHINES[profile.machine_type].builtin_gpu else profile.gpu,
        accelerator_count=0 if MACHINES[profile.machine_type].builtin_gpu else profile.gpu_count,
        local_ssd_count=profile.nvme_count,
        termination_action=guards.termination_action,
        max_run_seconds=guards.max_run_seconds,
        termination_time=guards.termination_time.isoformat() if guards.termination_time else None,
        daily_stop=guards.daily_stop,
        ssh_source_cidr=_ssh_source(options.ssh_from or ctx.config.ssh_from),
        ssh_public_key=GENERATED_KEY_PLACEHOLDER,
        labels=_labels(owner, name, expiry),
        project=ctx.config.project,
    )


def _ssh_source(address: str | None) -> str:
    if not address:
        return CALLER_ADDRESS_PLACEHOLDER
    from .validation import ssh_source

    return ssh_source(address)  # never the whole internet; a CIDR either way


def plan_vm(ctx: Context, options: UpOptions, *, with_resources: bool = True) -> VmPlan:
    profile = get_profile(ctx.profiles, options.profile)
    if profile.machine_type not in MACHINES:
        raise RuleViolation(f"profile {profile.name}: machine type {profile.machine_type} is not "
                            "known to gpuctl", f"use one of: {', '.join(sorted(MACHINES))}")
    region, zones = resolve_region_and_zones(profile, options, ctx.config.region)
    hourly = hourly_cost(profile, region, ctx.prices)
    max_run_seconds, budget_usd = _run_limit(options, ctx, hourly)
    max_run_seconds, deadline_seconds = _cap_and_deadline(max_run_seconds, options, ctx)
    termination_time = _termination_time(options, ctx.now)
    if max_run_seconds and termination_time and options.ttl is None and not options.budget:
        max_run_seconds = None  # an explicit --until replaces the config's default TTL
    action = (options.termination_action or ctx.config.termination_action).lower()
    if action not in ("delete", "stop"):
        raise UsageError(f"termination action '{action}' is unknown", "use delete or stop")
    idle = ctx.config.idle_minutes if options.idle_minutes is None else options.idle_minutes
    daily_stop = _daily_stop(options, ctx)
    if deadline_seconds:
        deadline_seconds, warnings = _agree_with_daily_stop(deadline_seconds, daily_stop, options, ctx.now)
        max_run_seconds = max(max_run_seconds, deadline_seconds)
        if deadline_seconds == max_run_seconds:
            deadline_seconds = None  # nothing left to move: the cap is the limit
    else:
        max_run_seconds, warnings = _agree_with_daily_stop(max_run_seconds, daily_stop, options, ctx.now)
    guards = plan_guards(max_run_seconds=max_run_seconds, deadline_seconds=deadline_seconds,
                         termination_time=termination_time,
                         termination_action=action, daily_stop=daily_stop,
                         idle_minutes=idle, unguarded=options.unguarded, now=ctx.now)
    spec = build_spec(ctx, profile, options, zones[0], guards)
    for zone in zones:  # every zone failover may try must pass the rules too
        rules.check(_with_zone(spec, zone))
    plan = VmPlan(
        profile=profile, spec=spec, zones=zones, guards=guards, hourly=hourly,
        forgotten=forgotten_table(hourly, guards.exposure()),
        steps=provisioning_steps(profile, guards, ctx.config.time_zone, idle),
        budget_usd=budget_usd, warnings=warnings,
    )
    if with_resources:
        plan.resources = planned_resources(spec)
    return plan


def _with_zone(spec: VmSpec, zone: str) -> VmSpec:
    return replace(spec, zone=zone)


def planned_resources(spec: VmSpec) -> list:
    """Run the VM program under Pulumi mocks; imported lazily (pulumi is slow to import)."""
    from gpuctl_infra.gpu_vm import GpuVm
    from gpuctl_infra.mock_run import run_under_mocks

    return run_under_mocks(lambda: GpuVm(spec), project=spec.project or "gpuctl-offline",
                           stack=spec.name)


def plan_to_dict(plan: VmPlan, ctx: Context) -> dict:
    cur = ctx.currency
    return {
        "profile": plan.profile.name,
        "name": plan.spec.name,
        "region": plan.spec.region,
        "zone": plan.spec.zone,
        "zones_to_try": plan.zones,
        "spot": plan.profile.spot,
        "resources": [{"type": r.type, "name": r.name, "inputs": r.inputs} for r in plan.resources],
        "provisioning": [s.as_dict() for s in plan.steps],
        "guards": [g.as_dict() for g in plan.guards.guards],
        "worst_case": plan.worst_case,
        "warnings": list(plan.warnings),
        "cost": cost_dict(plan.hourly, plan.forgotten, ctx),
        "versions": {"os": plan.profile.os, "driver": plan.profile.driver,
                     "cuda": plan.profile.cuda, "python": plan.profile.python},
        **({"budget_usd": round(plan.budget_usd, 2)} if plan.budget_usd is not None else {}),
        "currency": cur.as_dict(),
    }


def cost_dict(hourly: HourlyCost, forgotten: list[ForgottenRow], ctx: Context) -> dict:
    return {
        "region": hourly.region,
        "spot": hourly.spot,
        "hourly_usd": round(hourly.running, 4),
        "stopped_hourly_usd": round(hourly.stopped, 4),
        "breakdown": [line.as_dict() for line in hourly.lines],
        "forgotten": [row.as_dict() for row in forgotten],
        "prices_as_of": ctx.prices.as_of.isoformat(),
        "prices_source": ctx.prices.source,
        "display": {"currency": ctx.currency.code, "hourly": round(ctx.currency.convert(hourly.running), 2),
                    "rate": ctx.currency.rate, "rate_as_of": ctx.currency.as_of},
    }

