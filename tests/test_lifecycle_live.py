"""The live VM lifecycle end to end, through the engine every user runs: `AutomationEngine` as
shipped drives the real Pulumi CLI (built from Go modules), which runs the real VM program and
launches the gcp provider plugin double; the double creates each resource through the real
google-cloud-compute client against the Compute stand-in. A real throwaway SSH host plays the
VM. Every fault scenario ends with nothing labelled left unless the test says why."""

from __future__ import annotations

import _thread
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuctl.adapters.compute import ComputeApi
from gpuctl.adapters.pulumi_engine import AutomationEngine
from gpuctl.adapters.ssh import RemoteHost
from gpuctl.cli.main import cli
from gpuctl.errors import GpuctlError
from gpuctl.lifecycle import hostkeys, records
from gpuctl.lifecycle.deps import VM_PROJECT, LiveDeps, Timeouts
from gpuctl.lifecycle.down import down_vm
from gpuctl.lifecycle.extend import extend_vm
from gpuctl.lifecycle.status import status_all
from gpuctl.lifecycle.sweep import delete_leftovers, find_leftovers
from gpuctl.lifecycle.up import CapacityError, up_vm
from gpuctl.plan import UpOptions, plan_vm
from gpuctl.targets import resolve_target
from tests.gcp_provider.fixtures import stack_state, state_file
from tests.standins.compute import compute_standin  # noqa: F401 (fixture)
from tests.standins.scheduler import SchedulerStandIn

PROJECT = "gpuctl-test"
NAME = "alice-a100-spot"
US_ZONES = ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]


class GuestAgent:
    """What Google's guest agent does on a new VM, done on a real throwaway host: publish the
    host's SSH keys as guest attributes and install the metadata ssh-keys for the login. It
    runs in the stand-in (the cloud) when an insert is accepted, whoever sent it."""

    def __init__(self, standin, host):
        self.standin, self.host = standin, host
        self.enabled = True
        self.on_insert = None  # a test's extra action when an insert arrives (Ctrl-C, kill -9)
        accept = standin._h_instances_insert

        def insert(req):
            answer = accept(req)
            if self.on_insert is not None:
                self.on_insert()
            body = req.body or {}
            has_login = any(i.get("key") == "ssh-keys" for i in (body.get("metadata") or {}).get("items", []))
            if has_login and (req.project, req.params["zone"], body.get("name")) in standin._vms:
                self(body["name"], req.params["zone"], body)
            return answer

        standin._h_instances_insert = insert

    def __call__(self, name: str, zone: str, body: dict) -> None:
        if not self.enabled:
            return
        _, key_type, key_b64 = self.host.known_hosts_line.split()
        self.standin.set_host_keys(name, {key_type: key_b64}, zone)
        items = {i["key"]: i["value"] for i in body["metadata"]["items"]}
        user, _, public = items["ssh-keys"].partition(":")
        keys_file = self.host.root / "home" / user / ".ssh" / "authorized_keys"
        keys_file.write_text(keys_file.read_text() + public + "\n")


@pytest.fixture
def scheduler(monkeypatch):
    with SchedulerStandIn(PROJECT) as standin:
        monkeypatch.setenv("GPUCTL_SCHEDULER_ENDPOINT", standin.endpoint)
        yield standin


@pytest.fixture
def live(compute_standin, throwaway_host, real_engine_env, scheduler, monkeypatch):
    compute_standin.nat_ips[NAME] = throwaway_host.address
    # The user's endpoint override reaches both gpuctl's reads and the engine's provider.
    monkeypatch.setenv("GPUCTL_COMPUTE_ENDPOINT", compute_standin.endpoint)
    engine = AutomationEngine(VM_PROJECT)
    agent = GuestAgent(compute_standin, throwaway_host)
    compute = ComputeApi(PROJECT, endpoint=compute_standin.endpoint)
    compute.retry_initial_s, compute.retry_timeout_s = 0.01, 5.0
    deps = LiveDeps(engine=engine, compute=compute, project=PROJECT,
                    caller_cidr="198.51.100.7/32", sleep=lambda s: None,
                    timeouts=Timeouts(running_s=1, host_keys_s=1, ssh_s=10, poll_s=0.1))
    deps.standin, deps.host, deps.agent, deps.scheduler = compute_standin, throwaway_host, agent, scheduler
    return deps


