#!/usr/bin/env python3
"""gpuctl run helper: the host side of `gpuctl run / logs / jobs / cancel / fetch`.

gpuctl copies this file to ~/.cache/gpuctl/run_host-<hash>.py on the host and runs one
subcommand per SSH round trip. Arguments that could need quoting come as JSON on stdin, and
secrets only ever travel that way: never on a command line, never in a log.

    hello            facts: where runs go (NVMe or the boot disk), systemd, clock, the code
                     cache's manifest, which disk given paths are on
    apply --dir D    a tar stream on stdin updates the code cache D (atomic per file)
    start            start a run, detached, under `systemd-run` or a setsid'd supervisor
    supervise        (internal) the supervisor: env, log, pid files, timeout, exit status
    status           state and new log bytes of several runs, framed
    follow           a run's log from an offset until the run ends, framed, with heartbeats
    cancel           SIGTERM to the run's process group, SIGKILL after a grace period
    pack             a file or directory of a run as a tar stream, skipping what the client has

Layout of a run (base is <NVMe mount>/gpuctl, or ~/gpuctl-runs without an NVMe mount):
    <base>/runs/<run>/run.json      what was started (no secrets), when, how
    <base>/runs/<run>/code/         a hard-linked snapshot of the synced code: the run's cwd
    <base>/runs/<run>/output.log    stdout and stderr
    <base>/runs/<run>/pid           the command's pid (its process group)
    <base>/runs/<run>/exit_code     written when the command ends
    /var/lib/gpuctl/jobs/<run>.pid  while the command lives: the idle watchdog counts it busy

Self-contained: stdlib only, Python 3.8+ (Ubuntu 20.04 and later, Debian 11 and later).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

JOBS_DIR = "/var/lib/gpuctl/jobs"
CACHES_FILE = "/etc/profile.d/gpuctl-caches.sh"
SHUTDOWN_CRON = "/etc/cron.d/gpuctl-shutdown"
FALLBACK_BASE = "~/gpuctl-runs"
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
EXPORT_RE = re.compile(r"^\s*export\s+([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s*$")
SYNC_META = ".gpuctl-sync.json"
START_WAIT_S = 10.0
POLL_S = 0.2
HEARTBEAT_S = 5.0
SYNC_EVERY_S = 5.0  # checkpoint syncer: how often it looks for finished checkpoints (a dir walk)
SYNC_PULL_S = 3600.0  # fetching the newest checkpoint before the command (tens of GB)
SYNC_FLUSH_S = 900.0  # the last upload after the command ends by itself, is cancelled or times out
# A stop signal is a spot VM's preemption notice (or a host shutdown): Compute Engine powers a
# Spot VM off 30 s after the ACPI G2 soft off that starts the guest's shutdown (compute.v1.json,
# Scheduling.skipGuestOsShutdown: "30 seconds for Spot VMs"; the preemption process in
# https://cloud.google.com/compute/docs/instances/spot). From the SIGTERM, the command's last
# save and its upload get NOTICE_FLUSH_S, leaving the rest for the shutdown itself.
NOTICE_FLUSH_S = 20.0
NOTICE_POLL_S = 0.5  # during the notice, how often the syncer looks for the last checkpoint
SYNC_OUT_OF_TIME = 3  # checkpoint_sync.py's exit status when its --budget ran out
CHUNK = 256 * 1024
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KEEP_ENV = ("HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM",
            "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")


class HelperError(Exception):
    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


# --- small helpers ----------------------------------------------------------------------------

def out_json(data) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def read_stdin_json():
    text = sys.stdin.read()
    return json.loads(text) if text.strip() else {}


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_text(path: str):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def boot_time():
    for line in (read_text("/proc/stat") or "").splitlines():
        if line.startswith("btime "):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def pid_alive(pid: int) -> bool:
    """A live, non-zombie process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    stat = read_text(f"/proc/{pid}/stat")
    if stat and ")" in stat:
        fields = stat.rsplit(")", 1)[1].split()
        if fields and fields[0] in ("Z", "X"):
            return False
    return True


def read_pid(path: str) -> int:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            words = f.read(64).split()
        return int(words[0]) if words else 0
    except (OSError, ValueError):
        return 0


def children_map():
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = read_text(f"/proc/{entry}/stat")
        if not stat or ")" not in stat:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        try:
            kids.setdefault(int(fields[1]), []).append(int(entry))
        except (IndexError, ValueError):
            continue
    return kids


