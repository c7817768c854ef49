#!/usr/bin/env python3
"""gpuctl recovery bootstrap: the startup script of a `run --recover` VM (stdlib only, Python 3.8+).

Google's guest environment runs it as root on every boot of every VM the managed instance group
makes, fetched from the `startup-script-url` metadata value (a gs:// object in the run's
checkpoint bucket). With no laptop anywhere, it:

  1. reads `instance/attributes/gpuctl-recover` (the gs:// address of the run spec) from the
     metadata server, and the VM's service-account token from the same server
     (https://cloud.google.com/compute/docs/metadata/querying-metadata, header Metadata-Flavor: Google);
  2. downloads the run spec (recover.json), the code snapshot gpuctl packed at `run --recover`
     time, and gpuctl's host helpers (run_host.py, checkpoint_sync.py) from the bucket;
  3. provisions the VM with the same steps `gpuctl up` runs over SSH (provision.pyz, the steps
     packed by gpuctl/provision/on_boot.py, with the profile's settings from the spec): the local
     NVMe formatted and mounted (RAID0 over several), caches, time zone, NVIDIA driver, CUDA,
     Python and its venv; a driver that needs a reboot reboots, and the next boot goes on;
  4. unpacks the code with `run_host.py apply` and starts the run with `run_host.py start`, as the
     spec's user: the same supervisor a normal `gpuctl run` uses, which fetches the newest
     complete checkpoint before the command and pushes new ones while it runs.

It does nothing twice: a run already going on this boot is left alone, and a run whose bucket
folder holds `.gpuctl/finished` (its command exited 0 on an earlier VM) is not started again.
Secrets never come this way (gpuctl refuses `secrets:` with --recover).
GCE_METADATA_HOST and GPUCTL_STORAGE_ENDPOINT point it elsewhere (tests), as the helpers honour.
Once the command exits 0, the watcher marks the run finished and then deletes the VM's own group
(so nothing bills after the run), through GPUCTL_COMPUTE_ENDPOINT in tests.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

RECOVER_KEY = "gpuctl-recover"
STATE_DIR = "/var/lib/gpuctl/recover"
FINISHED = ".gpuctl/finished"
FAILED = ".gpuctl/failed"  # the run failed, or no VM could start it: the group deleted itself
START_ATTEMPTS = 3  # a boot that fails (apt mirror down, a transient 5xx) is tried again
GOOGLE_STORAGE = "https://storage.googleapis.com"
RETRIES = 6


class BootstrapError(Exception):
    pass


def log(message: str) -> None:
    # The guest environment copies a startup script's output to the serial console and the
    # system journal (google_metadata_script_runner): the place to look on a VM that did not start.
    sys.stdout.write(f"gpuctl-bootstrap: {message}\n")
    sys.stdout.flush()


# --- the metadata server ----------------------------------------------------------------------

def metadata_host() -> str:
    return os.environ.get("GCE_METADATA_HOST") or "metadata.google.internal"


def metadata(key: str) -> str:
    url = f"http://{metadata_host()}/computeMetadata/v1/instance/{key}"
    request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
    for attempt in range(RETRIES):
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.read().decode()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise BootstrapError(f"the metadata server has no {key}") from None
            error = exc
        except OSError as exc:  # the network may come up a moment after the script starts
            error = exc
        time.sleep(min(2 ** attempt, 16) * 0.25)
    raise BootstrapError(f"metadata server ({metadata_host()}) unreachable for {key}: {error}")


def access_token() -> str:
    try:
        return json.loads(metadata("service-accounts/default/token"))["access_token"]
    except (ValueError, KeyError) as exc:
        raise BootstrapError(f"no usable token from the metadata server: {exc}") from None


# --- Cloud Storage (JSON API: objects.get alt=media, simple upload) ---------------------------

def split_url(url: str):
    if not url.startswith("gs://"):
        raise BootstrapError(f"{url!r} is not a gs:// address")
    bucket, _, name = url[len("gs://"):].partition("/")
    return bucket, name


def storage_endpoint() -> str:
    return (os.environ.get("GPUCTL_STORAGE_ENDPOINT") or GOOGLE_STORAGE).rstrip("/")


def _storage(method: str, url: str, data: bytes | None = None, headers: dict | None = None):
    """(status, body); None body on 404. Retries 408/429/5xx and dropped connections
    (https://cloud.google.com/storage/docs/retry-strategy)."""
    for attempt in range(RETRIES):
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {access_token()}", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return 404, None
            if exc.code not in (408, 429) and exc.code < 500 or attempt == RETRIES - 1:
                raise BootstrapError(f"{method} {url}: {exc.code} {exc.read()[:200]!r}") from None
        except OSError as exc:
            if attempt == RETRIES - 1:
                raise BootstrapError(f"{method} {url}: {exc}") from None
        time.sleep(min(2 ** attempt, 16) * 0.25)
    raise BootstrapError("unreachable")


def download(url: str) -> bytes | None:
    bucket, name = split_url(url)
    _, body = _storage("GET", f"{storage_endpoint()}/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o/"
                              f"{urllib.parse.quote(name, safe='')}?alt=media")
    return body


def upload(url: str, data: bytes) -> None:
    bucket, name = split_url(url)
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    _storage("POST", f"{storage_endpoint()}/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?{query}",
             data, {"Content-Type": "application/octet-stream"})


def need(url: str) -> bytes:
    body = download(url)
    if body is None:
        raise BootstrapError(f"{url} is missing: was the run started with `gpuctl run --recover`?")
    return body


# --- provisioning: the steps `gpuctl up` runs over SSH, run here ------------------------------

PROVISIONED, REBOOTING = 0, 3  # provision.pyz's exit codes (gpuctl/provision/on_boot.py)
PROVISION_TIMEOUT_S = 2 * 3600  # driver + CUDA + a torch venv, on a slow mirror
SUDOERS = "/etc/sudoers.d/gpuctl-recover"


def is_mounted(path: str) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts if len(line.split()) > 1)


