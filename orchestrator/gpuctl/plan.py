"""Plan a VM: what will exist, what runs on it, which guards cap it, what it costs.

`gpuctl up --dry-run` shows this plan and stops; `gpuctl up` will apply the same spec. The
resource list comes from executing the real Pulumi program under Pulumi's mocks, so the plan
cannot drift from what apply would create.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass, field, replace

from gpuctl_infra import rules
from gpuctl_infra.catalog import GPUS, MACHINES, REGIONS, region_of
from gpuctl_infra.spec import (CALLER_ADDRESS_PLACEHOLDER, CHECKPOINT_ROLE, CHECKPOINT_SCOPE, DailyStop,
                               VmSpec)

from .config import label_safe
from .context import Context
from .cost import ForgottenRow, HourlyCost, forgotten_table, hourly_cost, require_complete
from .errors import RuleViolation, UsageError
from .guards import GuardPlan, plan_guards, seconds_until_clock
from .money import budget_in_usd
from .profiles import Profile, get_profile
from .provision_plan import PlannedStep, provisioning_steps
from .units import format_duration, is_off, parse_clock, parse_duration

# Shown in the offline plan where apply generates a per-VM key pair on the user's machine.
GENERATED_KEY_PLACEHOLDER = "ssh-ed25519 KEY-GENERATED-AT-APPLY gpuctl"
# Shown in the offline plan for `checkpoints: auto` when the project (and so gpuctl's bucket
# name, adapters/storage.default_bucket_name) is only known at apply time.
AUTO_BUCKET_PLACEHOLDER = "gpuctl-ckpt-named-at-apply"
MAX_RUN_SECONDS = rules.MAX_RUN_SECONDS
MIN_BUDGET_SECONDS = 60


@dataclass
class UpOptions:
    profile: str | None
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
    any_region: bool = False  # every region of the catalog, cheapest zone first
    flex_start: bool = False  # provisioning model FLEX_START instead of the profile's
    gpu: str | None = None  # NAME[:COUNT] instead of a profile: an ad hoc shape (adhoc.py)
    on_demand: bool = False  # with --gpu: the STANDARD model instead of spot
    fallback: str | None = None  # e.g. "spot,flex-start,on-demand": models tried in this order
    iap: bool = False  # SSH through Identity-Aware Proxy, no external address (or config iap)
    checkpoints: str | None = None  # gs://BUCKET/PREFIX or "auto" (or config checkpoints)


# What users write -> GCE's provisioning model.
MODEL_WORDS = {"spot": "SPOT", "flex-start": "FLEX_START", "flex": "FLEX_START",
               "on-demand": "STANDARD", "ondemand": "STANDARD", "standard": "STANDARD"}
MODEL_NAMES = {"SPOT": "spot", "FLEX_START": "flex-start", "STANDARD": "on-demand"}


@dataclass(frozen=True)
class ZoneChoice:
    """One place (and provisioning model) `up` may try, with what it costs there."""

    zone: str
    model: str  # SPOT, STANDARD or FLEX_START
    hourly_usd: float

    @property
    def region(self) -> str:
        return region_of(self.zone)

    def as_dict(self) -> dict:
        return {"zone": self.zone, "model": MODEL_NAMES[self.model],
                "hourly_usd": round(self.hourly_usd, 4)}


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
    choices: list[ZoneChoice] = field(default_factory=list)  # every zone to try, in order
    region_reason: str = ""  # why this region: a sentence for the plan

    currency: object = None  # the DisplayCurrency money is shown in (money.DisplayCurrency)
    checkpoints: str | None = None  # gs://BUCKET/PREFIX or "auto": the VM gets bucket access
    # With --iap: whether up creates the region's shared Cloud NAT or joins it
    # (lifecycle/shared_nat.plan_info: action, router, region, used_by, summary).
    cloud_nat: dict | None = None

    @property
    def worst_case(self) -> dict:
        exposure = self.guards.exposure()
        if exposure.running_hours is None:
            return {"bounded": False, "summary": "no server-side guard: bills until deleted"}
        running_usd = exposure.running_hours * self.hourly.running
        after_per_day = 24 * self.hourly.stopped if exposure.after == "stopped" else 0.0
        summary = worst_case_sentence(exposure.running_hours, running_usd, exposure.after,
                                      after_per_day, self.currency)
        if self.hourly.unknown:
            summary += f" (plus {', '.join(self.hourly.unknown)}: no price in the data)"
        return {"bounded": exposure.after == "deleted", "running_hours": round(exposure.running_hours, 3),
                "running_usd": round(running_usd, 2), "then": exposure.after,
                "then_usd_per_day": round(after_per_day, 2), "summary": summary}


def show_money(usd: float, currency=None) -> str:
    """'$12.34', or in another display currency '¥1,851 ($12.34)': every money figure names it."""
    if currency is None or currency.is_usd:
        return f"${usd:,.2f}"
    return f"{currency.format(usd)} (${usd:,.2f})"


def worst_case_sentence(hours: float, usd: float, after: str, per_day: float, currency=None) -> str:
    head = f"at most {format_duration(hours * 3600)} running, {show_money(usd, currency)}"
    if after == "deleted":
        return head + ", then the VM is deleted and billing ends"
    return (head + f", then stopped: the boot disk bills {show_money(per_day, currency)}/day "
            "until `gpuctl down`")


def require_known_region(region: str, hint: str = "use one of") -> str:
    if region not in REGIONS:
        import difflib

        close = difflib.get_close_matches(region, REGIONS, n=3)
        raise UsageError(f"gpuctl has no GPU data for region {region}",
                         f"{hint}: {', '.join(close)}; `gpuctl profiles --json` lists all "
                         f"{len(REGIONS)}" if close else
                         f"`gpuctl profiles --json` lists the {len(REGIONS)} regions with GPUs")
    return region


def region_patterns(text: str | list[str]) -> list[str]:
    """'us-central1', 'europe-*' or 'us-east1,us-west*' -> the catalog's regions that match.
    A name that matches nothing is refused (never silently dropped)."""
    words = [w.strip() for w in (text.split(",") if isinstance(text, str) else text) if w.strip()]
    if not words:
        raise UsageError("no region given", f"use one of: {', '.join(REGIONS)}")
    found: list[str] = []
    for word in words:
        matches = [r for r in REGIONS if fnmatch.fnmatchcase(r, word)]
        if not matches:
            import difflib

            close = difflib.get_close_matches(word, REGIONS, n=1)
            raise UsageError(f"gpuctl has no GPU data for region {word}",
                             (f"did you mean {close[0]}? " if close else "")
                             + "`gpuctl profiles --json` lists every region")
        found += [m for m in matches if m not in found]
    return found


def allowed_regions(profile: Profile, options: UpOptions, ctx: Context) -> tuple[list[str], str]:
    """The regions `up` may use, and where that list came from (for the plan's sentence)."""
    if options.any_region:
        return list(REGIONS), "--any-region: every region of the catalog"
    if options.region:
        return region_patterns(options.region), f"--region {options.region}"
    if profile.region:
        return [require_known_region(profile.region)], f"profile {profile.name} pins {profile.region}"
    configured = getattr(ctx.config, "regions", None)
    if configured:
        return region_patterns(configured), "config regions"
    return [require_known_region(ctx.config.region)], "config region"


def _models(profile: Profile, options: UpOptions) -> list[str]:
    if options.fallback:
        models = []
        for word in options.fallback.split(","):
            model = MODEL_WORDS.get(word.strip().lower())
            if model is None:
                raise UsageError(f"'{word.strip()}' is not a provisioning model",
                                 "use --fallback with spot, flex-start and on-demand, e.g. "
                                 "--fallback spot,flex-start,on-demand")
            if model not in models:
                models.append(model)
        if options.flex_start and models[0] != "FLEX_START":
            raise UsageError("--flex-start and --fallback disagree on what to try first",
                             "put flex-start first in --fallback, or drop --flex-start")
        return models
    return ["FLEX_START"] if options.flex_start else [profile.model]


def _with_model(profile: Profile, model: str) -> Profile:
    if model == profile.model:
        return profile
    return profile.model_copy(update={"spot": model == "SPOT", "flex_start": model == "FLEX_START"})


def zones_for(profile: Profile, region: str, model: str) -> list[str]:
    """Zones of `region` where the profile's machine (and attached GPU) exist under `model`
    (spot: where the price data has a spot offer)."""
    machine = MACHINES[profile.machine_type]
    if machine.builtin_gpu:
        return machine.zones_in(region, model)
    gpu = GPUS.get(profile.gpu_type or "")
    if gpu is None:
        return []
    zones = gpu.spot_zones_in(region) if model == "SPOT" else gpu.zones_in(region)
    return [z for z in zones if z.rsplit("-", 1)[-1] in machine.zones.get(region, ())]


def choose_zones(profile: Profile, options: UpOptions, ctx: Context) -> tuple[list[ZoneChoice], str]:
    """Every zone to try, cheapest first within each provisioning model (in the fallback order),
    and a sentence saying which region was chosen and why."""
    machine = MACHINES[profile.machine_type]
    models = _models(profile, options)
    if options.zone:
        if not rules.ZONE_RE.fullmatch(options.zone):
            raise UsageError(f"'{options.zone}' is not a zone name",
                             "zones look like us-central1-a or asia-northeast1-c")
        region = require_known_region(region_of(options.zone), "use a zone in one of")
        pinned = [(region, [options.zone])]
        source = f"--zone {options.zone}"
    elif profile.zones and not options.region and not options.any_region:
        pinned = [(region_of(z), [z]) for z in profile.zones]
        source = f"profile {profile.name} lists its zones"
    else:
        regions, source = allowed_regions(profile, options, ctx)
        pinned = [(r, None) for r in regions]
    choices: list[ZoneChoice] = []
    for model in models:
        if model == "SPOT" and "SPOT" not in machine.models:
            continue
        if model == "STANDARD" and machine.spot_only:
            continue
        if model == "FLEX_START" and not machine.flex_start:
            continue
        variant = _with_model(profile, model)
        found: list[ZoneChoice] = []
        for region, zones in pinned:
            offered = zones_for(variant, region, model)
            zones = [z for z in zones if z in offered or options.zone] if zones else offered
            if not zones:
                continue
            price = hourly_cost(variant, region, ctx.prices, iap=_iap(options, ctx)).running
            found += [ZoneChoice(z, model, price) for z in zones]
        indexed = list(enumerate(found))
        choices += [c for _, c in sorted(indexed, key=lambda p: (round(p[1].hourly_usd, 6), p[0]))]
    if not choices:
        raise _nowhere(profile, machine, models, [r for r, _ in pinned])
    first = choices[0]
    regions_seen = sorted({c.region for c in choices})
    if len(regions_seen) == 1:
        why = f"{first.region} ({source}): {len(choices)} zone(s) to try"
    else:
        why = (f"{first.region}: the cheapest of {len(regions_seen)} regions with "
               f"{machine.name} ({source}) at {show_money(first.hourly_usd)}/h "
               f"{MODEL_NAMES[first.model]}; {len(choices)} zones to try, cheapest first")
    return choices, why


def _nowhere(profile: Profile, machine, models: list[str], regions: list[str]) -> RuleViolation:
    what = GPUS[profile.gpu_type].display if profile.gpu_type in GPUS else machine.name
    kinds = "/".join(MODEL_NAMES[m] for m in models)
    if not any(m in machine.models for m in models):
        flex = "; flex-start is for accelerator-optimized types (A2, A3, A4, G2)" \
            if "FLEX_START" in models else ""
        return RuleViolation(f"{machine.name} takes no {kinds} VMs",
                             f"use {' or '.join(MODEL_NAMES[m] for m in machine.models)}{flex}")
    offered = sorted({r for r in REGIONS for m in models if zones_for(_with_model(profile, m), r, m)})
    if not machine.zones and machine.builtin_gpu:
        return RuleViolation(f"{machine.name} ({what}) is in no zone of gpuctl's price data",
                             "its zones are not in the bundled snapshot; pick another profile")
    where = regions[0] if len(regions) == 1 else f"{len(regions)} regions"
    hint = (f"pass --region with one of: {', '.join(offered[:8])}"
            + (f" (and {len(offered) - 8} more; --any-region tries all)" if len(offered) > 8 else "")
            if offered else "no region of the catalog has it this way; try another model")
    return RuleViolation(f"{what} ({kinds}) is not offered in {where}", hint)


def resolve_region_and_zones(profile: Profile, options: UpOptions, ctx: Context) -> tuple[str, list[str]]:
    """(the chosen region, the zones to try in order): a shortcut over choose_zones."""
    choices, _ = choose_zones(profile, options, ctx)
    return choices[0].region, [c.zone for c in choices]


def _run_limit(options: UpOptions, ctx: Context, hourly: HourlyCost) -> tuple[int | None, float | None]:
    """Max run seconds from --budget or --ttl (or the config default), and the budget in USD."""
    if options.budget and options.ttl:
        raise UsageError("--budget and --ttl both set a run limit", "pass one of them")
    if options.budget is not None:
        budget_usd = budget_in_usd(options.budget, ctx.currency)
        require_complete(hourly, "--budget")
        seconds = int(budget_usd / hourly.running * 3600)
        if seconds < MIN_BUDGET_SECONDS:
            raise UsageError(f"a budget of {show_money(budget_usd, ctx.currency)} buys less than a "
                             f"minute at {show_money(hourly.running, ctx.currency)}/hour",
                             "raise --budget")
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


# A margin for an instance schedule acting a little late (unverified: no Google page found here
# states the delay; 15 minutes is a guess, kept so the run limit never races the stop).
STOP_MARGIN_SECONDS = 15 * 60


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
        flex_start=profile.flex_start,
        local_ssd_count=profile.nvme_count,
        termination_action=guards.termination_action,
        max_run_seconds=guards.max_run_seconds,
        termination_time=guards.termination_time.isoformat() if guards.termination_time else None,
        daily_stop=guards.daily_stop,
        ssh_source_cidr=_ssh_source(options.ssh_from or ctx.config.ssh_from),
        ssh_public_key=GENERATED_KEY_PLACEHOLDER,
        labels=_labels(owner, name, expiry),
        project=ctx.config.project,
        iap=_iap(options, ctx),
        checkpoint_bucket=planned_checkpoint_bucket(checkpoints_setting(options, ctx), ctx.config.project),
    )


