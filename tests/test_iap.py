"""SSH through Identity-Aware Proxy (`gpuctl up --iap`): the program's inputs under Pulumi's mocks,
the plan's cost, the config key, and the SSH path through a test `gcloud` that checks its argv
against gcloud's documented form and relays to a real throwaway host's sshd.

The test gcloud stands in for `gcloud compute start-iap-tunnel INSTANCE_NAME INSTANCE_PORT
--listen-on-stdin --zone ZONE --project PROJECT`
(https://cloud.google.com/sdk/gcloud/reference/compute/start-iap-tunnel): anything else, it
refuses as gcloud would (exit 2, usage on stderr); an instance it has no backend for fails the
way IAP reports an unreachable backend (exit 1, "failed to connect to backend").
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuctl.cli.main import cli
from gpuctl.errors import GpuctlError
from gpuctl.lifecycle import hostkeys, records
from gpuctl.lifecycle.records import VmRecord
from gpuctl.plan import UpOptions, plan_to_dict, plan_vm
from gpuctl_infra.spec import IAP_TCP_FORWARDING_RANGE
from tests.standins.compute import compute_standin  # noqa: F401 (fixture)
from tests.test_vm_program import LABELS, resources, spec

FAKE_GCLOUD = r'''#!{python}
"""A test gcloud: only `compute start-iap-tunnel`, relaying stdin/stdout to a backend's port."""
import json, os, socket, sys, threading
argv = sys.argv[1:]
with open(os.environ["GPUCTL_TEST_GCLOUD_LOG"], "a") as log:
    log.write(json.dumps(argv) + "\n")
form = (len(argv) == 9 and argv[:2] == ["compute", "start-iap-tunnel"] and argv[4] == "--listen-on-stdin"
        and argv[5] == "--zone" and argv[7] == "--project" and argv[3].isdigit())
if not form:
    sys.stderr.write("ERROR: (gcloud.compute.start-iap-tunnel) unrecognized arguments: %s\n" % " ".join(argv))
    sys.exit(2)
instance, port = argv[2], int(argv[3])
backends = json.loads(os.environ.get("GPUCTL_TEST_IAP_BACKENDS", "{{}}"))
key = "%s/%s/%s" % (argv[8], argv[6], instance)
if key not in backends:
    sys.stderr.write("Testing if tunnel connection works.\n")
    sys.stderr.write("ERROR: (gcloud.compute.start-iap-tunnel) Error while connecting "
                     "[4003: 'failed to connect to backend'].\n")
    sys.exit(1)
sock = socket.create_connection((backends[key], port), timeout=10)
sock.settimeout(None)

def inbound():
    while True:
        data = os.read(0, 65536)
        if not data:
            sock.shutdown(socket.SHUT_WR)
            return
        sock.sendall(data)

threading.Thread(target=inbound, daemon=True).start()
while True:
    data = sock.recv(65536)
    if not data:
        break
    os.write(1, data)
