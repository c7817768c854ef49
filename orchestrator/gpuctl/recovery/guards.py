"""Guards of a `run --recover` run, across every replacement together.

One VM at a time: the group's targetSize is 1 and a preempted VM is deleted with its disks
(instanceTerminationAction DELETE), so at any moment at most one VM of the run bills. Two
server-side limits end them all:
  * the deadline, a Cloud Scheduler job that deletes the whole managed instance group at
    start + min(--ttl, budget / hourly rate) (recovery/deadline.py);
  * the hard cap, the instance template's scheduling.terminationTime: the same absolute time
    for every replacement, enforced by GCE itself if the job never runs (and GCE refuses to
    create a VM whose termination time has passed, so the group cannot start another).
So the worst case is the deadline's hours at the hourly rate, however often Google preempts.
Preemptions cost time, not extra money beyond that cap: each one adds the replacement's
start-up and the steps redone since the last checkpoint, and the plan says how many of them
the deadline can absorb before the run cannot finish.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass

from ..errors import UsageError

DEFAULT_PREEMPTIONS = 3
# A replacement's way back: VM creation, boot, NVMe format, code and checkpoint download
# (GCP_FACTS: GKE GPU nodes take 4-10 min from zero; a VM image with drivers, a similar figure).
DEFAULT_RESTART_MINUTES = 10.0


@dataclass(frozen=True)
class RecoverPlan:
    price_per_hour: float  # one VM of the run, all in (host, GPU, local SSD, boot disk)
    deadline_hours: float  # the Scheduler job deletes the group then; the template's cap too
    deadline_reason: str  # "ttl" or "budget"
    worst_case_usd: float  # deadline_hours x price: every replacement billed, one at a time
    preemptions: int  # the N the plan is sized for
    restart_minutes: float  # per preemption: a replacement's start-up
    redo_minutes: float  # per preemption: steps since the last checkpoint, done again
    run_hours: float | None  # the run's own length with no preemption, when known
    hours_with_preemptions: float | None  # run_hours + N x (restart + redo)
    cost_with_preemptions_usd: float | None
    preemptions_absorbed: int | None  # how many the deadline allows before the run cannot finish
    finishes: bool | None  # whether N preemptions still fit before the deadline

    def as_dict(self) -> dict:
        return asdict(self)


def plan_recovery(price_per_hour: float, *, ttl_hours: float | None = None, budget_usd: float | None = None,
                  run_hours: float | None = None, preemptions: int = DEFAULT_PREEMPTIONS,
                  restart_minutes: float = DEFAULT_RESTART_MINUTES,
                  checkpoint_minutes: float | None = None) -> RecoverPlan:
    """The worst case before anything exists. `checkpoint_minutes`: how often the run saves;
    a preemption redoes at most that much (the default assumes the trainer saves on SIGTERM
    only every interval, i.e. the full interval is lost)."""
    if price_per_hour <= 0:
        raise UsageError("--recover needs the VM's hourly price", "pass --profile or --price-per-hour")
    if preemptions < 0:
        raise UsageError("--preemptions must be 0 or more", "e.g. --preemptions 3")
    limits = []
    if ttl_hours:
        limits.append((ttl_hours, "ttl"))
    if budget_usd:
        limits.append((budget_usd / price_per_hour, "budget"))
    if not limits:
        raise UsageError("--recover needs a limit across all replacements",
                         "pass --budget USD or --timeout/--ttl HOURS (the group is deleted then)")
    deadline_hours, reason = min(limits)
    redo = checkpoint_minutes if checkpoint_minutes is not None else 30.0
    per_preemption_h = (restart_minutes + redo) / 60
    longer = cost = absorbed = fits = None
    if run_hours is not None:
        longer = run_hours + preemptions * per_preemption_h
        cost = longer * price_per_hour
        spare = deadline_hours - run_hours
        absorbed = max(0, math.floor(spare / per_preemption_h)) if per_preemption_h > 0 else None
        fits = longer <= deadline_hours
    return RecoverPlan(
        price_per_hour=price_per_hour, deadline_hours=deadline_hours, deadline_reason=reason,
        worst_case_usd=round(deadline_hours * price_per_hour, 4), preemptions=preemptions,
        restart_minutes=restart_minutes, redo_minutes=redo, run_hours=run_hours,
        hours_with_preemptions=None if longer is None else round(longer, 4),
        cost_with_preemptions_usd=None if cost is None else round(cost, 4),
        preemptions_absorbed=absorbed, finishes=fits)


def deadline_at(start: dt.datetime, plan: RecoverPlan) -> dt.datetime:
    return start + dt.timedelta(hours=plan.deadline_hours)


def termination_time(start: dt.datetime, plan: RecoverPlan) -> str:
    """The template's hard cap, RFC 3339 UTC, whole minutes (never later than the deadline)."""
    when = deadline_at(start, plan).astimezone(dt.timezone.utc).replace(second=0, microsecond=0)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