def checkpoints_setting(options: UpOptions, ctx: Context) -> str | None:
    """--checkpoints, else the config's `checkpoints`: a gs:// URL (checked against Cloud
    Storage's naming rules) or "auto"; None for a VM with no cloud identity at all."""
    value = options.checkpoints if options.checkpoints is not None else ctx.config.checkpoints
    if value is None or is_off(value):
        return None
    if value == "auto":
        return value
    from .validation import gcs_url

    bucket, prefix = gcs_url(value, what="--checkpoints")
    return f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"


def planned_checkpoint_bucket(setting: str | None, project: str | None) -> str | None:
    if setting is None:
        return None
    if setting != "auto":
        return setting[len("gs://"):].partition("/")[0]
    from .adapters.storage import default_bucket_name

    return default_bucket_name(project) if project else AUTO_BUCKET_PLACEHOLDER


def checkpoint_access(spec: VmSpec, project: str | None) -> dict | None:
    """What the VM may do in Cloud Storage, for the plan: one account, one binding, one scope."""
    if not spec.checkpoint_bucket:
        return None
    email = f"{spec.service_account_id}@{project or 'PROJECT'}.iam.gserviceaccount.com"
    return {"service_account": email, "bucket": spec.checkpoint_bucket, "role": CHECKPOINT_ROLE,
            "scopes": [CHECKPOINT_SCOPE],
            "summary": f"{email}: {CHECKPOINT_ROLE} on gs://{spec.checkpoint_bucket} only, "
                       f"token scope devstorage.read_write"}


