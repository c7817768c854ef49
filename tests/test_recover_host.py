"""Stage (d) of `run --recover`: the bootstrap (runs/host_scripts/bootstrap.py) on real throwaway
hosts playing the MIG's VM and its replacement, with no gpuctl process in between.

The parts are real: the Compute stand-in holds the template and the group and preempts the VM the
way Google does; its metadata server (per VM name, so it serves the replacement too) hands the
bootstrap its `gpuctl-recover` address and a service-account token; Cloud Storage is the
fake-gcs-server emulator behind the discovery-doc contract proxy, reached from inside the host
over its veth (a TCP relay on the runner's end of the /30, as the VM reaches storage.googleapis.com);
the bundle is what gpuctl uploads at `run --recover` time (gpuctl.recovery.bundle); the run is
supervised by run_host.py exactly as `gpuctl run` starts it. The test plays only the guest
environment: it fetches the startup script named by `startup-script-url` and runs it as root.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from google.cloud import compute_v1

from gpuctl.adapters.storage import StorageApi
from gpuctl.jobspec import JobSpec
from gpuctl.provision.settings import ProvisionSettings
from gpuctl.recovery.bundle import build_bundle, upload_bundle
from tests.hosts.debs import PackageSource
from tests.hosts.fixtures import stock_host, venv_debs  # noqa: F401
from tests.hosts.host import ThrowawayHost
from tests.standins.compute import ComputeStandIn
from tests.standins.compute_migs import InstanceMetadataServer
from tests.test_recover_standin import REGION, ZONES, mig_body

BUCKET = "alice-ckpts"
FOLDER = f"gs://{BUCKET}/llama/run-1"
RUN = "llama"
TOTAL, EVERY = 60, 10
RUN_DIR = f"/mnt/disks/nvme/gpuctl/runs/{RUN}"
# What `run --recover` derives from the profile (recovery/plan.py recover_provision_settings), with
# the Python Debian 12 packages: every VM is provisioned with it at boot, before the run starts.
PROVISION = ProvisionSettings(login_user="gpuctl", time_zone="Asia/Tokyo", idle_minutes=0, python="3.11")

TRAINER = '''
import json, os, signal, sys, time
d = os.environ["GPUCTL_CHECKPOINT_DIR"]
total, every = int(sys.argv[1]), int(sys.argv[2])
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))  # the spot notice: save, then stop
steps = [int(n.split("-")[1]) for n in os.listdir(d) if n.startswith("checkpoint-")]
start = max(steps, default=0)
state = json.load(open(f"{d}/checkpoint-{start}/state.json")) if start else {"losses": []}
print("resuming after step", start, flush=True)

def save(step):
    path = f"{d}/checkpoint-{step}"
    os.makedirs(path, exist_ok=True)
    with open(path + "/state.json", "w") as f:
        json.dump({"step": step, "losses": state["losses"]}, f)
    # Finished writing: as settled as a checkpoint written long ago (the syncer's 30 s rule).
    old = time.time() - 120
    os.utime(path + "/state.json", (old, old))

for step in range(start + 1, total + 1):
    time.sleep(0.1)
    loss = round(10.0 / step, 6)
    state["losses"].append(loss)
    print(f"step {step} loss {loss}", flush=True)
    if step % every == 0 or step == total:
        save(step)
    if stop:
        save(step)
        sys.exit(143)
'''


class Relay:
    """A TCP relay from the runner's end of a host's /30 to a loopback service: how the host
    reaches the Cloud Storage emulator (it has no other route)."""

    def __init__(self, bind: str, target_port: int):
        self.target_port = target_port
        self.sock = socket.create_server((bind, 0))
        self.port = self.sock.getsockname()[1]
        self.bind = bind
        self.alive = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.alive:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @property
    def endpoint(self) -> str:
        return f"http://{self.bind}:{self.port}"

    def close(self) -> None:
        self.alive = False
        self.sock.close()


@contextlib.contextmanager
def stock_vm(rootfs, debs):
    """A fresh VM from a stock image (blank NVMe, no venv package) that reaches its apt mirror:
    what the group makes after a preemption."""
    with ThrowawayHost(disks=1, rootfs=rootfs) as host, PackageSource(host, debs) as source:
        source.make_only_apt_source()
        yield host


class Relays:
    """The host's way to Cloud Storage (`endpoint`) and to Compute Engine (`compute_endpoint`)."""

    def __init__(self, bind: str, *, storage: str, compute: str):
        self.storage = Relay(bind, int(storage.rsplit(":", 1)[1]))
        self.compute = Relay(bind, int(compute.rsplit(":", 1)[1].rstrip("/")))
        self.endpoint, self.compute_endpoint = self.storage.endpoint, self.compute.endpoint

    def close(self) -> None:
        self.storage.close()
        self.compute.close()