def descendants(pid: int):
    kids, found, todo = children_map(), [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def pid1_is_systemd() -> bool:
    comm = (read_text("/proc/1/comm") or "").strip()
    return comm == "systemd" and os.path.isdir("/run/systemd/system")


def sudo_works() -> bool:
    if os.geteuid() == 0:
        return True
    try:
        done = subprocess.run(["sudo", "-n", "true"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def choose_launcher(systemd_pid1: bool, can_sudo: bool) -> str:
    """systemd-run when systemd is PID 1 and we may use it (root or sudo): the run then lives
    in its own unit, beyond logind's reach. Otherwise a setsid'd, double-forked supervisor."""
    return "systemd" if systemd_pid1 and can_sudo else "setsid"


def systemd_run_argv(name: str, uid: int, gid: int, python: str, script: str, run_dir: str,
                     grace: float, as_root: bool):
    argv = [] if as_root else ["sudo", "-n"]
    return argv + [
        "systemd-run", f"--unit=gpuctl-run-{name}", f"--uid={uid}", f"--gid={gid}",
        "--collect", "--quiet", "--property=KillMode=mixed",
        f"--property=TimeoutStopSec={int(grace) + 10}", f"--working-directory={run_dir}",
        "--", python, script, "supervise", "--run-dir", run_dir]


def expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def device_of(path: str):
    """st_dev of the deepest existing ancestor of path."""
    path = expand(path)
    while True:
        try:
            return os.stat(path).st_dev
        except OSError:
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent


def disk_kind(path: str, mount: str, mounted: bool) -> str:
    dev = device_of(path)
    if mounted and dev is not None and dev == device_of(mount):
        return "nvme"
    if dev is not None and dev == device_of("/"):
        return "boot"
    return "other"


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def safe_rel(name: str):
    """A relative path inside the destination, or None (absolute, '..', empty parts)."""
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        return None
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return "/".join(parts)


# --- hello --------------------------------------------------------------------------------------

def base_dir(mount: str):
    """(base, on_nvme): runs go on the NVMe mount when there is one we can write."""
    if os.path.ismount(mount):
        base = os.path.join(mount, "gpuctl")
        if os.access(base, os.W_OK) or (not os.path.exists(base) and os.access(mount, os.W_OK)):
            return base, True
        return base, True  # made writable with sudo at start
    return expand(FALLBACK_BASE), False


def manifest(code_dir: str, cache_path: str):
    """{rel: [size, sha256]} of the code cache; hashes are reused while size and mtime match."""
    try:
        with open(cache_path, encoding="utf-8") as f:
            cache = json.load(f)
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    result, fresh = {}, {}
    for root, dirs, files in os.walk(code_dir):
        dirs.sort()
        for name in files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, code_dir).replace(os.sep, "/")
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if not os.path.isfile(full) or os.path.islink(full):
                continue
            known = cache.get(rel)
            if isinstance(known, list) and len(known) == 3 and known[0] == st.st_size \
                    and known[1] == st.st_mtime_ns:
                sha = known[2]
            else:
                sha = sha256_file(full)
            fresh[rel] = [st.st_size, st.st_mtime_ns, sha]
            result[rel] = [st.st_size, sha]
    try:
        os.makedirs(os.path.dirname(cache_path), exist_ok=True)
        write_atomic(cache_path, json.dumps(fresh))
    except OSError:
        pass
    return result


def local_seconds_of_day(now: float) -> int:
    t = time.localtime(now)
    return t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec


def cmd_hello(args) -> int:
    req = read_stdin_json()
    mount = req.get("mount") or "/mnt/disks/nvme"
    mounted = os.path.ismount(mount)
    base, on_nvme = base_dir(mount)
    code_key = req.get("code_key")
    code_dir = os.path.join(base, "code", code_key) if code_key else None
    user = pwd.getpwuid(os.getuid())
    now = time.time()
    runs_dir = os.path.join(base, "runs")
    paths = {}
    for path in req.get("check_paths") or []:
        full = path if path.startswith("/") else os.path.join(base, path)
        paths[path] = disk_kind(full, mount, mounted)
    out_json({
        "python": sys.version.split()[0],
        "user": user.pw_name, "uid": os.getuid(), "gid": os.getgid(), "home": user.pw_dir,
        "systemd": pid1_is_systemd(),
        "mount": mount, "nvme_mounted": mounted, "base": base, "base_on_nvme": on_nvme,
        "base_disk": disk_kind(base, mount, mounted),
        "code_dir": code_dir,
        "manifest": (manifest(code_dir, code_dir + ".manifest.json")
                     if code_dir and os.path.isdir(code_dir) else {}),
        "paths": paths,
        "existing_runs": sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else [],
        "now": now, "local_seconds": local_seconds_of_day(now), "tz": time.strftime("%Z"),
        "shutdown_cron": read_text(SHUTDOWN_CRON),
        "boot_time": boot_time(),
    })
    return 0


# --- apply (code sync) --------------------------------------------------------------------------

def _remove_any(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _ensure_parent(dest: str, rel: str) -> str:
    """Make rel's parent directories inside dest, replacing files that stand in the way."""
    current = dest
    for part in rel.split("/")[:-1]:
        current = os.path.join(current, part)
        if os.path.islink(current) or (os.path.lexists(current) and not os.path.isdir(current)):
            os.unlink(current)
        if not os.path.isdir(current):
            os.mkdir(current)
    return os.path.join(dest, rel)


def cmd_apply(args) -> int:
    dest = expand(args.dir)
    os.makedirs(dest, exist_ok=True)
    cache_path = dest + ".manifest.json"
    meta, written, total = {"delete": [], "files": {}}, [], 0
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|gz") as tar:
        for member in tar:
            if member.name == SYNC_META:
                meta = json.loads(tar.extractfile(member).read().decode())
                continue
            rel = safe_rel(member.name)
            if rel is None or not member.isfile() or rel.startswith(".gpuctl"):
                raise HelperError(f"refusing tar member {member.name!r}")
            target = _ensure_parent(dest, rel)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            fd, tmp = tempfile.mkstemp(prefix=".gpuctl-tmp-", dir=os.path.dirname(target))
            try:
                with os.fdopen(fd, "wb") as f:
                    shutil.copyfileobj(tar.extractfile(member), f, CHUNK)
                os.chmod(tmp, 0o755 if member.mode & 0o111 else 0o644)
                os.utime(tmp, (member.mtime, member.mtime))
                # A new inode: a run's hard-linked snapshot of the old file is untouched.
                os.replace(tmp, target)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            written.append(rel)
            total += member.size
    deleted = 0
    for name in meta.get("delete", []):
        rel = safe_rel(name)
        if rel is None:
            continue
        path = os.path.join(dest, rel)
        if os.path.lexists(path):
            _remove_any(path)
            deleted += 1
            parent = os.path.dirname(path)
            while parent != dest and os.path.isdir(parent) and not os.listdir(parent):
                os.rmdir(parent)
                parent = os.path.dirname(parent)
    # Record the hashes we were sent, so the next hello need not read the files again.
    try:
        with open(cache_path, encoding="utf-8") as f:
            cache = json.load(f)
    except (OSError, ValueError):
        cache = {}
    for rel in written:
        st = os.stat(os.path.join(dest, rel))
        sha = meta.get("files", {}).get(rel) or sha256_file(os.path.join(dest, rel))
        cache[rel] = [st.st_size, st.st_mtime_ns, sha]
    for name in meta.get("delete", []):
        cache.pop(name, None)
    write_atomic(cache_path, json.dumps(cache))
    out_json({"written": len(written), "deleted": deleted, "bytes": total})
    return 0


# --- start and supervise ------------------------------------------------------------------------

def snapshot(src: str, dst: str) -> None:
    """Hard-link copy of the code cache: instant, and later syncs (which replace files with
    new inodes) cannot change the code of a run that is already going."""
    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)
    shutil.copytree(src, dst, copy_function=link, symlinks=True)


def ensure_jobs_dir(jobs_dir: str, uid: int, gid: int, notes) -> bool:
    if os.path.isdir(jobs_dir) and os.access(jobs_dir, os.W_OK):
        return True
    try:
        os.makedirs(jobs_dir, exist_ok=True)
        if os.access(jobs_dir, os.W_OK):
            return True
    except OSError:
        pass
    cmd = ["install", "-d", "-o", str(uid), "-g", str(gid), "-m", "0755", jobs_dir]
    if os.geteuid() != 0:
        cmd = ["sudo", "-n"] + cmd
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=20)
        if done.returncode == 0 and os.access(jobs_dir, os.W_OK):
            return True
    except (OSError, subprocess.TimeoutExpired):
        pass
    notes.append(f"cannot write {jobs_dir} (no sudo): the idle watchdog will not count this run")
    return False


def ensure_writable_dir(path: str, uid: int, gid: int) -> None:
    try:
        os.makedirs(path, exist_ok=True)
        if os.access(path, os.W_OK):
            return
    except OSError:
        pass
    cmd = ["install", "-d", "-o", str(uid), "-g", str(gid), "-m", "0755", path]
    if os.geteuid() != 0:
        cmd = ["sudo", "-n"] + cmd
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=20)
    if not os.access(path, os.W_OK):
        raise HelperError(f"cannot create {path}: not writable and no sudo")