def allow_sudo(user: str) -> None:
    """Passwordless sudo for the login user, as GCE's guest agent gives the user named in the
    `ssh-keys` metadata (google-sudoers group); written here too because this script may run
    before the agent has made the account, and the steps' checks read the host as that user."""
    with open(SUDOERS, "w") as f:
        f.write(f"{user} ALL=(ALL:ALL) NOPASSWD:ALL\n")
    os.chmod(SUDOERS, 0o440)


def provision(spec: dict, helpers: str) -> dict:
    """Run the packed steps (provision.pyz) as root with the profile's settings; their report.
    A driver that needs a reboot reboots the VM: this script runs again on the next boot."""
    path = os.path.join(helpers, "provision.pyz")
    with open(path, "wb") as f:
        f.write(need(f"{spec['bundle']}/provision.pyz"))
    done = subprocess.run([sys.executable, path], input=json.dumps(spec["provision"]).encode(),
                          capture_output=True, timeout=PROVISION_TIMEOUT_S)
    try:
        report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BootstrapError(f"provisioning exited {done.returncode}: "
                             f"{done.stderr.decode(errors='replace')[-300:]}") from None
    for step in report.get("steps", []):
        log(f"provision {step['id']}: {step['status']} {step.get('reason') or step.get('error') or ''}".rstrip())
    if done.returncode == REBOOTING:
        log(f"rebooting: {report.get('reason')}")
    elif done.returncode != PROVISIONED:
        failed = [s for s in report.get("steps", []) if s["status"] == "failed"]
        why = f"{failed[0]['id']}: {failed[0].get('error')}" if failed else report.get("error", "unknown")
        raise BootstrapError(f"provisioning failed at {why}")
    return report


# --- the run ----------------------------------------------------------------------------------

def ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        made = subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], capture_output=True)
        try:  # the guest agent may have made the same account a moment ago (useradd exits 9)
            return pwd.getpwnam(name)
        except KeyError:
            raise BootstrapError(f"could not make user {name}: {made.stderr.decode(errors='replace')[-200:]}") \
                from None


def as_user(user: str, argv: list, stdin: bytes = b"") -> subprocess.CompletedProcess:
    keep = {k: os.environ[k] for k in ("GCE_METADATA_HOST", "GPUCTL_STORAGE_ENDPOINT") if os.environ.get(k)}
    command = ["runuser", "-u", user, "--", "env", *[f"{k}={v}" for k, v in keep.items()], *argv]
    return subprocess.run(command, input=stdin, capture_output=True, timeout=600)