def plan_for(ctx, **options):
    return plan_vm(ctx, UpOptions(profile="a100-spot", **options))


def nothing_left(standin, name=NAME) -> bool:
    return standin.labelled_resources("gpuctl-name", name) == {}


def test_up_status_ssh_extend_down_end_to_end(ctx, live):
    standin = live.standin
    events = []
    result = up_vm(ctx, plan_for(ctx, ttl="6h", cap="12h"), live, on_event=lambda k, t: events.append(k))
    record = result.record
    assert record.state == "ready" and record.zone == "us-central1-a"
    assert record.address == live.host.address and [a.outcome for a in record.attempts] == ["created"]
    instance = standin.instance(NAME)
    assert instance["scheduling"]["provisioningModel"] == "SPOT"
    assert instance["scheduling"]["maxRunDuration"]["seconds"] in ("43200", 43200)  # the hard cap
    firewall = standin.firewalls()[0]
    assert firewall["sourceRanges"] == ["198.51.100.7/32"]
    assert "ssh-keys" not in json.dumps(standin.labelled_resources("gpuctl-name", NAME))

    # SSH with the generated key, verified against the host key pinned from guest attributes.
    target, known = resolve_target(NAME)
    assert known == [hostkeys.known_hosts_path()] and target.key_file.stat().st_mode & 0o077 == 0
    with RemoteHost(target) as host:
        for path in known:
            host.load_known_hosts(path)
        host.connect()
        assert host.run("id -un").stdout.strip() == "gpuctl"

    # status: one aggregatedList call, never a list per zone.
    before = len(standin.calls("instances.aggregatedList"))
    rows = status_all(live)
    assert len(standin.calls("instances.aggregatedList")) == before + 1
    assert not standin.calls("instances.list")
    (row,) = rows
    assert row["state"] == "running" and row["zone"] == "us-central1-a"
    guards = {g["kind"]: g for g in row["guards"]}
    assert 11 * 3600 < guards["max_run_duration"]["fires_in_seconds"] <= 12 * 3600
    assert 5 * 3600 < guards["deadline"]["fires_in_seconds"] <= 6 * 3600 + 60
    assert 5 * 3600 < row["time_left_seconds"] <= 6 * 3600 + 60

    # extend moves the deadline while the VM runs: no setScheduling (refused on a RUNNING VM),
    # no stop; the VM and its disks are untouched, GCE's cap stays.
    before = standin.instance(NAME)
    extended = extend_vm(NAME, 2, live)
    assert not standin.calls("instances.setScheduling") and not standin.calls("instances.stop")
    assert standin.instance(NAME) == before and before["status"] == "RUNNING"
    (job,) = live.scheduler.jobs.values()
    assert job["httpTarget"]["httpMethod"] == "DELETE" and job["httpTarget"]["uri"].endswith(f"/instances/{NAME}")
    left = {g["kind"]: g for g in status_all(live)[0]["guards"]}["deadline"]["fires_in_seconds"]
    assert 7 * 3600 < left <= 8 * 3600 + 60 and extended["worst_case_usd"] > 0
    assert extended["hard_cap"] and extended["previous_deadline"]

    # down destroys, verifies, forgets; twice is safe.
    done = down_vm(NAME, live)
    assert done.existed and done.final_cost_usd is not None and done.deleted_directly == []
    assert live.scheduler.jobs == {}  # the deadline job went with the VM
    assert nothing_left(standin) and records.load(NAME) is None
    assert live.engine.list_stacks() == [] and not target.key_file.exists()
    assert live.host.address not in hostkeys.known_hosts_path().read_text()
    again = down_vm(NAME, live)
    assert not again.existed


