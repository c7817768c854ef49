"""`gpuctl up --iap` and `down` through the real Pulumi engine and the gcp provider double: the
Compute stand-in sees the Cloud Router and its NAT made and removed, an instance with no access
config, and a firewall rule for IAP's range only; gpuctl reaches the VM (a real throwaway host)
through the test gcloud's IAP tunnel, verifying the host key pinned under the VM's name."""

from __future__ import annotations

import pytest

from gpuctl.hosts import connect
from gpuctl.lifecycle import hostkeys, records
from gpuctl.lifecycle.deps import VM_PROJECT
from gpuctl.lifecycle.down import down_vm
from gpuctl.lifecycle.status import status_all
from gpuctl.lifecycle.up import up_vm
from tests.gcp_provider.fixtures import stack_state
from tests.standins.compute import compute_standin  # noqa: F401 (fixture)
from tests.test_iap import documented_argv, fake_gcloud  # noqa: F401 (fixture)
from tests.test_lifecycle_live import NAME, PROJECT, live, nothing_left, plan_for, scheduler  # noqa: F401


def test_up_and_down_with_iap_make_and_remove_the_router_and_its_nat(ctx, live, fake_gcloud, monkeypatch):
    standin = live.standin
    standin.nat_ips.pop(NAME, None)  # nothing to hand out: the VM asks for no external address
    fake_gcloud.route(monkeypatch, PROJECT, "us-central1-a", NAME, live.host.address)
    result = up_vm(ctx, plan_for(ctx, iap=True), live)
    record = result.record
    assert record.state == "ready" and record.iap and record.address is None
    assert records.load(NAME).iap  # what later commands read to go through IAP
    resources = stack_state(VM_PROJECT, NAME)["checkpoint"]["latest"]["resources"]
    (stack,) = [r for r in resources if r["type"] == "pulumi:pulumi:Stack"]
    assert stack["outputs"]["iap"] is True  # the choice, next to the VM in the stack's outputs
    assert {r["type"] for r in resources} >= {"gcp:compute/router:Router", "gcp:compute/routerNat:RouterNat"}

    sent = standin.calls("instances.insert")[-1].body
    assert [nic.get("accessConfigs", []) for nic in sent["networkInterfaces"]] == [[]]
    assert not any(nic.get("accessConfigs") for nic in standin.instance(NAME)["networkInterfaces"])
    (firewall,) = standin.firewalls()
    assert firewall["sourceRanges"] == ["35.235.240.0/20"]
    (router,) = standin.routers()
    assert router["name"] == f"{NAME}-router" and router["region"].endswith("/regions/us-central1")
    assert router["nats"] == [{"name": f"{NAME}-nat", "natIpAllocateOption": "AUTO_ONLY",
                               "sourceSubnetworkIpRangesToNat": "ALL_SUBNETWORKS_ALL_IP_RANGES"}]
    assert standin.labelled_resources("gpuctl-name", NAME)["routers"] == [f"us-central1/{NAME}-router"]
    assert standin.calls("routers.patch")  # the NAT went in as the provider puts it: a router patch
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
    assert records.load(NAME) is None and live.engine.list_stacks() == []


def test_a_second_iap_vm_in_the_region_is_refused_by_the_nat_rule_and_rolled_back(
        ctx, live, fake_gcloud, monkeypatch):
    """GCE allows one all-ranges NAT per network and region (compute.v1.json); the refusal
    reaches the user in one line, and what the second `up` made is removed."""
    from gpuctl.errors import GpuctlError

    fake_gcloud.route(monkeypatch, PROJECT, "us-central1-a", NAME, live.host.address)
    up_vm(ctx, plan_for(ctx, iap=True), live)
    second = "alice-second"
    with pytest.raises(GpuctlError) as caught:
        up_vm(ctx, plan_for(ctx, iap=True, name=second), live)
    assert "ALL_SUBNETWORKS_ALL_IP_RANGES" in caught.value.message
    assert "\n" not in caught.value.message
    assert nothing_left(live.standin, second) and records.load(second) is None
    assert [r["name"] for r in live.standin.routers()] == [f"{NAME}-router"]
    down_vm(NAME, live)
    assert live.standin.routers() == [] and nothing_left(live.standin)


def test_down_finds_the_router_by_its_labels_when_the_engine_lost_its_state(ctx, live, fake_gcloud,
                                                                            monkeypatch):
    from tests.gcp_provider.fixtures import state_file

    live.standin.nat_ips.pop(NAME, None)
    fake_gcloud.route(monkeypatch, PROJECT, "us-central1-a", NAME, live.host.address)
    up_vm(ctx, plan_for(ctx, iap=True), live)
    state_file(VM_PROJECT, NAME).unlink()  # a wiped laptop: only the labels say what is ours
    result = down_vm(NAME, live)
    assert f"router/{NAME}-router" in result.deleted_directly
    assert result.deleted_directly.index(f"instance/{NAME}") < \
        result.deleted_directly.index(f"router/{NAME}-router")  # the NAT outlives its VM's use
    assert live.standin.routers() == [] and nothing_left(live.standin)