def run_state(run_dir: str) -> str:
    """'running', 'ended' or 'absent' for a run dir of this machine."""
    if not os.path.isdir(run_dir):
        return "absent"
    if os.path.exists(os.path.join(run_dir, "exit_code")):
        return "ended"
    try:
        with open(os.path.join(run_dir, "supervisor.pid")) as f:
            os.kill(int(f.read().strip()), 0)
        return "running"
    except (OSError, ValueError):
        return "ended"  # a supervisor from an earlier boot of this disk


def read_spec() -> dict:
    return json.loads(need(metadata(f"attributes/{RECOVER_KEY}").strip()))


def bootstrap(spec: dict) -> dict:
    run, user, folder = spec["run"], spec["user"], spec["checkpoints"].rstrip("/")
    for marker, state in ((FINISHED, "finished"), (FAILED, "failed")):
        if download(f"{folder}/{marker}") is not None:
            log(f"run {run} already {state} on an earlier VM; nothing to start")
            # This VM should not exist (the group recreated it before the earlier VM's delete
            # landed, or that delete failed): it ends its own bill the same way.
            delete_own_group(folder, f"run {state} earlier")
            return {"run": run, "state": state}
    account = ensure_user(user)
    allow_sudo(user)
    helpers = os.path.join(STATE_DIR, run)
    os.makedirs(helpers, exist_ok=True)
    os.chmod(STATE_DIR, 0o755)
    os.chmod(helpers, 0o755)
    # Every boot: the steps check first and change only what is missing, so a VM the group
    # recreated is provisioned in full and a rebooted one is only re-checked.
    if provision(spec, helpers).get("rebooting"):
        return {"run": run, "state": "rebooting"}
    on_nvme = is_mounted(spec["mount"])  # the nvme step skips a VM with no local SSD
    base = os.path.join(spec["mount"], "gpuctl") if on_nvme else os.path.join(account.pw_dir, "gpuctl-runs")
    os.makedirs(base, exist_ok=True)
    os.chown(base, account.pw_uid, account.pw_gid)
    run_dir = os.path.join(base, "runs", run)
    state = run_state(run_dir)
    if state == "running":
        log(f"run {run} is already running on this VM")
        return {"run": run, "state": "running", "run_dir": run_dir}
    if state == "ended":  # this disk survived a reboot: keep the old run's files beside
        os.rename(run_dir, f"{run_dir}.{int(time.time())}")

    paths = {}
    for name in ("run_host.py", "checkpoint_sync.py"):
        paths[name] = os.path.join(helpers, name)
        with open(paths[name], "wb") as f:
            f.write(need(f"{spec['bundle']}/{name}"))
        os.chmod(paths[name], 0o755)
    code_dir = os.path.join(base, "code", run)
    applied = as_user(user, [sys.executable, paths["run_host.py"], "apply", "--dir", code_dir],
                      need(f"{spec['bundle']}/code.tar.gz"))
    if applied.returncode != 0:
        raise BootstrapError(f"unpacking the code failed: {applied.stderr.decode(errors='replace')[-300:]}")
    with open(paths["checkpoint_sync.py"]) as f:
        syncer = f.read()
    request = {
        "name": run, "base": base, "code_dir": code_dir, "cwd": spec.get("cwd"), "argv": spec["argv"],
        "env": spec.get("env") or {}, "requirements": spec.get("requirements"), "timeout": spec.get("timeout"),
        "grace": spec.get("grace") or 25,  # inside the 30 s a spot VM gets
        "launcher": spec.get("launcher"),
        "checkpoints": {"dir": os.path.join(base, "checkpoints", run), "url": folder, "syncer": syncer,
                        "keep_log": True},
    }
    started = as_user(user, [sys.executable, paths["run_host.py"], "start"], json.dumps(request).encode())
    if started.returncode != 0:
        raise BootstrapError(f"starting the run failed: {started.stderr.decode(errors='replace')[-300:]}")
    answer = json.loads(started.stdout.decode().strip().splitlines()[-1])
    log(f"run {run} started ({answer.get('launcher')}), log {answer.get('log')}")
    # A watcher outlives this script: when the command exits 0 it marks the run finished in the
    # bucket, so no later replacement starts it again.
    # From a copy: the guest agent deletes the downloaded script as soon as this process exits.
    watcher = os.path.join(helpers, "bootstrap.py")
    shutil.copyfile(os.path.abspath(__file__), watcher)
    subprocess.Popen([sys.executable, watcher, "watch", answer["run_dir"], folder],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)
    return {"run": run, "state": "started", "run_dir": answer.get("run_dir"), "on_nvme": on_nvme}