def test_stockout_in_two_zones_fails_over_to_the_third(ctx, live):
    live.standin.stockout("us-central1-a", "us-central1-b")
    events = []
    record = up_vm(ctx, plan_for(ctx), live, on_event=lambda k, t: events.append((k, t))).record
    assert [(a.zone, a.outcome) for a in record.attempts] == [
        ("us-central1-a", "stockout"), ("us-central1-b", "stockout"), ("us-central1-c", "created")]
    # The reason is the provider's text as the engine printed it (GCE's message; the provider
    # reports a failed operation by message, not by code), classified by failover.
    assert record.attempts[0].reason.startswith(
        "The zone 'projects/gpuctl-test/zones/us-central1-a' does not have enough resources available")
    assert sum(1 for kind, _ in events if kind == "attempt") == 2
    assert [i["zone"].rsplit("/", 1)[-1] for i in live.standin.instances()] == ["us-central1-c"]
    assert len(live.standin.firewalls()) == 1  # the failed zones' rule was destroyed
    down_vm(NAME, live)
    assert nothing_left(live.standin)


def test_stockout_everywhere_leaves_nothing_and_names_every_zone(ctx, live):
    live.standin.stockout(*US_ZONES)
    with pytest.raises(CapacityError) as err:
        up_vm(ctx, plan_for(ctx), live)
    assert all(zone in err.value.message for zone in US_ZONES)
    assert "--any-region" in err.value.hint
    assert nothing_left(live.standin) and records.load(NAME) is None
    assert live.engine.list_stacks() == []


def test_regional_quota_skips_the_region_and_any_region_crosses(ctx, live):
    live.standin.set_quota("us-central1", "PREEMPTIBLE_NVIDIA_A100_GPUS", 0)
    live.standin.set_quota("us-central1", "NVIDIA_A100_GPUS", 0)
    live.standin.nat_ips[NAME] = live.host.address
    record = up_vm(ctx, plan_for(ctx), live, any_region=True).record
    outcomes = [(a.zone, a.outcome) for a in record.attempts]
    assert outcomes[0] == ("us-central1-a", "quota")
    assert all(not zone.startswith("us-central1") for zone, _ in outcomes[1:])
    assert record.zone.startswith("asia-northeast1")
    down_vm(NAME, live)
    assert nothing_left(live.standin)


def test_bursts_of_503_are_retried_and_do_not_cost_a_zone(ctx, live):
    live.standin.fail_next(2, 503, rpc="instances.insert")
    live.standin.fail_next(3, 503, rpc="instances.aggregatedList")
    record = up_vm(ctx, plan_for(ctx), live).record
    assert record.zone == "us-central1-a" and [a.outcome for a in record.attempts] == ["created"]
    assert status_all(live)[0]["state"] == "running"
    down_vm(NAME, live)
    assert nothing_left(live.standin)


def test_errors_that_retrying_cannot_fix_stop_at_once(ctx, live):
    live.standin.deny_permission("compute.instances.create")
    with pytest.raises(GpuctlError) as err:
        up_vm(ctx, plan_for(ctx), live)
    assert "compute.instances.create" in err.value.message
    assert len(live.standin.calls("instances.insert")) == 1
    assert nothing_left(live.standin) and records.load(NAME) is None


def test_a_vm_that_never_publishes_host_keys_is_rolled_back(ctx, live):
    live.agent.enabled = False
    with pytest.raises(GpuctlError) as err:
        up_vm(ctx, plan_for(ctx), live)
    assert "host keys" in err.value.message
    assert nothing_left(live.standin) and records.load(NAME) is None


def test_ctrl_c_during_up_rolls_back(ctx, live):
    def interrupted(seconds):
        raise KeyboardInterrupt

    live.agent.enabled = False  # up waits for host keys, and the user gives up
    live.sleep = interrupted
    with pytest.raises(KeyboardInterrupt):
        up_vm(ctx, plan_for(ctx), live)
    assert nothing_left(live.standin) and records.load(NAME) is None