def daemonize_exec(argv, log_path: str) -> None:
    """Start argv in a new session, detached from this SSH session (double fork)."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.execv(argv[0], argv)
    except BaseException:
        os._exit(127)


def checkpoint_env(checkpoints, base: str, name: str) -> dict:
    """GPUCTL_CHECKPOINT_DIR (made here, under the run base on the NVMe) and
    GPUCTL_CHECKPOINT_URL (its gs:// folder) for a run with `checkpoints:`; {} without."""
    if not checkpoints:
        return {}
    folder = os.path.join(base, "checkpoints", name)
    if os.path.realpath(checkpoints.get("dir") or folder) != os.path.realpath(folder):
        raise HelperError(f"checkpoint folder {checkpoints.get('dir')!r} is not {folder!r}")
    url = checkpoints.get("url") or ""
    if not url.startswith("gs://"):
        raise HelperError(f"checkpoint URL {url!r} is not gs://")
    os.makedirs(folder, 0o755, exist_ok=True)
    return {"GPUCTL_CHECKPOINT_DIR": folder, "GPUCTL_CHECKPOINT_URL": url}


def install_syncer(checkpoints, run_dir: str, env: dict):
    """The checkpoint syncer (checkpoint_sync.py, sent with `start`) saved in the run dir; the
    supervisor runs it. None when the run has no checkpoints or no syncer was sent."""
    if not checkpoints or not checkpoints.get("syncer"):
        return None
    path = os.path.join(run_dir, "checkpoint_sync.py")
    write_atomic(path, checkpoints["syncer"], 0o755)
    return {"script": path, "dir": env["GPUCTL_CHECKPOINT_DIR"], "url": env["GPUCTL_CHECKPOINT_URL"],
            "keep_log": bool(checkpoints.get("keep_log"))}


def cmd_start(args) -> int:
    spec = read_stdin_json()
    name = spec.get("name", "")
    if not NAME_RE.match(name):
        raise HelperError(f"bad run name {name!r}")
    uid, gid = os.getuid(), os.getgid()
    base = expand(spec["base"])
    ensure_writable_dir(base, uid, gid)
    checkpoint_vars = checkpoint_env(spec.get("checkpoints"), base, name)  # before the run dir
    runs = os.path.join(base, "runs")
    os.makedirs(runs, exist_ok=True)
    run_dir = os.path.join(runs, name)
    try:
        os.mkdir(run_dir, 0o755)
    except FileExistsError:
        raise HelperError(f"a run named {name} already exists on this host ({run_dir})", 3)
    notes = []
    code_dir = spec.get("code_dir")
    if code_dir:
        snapshot(expand(code_dir), os.path.join(run_dir, "code"))
        cwd = os.path.join(run_dir, "code", spec.get("cwd") or "")
    else:
        cwd = expand(spec.get("cwd") or "~")
    jobs_dir = spec.get("jobs_dir") or JOBS_DIR
    jobs_ok = ensure_jobs_dir(jobs_dir, uid, gid, notes)
    launcher = spec.get("launcher") or choose_launcher(pid1_is_systemd(), sudo_works())
    env = {**(spec.get("env") or {}), **checkpoint_vars}
    syncer = install_syncer(spec.get("checkpoints"), run_dir, checkpoint_vars)
    meta = {
        "name": name, "argv": spec["argv"], "cwd": cwd, "env": env,
        "secret_names": sorted(spec.get("secrets") or {}),
        "requirements": spec.get("requirements"), "timeout": spec.get("timeout"),
        "grace": float(spec.get("grace") or 30), "jobs_dir": jobs_dir if jobs_ok else None,
        "venv": spec.get("venv"), "started_at": time.time(), "launcher": launcher,
        "uid": uid, "checkpoint_sync": syncer,
    }
    write_atomic(os.path.join(run_dir, "run.json"), json.dumps(meta, indent=2))
    if spec.get("secrets"):
        # 0600 from the first byte; the supervisor reads and deletes it before the command runs.
        fd = os.open(os.path.join(run_dir, "secrets.json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                     0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(spec["secrets"], f)
    script = os.path.abspath(__file__)
    if launcher == "systemd":
        argv = systemd_run_argv(name, uid, gid, sys.executable, script, run_dir,
                                meta["grace"], os.geteuid() == 0)
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60)
        if done.returncode != 0:
            raise HelperError("systemd-run failed: " + done.stderr.decode(errors="replace").strip())
    else:
        daemonize_exec([sys.executable, script, "supervise", "--run-dir", run_dir],
                       os.path.join(run_dir, "supervisor.log"))
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        if os.path.exists(os.path.join(run_dir, "pid")) or \
                os.path.exists(os.path.join(run_dir, "exit_code")):
            break
        time.sleep(0.05)
    state = run_state(run_dir, boot_time())
    state.update({"run_dir": run_dir, "log": os.path.join(run_dir, "output.log"),
                  "launcher": launcher, "notes": notes, "cwd": cwd})
    out_json(state)
    return 0


def load_caches_env(path=None):
    env = {}
    for line in (read_text(path or CACHES_FILE) or "").splitlines():
        match = EXPORT_RE.match(line)
        if match:
            env[match.group(1)] = match.group(2).strip("'\"")
    return env


def build_env(meta, secrets, base_env=None):
    """The run's environment: a login-like base (not the SSH session's), the NVMe caches,
    the virtualenv, PYTHONUNBUFFERED (or the log shows nothing until a buffer fills), then the
    job's env and its secrets."""
    base_env = os.environ if base_env is None else base_env
    env = {k: base_env[k] for k in KEEP_ENV if k in base_env}
    user = pwd.getpwuid(os.getuid())
    env.setdefault("HOME", user.pw_dir)
    env.setdefault("USER", user.pw_name)
    env.setdefault("LOGNAME", user.pw_name)
    env["PATH"] = DEFAULT_PATH
    env.update(load_caches_env())
    venv = meta.get("venv") or os.path.join(env["HOME"], "venv")
    if os.path.isfile(os.path.join(venv, "bin", "python")):
        env["VIRTUAL_ENV"] = venv
        env["PATH"] = os.path.join(venv, "bin") + ":" + env["PATH"]
    env["PYTHONUNBUFFERED"] = "1"
    env["GPUCTL_RUN"] = meta["name"]
    env.update({k: str(v) for k, v in (meta.get("env") or {}).items()})
    env.update({k: str(v) for k, v in (secrets or {}).items()})
    return env


class Supervisor:
    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as f:
            self.meta = json.load(f)
        self.stop_requested = None  # the signal that asked us to stop
        self.stopped_at = None  # time.monotonic() of the first such signal
        self.proc = None
        self.sync = None  # the run's checkpoint_sync settings, once its command runs
        self.syncer = None  # the periodic push, while the command runs
        self.flusher = None  # the last push: bounded by the notice after a stop signal
        self.flush_log_at = 0  # where the last push's lines start in checkpoint-sync.log

    def path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    @property
    def job_pid_file(self):
        jobs = self.meta.get("jobs_dir")
        return os.path.join(jobs, self.meta["name"] + ".pid") if jobs else None

    def _signalled(self, signum, frame) -> None:
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        self.stop_requested = signum

    def _publish_pid(self, pid: int) -> None:
        write_atomic(self.path("pid"), f"{pid}\n")
        if self.job_pid_file:
            try:
                write_atomic(self.job_pid_file, f"{pid}\n")
            except OSError:
                pass

    def _spawn(self, argv, env, cwd, log_fd):
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log_fd, stderr=log_fd, start_new_session=True,
                                    close_fds=True)
        except OSError as e:
            os.write(log_fd, f"[gpuctl] cannot start {argv[0]!r}: {e.strerror or e}\n".encode())
            return None
        self.proc = proc
        self._publish_pid(proc.pid)
        return proc

    def _wait(self, proc, deadline):
        grace = float(self.meta.get("grace") or 30)
        while True:
            try:
                return proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
            reason = None
            if self.stop_requested is not None:
                reason = "stopped"
            elif deadline is not None and time.time() > deadline:
                reason = "timeout"
                write_atomic(self.path("timed_out"), "1\n")
            if reason:
                if reason == "stopped" and self.sync and proc is self.proc and self.flusher is None:
                    self._start_notice_flush(pid=proc.pid)  # uploads while the command saves
                terminate_tree(proc.pid, grace)
                return proc.wait()

    # -- checkpoints: pull the newest before the command, push new ones while it runs ----------
    def _sync_argv(self, sync, command):
        argv = [sys.executable, sync["script"], command, "--dir", sync["dir"], "--url", sync["url"]]
        # A --recover run's log goes to the bucket too (keep_log, set by its bootstrap): the VM's
        # disk, and the log on it, goes with a preempted VM, and `jobs` reads the steps from it.
        # Other runs keep their log on the host: it may hold what the user would not put in a bucket.
        return argv + ["--log", self.path("output.log")] if command == "push" and sync.get("keep_log") else argv

    def _pull_checkpoint(self, sync, log_fd) -> None:
        """A replacement VM resumes: the newest complete checkpoint comes down before the
        command starts. A failure is logged and the command starts from scratch."""
        os.write(log_fd, f"[gpuctl] checkpoints: fetching the newest from {sync['url']}\n".encode())
        try:
            done = subprocess.run(self._sync_argv(sync, "pull"), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=SYNC_PULL_S)
            pulled = json.loads(done.stdout or b"{}").get("pulled") if done.returncode == 0 else None
            text = (f"resuming from {pulled}" if pulled else "none yet, starting fresh") if done.returncode == 0 \
                else done.stderr.decode(errors="replace").strip()[-300:]
        except (OSError, ValueError, subprocess.TimeoutExpired) as e:
            text = f"fetch failed: {e}"
        os.write(log_fd, f"[gpuctl] checkpoints: {text}\n".encode())

    def _start_syncer(self, sync, pid: int):
        return self._sync_process(self._sync_argv(sync, "push") + ["--every", str(SYNC_EVERY_S),
                                                                  "--while-pid", str(pid)])

    def _sync_process(self, argv):
        log = open(self.path("checkpoint-sync.log"), "ab")
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True)
        except OSError:
            return None
        finally:
            log.close()

    def _start_notice_flush(self, pid=None, last=()) -> None:
        """A stop signal: the periodic push makes way for one bounded by the notice. While the
        command saves and exits (pid), each checkpoint it finishes goes up at once; once it has
        exited, every finished one, newest first, until NOTICE_FLUSH_S after the signal.
        Without pid the command has already ended; `last` says how it ended."""
        stop_process(self.syncer)
        budget = max(1.0, self.stopped_at + NOTICE_FLUSH_S - time.monotonic())
        argv = self._sync_argv(self.sync, "push") + ["--final", "--budget", f"{budget:.1f}"]
        argv += ["--while-pid", str(pid), "--every", str(NOTICE_POLL_S)] if pid else list(last)
        self.flush_log_at = self._sync_log_size()
        self.flusher = self._sync_process(argv)

    def _sync_log_size(self) -> int:
        try:
            return os.path.getsize(self.path("checkpoint-sync.log"))
        except OSError:
            return 0

    def _await_sync(self, proc, limit_s: float, until_stop: bool) -> bool:
        """Wait for a sync process, killing it after limit_s. With until_stop, False as soon as a
        stop signal arrives (the process is left running for the caller)."""
        end = time.monotonic() + limit_s
        while proc is not None and proc.poll() is None:
            if until_stop and self.stop_requested is not None:
                return False
            if time.monotonic() > end:
                stop_process(proc)
            time.sleep(POLL_S)
        return True

    def _finish_syncer(self, log_fd, clean: bool) -> None:
        """The last upload, before the exit code says the run is over (so a finished run's
        checkpoints are in the bucket). A command that exited 0 by itself finished writing:
        all of it goes up now. Any other end (cancelled, timed out, killed, crashed) may have
        cut a checkpoint in the middle: only what its writer marked finished, or what had not
        changed for the settle time when it ended, goes up. After a stop signal the last upload
        is the notice's, bounded by NOTICE_FLUSH_S; a signal during a long one cuts it to that."""
        killed = not clean or self.stop_requested is not None or any(
            os.path.exists(self.path(name)) for name in ("timed_out", "cancelled"))
        ended = time.time()  # what was fresh when the command died is judged from here, not later
        last = ["--ended-at", str(ended)] if killed else ["--settle", "0"]
        if self.flusher is None and self._await_sync(self.syncer, SYNC_FLUSH_S, until_stop=True):
            self.flush_log_at = self._sync_log_size()
            self.flusher = self._sync_process(self._sync_argv(self.sync, "push")
                                              + ["--final", "--budget", str(SYNC_FLUSH_S)] + last)
            if not self._await_sync(self.flusher, SYNC_FLUSH_S + 30, until_stop=True):
                stop_process(self.flusher)
                self._start_notice_flush(last=last)  # a notice came: again, bounded by it
        elif self.flusher is None:
            self._start_notice_flush(last=last)
        limit = SYNC_FLUSH_S + 30 if self.stopped_at is None else \
            max(0.0, self.stopped_at + NOTICE_FLUSH_S + 2 - time.monotonic())
        self._await_sync(self.flusher, limit, until_stop=False)
        self._report_flush(log_fd)

    def _report_flush(self, log_fd) -> None:
        """One line in the run's log: what the last upload took, left for lack of time, or left
        out as unfinished; or that it failed."""
        code = None if self.flusher is None else self.flusher.returncode
        summary = {}
        try:
            with open(self.path("checkpoint-sync.log"), "rb") as f:
                f.seek(self.flush_log_at)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            lines = []
        for line in lines:
            if line.startswith("{") and '"incomplete"' in line:
                try:
                    summary = json.loads(line)
                except ValueError:
                    pass
        parts = []
        if summary.get("pushed"):
            parts.append("uploaded " + ", ".join(summary["pushed"]))
        if summary.get("left"):
            parts.append("no time left for " + ", ".join(summary["left"]) + " (newest first; the next "
                         "host resumes from the newest complete one)")
        if summary.get("incomplete"):
            parts.append("not finished, not uploaded: " + ", ".join(summary["incomplete"]))
        if code not in (0, SYNC_OUT_OF_TIME) or not summary:
            parts.append(f"the last upload failed ({code}); see checkpoint-sync.log")
        if parts:
            os.write(log_fd, ("[gpuctl] checkpoints: " + "; ".join(parts) + "\n").encode())

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._signalled)
        write_atomic(self.path("supervisor.pid"), f"{os.getpid()}\n")
        secrets = {}
        secrets_path = self.path("secrets.json")
        if os.path.exists(secrets_path):
            with open(secrets_path, encoding="utf-8") as f:
                secrets = json.load(f)
            os.unlink(secrets_path)
        env = build_env(self.meta, secrets)
        log_fd = os.open(self.path("output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        timeout = self.meta.get("timeout")
        deadline = self.meta["started_at"] + float(timeout) if timeout else None
        cwd = self.meta["cwd"]
        code = 0
        try:
            req = self.meta.get("requirements")
            if req:
                os.write(log_fd, f"[gpuctl] pip install -r {req}\n".encode())
                pip = self._spawn(["python3", "-m", "pip", "install", "-q", "-r", req], env, cwd,
                                  log_fd)
                code = 127 if pip is None else exit_status(self._wait(pip, deadline))
            if code == 0 and self.stop_requested is None:
                sync = self.meta.get("checkpoint_sync")
                if sync:
                    self._pull_checkpoint(sync, log_fd)
                proc = self._spawn(self.meta["argv"], env, cwd, log_fd)
                if sync and proc:
                    self.sync, self.syncer = sync, self._start_syncer(sync, proc.pid)
                code = 127 if proc is None else exit_status(self._wait(proc, deadline))
                if sync and proc:
                    self._finish_syncer(log_fd, clean=code == 0)
            elif self.stop_requested is not None:
                code = 128 + self.stop_requested
        finally:
            os.close(log_fd)
            write_atomic(self.path("exit_code"), f"{code}\n")
            if self.job_pid_file:
                try:
                    os.unlink(self.job_pid_file)
                except OSError:
                    pass
        return 0


def stop_process(proc) -> None:
    """Kill a child of ours (a sync process) and reap it."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def exit_status(returncode: int) -> int:
    """Popen's -N for 'killed by signal N' becomes the shell's 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def signal_tree(pid: int, sig: int) -> None:
    targets = [pid] + descendants(pid)
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for target in targets:
        try:
            os.kill(target, sig)
        except (ProcessLookupError, PermissionError):
            pass


def tree_alive(pid: int) -> bool:
    if pid_alive(pid):
        return True
    try:
        os.killpg(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def terminate_tree(pid: int, grace: float) -> bool:
    """SIGTERM the process group and its descendants; SIGKILL what is left after `grace`.
    True when SIGKILL was needed."""
    signal_tree(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not tree_alive(pid):
            return False
        time.sleep(0.05)
    signal_tree(pid, signal.SIGKILL)
    return True


def cmd_supervise(args) -> int:
    return Supervisor(expand(args.run_dir)).run()


# --- state, status, follow ----------------------------------------------------------------------

def run_state(run_dir: str, booted):
    meta = {}
    try:
        with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        pass
    log = os.path.join(run_dir, "output.log")
    try:
        st = os.stat(log)
        size, mtime = st.st_size, st.st_mtime
    except OSError:
        size, mtime = 0, None
    pid_path = os.path.join(run_dir, "pid")
    pid = read_pid(pid_path)
    exit_text = read_text(os.path.join(run_dir, "exit_code"))
    exit_code = None
    ended_at = None
    if exit_text is not None and exit_text.strip().lstrip("-").isdigit():
        exit_code = int(exit_text.strip())
        ended_at = os.path.getmtime(os.path.join(run_dir, "exit_code"))
    now = time.time()
    if exit_code is not None:
        if os.path.exists(os.path.join(run_dir, "cancelled")):
            state = "cancelled"
        elif os.path.exists(os.path.join(run_dir, "timed_out")):
            state = "timed-out"
        else:
            state = "succeeded" if exit_code == 0 else "failed"
    elif pid and not (booted and os.path.getmtime(pid_path) < booted) and (
            pid_alive(pid) or pid_alive(read_pid(os.path.join(run_dir, "supervisor.pid")))):
        state = "running"  # (or its supervisor is about to write the exit status)
    elif not pid and now - float(meta.get("started_at") or 0) < START_WAIT_S * 3:
        state = "starting"
    else:
        state = "lost"  # the host restarted, or the supervisor was killed
    started = meta.get("started_at")
    return {"state": state, "exit_code": exit_code, "pid": pid or None,
            "started_at": started, "ended_at": ended_at, "now": now,
            "run_seconds": ((ended_at or now) - started) if started else None,
            "log_size": size, "log_age": (now - mtime) if mtime else None,
            "launcher": meta.get("launcher")}


def write_frame(kind: bytes, header=None, data: bytes = b"") -> None:
    out = sys.stdout.buffer
    line = kind if header is None else kind + b" " + json.dumps(header).encode()
    out.write(line + b"\n")
    if data:
        out.write(data)
    out.flush()


def read_log(run_dir: str, offset: int, limit: int) -> bytes:
    try:
        with open(os.path.join(run_dir, "output.log"), "rb") as f:
            f.seek(max(0, offset))
            return f.read(max(0, limit))
    except OSError:
        return b""


def tail_offset(run_dir: str, lines: int) -> int:
    """Offset of the start of the last `lines` lines (\\n or \\r separated) of the log."""
    path = os.path.join(run_dir, "output.log")
    try:
        size = os.path.getsize(path)
    except OSError:
        return 0
    block, pos, seen = 64 * 1024, size, 0
    with open(path, "rb") as f:
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            data = f.read(pos - start)
            for i in range(len(data) - 1, -1, -1):
                if data[i] == 10 and (start + i) != size - 1:
                    seen += 1
                    if seen >= lines:
                        return start + i + 1
            pos = start
    return 0


def cmd_status(args) -> int:
    req = read_stdin_json()
    booted = boot_time()
    for item in req.get("runs", []):
        run_dir = expand(item["dir"])
        if not os.path.isdir(run_dir):
            write_frame(b"S", {"dir": item["dir"], "state": "missing", "len": 0})
            continue
        state = run_state(run_dir, booted)
        offset = int(item.get("offset") or 0)
        if item.get("tail_lines"):
            offset = tail_offset(run_dir, int(item["tail_lines"]))
        data = read_log(run_dir, offset, int(item.get("max") or 8 * 1024 * 1024))
        state.update({"dir": item["dir"], "offset": offset, "len": len(data)})
        write_frame(b"S", state, data)
    write_frame(b"E", {"now": time.time(), "local_seconds": local_seconds_of_day(time.time()),
                       "shutdown_cron": read_text(SHUTDOWN_CRON)})
    return 0


def cmd_follow(args) -> int:
    run_dir = expand(args.run_dir)
    booted = boot_time()
    offset = args.offset
    if args.tail_lines:
        offset = tail_offset(run_dir, args.tail_lines)
    write_frame(b"O", {"offset": offset})
    parent = os.getppid()
    last_write = time.monotonic()
    handle = None
    while True:
        if handle is None:
            try:
                handle = open(os.path.join(run_dir, "output.log"), "rb")
                handle.seek(offset)
            except OSError:
                handle = None
        data = handle.read(CHUNK) if handle else b""
        if data:
            write_frame(b"D", {"len": len(data)}, data)
            offset += len(data)
            last_write = time.monotonic()
            continue
        state = run_state(run_dir, booted)
        if state["state"] not in ("running", "starting"):
            rest = handle.read() if handle else b""
            if rest:
                write_frame(b"D", {"len": len(rest)}, rest)
                continue
            write_frame(b"E", state)
            return 0
        if os.getppid() != parent:
            return 0  # our SSH session is gone
        if time.monotonic() - last_write > HEARTBEAT_S:
            write_frame(b"H")
            last_write = time.monotonic()
        time.sleep(POLL_S)


# --- cancel ---------------------------------------------------------------------------------------

def cmd_cancel(args) -> int:
    run_dir = expand(args.run_dir)
    booted = boot_time()
    state = run_state(run_dir, booted)
    if state["state"] not in ("running", "starting"):
        state["already_ended"] = True
        out_json(state)
        return 0
    write_atomic(os.path.join(run_dir, "cancelled"), "1\n")
    deadline = time.monotonic() + START_WAIT_S
    pid = read_pid(os.path.join(run_dir, "pid"))
    while not pid and time.monotonic() < deadline:
        time.sleep(0.05)
        pid = read_pid(os.path.join(run_dir, "pid"))
    killed = terminate_tree(pid, args.grace) if pid else False
    # The supervisor writes the exit status when the command ends; wait for it.
    exit_path = os.path.join(run_dir, "exit_code")
    deadline = time.monotonic() + 10
    while not os.path.exists(exit_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not os.path.exists(exit_path):  # no supervisor left to write it
        write_atomic(exit_path, f"{128 + (signal.SIGKILL if killed else signal.SIGTERM)}\n")
    state = run_state(run_dir, booted)
    state.update({"killed": killed, "already_ended": False})
    out_json(state)
    return 0


# --- pack (fetch) ---------------------------------------------------------------------------------

def cmd_pack(args) -> int:
    req = read_stdin_json()
    base = expand(req["base"])
    path = req["path"]
    full = os.path.normpath(path if path.startswith("/") else os.path.join(base, path))
    if not os.path.exists(full):
        raise HelperError(f"{full} does not exist on the host", 4)
    have = req.get("have") or {}
    root = os.path.dirname(full)
    if os.path.isdir(full):
        items = []
        for top, dirs, files in os.walk(full):
            dirs.sort()
            items += [os.path.join(top, name) for name in sorted(files)]
    else:
        items = [full]
    sent = skipped = 0
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar:
        for item in items:
            if os.path.islink(item) or not os.path.isfile(item):
                continue
            rel = os.path.relpath(item, root).replace(os.sep, "/")
            st = os.stat(item)
            if have.get(rel) == [st.st_size, int(st.st_mtime)]:
                skipped += 1
                continue
            tar.add(item, arcname=rel, recursive=False)
            sent += 1
    sys.stderr.write(json.dumps({"sent": sent, "skipped": skipped}) + "\n")
    return 0


# --- main -----------------------------------------------------------------------------------------

def build_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="gpuctl-run-host")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("hello")
    apply = sub.add_parser("apply")
    apply.add_argument("--dir", required=True)
    sub.add_parser("start")
    sup = sub.add_parser("supervise")
    sup.add_argument("--run-dir", required=True)
    sub.add_parser("status")
    follow = sub.add_parser("follow")
    follow.add_argument("--run-dir", required=True)
    follow.add_argument("--offset", type=int, default=0)
    follow.add_argument("--tail-lines", type=int, default=0)
    cancel = sub.add_parser("cancel")
    cancel.add_argument("--run-dir", required=True)
    cancel.add_argument("--grace", type=float, default=30.0)
    sub.add_parser("pack")
    return parser


COMMANDS = {"hello": cmd_hello, "apply": cmd_apply, "start": cmd_start,
            "supervise": cmd_supervise, "status": cmd_status, "follow": cmd_follow,
            "cancel": cmd_cancel, "pack": cmd_pack}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # A dropped SSH connection closes our stdout: end quietly instead of with a traceback.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return COMMANDS[args.cmd](args)
    except HelperError as e:
        sys.stderr.write(json.dumps({"error": str(e)}) + "\n")
        return e.code


if __name__ == "__main__":
    sys.exit(main())