def watch(run_dir: str, folder: str, poll_s: float = 2.0) -> int:
    """Wait for the run's exit code, then end the group's bill unless a next VM should go on:
    - exit 0: write <folder>/.gpuctl/finished, then delete this VM's own group (a shutdown would
      not do: the group recreates a stopped VM). The marker goes first: a replacement made before
      the delete lands finds it, starts nothing and deletes the group itself;
    - stopped by the machine going away (preempted, or the guest shut down: SIGTERM/SIGKILL, 143
      or 137): nothing; the group's next VM resumes from the checkpoint;
    - any other end (the command failed, or hit the spec's timeout): write .gpuctl/failed and
      delete the group. No replacement would come for a VM that was not preempted, and one
      would fail the same way: this VM would only sit there billing until the deadline."""
    path = os.path.join(run_dir, "exit_code")
    while not os.path.exists(path):
        time.sleep(poll_s)
    with open(path) as f:
        code = f.read().strip()
    if code == "0":
        end_run(folder, FINISHED, {"exit_code": 0, "at": time.time()}, "run finished")
    elif not stopped_by_the_machine(run_dir, code):
        timed_out = os.path.exists(os.path.join(run_dir, "timed_out"))
        why = "run timed out" if timed_out else f"run failed (exit {code})"
        end_run(folder, FAILED, {"exit_code": code, "timed_out": timed_out, "stage": "run", "at": time.time()}, why)
    return 0


def stopped_by_the_machine(run_dir: str, code: str) -> bool:
    """The run ended because the VM is going away, not by itself."""
    if os.path.exists(os.path.join(run_dir, "timed_out")):
        return False  # the supervisor stopped it at the spec's timeout
    if code in ("143", "137"):  # SIGTERM from the guest's shutdown, SIGKILL after its grace
        return True
    try:  # Google sets it when preemption begins (compute.v1.json Scheduling; metadata `preempted`)
        return metadata("preempted").strip().upper() == "TRUE"
    except BootstrapError:
        return True  # cannot tell: leave it to the next VM, or the deadline


def end_run(folder: str, marker: str, document: dict, why: str) -> None:
    """Record how the run ended (best effort: the delete matters more), then delete the group."""
    try:
        upload(f"{folder}/{marker}", json.dumps(document).encode())
    except (BootstrapError, OSError) as exc:
        note(f"{why}; could not write {marker}: {exc}")
    delete_own_group(folder, why)


# --- the group's own deletion (Compute Engine REST, regionInstanceGroupManagers.delete) --------

GOOGLE_COMPUTE = "https://compute.googleapis.com"
RECOVER_JSON = ".gpuctl/recover.json"
DELETE_ATTEMPTS = 8
DELETE_BACKOFF_S = 0.5  # doubled per attempt, at most 30 s between two


def note(message: str) -> None:
    """log() and the system journal: the watcher runs detached, its own output goes nowhere."""
    log(message)
    try:
        import syslog

        syslog.openlog("gpuctl-bootstrap")
        syslog.syslog(message)
    except (ImportError, OSError):
        pass


def compute_endpoint() -> str:
    """Compute Engine's base (the API path is added), or GPUCTL_COMPUTE_ENDPOINT (tests), the
    override gpuctl's own Compute adapter honours too."""
    return (os.environ.get("GPUCTL_COMPUTE_ENDPOINT") or GOOGLE_COMPUTE).rstrip("/")