def runner_side(host: ThrowawayHost) -> str:
    a, b, c, d = host.address.split(".")
    return f"{a}.{b}.{c}.{int(d) - 1}"


@pytest.fixture
def cloud(gcs_emulator, tmp_path):
    """The bucket with the run's bundle in it, and a Compute stand-in with the MIG of one whose
    template names that bundle."""
    storage = gcs_emulator.client()
    storage.create_bucket(BUCKET)
    workdir = tmp_path / "code"
    workdir.mkdir()
    (workdir / "train.py").write_text(TRAINER)
    spec = JobSpec(name=RUN, command=["python3", "train.py", str(TOTAL), str(EVERY)], checkpoints=FOLDER)
    with ComputeStandIn() as compute:
        bundle = build_bundle(spec, RUN, FOLDER, workdir, user="gpuctl", provision=PROVISION,
                              group="llama", region=REGION, project=compute.project)
        upload_bundle(bundle, StorageApi("gpuctl-test", endpoint=gcs_emulator.endpoint))
        templates = compute.client(compute_v1.InstanceTemplatesClient)
        migs = compute.client(compute_v1.RegionInstanceGroupManagersClient)
        from tests.test_recover_standin import template_body

        body = template_body()
        body.properties.metadata.items = [
            compute_v1.Items(key="startup-script-url", value=bundle.bootstrap_url),
            compute_v1.Items(key="gpuctl-recover", value=bundle.recover_url)]
        templates.insert(project=compute.project, instance_template_resource=body).result()
        migs.insert(project=compute.project, region=REGION, instance_group_manager_resource=mig_body()).result()
        [vm_name] = compute.mig_members("llama")
        yield compute, vm_name, storage, gcs_emulator


def boot(host: ThrowawayHost, compute: ComputeStandIn, vm_name: str, gcs) -> tuple:
    """What the guest environment does at boot: read startup-script-url, fetch it, run it as root;
    the host reaches the metadata server and Cloud Storage on the runner's end of its link."""
    here = runner_side(host)
    metadata = InstanceMetadataServer(compute, vm_name, bind=here).start()
    relay = Relays(here, storage=gcs.endpoint, compute=compute.endpoint)
    vm = compute.instance(vm_name)
    url = {i["key"]: i["value"] for i in vm["metadata"]["items"]}["startup-script-url"]
    bucket, _, name = url[len("gs://"):].partition("/")
    script = gcs.client().bucket(bucket).blob(name).download_as_bytes()
    (host.root / "tmp" / "startup-script").write_bytes(script)
    done = host.run_local(f"GCE_METADATA_HOST={metadata.host} GPUCTL_STORAGE_ENDPOINT={relay.endpoint} "
                          f"GPUCTL_COMPUTE_ENDPOINT={relay.compute_endpoint} python3 /tmp/startup-script",
                          check=False, timeout=300)
    # The guest agent deletes the downloaded script once it exits (google_metadata_script_runner
    # removes its temporary folder): what the script left running must not need it.
    (host.root / "tmp" / "startup-script").unlink()
    return done, metadata, relay


