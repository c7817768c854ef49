"""`gpuctl up --iap` and `down` through the real Pulumi engine and the gcp provider double: the
Compute stand-in sees the region's shared Cloud Router and its NAT made by the first `--iap` VM,
joined by the next, and removed by the `down` of the last; an instance with no access config,
and a firewall rule for IAP's range only; gpuctl reaches the VM (a real throwaway host) through
the test gcloud's IAP tunnel, verifying the host key pinned under the VM's name. `sweep` finds a
shared NAT no VM uses; a VM made before the NAT was shared still goes with its own NAT."""

from __future__ import annotations

import pytest

from gpuctl.errors import GpuctlError
from gpuctl.hosts import connect
from gpuctl.lifecycle import hostkeys, records, shared_nat
from gpuctl.lifecycle.deps import VM_PROJECT
from gpuctl.lifecycle.down import down_vm
from gpuctl.lifecycle.status import status_all
from gpuctl.lifecycle.sweep import delete_leftovers, find_leftovers
from gpuctl.lifecycle.up import up_vm
from tests.gcp_provider.fixtures import stack_state, state_file
from tests.standins.compute import compute_standin  # noqa: F401 (fixture)
from tests.test_iap import documented_argv, fake_gcloud  # noqa: F401 (fixture)
from tests.test_lifecycle_live import NAME, PROJECT, live, nothing_left, plan_for, scheduler  # noqa: F401

ROUTER = "gpuctl-nat-us-central1"  # the shared router (and NAT) of us-central1, network default
NAT_STACK = f"{ROUTER}.{PROJECT}"
SECOND = "alice-second"


def nat_stacks(deps) -> list[str]:
    return shared_nat.nat_engine(deps).list_stacks()


def shared_router(standin) -> dict:
    (router,) = standin.routers()
    assert router["name"] == ROUTER and router["region"].endswith("/regions/us-central1")
    assert router["nats"] == [{"name": ROUTER, "natIpAllocateOption": "AUTO_ONLY",
                               "sourceSubnetworkIpRangesToNat": "ALL_SUBNETWORKS_ALL_IP_RANGES"}]
    return router


def up_iap(ctx, deps, fake_gcloud, monkeypatch, name: str = NAME, events: list | None = None):
    deps.standin.nat_ips.pop(name, None)  # nothing to hand out: the VM asks for no external address
    fake_gcloud.route(monkeypatch, PROJECT, "us-central1-a", name, deps.host.address)
    on_event = (lambda kind, text: events.append((kind, text))) if events is not None else None
    return up_vm(ctx, plan_for(ctx, iap=True, name=name), deps, on_event=on_event).record