def test_a_crashed_up_is_finished_by_the_next_up_or_by_down(ctx, live, monkeypatch):
    # A crash (kill -9) after the intent record and some resources: the rollback never ran.
    import gpuctl.lifecycle.down as down_module

    plan = plan_for(ctx)
    live.agent.enabled = False
    live.timeouts.host_keys_s = 0.1
    with monkeypatch.context() as patch:
        patch.setattr(down_module, "destroy_everything", lambda record, deps, emit: [])
        with pytest.raises(GpuctlError):
            up_vm(ctx, plan, live)
    left = records.load(NAME)
    assert left is not None and live.standin.labelled_resources("gpuctl-name", NAME)
    rows = status_all(live)
    assert rows and rows[0]["tracked"]
    live.agent.enabled = True
    record = up_vm(ctx, plan, live).record  # rolls the old attempt back first, then creates
    assert record.state == "ready" and len(live.standin.instances()) == 1
    down_vm(NAME, live)
    assert nothing_left(live.standin)


def test_preempted_and_deleted_behind_our_back_vms_show_and_clean_up(ctx, live):
    up_vm(ctx, plan_for(ctx, termination_action="stop", ttl="6h"), live)
    live.standin.preempt(NAME)
    assert status_all(live)[0]["state"].startswith("stopped")
    live.standin.delete_behind_back(NAME)
    assert status_all(live)[0]["state"].startswith("deleted")
    result = down_vm(NAME, live)
    assert result.existed and nothing_left(live.standin) and records.load(NAME) is None


def test_down_deletes_by_label_when_the_engine_lost_its_state(ctx, live):
    up_vm(ctx, plan_for(ctx), live)
    state_file(VM_PROJECT, NAME).unlink()  # the backend lost the stack (a wiped laptop, a bad copy)
    result = down_vm(NAME, live)
    assert {"instance/" + NAME, "firewall/" + NAME + "-ssh"} <= set(result.deleted_directly)
    assert nothing_left(live.standin) and records.load(NAME) is None


def test_sweep_finds_orphans_and_stale_stacks_then_deletes_them(ctx, live):
    from google.cloud import compute_v1

    up_vm(ctx, plan_for(ctx), live)
    live.standin.fire_time_limit(NAME)  # the guard deleted the VM: its stack is now stale
    firewalls = live.standin.client(compute_v1.FirewallsClient)
    firewalls.insert(project=PROJECT, firewall_resource=compute_v1.Firewall(
        name="bob-t4-spot-ssh", network=f"projects/{PROJECT}/global/networks/default",
        source_ranges=["203.0.113.9/32"], allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["22"])],
        description="gpuctl gpuctl-managed=true gpuctl-name=bob-t4-spot gpuctl-owner=bob")).result()
    # A deadline job whose VM and records are gone (jobs take no labels: found by name).
    live.deadline_api("us-central1").set("bob-t4-spot", "us-central1-b",
                                         live.clock() + __import__("datetime").timedelta(hours=3))
    found = {(f.kind, f.vm, f.resource.kind if f.resource else None) for f in find_leftovers(ctx, live)}
    assert ("orphan", "bob-t4-spot", "firewall") in found
    assert ("orphan", "bob-t4-spot", "deadline-job") in found
    assert any(kind in ("stale-stack", "tracked") and vm == NAME for kind, vm, _ in found)
    delete_leftovers(find_leftovers(ctx, live), live)
    # The tracked VM's own leftovers (its firewall) go with `down`, which sweep points to.
    down_vm(NAME, live)
    assert nothing_left(live.standin) and nothing_left(live.standin, "bob-t4-spot")
    assert live.scheduler.jobs == {} and find_leftovers(ctx, live) == []


