"""The shared Cloud NAT of `--iap` VMs: made or joined by `up`, removed by the `down` of the last
VM using it, listed by `sweep` when no VM uses it any more.

Google allows one NAT covering all subnet ranges per network and region (compute.v1.json,
RouterNat.sourceSubnetworkIpRangesToNat: "if this field contains ALL_SUBNETWORKS_ALL_IP_RANGES
then there should not be any other Router.Nat section in any Router for this network in this
region"), so every `--iap` VM of a region shares one: the program in gpuctl_infra/shared_nat.py,
in a stack of its own (Pulumi project NAT_PROJECT, stack `<router>.<project>`), never inside a
VM's stack. VMs made before the NAT was shared keep theirs inside their own stack, and their
`down` destroys it with them.

Who uses it is read where it is true for everyone, not only on this laptop: Google's list of
instances carrying NAT_LABEL=<router> (a VM stopped by a guard still counts: it exists), plus
this machine's records of `up`s still creating a VM in that region (intent recorded, instance
not inserted yet). Two `up`s at once: the same laptop's wait on the stack's lock; another
laptop's (its own Pulumi backend) has its router insert refused as already existing, or its NAT
refused by the rule above; either way `up` reads the region again and joins what is there.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from gpuctl_infra.shared_nat import ALL_RANGES, KIND, NAT_LABEL, NatSpec

from ..adapters.compute import ResourceView, RouterView
from ..adapters.pulumi_engine import StackError
from ..errors import GpuctlError
from . import records

OnEvent = Callable[[str, str], None]
NAT_PROJECT = "gpuctl-nat"  # the Pulumi project of shared NAT stacks (VM stacks: gpuctl-vm)
CLOUD_NAT_VM = "(cloud-nat)"  # what sweep's vm column says for a shared NAT
ENSURE_ATTEMPTS = 6  # another up holding the stack's lock, or making the router right now
ENSURE_WAIT_S = 2.0


def nat_spec(project: str | None, region: str, network: str = "default", owner: str = "gpuctl") -> NatSpec:
    return NatSpec(region=region, network=network, project=project, owner=owner)


def stack_name(spec: NatSpec) -> str:
    return stack_for(spec.router, spec.project or "")


def stack_for(router: str, project: str) -> str:
    """<router>.<project>: one project's NAT never shares a stack with another's (a stack name
    may hold periods; a GCE name may not, so it cannot be mistaken for a router)."""
    return f"{router}.{project}"


def nat_engine(deps):
    """The engine for shared NAT stacks: the VM engine's backend, Pulumi project NAT_PROJECT, so
    VM stacks stay one per VM (down, sweep and status read them as VMs)."""
    engine = getattr(deps, "nat_engine", None)
    if engine is not None:
        return engine
    from ..adapters.pulumi_engine import AutomationEngine

    if isinstance(deps.engine, AutomationEngine):
        return replace(deps.engine, project=NAT_PROJECT)
    return deps.engine


def nat_program(spec: NatSpec) -> Callable[[], None]:
    def program() -> None:
        import pulumi
        from gpuctl_infra.nat_program import SharedNat

        nat = SharedNat(spec)
        pulumi.export("router", nat.router.name)
        pulumi.export("region", spec.region)
    return program


def is_shared_nat(resource: ResourceView) -> bool:
    """A shared NAT's router (gpuctl-kind=nat), as opposed to a VM's own resources."""
    return resource.kind == "router" and resource.labels.get("gpuctl-kind") == KIND


# --- what is there ---------------------------------------------------------------------------

def _read(deps, spec: NatSpec) -> tuple[RouterView | None, list[RouterView]]:
    """(the shared router if Google has it, every other router of the network in the region with
    a NAT: each one makes a second all-ranges NAT impossible)."""
    ours, others = None, []
    for router in deps.compute.region_routers(spec.region):
        if router.network != spec.network.rsplit("/", 1)[-1]:
            continue
        if router.name == spec.router and router.labels.get("gpuctl-kind") == KIND:
            ours = router
        elif router.nats or router.name == spec.router:
            others.append(router)
    return ours, others


def _complete(router: RouterView | None, spec: NatSpec) -> bool:
    return router is not None and (spec.nat, ALL_RANGES) in router.nats


def users(deps, project: str, region: str, router: str, *, excluding: str | None = None,
          instances: list | None = None, ignore_records: set[str] = frozenset()) -> list[str]:
    """The VMs using shared NAT `router`: instances carrying its label (Google's list, every
    laptop's), and this machine's `up`s still creating a VM in the region. `instances`: labelled
    instances already read (sweep), instead of reading them again."""
    if instances is None:
        instances = deps.compute.labelled_instances({"gpuctl-managed": "true", NAT_LABEL: router})
    names = {i.name for i in instances if i.labels.get(NAT_LABEL) == router}
    names |= {r.name for r in records.all_records()
              if r.iap and r.state == "creating" and r.project == project and r.region == region
              and r.name not in ignore_records}
    names.discard(excluding)
    return sorted(names)


# --- up: make it or join it --------------------------------------------------------------------

def ensure(deps, spec: NatSpec, emit: OnEvent) -> str:
    """The shared NAT of spec's network and region exists when this returns: "joined" when it
    was there (or another `up` made it meanwhile), "created" when this call made it."""
    ours, others = _read(deps, spec)
    if _complete(ours, spec):
        emit("apply", f"joining the shared Cloud NAT {spec.router} in {spec.region}")
        return "joined"
    if others:
        raise occupied(spec, others)
    engine, stack = nat_engine(deps), stack_name(spec)
    if ours is None and stack in engine.list_stacks():
        # This backend's state lists a router Google no longer has (deleted outside gpuctl, or
        # by another laptop's `down`): `pulumi up` would see nothing to do. Start afresh.
        emit("apply", f"the shared Cloud NAT {spec.router} was deleted outside this stack; recreating it")
        try:
            engine.destroy(stack)
            engine.remove(stack)
        except StackError as exc:
            if not _busy(exc):
                raise
            # Another `up` here holds the stack: it is making the NAT now; wait for it below.
    emit("apply", f"creating the shared Cloud NAT {spec.router} in {spec.region}")
    failure: StackError | None = None
    for attempt in range(ENSURE_ATTEMPTS):
        try:
            engine.up(stack, nat_program(spec), {"gcp:project": spec.project or deps.project,
                                                 "gcp:region": spec.region})
        except StackError as exc:
            failure = exc
            ours, others = _read(deps, spec)
            if _complete(ours, spec):  # another up made it at the same time: use it
                emit("apply", f"the shared Cloud NAT {spec.router} was made meanwhile; joining it")
                return "joined"
            if others:
                raise occupied(spec, others) from None
            if ours is not None or _busy(exc):  # being made right now, or this stack is locked
                deps.sleep(ENSURE_WAIT_S * 2 ** attempt)
                continue
            break
        else:
            if _complete(_read(deps, spec)[0], spec):
                return "created"
            failure = None
            break
    from .failover import short_reason

    reason = short_reason(failure.detail) if failure is not None else "it is not there after `pulumi up`"
    raise GpuctlError(f"the shared Cloud NAT {spec.router} in {spec.region} could not be made: {reason}",
                      "rerun `gpuctl up`; `gpuctl sweep` lists what is left")


def still_there(deps, spec: NatSpec) -> bool:
    """Is the shared NAT (router and its NAT) in place? One routers.list."""
    return _complete(_read(deps, spec)[0], spec)


def _busy(exc: StackError) -> bool:
    text = f"{exc.message}\n{exc.detail}"
    return "is working on" in text or "currently locked" in text


def occupied(spec: NatSpec, others: list[RouterView]) -> GpuctlError:
    """Another NAT covers the network in the region, so Google refuses the shared one."""
    old = sorted(r.labels["gpuctl-name"] for r in others
                 if r.labels.get("gpuctl-managed") == "true" and r.labels.get("gpuctl-name")
                 and r.labels.get("gpuctl-kind") != KIND)
    if old:
        return GpuctlError(
            f"VM {old[0]} (made by an earlier gpuctl) has a Cloud NAT of its own in {spec.region}, and "
            f"Google allows no second NAT for all subnet ranges of network {spec.network} there",
            f"`gpuctl down {old[0]}` first (from then on, every --iap VM of the region shares one NAT), "
            "or pass --region to pick another region")
    names = ", ".join(f"{r.name} ({', '.join(n for n, _ in r.nats) or 'no NAT'})" for r in others)
    return GpuctlError(
        f"router {names} of network {spec.network} in {spec.region} is not gpuctl's shared Cloud NAT, "
        f"and Google allows no second NAT for all subnet ranges there",
        "pass --region to pick another region, or remove that NAT if it is unused")


# --- down and sweep: remove it when no VM uses it ---------------------------------------------

def _shared_routers(deps, region: str, router: str) -> list[RouterView]:
    return [r for r in deps.compute.region_routers(region)
            if r.name == router and r.labels.get("gpuctl-kind") == KIND]


def release(deps, project: str, region: str, emit: OnEvent, *, excluding: str | None = None,
            network: str = "default") -> list[str]:
    """Remove the shared NAT of `region` if no VM uses it (but `excluding`, the VM going away):
    destroy its stack, then delete through the API whatever is left (another laptop's NAT, or a
    state that lost it), verify, and forget the stack. Returns what was deleted directly."""
    spec = nat_spec(project, region, network)
    still = users(deps, project, region, spec.router, excluding=excluding)
    if still:
        emit("nat", f"keeping the shared Cloud NAT {spec.router}: in use by {', '.join(still)}")
        return []
    return remove_unused(deps, project, region, spec.router, emit)


def remove_unused(deps, project: str, region: str, router: str, emit: OnEvent) -> list[str]:
    """Destroy shared NAT `router`'s stack (when this backend has it), delete through the API what
    is still there, verify. Returns what was deleted directly."""
    engine, stack = nat_engine(deps), stack_for(router, project)
    has_stack = stack in engine.list_stacks()
    if has_stack:
        emit("destroy", f"removing the shared Cloud NAT {router}: no --iap VM in {region} uses it")
        try:
            engine.destroy(stack)
        except StackError as exc:
            emit("warn", f"pulumi destroy of {stack} failed ({exc.message}); deleting the router instead")
    deleted = []
    for found in _shared_routers(deps, region, router):
        emit("warn" if has_stack else "destroy", f"deleting the shared Cloud NAT's router {found.name}")
        deps.compute.delete(ResourceView("router", found.name, region, found.labels))
        deleted.append(f"router/{found.name}")
    if _shared_routers(deps, region, router):
        from .down import LeftoverError

        raise LeftoverError(f"the shared Cloud NAT {router} in {region} is still there",
                            "rerun the command; `gpuctl sweep --delete` removes it too")
    if has_stack:
        engine.remove(stack)
    return deleted


def local_stacks(deps, project: str) -> dict[str, str]:
    """This backend's shared NAT stacks of `project`: stack -> router name."""
    suffix = f".{project}"
    return {s: s[:-len(suffix)] for s in nat_engine(deps).list_stacks() if s.endswith(suffix)}


# --- the plan ----------------------------------------------------------------------------------

def plan_info(ctx, region: str, network: str, project: str | None) -> dict:
    """Whether `up` will create the region's shared NAT or join it, from what this machine knows
    offline: its records of --iap VMs there and its file backend's NAT stacks. A NAT another
    laptop made is found (and joined) only at apply time; the plan says so."""
    spec = nat_spec(project, region, network)
    known = sorted(r.name for r in records.all_records()
                   if r.iap and r.region == region and r.state != "destroying"
                   and (project is None or r.project == project))
    stack = _known_stack(ctx, spec)
    action = "join" if known or stack else "create"
    if action == "join":
        using = f", in use by {', '.join(known)}" if known else " (its stack is here)"
        summary = (f"joins the shared Cloud NAT {spec.router} of {region}{using}; the `down` of the last "
                   f"--iap VM there removes it")
    else:
        summary = (f"creates the shared Cloud NAT {spec.router} of {region} (a router and its NAT, in a "
                   "stack of their own), shared by every --iap VM there; joins it instead if another "
                   "`up` made it first; the `down` of the last --iap VM there removes it")
    return {"action": action, "router": spec.router, "nat": spec.nat, "region": region,
            "network": network, "stack": f"{NAT_PROJECT}/{stack_name(spec)}" if project else None,
            "used_by": known, "summary": summary}


def _known_stack(ctx, spec: NatSpec) -> bool:
    """Is the NAT's stack in a file backend here? (Any other backend needs the CLI and
    credentials: a dry run asks neither, and says `create`.)"""
    from ..adapters.pulumi_engine import AutomationEngine

    engine = AutomationEngine(NAT_PROJECT, ctx.config.pulumi_backend)
    if engine._file_backend_dir() is None:
        return False
    stacks = engine.list_stacks()
    if spec.project:
        return stack_name(spec) in stacks
    return any(s.split(".", 1)[0] == spec.router for s in stacks)