def test_up_and_down_with_iap_make_and_remove_the_shared_router_and_its_nat(ctx, live, fake_gcloud,
                                                                         monkeypatch):
    standin = live.standin
    events: list = []
    record = up_iap(ctx, live, fake_gcloud, monkeypatch, events=events)
    assert record.state == "ready" and record.iap and record.address is None
    assert records.load(NAME).iap  # what later commands read to go through IAP
    assert ("apply", f"creating the shared Cloud NAT {ROUTER} in us-central1") in events
    resources = stack_state(VM_PROJECT, NAME)["checkpoint"]["latest"]["resources"]
    (stack,) = [r for r in resources if r["type"] == "pulumi:pulumi:Stack"]
    assert stack["outputs"]["iap"] is True  # the choice, next to the VM in the stack's outputs
    assert not [r for r in resources if r["type"].startswith("gcp:compute/router")]  # not the VM's
    nat_state = stack_state(shared_nat.NAT_PROJECT, NAT_STACK)["checkpoint"]["latest"]["resources"]
    assert {r["type"] for r in nat_state} >= {"gcp:compute/router:Router", "gcp:compute/routerNat:RouterNat"}

    sent = standin.calls("instances.insert")[-1].body
    assert [nic.get("accessConfigs", []) for nic in sent["networkInterfaces"]] == [[]]
    assert not any(nic.get("accessConfigs") for nic in standin.instance(NAME)["networkInterfaces"])
    assert standin.instance(NAME)["labels"]["gpuctl-nat"] == ROUTER
    (firewall,) = standin.firewalls()
    assert firewall["sourceRanges"] == ["35.235.240.0/20"]
    router = shared_router(standin)
    assert "gpuctl-kind=nat" in router["description"]
    # The NAT was there before the VM was asked for: it boots with its way out.
    rpcs = standin.rpcs
    assert rpcs.index("routers.patch") < rpcs.index("instances.insert")
    assert standin.labelled_resources("gpuctl-name", NAME).get("routers") is None
    assert standin.contract_violations == []

    # up reached the VM through the tunnel, and so does every later command.
    assert fake_gcloud.calls() and set(map(tuple, fake_gcloud.calls())) == {
        tuple(documented_argv(NAME, "us-central1-a", PROJECT))}
    host, _ = connect(NAME)
    with host:
        assert host.run("id -un").stdout.strip() == "gpuctl"
    assert f"{NAME} ssh-" in hostkeys.known_hosts_path().read_text()
    (row,) = status_all(live)
    assert row["iap"] is True and row["address"] is None and row["state"] == "running"

    done = down_vm(NAME, live)
    assert done.existed and done.deleted_directly == []
    assert standin.routers() == [] and nothing_left(standin)
    assert not any(line.startswith(f"{NAME} ") for line in hostkeys.known_hosts_path().read_text().splitlines())
    assert records.load(NAME) is None and live.engine.list_stacks() == [] and nat_stacks(live) == []


def test_two_iap_vms_in_one_region_share_one_nat_and_the_last_down_removes_it(ctx, live, fake_gcloud,
                                                                              monkeypatch):
    """One all-ranges NAT per network and region (compute.v1.json): the second `--iap` VM of
    us-central1 joins the first one's NAT instead of being refused."""
    standin = live.standin
    up_iap(ctx, live, fake_gcloud, monkeypatch)
    events: list = []
    second = up_iap(ctx, live, fake_gcloud, monkeypatch, name=SECOND, events=events)
    assert second.state == "ready" and second.zone.startswith("us-central1")
    assert ("apply", f"joining the shared Cloud NAT {ROUTER} in us-central1") in events
    shared_router(standin)  # still one router with one NAT
    assert len(standin.calls("routers.insert")) == 1 and standin.contract_violations == []
    assert {standin.instance(n)["labels"]["gpuctl-nat"] for n in (NAME, SECOND)} == {ROUTER}
    assert len(standin.firewalls()) == 2

    events = []
    down_vm(NAME, live, on_event=lambda kind, text: events.append((kind, text)))
    assert ("nat", f"keeping the shared Cloud NAT {ROUTER}: in use by {SECOND}") in events
    shared_router(standin)  # the second VM still leaves through it
    assert nothing_left(standin) and nat_stacks(live) == [NAT_STACK]
    host, _ = connect(SECOND)
    with host:
        assert host.run("true").ok

    done = down_vm(SECOND, live)
    assert done.deleted_directly == []  # the NAT's own stack removed it
    assert standin.routers() == [] and nothing_left(standin, SECOND) and nothing_left(standin)
    assert standin.labelled_resources("gpuctl-managed") == {}
    assert nat_stacks(live) == [] and live.engine.list_stacks() == [] and records.all_records() == []