def test_the_cli_flow_up_status_ssh_extend_down(live, monkeypatch):
    import gpuctl.lifecycle.deps as deps_module

    monkeypatch.setattr(deps_module, "live_deps", lambda ctx, ssh_from=None, need_engine=True: live)
    runner = CliRunner()
    up = runner.invoke(cli, ["up", "a100-spot", "-y", "--no-provision", "--json", "--ttl", "6h", "--cap", "12h"])
    assert up.exit_code == 0, up.output
    summary = json.loads(up.stdout)
    assert summary["name"] == NAME and summary["address"] == live.host.address
    status = json.loads(runner.invoke(cli, ["status", "--json"]).stdout)
    assert status[0]["name"] == NAME and status[0]["state"] == "running"
    line = runner.invoke(cli, ["ssh", NAME, "--print"]).stdout
    assert "StrictHostKeyChecking=yes" in line and f"gpuctl@{live.host.address}" in line
    extended = runner.invoke(cli, ["extend", NAME, "--hours", "1", "--json"])
    assert json.loads(extended.stdout)["added_hours"] == 1
    down = runner.invoke(cli, ["down", NAME, "-y"])
    assert down.exit_code == 0 and "nothing labelled for it is left" in down.stdout
    again = runner.invoke(cli, ["down", NAME, "-y"])
    assert again.exit_code == 0 and "already gone" in again.stdout
    assert nothing_left(live.standin)


def test_sweep_and_down_leave_a_gke_clusters_nodes_alone(ctx, live):
    from google.cloud import compute_v1

    node = compute_v1.Instance(
        name="gke-gpuctl-gpu-l4-1234", machine_type="zones/us-central1-a/machineTypes/g2-standard-8",
        labels={"gpuctl-managed": "true", "gpuctl-name": "gpuctl", "gpuctl-kind": "gke"},
        scheduling=compute_v1.Scheduling(provisioning_model="SPOT", automatic_restart=False,
                                         on_host_maintenance="TERMINATE", preemptible=True,
                                         instance_termination_action="DELETE"),
        disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True, initialize_params=compute_v1.AttachedDiskInitializeParams(
            source_image="projects/cos-cloud/global/images/family/cos-stable", disk_size_gb=100))],
        network_interfaces=[compute_v1.NetworkInterface(network=f"projects/{PROJECT}/global/networks/default")])
    live.standin.client(compute_v1.InstancesClient).insert(
        project=PROJECT, zone="us-central1-a", instance_resource=node).result()
    assert find_leftovers(ctx, live) == []
    assert not down_vm("gpuctl", live).existed
    assert live.standin.labelled_resources("gpuctl-kind", "gke")["instances"]


# --- the engine interrupted: Ctrl-C and kill -9 while `pulumi up` is creating the VM --------------


def _pulumi_children() -> list[int]:
    from gpuctl.adapters.pulumi_engine import _child_pulumi_pids

    return _child_pulumi_pids()


def _locks(stack: str) -> list[Path]:
    return list(state_file(VM_PROJECT, stack).parents[2].glob(f"locks/organization/{VM_PROJECT}/{stack}/*.json"))


def test_ctrl_c_while_the_engine_creates_cancels_it_then_rolls_back(ctx, live):
    # The user presses Ctrl-C while GCE is accepting the insert: pulumi gets one SIGINT (its
    # graceful cancel), the insert in flight finishes and is recorded, then gpuctl rolls back.
    # Python's own SIGINT handler, as in a terminal: a test run started in the background by a
    # non-interactive shell inherits SIGINT ignored, and interrupt_main would then do nothing.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    live.agent.on_insert = _thread.interrupt_main
    try:
        _ctrl_c_scenario(ctx, live)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_scenario(ctx, live):
    with pytest.raises(KeyboardInterrupt):
        up_vm(ctx, plan_for(ctx), live)
    assert _pulumi_children() == [] and _locks(NAME) == []
    assert len(live.standin.calls("instances.insert")) == 1 and live.standin.calls("instances.delete")
    assert nothing_left(live.standin) and records.load(NAME) is None
    live.agent.on_insert = None  # and the next up works without a manual `pulumi cancel`
    assert up_vm(ctx, plan_for(ctx), live).record.state == "ready"
    down_vm(NAME, live)
    assert nothing_left(live.standin)