def wait_for(host: ThrowawayHost, command: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = host.run_local(command, check=False)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {command}\n{host.run_local(f'cat {RUN_DIR}/output.log', check=False).stdout}")


def assert_provisioned(host: ThrowawayHost, boot_output: str) -> None:
    """The VM got what `gpuctl up` gives one, from the same steps (run as root on the VM):
    NVMe in fstab by UUID, caches on it, the time zone, the profile's Python in a venv whose pip
    works; no daily stop and no idle watchdog (a stopped VM in a group is recreated)."""
    said = {line.split()[2].rstrip(":"): line.split()[3] for line in boot_output.splitlines()
            if line.startswith("gpuctl-bootstrap: provision ")}
    assert said == {"nvme": "changed", "caches": "changed", "timezone": "changed", "shutdown-cron": "skipped",
                    "idle-watchdog": "skipped", "nvidia-driver": "skipped", "cuda": "skipped",
                    "python": "changed", "verify": "skipped"}, boot_output
    assert "/mnt/disks/nvme ext4 discard,defaults,nofail" in host.run_local("cat /etc/fstab").stdout
    assert host.run_local("readlink /etc/localtime").stdout.strip().endswith("Asia/Tokyo")
    assert "Python 3.11" in host.run_local("/home/gpuctl/venv/bin/python --version").stdout
    assert "pip " in host.run_local("runuser -u gpuctl -- /home/gpuctl/venv/bin/pip --version").stdout
    for absent in ("/etc/cron.d/gpuctl-shutdown", "/etc/cron.d/gpuctl-idle-watchdog"):
        assert host.run_local(f"test -e {absent}", check=False).returncode != 0


def assert_group_deleted_itself(compute: ComputeStandIn, timeout: float = 30) -> None:
    """The finished run's VM deleted its own group (and so itself) through Compute Engine's API
    with its own token: nothing bills after the run, with nobody watching."""
    deadline = time.monotonic() + timeout
    while compute.migs():
        assert time.monotonic() < deadline, "the group is still there after the run finished"
        time.sleep(0.2)
    assert compute.instances() == [] and compute.reconcile_migs() == []


def steps_in(log: str) -> list[int]:
    return [int(line.split()[1]) for line in log.splitlines() if line.startswith("step ")]


def test_a_preempted_run_resumes_on_the_replacement_at_the_right_step(cloud, stock_host, host_rootfs, venv_debs):
    compute, vm_name, storage, gcs = cloud
    first = stock_host

    done, metadata, relay = boot(first, compute, vm_name, gcs)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["on_nvme"] is True
    assert "/mnt/disks/nvme ext4" in first.run_local("cat /proc/mounts").stdout  # formatted and mounted
    assert_provisioned(first, done.stdout)
    wait_for(first, f"grep -q '^step 16 ' {RUN_DIR}/output.log && echo yes")

    # Google preempts: `preempted` reads TRUE and the guest is told to power off; systemd's
    # shutdown sends SIGTERM to the supervisor, which stops the trainer (it saves) and uploads.
    compute.begin_preemption(vm_name)
    assert first.run_local(f"python3 -c \"import urllib.request as u; print(u.urlopen(u.Request("
                           f"'http://{metadata.host}/computeMetadata/v1/instance/preempted', "
                           f"headers={{'Metadata-Flavor': 'Google'}})).read().decode())\"").stdout.strip() == "TRUE"
    first.run_local(f"kill -TERM $(cat {RUN_DIR}/supervisor.pid)")
    exit_code = wait_for(first, f"cat {RUN_DIR}/exit_code", timeout=30).strip()
    first_log = first.run_local(f"cat {RUN_DIR}/output.log").stdout
    assert exit_code == "143", first_log
    saved = max(steps_in(first_log))
    assert saved >= 16 and "resuming after step 0" in first_log
    names = {b.name for b in storage.list_blobs(BUCKET)}
    assert f"llama/run-1/checkpoint-{saved}/.gpuctl-complete" in names
    assert "llama/run-1/.gpuctl/finished" not in names
    metadata.stop()
    relay.close()

    # 30 s later the VM is gone (action DELETE); the MIG recreates it where there is capacity.
    compute.stockout(ZONES[0])
    compute.finish_preemption(vm_name)
    assert compute.reconcile_migs() == [{"event": "recreated", "vm": vm_name, "zone": ZONES[1]}]

    with stock_vm(host_rootfs, venv_debs) as second:  # the replacement: a blank NVMe
        done, metadata, relay = boot(second, compute, vm_name, gcs)
        try:
            assert done.returncode == 0, done.stdout + done.stderr
            assert_provisioned(second, done.stdout)  # the replacement too, with nobody connected
            assert wait_for(second, f"cat {RUN_DIR}/exit_code", timeout=60).strip() == "0"
            log = second.run_local(f"cat {RUN_DIR}/output.log").stdout
            assert f"resuming from checkpoint-{saved}" in log and f"resuming after step {saved}" in log
            assert steps_in(log) == list(range(saved + 1, TOTAL + 1))  # every step after it, once
            final = json.loads(storage.bucket(BUCKET).blob(f"llama/run-1/checkpoint-{TOTAL}/state.json")
                               .download_as_bytes())
            # The loss curve is whole: one value per step, across both machines, in order.
            assert final["losses"] == [round(10.0 / s, 6) for s in range(1, TOTAL + 1)]
            # The token the VM used came from its metadata server (the VM's own identity).
            assert f"Bearer {metadata.token}" in set(gcs.contract.authorizations)
            # The watcher marks the run finished; a later boot (another replacement) starts nothing.
            deadline = time.monotonic() + 30
            while "llama/run-1/.gpuctl/finished" not in {b.name for b in storage.list_blobs(BUCKET)}:
                assert time.monotonic() < deadline, "no finished marker"
                time.sleep(0.2)
            assert_group_deleted_itself(compute)
        finally:
            metadata.stop()
            relay.close()
        # Had the group made one more VM before that delete landed, the VM would start nothing
        # and delete the group itself.
        compute.client(compute_v1.RegionInstanceGroupManagersClient).insert(
            project=compute.project, region=REGION, instance_group_manager_resource=mig_body()).result()
        [late_vm] = compute.mig_members("llama")
        again, metadata, relay = boot(second, compute, late_vm, gcs)
        try:
            assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1])["state"] == "finished"
            assert_group_deleted_itself(compute)
        finally:
            metadata.stop()
            relay.close()