def project_id() -> str:
    """The VM's project id from the metadata server (`project/project-id`, plain text)."""
    url = f"http://{metadata_host()}/computeMetadata/v1/project/project-id"
    request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
    error: Exception | None = None
    for attempt in range(RETRIES):
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.read().decode().strip()
        except (urllib.error.HTTPError, OSError) as exc:
            error = exc
        time.sleep(min(2 ** attempt, 16) * 0.25)
    raise BootstrapError(f"metadata server ({metadata_host()}) gave no project id: {error}")


def group_url(spec: dict) -> str | None:
    """regions/R/instanceGroupManagers/NAME of the run's group, from recover.json; None for a
    spec made before gpuctl wrote the group there."""
    if not spec.get("group") or not spec.get("region"):
        return None
    project = spec.get("project") or project_id()
    return (f"{compute_endpoint()}/compute/v1/projects/{urllib.parse.quote(project, safe='')}/regions/"
            f"{urllib.parse.quote(spec['region'], safe='')}/instanceGroupManagers/"
            f"{urllib.parse.quote(spec['group'], safe='')}")


def delete_own_group(folder: str, why: str = "run finished") -> bool:
    """DELETE the run's group (and with it this VM), as its service account may through one
    conditional grant on that group alone (infra/gpuctl_infra/recovering_vm.py). Retries 429,
    5xx and dropped connections with one requestId, so a retry that reaches Compute twice acts
    once ("Specify a unique request ID so that if you must retry your request, the server will
    know to ignore the request if it has already been completed", compute.v1.json, requestId).
    A 404 is a group already gone. Never raises: on failure it says why, and the deadline job
    (Cloud Scheduler) deletes the group later. True when Compute accepted the delete."""
    import uuid

    try:
        spec = json.loads(need(f"{folder}/{RECOVER_JSON}"))
        url = group_url(spec)
    except (BootstrapError, ValueError) as exc:
        note(f"{why}; the group is left to its deadline: {exc}")
        return False
    if url is None:
        note(f"{why}; recover.json names no group: the deadline deletes it")
        return False
    url = f"{url}?{urllib.parse.urlencode({'requestId': str(uuid.uuid4())})}"
    why = ""
    for attempt in range(DELETE_ATTEMPTS):
        try:
            request = urllib.request.Request(url, method="DELETE",
                                             headers={"Authorization": f"Bearer {access_token()}"})
            with urllib.request.urlopen(request, timeout=60) as answer:
                operation = json.loads(answer.read() or b"{}")
            note(f"{why}; deleting group {spec['group']} in {spec['region']} "
                 f"(operation {operation.get('name')})")
            return True
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                note(f"{why}; group {spec['group']} is already gone")
                return True
            why = f"{exc.code} {exc.read()[:300]!r}"
            if exc.code != 429 and exc.code < 500:
                break  # 403 and the like: a retry gets the same answer
        except (BootstrapError, OSError, ValueError) as exc:
            why = str(exc)
        if attempt < DELETE_ATTEMPTS - 1:
            time.sleep(min(DELETE_BACKOFF_S * 2 ** attempt, 30.0))
    note(f"run finished, but deleting group {spec['group']} failed ({why}); its deadline deletes it")
    return False


def retry_wait_s(attempt: int) -> float:
    return float(os.environ.get("GPUCTL_BOOT_RETRY_S") or 60) * attempt  # tests: a short wait


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "watch":
        try:
            return watch(sys.argv[2], sys.argv[3])
        except (BootstrapError, OSError) as exc:
            note(f"watch failed: {exc}")
            return 1
    errors = (BootstrapError, subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, ValueError,
              KeyError)
    try:
        spec = read_spec()
    except errors as exc:  # no spec, no bucket: nothing to record in; the deadline ends the group
        log(f"failed: {exc}")
        return 1
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            result = bootstrap(spec)
        except errors as exc:
            if attempt < START_ATTEMPTS:
                wait = retry_wait_s(attempt)
                log(f"failed: {exc} (try {attempt} of {START_ATTEMPTS}; again in {wait:g} s)")
                time.sleep(wait)
                continue
            log(f"failed: {exc}")
            # A VM that cannot start the run would sit there billing until the deadline.
            end_run(spec["checkpoints"].rstrip("/"), FAILED,
                    {"stage": "boot", "reason": str(exc)[-500:], "at": time.time()}, "the VM could not start the run")
            return 1
        print(json.dumps(result))
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