'''


@dataclass
class FakeGcloud:
    bin_dir: Path
    log: Path

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def route(self, monkeypatch, project: str, zone: str, instance: str, address: str) -> None:
        backends = json.loads(os.environ.get("GPUCTL_TEST_IAP_BACKENDS", "{}"))
        backends[f"{project}/{zone}/{instance}"] = address
        monkeypatch.setenv("GPUCTL_TEST_IAP_BACKENDS", json.dumps(backends))


@pytest.fixture
def fake_gcloud(tmp_path, monkeypatch) -> FakeGcloud:
    """A `gcloud` first on PATH: the only one any test here can reach."""
    bin_dir = tmp_path / "gcloud-bin"
    bin_dir.mkdir()
    script = bin_dir / "gcloud"
    script.write_text(FAKE_GCLOUD.format(python=sys.executable))
    script.chmod(0o755)
    log = tmp_path / "gcloud-calls.jsonl"
    monkeypatch.setenv("GPUCTL_TEST_GCLOUD_LOG", str(log))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return FakeGcloud(bin_dir, log)


@pytest.fixture
def no_gcloud(monkeypatch):
    """PATH without any directory that holds a gcloud (the test hosts' tools stay reachable)."""
    kept = [d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "gcloud").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(kept))
    import shutil

    assert shutil.which("gcloud") is None


def documented_argv(instance: str, zone: str, project: str) -> list[str]:
    return ["compute", "start-iap-tunnel", instance, "22", "--listen-on-stdin", "--zone", zone,
            "--project", project]


# --- the program under Pulumi's mocks -----------------------------------------------------------

def test_iap_vm_has_no_external_address_and_ssh_only_from_iap():
    made = resources(spec(iap=True))
    kind, instance = made["alice-a100"]
    assert instance["networkInterfaces"] == [{"network": "default"}]  # no accessConfigs: no IPv4
    # The shared NAT it leaves through, named on the instance: how down and sweep count its users.
    assert instance["labels"] == {**LABELS, "gpuctl-nat": "gpuctl-nat-us-central1"}
    assert instance["bootDisk"]["initializeParams"]["labels"] == LABELS
    kind, firewall = made["alice-a100-ssh"]
    assert firewall["sourceRanges"] == ["35.235.240.0/20"] == [IAP_TCP_FORWARDING_RANGE]
    assert firewall["allows"] == [{"protocol": "tcp", "ports": ["22"]}]
    # No router or NAT in the VM's own program: the region's shared one is a stack of its own.
    assert not [k for k, _ in made.values() if k.startswith("gcp:compute/router")]


def test_the_shared_nat_program_is_one_router_and_its_all_ranges_nat():
    from gpuctl_infra.mock_run import run_under_mocks
    from gpuctl_infra.nat_program import SharedNat
    from gpuctl_infra.shared_nat import NatSpec, router_name

    made = {r.name: (r.type, r.inputs) for r in run_under_mocks(
        lambda: SharedNat(NatSpec(region="us-central1", project="gpuctl-test", owner="alice")))}
    kind, router = made["gpuctl-nat-us-central1"]
    assert kind == "gcp:compute/router:Router"
    assert router == {"name": "gpuctl-nat-us-central1", "region": "us-central1", "network": "default",
                      "project": "gpuctl-test",
                      "description": "gpuctl gpuctl-expiry=none gpuctl-kind=nat gpuctl-managed=true "
                                     "gpuctl-name=gpuctl-nat-us-central1 gpuctl-owner=alice"}
    kind, nat = made["gpuctl-nat-us-central1-nat"]
    assert kind == "gcp:compute/routerNat:RouterNat"
    assert nat == {"name": "gpuctl-nat-us-central1", "router": "gpuctl-nat-us-central1",
                   "region": "us-central1", "project": "gpuctl-test", "natIpAllocateOption": "AUTO_ONLY",
                   "sourceSubnetworkIpRangesToNat": "ALL_SUBNETWORKS_ALL_IP_RANGES"}
    # One per network too; a long network name is cut to a valid name and label value.
    assert router_name("projects/p/global/networks/lab", "europe-west4") == "gpuctl-nat-lab-europe-west4"
    long = router_name("n" * 60, "us-central1")
    assert len(long) == 63 and long.startswith("gpuctl-nat-nnn") and long != router_name("n" * 61, "us-central1")


def test_iap_never_opens_ssh_to_the_callers_range_even_a_wide_one():
    made = resources(spec(iap=True, ssh_source_cidr="198.51.100.7/32"))
    assert made["alice-a100-ssh"][1]["sourceRanges"] == ["35.235.240.0/20"]


def test_without_iap_the_vm_keeps_its_address_its_32_and_no_nat():
    made = resources(spec())
    assert made["alice-a100"][1]["networkInterfaces"] == [{"network": "default", "accessConfigs": [{}]}]
    assert made["alice-a100-ssh"][1]["sourceRanges"] == ["198.51.100.7/32"]
    assert not [name for name in made if name.endswith(("-router", "-nat"))]
    assert "gpuctl-nat" not in made["alice-a100"][1]["labels"]


# --- the plan and its cost ----------------------------------------------------------------------

def _items(report: dict) -> dict[str, dict]:
    return {line["item"]: line for line in report["cost"]["breakdown"]}


def test_plan_with_iap_prices_cloud_nat_instead_of_an_external_address(ctx):
    with_iap = plan_to_dict(plan_vm(ctx, UpOptions(profile="a100-spot", iap=True)), ctx)
    without = plan_to_dict(plan_vm(ctx, UpOptions(profile="a100-spot")), ctx)
    assert "external-ip" in _items(without) and _items(without)["external-ip"]["usd_per_hour"] > 0
    assert "cloud-nat" not in _items(without)
    items = _items(with_iap)
    assert "external-ip" not in items
    assert items["cloud-nat"]["usd_per_hour"] == 0.0014  # Google's per-VM gateway price
    assert items["nat-ip"]["usd_per_hour"] == 0.005  # the book's on-demand external IPv4 rate
    assert any("$0.045 per GiB" in note and "cloud.google.com/nat/pricing" in note
               for note in with_iap["cost"]["price_notes"])
    kinds = {r["name"]: r["type"] for r in with_iap["resources"]}
    # The first --iap VM of the region: the plan lists the shared NAT it creates.
    assert kinds["gpuctl-nat-us-central1"] == "gcp:compute/router:Router"
    assert kinds["gpuctl-nat-us-central1-nat"] == "gcp:compute/routerNat:RouterNat"
    assert with_iap["cloud_nat"]["action"] == "create" and without["cloud_nat"] is None
    assert not [r for r in without["resources"] if r["type"].startswith("gcp:compute/router")]
    firewall = next(r for r in with_iap["resources"] if r["type"] == "gcp:compute/firewall:Firewall")
    assert firewall["inputs"]["sourceRanges"] == ["35.235.240.0/20"]
    delta = with_iap["cost"]["hourly_usd"] - without["cost"]["hourly_usd"]
    assert abs(delta - (0.0014 + 0.005 - _items(without)["external-ip"]["usd_per_hour"])) < 1e-3


def _iap_vm_record(name: str, zone: str, state: str = "ready", project: str = "gpuctl-test") -> VmRecord:
    record = VmRecord(name=name, profile="a100-spot", project=project, state=state, stack=name,
                      zones_to_try=[zone], created_at="2026-11-23T00:00:00+00:00", hourly_usd=1.5,
                      stopped_hourly_usd=0.03, termination_action="DELETE", zone=zone, iap=True)
    records.save(record)
    return record


def test_the_dry_run_says_whether_it_creates_or_joins_the_regions_shared_nat(ctx):
    def plan(**options) -> dict:
        return plan_to_dict(plan_vm(ctx, UpOptions(profile="a100-spot", iap=True, **options)), ctx)

    def nat_resources(report: dict) -> list[str]:
        return [r["name"] for r in report["resources"] if r["type"].startswith("gcp:compute/router")]

    first = plan()
    assert first["cloud_nat"]["action"] == "create" and first["cloud_nat"]["used_by"] == []
    assert first["cloud_nat"]["summary"].startswith("creates the shared Cloud NAT gpuctl-nat-us-central1")
    assert nat_resources(first) == ["gpuctl-nat-us-central1", "gpuctl-nat-us-central1-nat"]
    _iap_vm_record("alice-other", "europe-west4-a")  # another region's NAT is not this one's
    _iap_vm_record("alice-gone", "us-central1-b", state="destroying")  # on its way out
    assert plan()["cloud_nat"]["action"] == "create"
    _iap_vm_record("alice-first", "us-central1-b")
    joining = plan(name="alice-second")
    assert joining["cloud_nat"]["action"] == "join" and joining["cloud_nat"]["used_by"] == ["alice-first"]
    assert joining["cloud_nat"]["summary"].startswith(
        "joins the shared Cloud NAT gpuctl-nat-us-central1 of us-central1, in use by alice-first")
    assert nat_resources(joining) == []  # nothing new to make: the NAT is there
    # Each VM's plan keeps its gateway share and the (shared) NAT address: the price does not
    # depend on who else is in the region (the same figure `gpuctl cost --iap` shows).
    assert joining["cost"]["hourly_usd"] == first["cost"]["hourly_usd"]
    assert "shared" in _items(joining)["nat-ip"]["detail"]


def test_cli_dry_run_names_the_shared_nat_it_creates_or_joins(config_file):
    runner = CliRunner()
    out = runner.invoke(cli, ["up", "a100-spot", "--dry-run", "--iap"])
    assert out.exit_code == 0, out.output
    assert "cloud NAT: creates the shared Cloud NAT gpuctl-nat-us-central1" in " ".join(out.stdout.split())
    _iap_vm_record("alice-first", "us-central1-a")
    joined = json.loads(runner.invoke(cli, ["up", "a100-spot", "--dry-run", "--iap", "--json"]).stdout)
    assert joined["cloud_nat"]["action"] == "join"
    plain = json.loads(runner.invoke(cli, ["up", "a100-spot", "--dry-run", "--json"]).stdout)
    assert plain["cloud_nat"] is None


def test_cli_dry_run_with_flag_and_with_config_key(config_file):
    runner = CliRunner()
    flagged = runner.invoke(cli, ["up", "a100-spot", "--dry-run", "--iap", "--json"])
    assert flagged.exit_code == 0, flagged.output
    config_file("iap = true\n")
    configured = runner.invoke(cli, ["up", "a100-spot", "--dry-run", "--json"])
    assert configured.exit_code == 0, configured.output
    for out in (flagged, configured):
        report = json.loads(out.stdout)
        assert "cloud-nat" in _items(report) and "external-ip" not in _items(report)
        nic = next(r for r in report["resources"] if r["type"] == "gcp:compute/instance:Instance")
        assert "accessConfigs" not in nic["inputs"]["networkInterfaces"][0]


def test_cost_prices_what_up_would_make_with_iap_from_the_flag_or_the_config(config_file):
    runner = CliRunner()
    plain = json.loads(runner.invoke(cli, ["cost", "a100-spot", "--json"]).stdout)
    flagged = json.loads(runner.invoke(cli, ["cost", "a100-spot", "--iap", "--json"]).stdout)
    up = json.loads(runner.invoke(cli, ["up", "a100-spot", "--dry-run", "--iap", "--json"]).stdout)
    config_file("iap = true\n")
    configured = json.loads(runner.invoke(cli, ["cost", "a100-spot", "--json"]).stdout)
    assert (plain["iap"], flagged["iap"], configured["iap"]) == (False, True, True)
    for report in (flagged, configured):
        lines = {line["item"]: line for line in report["breakdown"]}
        assert "cloud-nat" in lines and "nat-ip" in lines and "external-ip" not in lines
        assert report["hourly_usd"] == up["cost"]["hourly_usd"]  # one price function for both
    assert "external-ip" in {line["item"] for line in plain["breakdown"]}
    human = runner.invoke(cli, ["cost", "a100-spot", "--iap"])
    assert human.exit_code == 0 and "Cloud NAT gateway" in human.stdout


def test_ssh_from_with_iap_is_refused_not_ignored():
    out = CliRunner().invoke(cli, ["up", "a100-spot", "--dry-run", "--iap", "--ssh-from", "198.51.100.7"])
    assert out.exit_code != 0 and "Traceback" not in out.output
    (line,) = [line for line in out.stderr.splitlines() if line.strip()]
    assert line.startswith("error: --ssh-from has no effect with --iap") and "drop --ssh-from" in line


def test_a_bad_iap_value_is_one_line_and_nothing_is_made(config_file, tmp_path):
    config_file('iap = "yes"\n')
    out = CliRunner().invoke(cli, ["up", "a100-spot", "--dry-run"])
    assert out.exit_code != 0 and "Traceback" not in out.output
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and "iap" in lines[0]
    assert not records.all_records()


# --- SSH through the tunnel ---------------------------------------------------------------------

PROJECT, ZONE, NAME = "gpuctl-test", "us-central1-a", "alice-iap"


def iap_record(host, name: str = NAME) -> VmRecord:
    """What `up --iap` leaves behind: a ready record with no address, and the VM's host key
    pinned under its name (as _reach pins it from guest attributes)."""
    record = VmRecord(name=name, profile="a100-spot", project=PROJECT, state="ready", stack=name,
                      zones_to_try=[ZONE], created_at="2026-12-01T00:00:00+00:00", hourly_usd=1.5,
                      stopped_hourly_usd=0.03, termination_action="DELETE", zone=ZONE, iap=True,
                      ssh_user=host.user, key_file=str(host.key_path))
    records.save(record)
    _, key_type, key_b64 = host.known_hosts_line.split()
    hostkeys.pin(name, hostkeys.host_key_lines(name, [(key_type, key_b64)]))
    return record


def other_host_key() -> str:
    """A real ed25519 public key ("ssh-ed25519 AAAA...") of no host the tests run."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


class UnreachedHost:
    """Enough of a host for a record whose connection must stop before it is attempted."""

    user = "gpuctl"
    key_path = Path("/nonexistent/key")

    def __init__(self):
        self.known_hosts_line = f"x {other_host_key()}"


def test_connect_goes_through_gcloud_with_the_documented_argv_and_verifies_the_host_key(
        throwaway_host, fake_gcloud, monkeypatch):
    from gpuctl.hosts import connect

    iap_record(throwaway_host)
    fake_gcloud.route(monkeypatch, PROJECT, ZONE, NAME, throwaway_host.address)
    host, reached = connect(NAME)
    with host:
        assert host.run("id -un").stdout.strip() == throwaway_host.user
        assert host.target.host == NAME and reached.vm == NAME
    assert fake_gcloud.calls() == [documented_argv(NAME, ZONE, PROJECT)]
    # The key was looked up under the VM's name: that is the only pin there is for this host.
    pins = hostkeys.known_hosts_path().read_text().splitlines()
    assert [line.split()[0] for line in pins] == [NAME]


def test_a_wrong_host_key_behind_the_tunnel_is_refused(throwaway_host, fake_gcloud, monkeypatch):
    from gpuctl.hosts import connect

    iap_record(throwaway_host)
    fake_gcloud.route(monkeypatch, PROJECT, ZONE, NAME, throwaway_host.address)
    hostkeys.pin(NAME, [f"{NAME} {other_host_key()}"])  # another machine's key pinned under the name
    with pytest.raises(GpuctlError) as caught:
        connect(NAME)
    assert "different host key" in caught.value.message
    assert len(fake_gcloud.calls()) == 1  # it did go through the tunnel, and stopped at the key


def test_a_failing_tunnel_reports_gclouds_last_line(throwaway_host, fake_gcloud):
    from gpuctl.hosts import connect

    iap_record(throwaway_host)  # no backend routed: IAP cannot reach it
    with pytest.raises(GpuctlError) as caught:
        connect(NAME)
    message = caught.value.message
    assert message == (f"the IAP tunnel to {throwaway_host.user}@{NAME}:22 failed (exit 1): ERROR: "
                       "(gcloud.compute.start-iap-tunnel) Error while connecting "
                       "[4003: 'failed to connect to backend'].")
    assert "roles/iap.tunnelResourceAccessor" in caught.value.hint


def test_missing_gcloud_is_one_line_with_the_fix(no_gcloud):
    iap_record(UnreachedHost())
    runner = CliRunner()
    for argv in (["ssh", NAME, "--print"], ["guards", NAME]):
        out = runner.invoke(cli, argv)
        assert out.exit_code != 0, (argv, out.output)
        assert "Traceback" not in out.output
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and "gcloud" in lines[0], out.stderr
        assert "Google Cloud CLI" in lines[0] and "without --iap" in lines[0]


def test_up_with_iap_and_no_gcloud_stops_before_anything_is_made(ctx, no_gcloud, monkeypatch):
    from gpuctl.lifecycle import deps

    monkeypatch.setattr(deps, "default_credentials", lambda: (None, PROJECT))
    ctx.config.project = PROJECT
    with pytest.raises(GpuctlError) as caught:
        deps.live_deps(ctx, need_engine=False, iap=True)
    assert "Google Cloud CLI" in caught.value.message + caught.value.hint
    assert "without --iap" in caught.value.hint
    assert not records.all_records()


def test_ssh_print_names_the_tunnel_and_the_pinned_name(throwaway_host, fake_gcloud):
    iap_record(throwaway_host)
    out = CliRunner().invoke(cli, ["ssh", NAME, "--print"])
    assert out.exit_code == 0, out.output
    text = out.stdout.replace("\n", " ")
    assert ("ProxyCommand=gcloud compute start-iap-tunnel alice-iap 22 --listen-on-stdin "
            "--zone us-central1-a --project gpuctl-test") in text
    assert "HostKeyAlias=alice-iap" in text and "StrictHostKeyChecking=yes" in text


def test_a_real_run_and_its_logs_through_the_tunnel(throwaway_host, fake_gcloud, monkeypatch, tmp_path):
    import shutil
    import subprocess

    project = tmp_path / "proj"
    project.mkdir()
    shutil.copy(Path(__file__).parent / "data" / "fake_train.py", project / "train.py")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    monkeypatch.chdir(project)
    iap_record(throwaway_host)
    fake_gcloud.route(monkeypatch, PROJECT, ZONE, NAME, throwaway_host.address)
    runner = CliRunner()
    started = runner.invoke(cli, ["run", NAME, "--name", "iap-run", "--price-per-hour", "1.5", "-f",
                                  "--", "python3", "train.py", "--steps", "5", "--sleep", "0.01"])
    assert started.exit_code == 0, started.output
    assert "iap-run: succeeded (exit 0)" in started.stderr
    shown = runner.invoke(cli, ["logs", "iap-run", "--tail", "2"])
    assert shown.exit_code == 0 and "train_runtime" in shown.stdout
    calls = fake_gcloud.calls()
    assert calls and all(call == documented_argv(NAME, ZONE, PROJECT) for call in calls)


# --- the Compute stand-in's routers, held to compute.v1.json ------------------------------------

def test_router_nats_follow_the_documents_rules(compute_standin):
    from google.api_core import exceptions
    from google.cloud import compute_v1

    routers = compute_standin.client(compute_v1.RoutersClient)
    where = {"project": compute_standin.project, "region": "us-central1"}

    def router(name: str, **fields):
        return compute_v1.Router(name=name, network="global/networks/default", **fields)

    def nat(name: str, ranges: str = "ALL_SUBNETWORKS_ALL_IP_RANGES", **fields):
        return compute_v1.RouterNat(name=name, nat_ip_allocate_option="AUTO_ONLY",
                                    source_subnetwork_ip_ranges_to_nat=ranges, **fields)

    with pytest.raises(exceptions.BadRequest, match="resource.network"):  # required on insert
        routers.insert(**where, router_resource=compute_v1.Router(name="no-network")).result()
    routers.insert(**where, router_resource=router("a-router")).result()
    routers.patch(**where, router="a-router", router_resource=compute_v1.Router(nats=[nat("a-nat")])).result()
    assert [n.name for n in routers.get(**where, router="a-router").nats] == ["a-nat"]
    # "there should not be any other Router.Nat section in any Router for this network in this region"
    routers.insert(**where, router_resource=router("b-router")).result()
    with pytest.raises(exceptions.BadRequest, match="ALL_SUBNETWORKS_ALL_IP_RANGES"):
        routers.patch(**where, router="b-router", router_resource=compute_v1.Router(
            nats=[nat("b-nat", "LIST_OF_SUBNETWORKS")])).result()
    # "When choosing AUTO_ONLY, then nat_ip should be empty."
    with pytest.raises(exceptions.BadRequest, match="natIps"):
        routers.patch(**where, router="b-router", router_resource=compute_v1.Router(nats=[nat(
            "b-nat", "LIST_OF_SUBNETWORKS",
            nat_ips=["projects/gpuctl-test/regions/us-central1/addresses/x"])])).result()
    # Another region is another scope: its own NAT is fine.
    routers.insert(project=compute_standin.project, region="europe-west4",
                   router_resource=router("c-router", nats=[nat("c-nat")])).result()
    # PUT replaces: a router written back without nats has none.
    routers.update(**where, router="a-router", router_resource=router("a-router")).result()
    assert not routers.get(**where, router="a-router").nats
    routers.delete(**where, router="a-router").result()
    with pytest.raises(exceptions.NotFound):
        routers.get(**where, router="a-router")
    assert compute_standin.contract_violations == []
    assert {r["name"] for r in compute_standin.routers()} == {"b-router", "c-router"}