def preempt_after(host: ThrowawayHost, compute: ComputeStandIn, vm_name: str, step: int,
                  storage) -> tuple[int, str]:
    """Google preempts the VM once the run has passed `step`: SIGTERM to the supervisor (the
    guest's shutdown), the trainer saves at the end of its step and exits 143, the syncer pushes
    that checkpoint. Returns (the step saved, the run's log on this machine)."""
    wait_for(host, f"grep -q '^step {step} ' {RUN_DIR}/output.log && echo yes")
    compute.begin_preemption(vm_name)
    host.run_local(f"kill -TERM $(cat {RUN_DIR}/supervisor.pid)")
    exit_code = wait_for(host, f"cat {RUN_DIR}/exit_code", timeout=30).strip()
    log = host.run_local(f"cat {RUN_DIR}/output.log").stdout
    assert exit_code == "143", log
    saved = max(steps_in(log))
    assert f"llama/run-1/checkpoint-{saved}/.gpuctl-complete" in {b.name for b in storage.list_blobs(BUCKET)}
    return saved, log


def test_a_run_preempted_twice_finishes_with_every_step_done_once_after_each_checkpoint(
        cloud, stock_host, host_rootfs, venv_debs):
    """Issue 13's done-when on real hosts: three machines in turn (the VM and two replacements
    the group made in other zones), no gpuctl process in between; each resumes from the
    checkpoint its predecessor saved during the notice and redoes nothing."""
    compute, vm_name, storage, gcs = cloud
    saved, logs = [0], []
    with stock_vm(host_rootfs, venv_debs) as second, stock_vm(host_rootfs, venv_debs) as third:
        for turn, host in enumerate((stock_host, second, third)):
            done, metadata, relay = boot(host, compute, vm_name, gcs)
            try:
                assert done.returncode == 0, done.stdout + done.stderr
                if turn < 2:
                    step, log = preempt_after(host, compute, vm_name, saved[-1] + 12, storage)
                    saved.append(step)
                    logs.append(log)
                else:
                    assert wait_for(host, f"cat {RUN_DIR}/exit_code", timeout=60).strip() == "0"
                    logs.append(host.run_local(f"cat {RUN_DIR}/output.log").stdout)
                    assert_group_deleted_itself(compute)
            finally:
                metadata.stop()
                relay.close()
            if turn < 2:  # 30 s later the VM is gone; capacity only in the next zone
                compute.stockout(ZONES[turn])
                compute.finish_preemption(vm_name)
                assert compute.reconcile_migs() == [{"event": "recreated", "vm": vm_name,
                                                     "zone": ZONES[turn + 1]}]
    ends = saved[1:] + [TOTAL]
    for turn, log in enumerate(logs):
        assert f"resuming after step {saved[turn]}" in log
        assert steps_in(log) == list(range(saved[turn] + 1, ends[turn] + 1)), log
    assert saved[1] < saved[2] < TOTAL  # both preemptions cut the run short
    final = json.loads(storage.bucket(BUCKET).blob(f"llama/run-1/checkpoint-{TOTAL}/state.json")
                       .download_as_bytes())
    assert final["losses"] == [round(10.0 / s, 6) for s in range(1, TOTAL + 1)]  # one curve


def test_the_bootstrap_says_in_one_line_when_the_vm_has_no_service_account(throwaway_host, gcs_emulator):
    """A template without a service account: no token, so nothing can be fetched; the startup
    script's log names the cause (and exits 1: the guest environment records it)."""
    with ComputeStandIn() as compute:
        from tests.test_recover_standin import make_group, mig_body

        _, migs = make_group(compute, service_account=False)
        migs.insert(project=compute.project, region=REGION, instance_group_manager_resource=mig_body()).result()
        [vm_name] = compute.mig_members("llama")
        here = runner_side(throwaway_host)
        with InstanceMetadataServer(compute, vm_name, bind=here) as metadata:
            script = Path(__file__).resolve().parents[1] / "orchestrator/gpuctl/runs/host_scripts/bootstrap.py"
            (throwaway_host.root / "tmp" / "startup-script").write_bytes(script.read_bytes())
            done = throwaway_host.run_local(f"GCE_METADATA_HOST={metadata.host} GPUCTL_STORAGE_ENDPOINT="
                                            f"http://{here}:9 python3 /tmp/startup-script", check=False, timeout=120)
    assert done.returncode == 1
    [line] = done.stdout.strip().splitlines()
    assert line.startswith("gpuctl-bootstrap: failed:") and "service-accounts/default/token" in line
