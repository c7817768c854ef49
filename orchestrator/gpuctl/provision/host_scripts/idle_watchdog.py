#!/usr/bin/env python3
"""gpuctl idle watchdog: power this host off after it has been idle for a while.

Provisioning copies this file to /usr/local/sbin/gpuctl-idle-watchdog and cron runs it once a
minute (/etc/cron.d/gpuctl-idle-watchdog). A spot GPU VM left running by mistake costs money
every hour; this is the on-host guard that stops it when nobody is using it.

Each run takes one sample and makes one decision:

* busy      - a GPU is at or above the utilisation threshold, an SSH session is open, or a
              gpuctl-launched job is alive. The idle clock restarts.
* idle      - none of those, but not for long enough yet.
* poweroff  - idle for at least idle_minutes: run poweroff_command.
* disabled  - idle_minutes is 0.

It appends exactly one line per run to the log (read back by `gpuctl guards HOST`) and keeps
the time the host was last busy in <state_dir>/idle-state.json.

Self-contained on purpose: stdlib only, Python 3.9+ (Debian 12, Ubuntu 22.04/24.04), no
gpuctl package on the host. The parsing and the decision are pure functions, separate from the
I/O, so they can be unit-tested off-host.

Exit status is 0 on every run except a bad config (2): cron runs this every minute, and a
failing sample must never stop the next one from running.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import List, Optional

DEFAULT_CONFIG = "/etc/gpuctl/idle-watchdog.json"
STATE_FILE_NAME = "idle-state.json"
LOG_MAX_BYTES = 1024 * 1024  # rotate to <log>.1 beyond this; one line a minute is ~5 days
NVIDIA_SMI_ARGS = ["--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
# nvidia-smi can hang on a wedged GPU or driver; a hung sample must not pile up cron runs.
NVIDIA_SMI_TIMEOUT_S = 30
# cron's PATH is minimal; the driver packages put nvidia-smi in /usr/bin, but look there too.
NVIDIA_SMI_FALLBACKS = ["/usr/bin/nvidia-smi", "/usr/local/bin/nvidia-smi"]
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
PROC_STAT = "/proc/stat"
TCP_STATE_ESTABLISHED = "01"

EXIT_OK = 0
EXIT_BAD_CONFIG = 2

DECISIONS = ("busy", "idle", "poweroff", "disabled")


# --- config -----------------------------------------------------------------------------------

class ConfigError(Exception):
    """The config file is missing, unreadable or invalid: exit 2 with a one-line message."""


@dataclass(frozen=True)
class Config:
    idle_minutes: int
    gpu_util_threshold: float = 5
    state_dir: str = "/var/lib/gpuctl"
    log_file: str = "/var/log/gpuctl/idle-watchdog.log"
    jobs_dir: str = "/var/lib/gpuctl/jobs"
    poweroff_command: List[str] = field(default_factory=lambda: ["/sbin/shutdown", "-h", "now"])
    ssh_port: int = 22
    nvidia_smi: str = "nvidia-smi"  # a name looked up on PATH, or a path (tests use a fake)


CONFIG_KEYS = ("idle_minutes", "gpu_util_threshold", "state_dir", "log_file", "jobs_dir",
               "poweroff_command", "ssh_port", "nvidia_smi")


def _is_int(value: object) -> bool:
    # bool is a subclass of int; `"idle_minutes": true` is a mistake, not 1 minute.
    return isinstance(value, int) and not isinstance(value, bool)


def parse_config(data: object) -> Config:
    """Validate a decoded JSON config. Strict: a typo'd key must not silently fall back."""
    if not isinstance(data, dict):
        raise ConfigError("config must be a JSON object")
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    if "idle_minutes" not in data:
        raise ConfigError("idle_minutes is required (0 disables the watchdog)")
    values = dict(data)

    idle = values["idle_minutes"]
    if not _is_int(idle) or idle < 0:
        raise ConfigError(f"idle_minutes must be a whole number >= 0, not {idle!r}")

    if "gpu_util_threshold" in values:
        threshold = values["gpu_util_threshold"]
        # 0 would make every GPU permanently busy; above 100 no GPU could ever be busy.
        if (not (_is_int(threshold) or isinstance(threshold, float))
                or not 0 < threshold <= 100):
            raise ConfigError(f"gpu_util_threshold must be a percentage in (0, 100], "
                              f"not {threshold!r}")

    if "ssh_port" in values:
        port = values["ssh_port"]
        if not _is_int(port) or not 0 < port < 65536:
            raise ConfigError(f"ssh_port must be a port number, not {port!r}")

    for key in ("state_dir", "log_file", "jobs_dir", "nvidia_smi"):
        if key in values and (not isinstance(values[key], str) or not values[key]):
            raise ConfigError(f"{key} must be a non-empty string, not {values[key]!r}")

    if "poweroff_command" in values:
        cmd = values["poweroff_command"]
        if (not isinstance(cmd, list) or not cmd
                or not all(isinstance(part, str) and part for part in cmd)):
            raise ConfigError("poweroff_command must be a non-empty list of strings")

    return Config(**values)