def _iap(options: UpOptions, ctx: Context) -> bool:
    """--iap, or `iap = true` in the config. With IAP only IAP's range reaches port 22, so an
    explicit --ssh-from would be silently ignored: it is refused instead."""
    iap = bool(options.iap or ctx.config.iap)
    if iap and options.ssh_from:
        raise UsageError("--ssh-from has no effect with --iap: port 22 admits only IAP's range",
                         "drop --ssh-from, or drop --iap (and `iap = true` in the config)")
    return iap


def _ssh_source(address: str | None) -> str:
    if not address:
        return CALLER_ADDRESS_PLACEHOLDER
    from .validation import ssh_source

    return ssh_source(address)  # never the whole internet; a CIDR either way


def _profile_for(ctx: Context, options: UpOptions) -> Profile:
    if options.gpu and options.profile:
        raise UsageError("a profile and --gpu both name the machine", "pass one of them")
    if options.gpu:
        from .adhoc import adhoc_profile

        return adhoc_profile(ctx.profiles, options.gpu, spot=not options.on_demand,
                             flex_start=options.flex_start)
    if options.on_demand:
        raise UsageError("--on-demand goes with --gpu", "a profile says its model: pick its -ondemand twin")
    if not options.profile:
        raise UsageError("name a profile or a GPU", "e.g. `gpuctl up a100-spot` or `gpuctl up --gpu A100:2`; "
                                                    "`gpuctl profiles` lists them")
    return get_profile(ctx.profiles, options.profile)