def test_kill_9_of_gpuctl_and_its_engine_is_finished_by_the_next_down(live, tmp_path):
    """`gpuctl up` as a real process; while its engine creates the VM, the whole process group
    gets SIGKILL (no rollback can run). The engine leaves its lock and a pending create; the
    next `down` clears the dead process's lock and deletes the VM the state never recorded."""
    from tests.test_check_cmd import service_account_adc

    env = {**os.environ, "GPUCTL_PROJECT": PROJECT, "GPUCTL_SSH_FROM": "198.51.100.7",
           "GOOGLE_APPLICATION_CREDENTIALS": service_account_adc(tmp_path / "adc.json",
                                                                "http://127.0.0.1:9/token")}
    gpuctl = Path(os.environ.get("VIRTUAL_ENV", Path(__import__("sys").executable).parent.parent)) / "bin" / "gpuctl"
    process = subprocess.Popen([str(gpuctl), "up", "a100-spot", "-y", "--no-provision"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    live.agent.on_insert = lambda: os.killpg(process.pid, signal.SIGKILL)
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == -signal.SIGKILL, output
    assert live.standin.instances(), "the VM was created before the kill"
    assert _locks(NAME), "the killed engine left its lock"
    pending = stack_state(VM_PROJECT, NAME)["checkpoint"]["latest"].get("pending_operations", [])
    assert pending and {op["type"] for op in pending} == {"creating"}
    live.agent.on_insert = None
    result = down_vm(NAME, live)
    assert "instance/" + NAME in result.deleted_directly  # the state never knew it
    assert _locks(NAME) == [] and nothing_left(live.standin) and records.load(NAME) is None


def test_the_engine_that_ran_is_the_real_pulumi_with_the_provider_plugin(ctx, live):
    """Proof that the lifecycle runs the real engine: the stack's state, written only by the
    `pulumi` binary, lists the VM's resources under the gcp provider at the SDK's version."""
    from tests.gcp_provider.plugin import PINNED_CLI_VERSION
    from tests.gcp_provider.server import plugin_version

    events = []
    up_vm(ctx, plan_for(ctx), live, on_event=lambda kind, text: events.append(text))
    resources = stack_state(VM_PROJECT, NAME)["checkpoint"]["latest"]["resources"]
    by_type = {r["type"]: r for r in resources}
    assert by_type["gcp:compute/instance:Instance"]["id"] == f"projects/{PROJECT}/zones/us-central1-a/instances/{NAME}"
    assert by_type["pulumi:providers:gcp"]["inputs"]["version"] == plugin_version()  # pulumi_gcp's own
    assert by_type["pulumi:providers:gcp"]["inputs"]["computeCustomEndpoint"] == live.standin.endpoint + "/compute/v1/"
    version = subprocess.run(["pulumi", "version"], capture_output=True, text=True, check=True).stdout.strip()
    assert version == PINNED_CLI_VERSION  # the CLI built from Go modules, first on PATH
    down_vm(NAME, live)


def test_extend_without_a_cap_says_what_it_would_take(ctx, live):
    up_vm(ctx, plan_for(ctx, ttl="6h"), live)  # GCE's own limit only: nothing movable
    with pytest.raises(GpuctlError) as err:
        extend_vm(NAME, 2, live)
    assert "no movable deadline" in err.value.message and "--cap" in err.value.hint
    assert not live.standin.calls("instances.setScheduling") and live.scheduler.jobs == {}
    down_vm(NAME, live)


def test_up_again_after_a_guard_deleted_the_vm(ctx, live):
    """The run limit fired while the laptop was closed: the record and the stack still list the
    VM. The next `up` of the name clears the stale stack (a delete of a VM that is gone counts as
    done) and creates a new one."""
    up_vm(ctx, plan_for(ctx), live)
    live.standin.fire_time_limit(NAME)
    events = []
    record = up_vm(ctx, plan_for(ctx), live, on_event=lambda kind, text: events.append(kind)).record
    assert record.state == "ready" and "rollback" in events
    assert len(live.standin.instances()) == 1 and len(live.standin.firewalls()) == 1
    down_vm(NAME, live)
    assert nothing_left(live.standin)