def test_google_still_refuses_a_second_all_ranges_nat_in_the_region(ctx, live):
    """The rule the sharing exists for: another router's all-ranges NAT next to the shared one
    is refused by the stand-in as compute.v1.json says (GOOGLE_RULES.md)."""
    from google.api_core import exceptions
    from google.cloud import compute_v1

    spec = shared_nat.nat_spec(PROJECT, "us-central1")
    assert shared_nat.ensure(live, spec, lambda kind, text: None) == "created"
    routers = live.standin.client(compute_v1.RoutersClient)
    with pytest.raises(exceptions.BadRequest, match="ALL_SUBNETWORKS_ALL_IP_RANGES"):
        routers.insert(project=PROJECT, region="us-central1", router_resource=compute_v1.Router(
            name="other-router", network="global/networks/default", nats=[compute_v1.RouterNat(
                name="other-nat", nat_ip_allocate_option="AUTO_ONLY",
                source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES")])).result()
    assert shared_nat.ensure(live, spec, lambda kind, text: None) == "joined"  # no second pulumi up
    assert shared_nat.release(live, PROJECT, "us-central1", lambda kind, text: None) == []
    assert live.standin.routers() == [] and nat_stacks(live) == []


def test_another_laptops_nat_made_at_the_same_moment_is_joined(ctx, live, fake_gcloud, monkeypatch):
    """Two `up`s at once from two Pulumi backends: the other one's router lands between this
    one's read and its insert, so this insert is refused (the name is taken: 409); `up` reads
    the region again and joins. This laptop has no stack of it, so the last `down` deletes it
    through the API."""
    from google.cloud import compute_v1

    real_read = shared_nat._read
    raced = []

    def read_then_lose_the_race(deps, spec):
        if not raced:  # this up's first look: nothing there yet; then the other laptop makes it
            raced.append(spec)
            routers = deps.standin.client(compute_v1.RoutersClient)
            routers.insert(project=PROJECT, region=spec.region, router_resource=compute_v1.Router(
                name=spec.router, network="global/networks/default",
                description="gpuctl gpuctl-kind=nat gpuctl-managed=true "
                            f"gpuctl-name={spec.router} gpuctl-owner=bob",
                nats=[compute_v1.RouterNat(name=spec.nat, nat_ip_allocate_option="AUTO_ONLY",
                                           source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES")])
            ).result()
            return None, []
        return real_read(deps, spec)

    monkeypatch.setattr(shared_nat, "_read", read_then_lose_the_race)
    events: list = []
    record = up_iap(ctx, live, fake_gcloud, monkeypatch, events=events)
    assert record.state == "ready"
    assert ("apply", f"the shared Cloud NAT {ROUTER} was made meanwhile; joining it") in events
    assert len(live.standin.calls("routers.insert")) == 2  # bob's, and this up's refused one
    assert "bob" in shared_router(live.standin)["description"]
    done = down_vm(NAME, live)
    assert done.deleted_directly == [f"router/{ROUTER}"]
    assert live.standin.routers() == [] and nothing_left(live.standin) and nat_stacks(live) == []


def test_a_shared_nat_no_vm_uses_is_found_and_removed_by_sweep(ctx, live, fake_gcloud, monkeypatch):
    up_iap(ctx, live, fake_gcloud, monkeypatch)
    found = [f for f in find_leftovers(ctx, live) if f.vm == shared_nat.CLOUD_NAT_VM]
    assert [(f.kind, f.resource.kind, f.resource.name, f.stack) for f in found] == [
        ("tracked", "router", ROUTER, NAT_STACK)]  # in use: left alone
    # A `down` interrupted after the VM went and before its NAT did (or an older gpuctl's).
    with monkeypatch.context() as interrupted:
        interrupted.setattr(shared_nat, "release", lambda *args, **kwargs: [])
        down_vm(NAME, live)
    shared_router(live.standin)
    found = find_leftovers(ctx, live)
    assert [(f.kind, f.vm, f.resource.kind, f.resource.location, f.stack) for f in found] == [
        ("orphan", shared_nat.CLOUD_NAT_VM, "router", "us-central1", NAT_STACK)]
    assert found[0].as_dict()["stack"] == NAT_STACK
    deleted = delete_leftovers(found, live)
    assert deleted == [f"router/{ROUTER}"]
    assert live.standin.routers() == [] and nat_stacks(live) == [] and find_leftovers(ctx, live) == []


def test_a_nat_stack_whose_router_is_gone_is_a_stale_stack_for_sweep(ctx, live, fake_gcloud, monkeypatch):
    from google.cloud import compute_v1

    spec = shared_nat.nat_spec(PROJECT, "us-central1")
    shared_nat.ensure(live, spec, lambda kind, text: None)
    routers = live.standin.client(compute_v1.RoutersClient)
    routers.delete(project=PROJECT, region="us-central1", router=ROUTER).result()  # outside gpuctl
    found = find_leftovers(ctx, live)
    assert [(f.kind, f.vm, f.resource, f.stack) for f in found] == [
        ("stale-stack", shared_nat.CLOUD_NAT_VM, None, NAT_STACK)]
    assert delete_leftovers(found, live) == [f"stack/{shared_nat.NAT_PROJECT}/{NAT_STACK}"]
    assert nat_stacks(live) == [] and find_leftovers(ctx, live) == []


def test_down_finds_the_router_by_its_labels_when_the_engine_lost_its_state(ctx, live, fake_gcloud,
                                                                            monkeypatch):
    up_iap(ctx, live, fake_gcloud, monkeypatch)
    state_file(VM_PROJECT, NAME).unlink()  # a wiped laptop: only the labels say what is ours
    state_file(shared_nat.NAT_PROJECT, NAT_STACK).unlink()
    result = down_vm(NAME, live)
    assert f"router/{ROUTER}" in result.deleted_directly
    assert result.deleted_directly.index(f"instance/{NAME}") < \
        result.deleted_directly.index(f"router/{ROUTER}")  # the NAT outlives its VM's use
    assert live.standin.routers() == [] and nothing_left(live.standin)


def old_style_program(spec):
    """The VM program of the previous gpuctl: its own Cloud Router and NAT inside its stack."""
    def program() -> None:
        import pulumi
        import pulumi_gcp as gcp
        from gpuctl_infra.gpu_vm import GpuVm, labels_as_description

        vm = GpuVm(spec)
        router = gcp.compute.Router(f"{spec.name}-router", name=f"{spec.name}-router", region=spec.region,
                                    network=spec.network, description=labels_as_description(spec.labels),
                                    project=spec.project)
        gcp.compute.RouterNat(f"{spec.name}-nat", name=f"{spec.name}-nat", router=router.name,
                              region=spec.region, nat_ip_allocate_option="AUTO_ONLY",
                              source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
                              project=spec.project)
        pulumi.export("instance_name", vm.instance.name)
        pulumi.export("iap", spec.iap)
    return program


def test_a_vm_with_its_own_nat_from_the_previous_version_still_goes_with_down(ctx, live, fake_gcloud,
                                                                             monkeypatch):
    from gpuctl.lifecycle import up as up_module

    with monkeypatch.context() as old_gpuctl:
        old_gpuctl.setattr(up_module, "vm_program", old_style_program)
        old_gpuctl.setattr(shared_nat, "ensure", lambda deps, spec, emit: "created")  # it had none
        up_iap(ctx, live, fake_gcloud, monkeypatch)
    assert [r["name"] for r in live.standin.routers()] == [f"{NAME}-router"]
    # Its NAT covers the region: a new --iap VM there is refused in one line naming the fix,
    # and leaves nothing behind.
    with pytest.raises(GpuctlError) as caught:
        up_iap(ctx, live, fake_gcloud, monkeypatch, name=SECOND)
    assert caught.value.message.startswith(f"VM {NAME} (made by an earlier gpuctl) has a Cloud NAT of its own")
    assert f"gpuctl down {NAME}" in caught.value.hint and "\n" not in caught.value.message
    assert nothing_left(live.standin, SECOND) and records.load(SECOND) is None and nat_stacks(live) == []
    assert [r["name"] for r in live.standin.routers()] == [f"{NAME}-router"]

    done = down_vm(NAME, live)
    assert done.deleted_directly == []  # its own stack destroyed its router and NAT
    assert live.standin.routers() == [] and nothing_left(live.standin) and nat_stacks(live) == []