def plan_vm(ctx: Context, options: UpOptions, *, with_resources: bool = True) -> VmPlan:
    profile = _profile_for(ctx, options)
    if profile.machine_type not in MACHINES:
        raise RuleViolation(f"profile {profile.name}: machine type {profile.machine_type} is not "
                            "known to gpuctl", f"use one of: {', '.join(sorted(MACHINES))}")
    choices, region_reason = choose_zones(profile, options, ctx)
    profile = _with_model(profile, choices[0].model)
    region = choices[0].region
    hourly = hourly_cost(profile, region, ctx.prices, iap=_iap(options, ctx))
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
    spec = build_spec(ctx, profile, options, choices[0].zone, guards)
    rules.check(spec)
    kept = []
    for choice in choices:  # every zone failover may try must pass the rules too
        problems = rules.violations(choice_spec(spec, choice))
        if not problems:
            kept.append(choice)
        elif choice.model == spec.provisioning_model:
            rules.check_failed(problems)
        else:  # a fallback model these guards do not fit (flex-start: at most 7 days, no stop)
            warnings.append(f"{MODEL_NAMES[choice.model]} in {choice.zone} left out: "
                            f"{problems[0].message} ({problems[0].hint})")
    warnings = list(dict.fromkeys(warnings))
    plan = VmPlan(
        profile=profile, spec=spec, zones=[c.zone for c in kept], guards=guards, hourly=hourly,
        forgotten=forgotten_table(hourly, guards.exposure()),
        steps=provisioning_steps(profile, guards, ctx.config.time_zone, idle),
        budget_usd=budget_usd, warnings=warnings, choices=kept, region_reason=region_reason,
        currency=ctx.currency, checkpoints=checkpoints_setting(options, ctx),
    )
    if spec.iap:
        from .lifecycle.shared_nat import plan_info

        plan.cloud_nat = plan_info(ctx, spec.region, spec.network, ctx.config.project)
    if with_resources:
        plan.resources = planned_resources(spec, with_shared_nat=bool(plan.cloud_nat)
                                           and plan.cloud_nat["action"] == "create")
    return plan