def load_config(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
    except ValueError as e:  # json.JSONDecodeError and undecodable bytes
        raise ConfigError(f"config {path} is not valid JSON: {e}") from None
    try:
        return parse_config(data)
    except ConfigError as e:
        raise ConfigError(f"config {path}: {e}") from None


# --- pure parsing -----------------------------------------------------------------------------

def parse_nvidia_smi(text: str) -> List[int]:
    """GPU utilisation percentages, one per GPU, from
    `nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits`.

    Lines that are not a percentage are skipped rather than guessed at: "[N/A]" (MIG mode,
    some vGPUs) and "[Not Supported]" carry no utilisation, and error text is not a GPU.
    The caller notes when fewer values than lines came back. Never raises.
    """
    utils = []
    for line in str(text).splitlines():
        value = line.strip()
        if value.endswith("%"):  # tolerate output without `nounits`
            value = value[:-1].strip()
        # isdigit() alone accepts "²" and other Unicode digits that int() rejects.
        if not value or not value.isascii() or not value.isdigit():
            continue
        number = int(value)
        if 0 <= number <= 100:
            utils.append(number)
    return utils


def _local_port(address: str) -> Optional[int]:
    """The port of a /proc/net/tcp{,6} address such as 0100007F:0016 (hex, after the colon)."""
    _, sep, port_hex = address.rpartition(":")
    if not sep or not port_hex or len(port_hex) > 4:
        return None
    try:
        return int(port_hex, 16)
    except ValueError:
        return None


def parse_proc_net_tcp(text: str, port: int) -> int:
    """Established TCP connections whose local port is `port`, from /proc/net/tcp or tcp6.

    Lines look like (after a header line):
        0: 0F02000A:0016 0100000A:C350 01 00000000:00000000 ...
    fields: slot, local address:port, remote address:port, state (hex; 01 = ESTABLISHED,
    0A = LISTEN). Matching the *local* port counts sessions into this host's sshd and not
    this host's own outgoing ssh/git connections (whose remote port is 22). Never raises.
    """
    count = 0
    for line in str(text).splitlines():
        fields = line.split()
        if len(fields) < 4 or not fields[0].endswith(":"):
            continue  # the header, or garbage
        if fields[3].upper() != TCP_STATE_ESTABLISHED:
            continue
        if _local_port(fields[1]) == port:
            count += 1
    return count


# --- the decision -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    action: str           # one of DECISIONS
    last_busy: float      # what to store as last_busy for the next run
    idle_seconds: float   # how long the host has been idle, as of now
    reasons: str          # "gpu=[0,3]% ssh=1 jobs=0"

    @property
    def idle_minutes(self) -> int:
        return int(self.idle_seconds // 60)


def format_reasons(gpu_utils: List[int], ssh_sessions: int, active_jobs: int) -> str:
    return f"gpu=[{','.join(str(u) for u in gpu_utils)}]% ssh={ssh_sessions} jobs={active_jobs}"


def decide(now: float, last_busy: Optional[float], idle_minutes: int, gpu_utils: List[int],
           threshold: float, ssh_sessions: int, active_jobs: int) -> Decision:
    """What to do this run. Pure: no clock, no files, no processes.

    last_busy is None on the first run (no state, or state from an earlier boot): the host
    counts as busy just now, so a freshly started host is never powered off at once.
    """
    reasons = format_reasons(gpu_utils, ssh_sessions, active_jobs)
    if idle_minutes <= 0:
        # Keep the clock at "now" while disabled, so enabling the watchdog later starts a
        # fresh idle period instead of powering off a host that was idle while disabled.
        return Decision("disabled", now, 0.0, reasons)
    busy = (any(u >= threshold for u in gpu_utils) or ssh_sessions > 0 or active_jobs > 0)
    if busy:
        return Decision("busy", now, 0.0, reasons)
    if last_busy is None or last_busy > now:
        # No history, or a clock that went backwards: start the idle period now rather than
        # trust a timestamp from the future (which would otherwise postpone poweroff forever).
        last_busy = now
    idle_seconds = now - last_busy
    action = "poweroff" if idle_seconds >= idle_minutes * 60 else "idle"
    return Decision(action, last_busy, idle_seconds, reasons)


def format_log_line(now: float, decision: Decision, idle_limit_minutes: int,
                    notes: List[str]) -> str:
    """One log line: `2026-11-23T03:00:00+00:00 idle idle=12/30m gpu=[0,3]% ssh=0 jobs=0`."""
    stamp = dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(timespec="seconds")
    line = (f"{stamp} {decision.action} idle={decision.idle_minutes}/{idle_limit_minutes}m "
            f"{decision.reasons}")
    if notes:
        line += " (" + "; ".join(notes) + ")"
    # A stray newline from a note (e.g. an error message) would break "one line per run".
    return " ".join(line.split())


# --- sampling (I/O) ---------------------------------------------------------------------------

def _find_nvidia_smi(name: str) -> Optional[str]:
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    if name == "nvidia-smi":
        for path in NVIDIA_SMI_FALLBACKS:
            if os.access(path, os.X_OK):
                return path
    return None


def sample_gpus(nvidia_smi: str, notes: List[str]) -> List[int]:
    """GPU utilisations; [] (idle) when there is no nvidia-smi or it fails.

    A host without GPUs (a test host) has nothing to keep busy. A GPU whose driver is broken
    is not doing useful work either: powering off is the cheaper mistake, and SSH sessions and
    jobs still keep the host up while someone is on it.
    """
    exe = _find_nvidia_smi(nvidia_smi)
    if exe is None:
        notes.append("no nvidia-smi")
        return []
    try:
        result = subprocess.run([exe] + NVIDIA_SMI_ARGS, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=NVIDIA_SMI_TIMEOUT_S,
                                check=False)
    except subprocess.TimeoutExpired:
        notes.append(f"nvidia-smi timed out after {NVIDIA_SMI_TIMEOUT_S}s")
        return []
    except OSError as e:
        notes.append(f"nvidia-smi failed: {e.strerror or e}")
        return []
    text = result.stdout.decode("utf-8", "replace")
    if result.returncode != 0:
        notes.append(f"nvidia-smi exit {result.returncode}")
        return []
    utils = parse_nvidia_smi(text)
    unread = len([line for line in text.splitlines() if line.strip()]) - len(utils)
    if unread > 0:
        notes.append(f"no utilisation for {unread} GPU(s)")
    return utils


def count_ssh_sessions(port: int, notes: List[str],
                       files=("/proc/net/tcp", "/proc/net/tcp6")) -> int:
    """Established connections to the local sshd port, IPv4 and IPv6 (each socket is listed
    in exactly one of the two files, so the sum does not double count)."""
    total = 0
    for path in files:
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                total += parse_proc_net_tcp(f.read(), port)
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
        except OSError as e:
            notes.append(f"cannot read {path}: {e.strerror or e}")
    return total


def boot_time(proc_stat: str = PROC_STAT) -> Optional[float]:
    """Epoch seconds of this boot (the `btime` line of /proc/stat), or None."""
    try:
        with open(proc_stat, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        # kill(0, ...) and kill(-n, ...) address process groups: they would "succeed".
        return False
    try:
        os.kill(pid, 0)  # signal 0: existence check only, nothing is delivered
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OSError:
        return False
    return True


def count_active_jobs(jobs_dir: str, booted_at: Optional[float]) -> int:
    """gpuctl jobs alive now: <name>.pid files in jobs_dir whose pid is a live process.

    A pid file written before this boot is stale: its process died with the previous boot,
    and its pid may now belong to some unrelated daemon that would keep the host up forever.
    """
    try:
        entries = list(os.scandir(jobs_dir))
    except OSError:
        return 0  # no jobs dir: no jobs have been launched
    active = 0
    for entry in entries:
        if not entry.name.endswith(".pid"):
            continue
        try:
            if not entry.is_file():
                continue
            if booted_at is not None and entry.stat().st_mtime < booted_at:
                continue
            with open(entry.path, encoding="ascii", errors="replace") as f:
                words = f.read(64).split()
            pid = int(words[0]) if words else 0
        except (OSError, ValueError):
            continue  # vanished while we looked, or not a pid: not a live job
        if _pid_alive(pid):
            active += 1
    return active


def read_boot_id(path: str = BOOT_ID_FILE) -> Optional[str]:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, ValueError):
        return None


# --- state and log (I/O) ----------------------------------------------------------------------

def load_last_busy(state_path: str, boot_id: Optional[str], notes: List[str]) -> Optional[float]:
    """last_busy from the state file; None (a first run) when there is no usable state.

    State from an earlier boot is ignored: a VM stopped by this watchdog and started again
    later would otherwise find an hours-old last_busy and power off within a minute, before
    its user could log in.
    """
    try:
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        notes.append("first run")
        return None
    except (OSError, ValueError):
        notes.append("unreadable state reset")
        return None
    if not isinstance(state, dict):
        notes.append("unreadable state reset")
        return None
    if boot_id is not None and state.get("boot_id") not in (None, boot_id):
        notes.append("new boot")
        return None
    value = state.get("last_busy")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        notes.append("unreadable state reset")
        return None
    return float(value)


def write_json_atomic(path: str, data: dict) -> None:
    """Write to a temp file in the same directory and rename over: a crash (or poweroff)
    mid-write leaves the old state or the new one, never half a file."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".idle-state.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def append_log(log_file: str, line: str, max_bytes: int = LOG_MAX_BYTES) -> None:
    """Append one line, rotating to <log>.1 first once the log reaches max_bytes: the log
    stays under ~2 * max_bytes on disk whatever the uptime."""
    directory = os.path.dirname(log_file)
    if directory:
        os.makedirs(directory, exist_ok=True)
    try:
        if os.path.getsize(log_file) >= max_bytes:
            os.replace(log_file, log_file + ".1")
    except FileNotFoundError:
        pass
    with open(log_file, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        # The poweroff line is written just before the host goes down: make it durable.
        os.fsync(f.fileno())


def power_off(command: List[str]) -> None:
    try:
        result = subprocess.run(command, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"gpuctl-idle-watchdog: poweroff command {command!r} failed: {e}", file=sys.stderr)
        return
    if result.returncode != 0:
        # Next minute's run decides poweroff again and retries; cron mails this line.
        print(f"gpuctl-idle-watchdog: poweroff command {command!r} exited {result.returncode}",
              file=sys.stderr)


# --- main -------------------------------------------------------------------------------------

def run_once(config: Config, now: float, dry_run: bool) -> Decision:
    notes: List[str] = []
    # Sampled even when disabled: the log then still shows what the host is doing.
    gpu_utils = sample_gpus(config.nvidia_smi, notes)
    ssh_sessions = count_ssh_sessions(config.ssh_port, notes)
    active_jobs = count_active_jobs(config.jobs_dir, boot_time())

    state_path = os.path.join(config.state_dir, STATE_FILE_NAME)
    boot_id = read_boot_id()
    last_busy = load_last_busy(state_path, boot_id, notes)
    decision = decide(now, last_busy, config.idle_minutes, gpu_utils,
                      config.gpu_util_threshold, ssh_sessions, active_jobs)

    try:
        write_json_atomic(state_path, {"last_busy": decision.last_busy, "boot_id": boot_id,
                                       "updated": now, "decision": decision.action})
    except OSError as e:
        notes.append(f"cannot write state: {e.strerror or e}")
    if dry_run:
        notes.append("dry-run")

    line = format_log_line(now, decision, config.idle_minutes, notes)
    try:
        append_log(config.log_file, line)
    except OSError as e:
        print(f"gpuctl-idle-watchdog: cannot write log {config.log_file}: {e}", file=sys.stderr)
        print(line, file=sys.stderr)

    if decision.action == "poweroff" and not dry_run:
        power_off(config.poweroff_command)
    return decision


def _epoch(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"not an epoch time: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpuctl-idle-watchdog",
        description="Power this host off once it has been idle (no GPU load, no SSH session, "
                    "no gpuctl job) for idle_minutes. Run once a minute from cron.")
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"JSON config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--dry-run", action="store_true",
                        help="decide and log, but never power off")
    parser.add_argument("--once", action="store_true",
                        help="sample, decide and exit (the default and only mode)")
    parser.add_argument("--now", type=_epoch, default=None, metavar="EPOCH",
                        help="pretend the time is EPOCH seconds (for tests)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"gpuctl-idle-watchdog: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    now = time.time() if args.now is None else args.now
    try:
        run_once(config, now, args.dry_run)
    except Exception as e:  # noqa: BLE001 - a failed run must not break the next minute's
        print(f"gpuctl-idle-watchdog: run failed: {type(e).__name__}: {e}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