def _with_zone(spec: VmSpec, zone: str) -> VmSpec:
    return replace(spec, zone=zone)


def choice_spec(spec: VmSpec, choice: ZoneChoice) -> VmSpec:
    """The spec `up` applies for one zone choice (its zone and provisioning model)."""
    return replace(spec, zone=choice.zone, spot=choice.model == "SPOT",
                   flex_start=choice.model == "FLEX_START")


def planned_resources(spec: VmSpec, with_shared_nat: bool = False) -> list:
    """Run the VM program under Pulumi mocks; imported lazily (pulumi is slow to import). With
    with_shared_nat (an --iap VM whose region has no shared Cloud NAT yet), the NAT program's
    resources first: up applies that program, in its own stack, before the VM's."""
    from gpuctl_infra.gpu_vm import GpuVm
    from gpuctl_infra.mock_run import run_under_mocks

    def program() -> None:
        if with_shared_nat:
            from gpuctl_infra.nat_program import SharedNat
            from gpuctl_infra.shared_nat import NatSpec

            SharedNat(NatSpec(region=spec.region, network=spec.network, project=spec.project,
                              owner=spec.labels.get("gpuctl-owner", "gpuctl")))
        GpuVm(spec)

    return run_under_mocks(program, project=spec.project or "gpuctl-offline", stack=spec.name)


def plan_to_dict(plan: VmPlan, ctx: Context) -> dict:
    cur = ctx.currency
    return {
        "profile": plan.profile.name,
        "name": plan.spec.name,
        "region": plan.spec.region,
        "zone": plan.spec.zone,
        "zones_to_try": plan.zones,
        "choices": [c.as_dict() for c in plan.choices],
        "region_reason": plan.region_reason,
        "spot": plan.profile.spot,
        "provisioning_model": MODEL_NAMES[plan.spec.provisioning_model],
        "resources": [{"type": r.type, "name": r.name, "inputs": r.inputs} for r in plan.resources],
        "provisioning": [s.as_dict() for s in plan.steps],
        "guards": [g.as_dict() for g in plan.guards.guards],
        "worst_case": plan.worst_case,
        "checkpoint_access": checkpoint_access(plan.spec, ctx.config.project),
        "cloud_nat": plan.cloud_nat,
        "warnings": list(plan.warnings),
        "cost": cost_dict(plan.hourly, plan.forgotten, ctx),
        "versions": {"os": plan.profile.os, "driver": plan.profile.driver,
                     "cuda": plan.profile.cuda, "python": plan.profile.python},
        **({"budget_usd": round(plan.budget_usd, 2),
            "budget": show_money(plan.budget_usd, cur)} if plan.budget_usd is not None else {}),
        "currency": cur.as_dict(),
    }


def cost_dict(hourly: HourlyCost, forgotten: list[ForgottenRow], ctx: Context) -> dict:
    return {
        "region": hourly.region,
        "spot": hourly.spot,
        "hourly_usd": round(hourly.running, 4),
        "model": MODEL_NAMES[hourly.model],
        "unpriced": list(hourly.unknown),
        "price_notes": list(hourly.notes),
        "stopped_hourly_usd": round(hourly.stopped, 4),
        "breakdown": [line.as_dict() for line in hourly.lines],
        "forgotten": [row.as_dict() for row in forgotten],
        "prices_as_of": ctx.prices.as_of.isoformat(),
        "prices_source": ctx.prices.source,
        "display": {"currency": ctx.currency.code, "hourly": round(ctx.currency.convert(hourly.running), 2),
                    "rate": ctx.currency.rate, "rate_as_of": ctx.currency.as_of},
    }

