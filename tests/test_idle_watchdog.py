"""The on-host idle watchdog (gpuctl/provision/host_scripts/idle_watchdog.py).

Pure parsers and decide() are tested on canned output; the script itself is run end to end as a
subprocess, the way cron runs it, with a fake clock (--now), temp state/log/jobs dirs and a
poweroff_command that only leaves a marker file.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuctl.provision.host_scripts import idle_watchdog as wd

SCRIPT = Path(wd.__file__)
T0 = 1_800_000_000  # an arbitrary fixed epoch for the fake clock
IDLE_MINUTES = 30


# --- parse_nvidia_smi -------------------------------------------------------------------------

@pytest.mark.parametrize("text, utils", [
    ("0\n", [0]),                                   # one idle GPU
    ("87\n", [87]),                                 # one busy GPU
    ("0\n100\n37\n3\n", [0, 100, 37, 3]),           # 4 GPUs (a4 / a2-highgpu-4g)
    ("  12 \r\n  7\r\n", [12, 7]),                  # stray whitespace, CRLF
    ("45 %\n", [45]),                               # queried without `nounits`
    ("[N/A]\n", []),                                # MIG mode: no utilisation
    ("0\n[N/A]\n[Not Supported]\n64\n", [0, 64]),   # mixed: N/A lines are skipped
    ("", []),
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
     "Make sure that the latest NVIDIA driver is installed and running.\n", []),
    ("No devices were found\n", []),
    ("utilization.gpu [%]\n5 %\n", [5]),            # with a csv header
    ("-1\n101\n3.5\n0x10\n²\n", []),                # out of range, not whole, not decimal
])
def test_parse_nvidia_smi(text, utils):
    assert wd.parse_nvidia_smi(text) == utils


# --- parse_proc_net_tcp -----------------------------------------------------------------------

# /proc/net/tcp as the kernel writes it: 10.128.0.15 (0F02000A) runs sshd on 22 (0x0016).
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18614 1 0000000000000000 100 0 0 10 0
   1: 3500007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 17680 1 0000000000000000 100 0 0 10 0
   2: 0F02000A:0016 0100000A:D5C4 01 00000000:00000000 02:0009C1E6 00000000     0        0 45012 2 0000000000000000 20 4 31 10 -1
   3: 0F02000A:0016 23EB1D2B:8A2E 01 00000034:00000000 01:00000014 00000000     0        0 47519 4 0000000000000000 20 4 30 10 -1
   4: 0F02000A:B3E6 8EFAB55F:0016 01 00000000:00000000 02:000AEBB8 00000000  1000        0 51234 2 0000000000000000 20 4 30 10 -1
   5: 0F02000A:9C40 22D8BA8E:01BB 01 00000000:00000000 02:000AEBB8 00000000  1000        0 51235 2 0000000000000000 20 4 30 10 -1
   6: 0F02000A:0016 0100000A:D5C0 06 00000000:00000000 03:00000F1A 00000000     0        0 0 3 0000000000000000
   7: 0F02000A:08AE 0100000A:D5C8 01 00000000:00000000 02:0009C1E6 00000000     0        0 45013 2 0000000000000000 20 4 31 10 -1
"""
# Lines 2 and 3 are SSH sessions into this host. Not counted: 0 (sshd listening), 1 (DNS
# stub listening), 4 (this host's own outgoing ssh: remote port 22), 5 (https),
# 6 (TIME_WAIT on 22), 7 (established on 2222 = 0x08AE).

PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18616 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000F02000A:0016 0000000000000000FFFF00000100000A:C0DE 01 00000000:00000000 02:0009C1E6 00000000     0        0 45100 2 0000000000000000 20 4 31 10 -1
   2: B80D0120000000000000000001000000:0016 B80D0120000000000000000002000000:E1F0 01 00000000:00000000 02:0009C1E6 00000000     0        0 45101 2 0000000000000000 20 4 31 10 -1
   3: B80D0120000000000000000001000000:1F90 B80D0120000000000000000002000000:E1F2 01 00000000:00000000 02:0009C1E6 00000000     0        0 45102 2 0000000000000000 20 4 31 10 -1
"""


@pytest.mark.parametrize("text, port, sessions", [
    (PROC_NET_TCP, 22, 2),
    (PROC_NET_TCP, 2222, 1),       # the port is configurable
    (PROC_NET_TCP, 443, 0),        # outgoing https has local port 0x9C40, not 443
    (PROC_NET_TCP, 53, 0),         # listening only
    (PROC_NET_TCP6, 22, 2),        # IPv4-mapped and native IPv6
    (PROC_NET_TCP6, 8080, 1),
    (PROC_NET_TCP.splitlines()[0] + "\n", 22, 0),   # header only: no connections
    ("", 22, 0),
    ("garbage\n0: nonsense\n1: a b c\n2: 0F02000A:ZZZZ 0100000A:D5C4 01\n", 22, 0),
    ("   2: 0f02000a:0016 0100000a:d5c4 01 00000000:00000000\n", 22, 1),  # lower-case hex
])
def test_parse_proc_net_tcp(text, port, sessions):
    assert wd.parse_proc_net_tcp(text, port) == sessions


# --- parsers never raise ----------------------------------------------------------------------

@settings(max_examples=300)
@given(st.text())
def test_parse_nvidia_smi_never_raises(text):
    utils = wd.parse_nvidia_smi(text)
    assert all(isinstance(u, int) and 0 <= u <= 100 for u in utils)
    assert len(utils) <= len(text.splitlines())


# Text built from /proc/net/tcp's own alphabet reaches deeper into the parser than st.text().
TCP_ALPHABET = "0123456789ABCDEFabcdefxyz:  \n"


@settings(max_examples=300)
@given(st.one_of(st.text(), st.text(alphabet=TCP_ALPHABET)),
       st.integers(min_value=-1, max_value=70_000))
def test_parse_proc_net_tcp_never_raises(text, port):
    count = wd.parse_proc_net_tcp(text, port)
    assert 0 <= count <= len(text.splitlines())


# --- decide -----------------------------------------------------------------------------------

def decide(now=T0, last_busy=T0, idle_minutes=IDLE_MINUTES, gpu_utils=(0, 0), threshold=5,
           ssh=0, jobs=0):
    return wd.decide(now, last_busy, idle_minutes, list(gpu_utils), threshold, ssh, jobs)


@pytest.mark.parametrize("signals, reasons", [
    ({"gpu_utils": (0, 87)}, "gpu=[0,87]% ssh=0 jobs=0"),
    ({"gpu_utils": (5,)}, "gpu=[5]% ssh=0 jobs=0"),      # at the threshold counts as busy
    ({"ssh": 1}, "gpu=[0,0]% ssh=1 jobs=0"),
    ({"jobs": 2}, "gpu=[0,0]% ssh=0 jobs=2"),
])
def test_busy_by_each_signal_restarts_the_idle_clock(signals, reasons):
    d = decide(now=T0 + 7200, last_busy=T0, **signals)
    assert (d.action, d.last_busy, d.idle_seconds, d.reasons) == ("busy", T0 + 7200, 0, reasons)


def test_idle_under_the_threshold_keeps_the_clock():
    d = decide(now=T0 + 600, last_busy=T0, gpu_utils=(4, 0, 3, 1))
    assert (d.action, d.last_busy, d.idle_minutes) == ("idle", T0, 10)


def test_poweroff_exactly_at_the_boundary():
    assert decide(now=T0 + IDLE_MINUTES * 60 - 1).action == "idle"
    d = decide(now=T0 + IDLE_MINUTES * 60)
    assert (d.action, d.idle_minutes, d.last_busy) == ("poweroff", IDLE_MINUTES, T0)
    assert decide(now=T0 + 10 * 3600).action == "poweroff"


def test_no_gpus_is_idle():
    assert decide(now=T0 + 3600, gpu_utils=()).action == "poweroff"


def test_first_run_is_never_a_poweroff():
    d = decide(now=T0, last_busy=None)
    assert (d.action, d.last_busy, d.idle_seconds) == ("idle", T0, 0)


def test_last_busy_in_the_future_restarts_the_clock():
    # The clock went backwards: trusting last_busy would postpone poweroff indefinitely.
    d = decide(now=T0, last_busy=T0 + 86400)
    assert (d.action, d.last_busy) == ("idle", T0)


def test_disabled_never_powers_off_and_keeps_the_clock_at_now():
    d = decide(now=T0 + 86400, last_busy=T0, idle_minutes=0)
    assert (d.action, d.last_busy, d.idle_seconds) == ("disabled", T0 + 86400, 0)


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 1440),
       st.lists(st.integers(0, 100), max_size=8), st.integers(1, 100),
       st.integers(0, 3), st.integers(0, 3))
def test_decide_properties(now, last_busy, idle_minutes, utils, threshold, ssh, jobs):
    d = wd.decide(now, last_busy, idle_minutes, utils, threshold, ssh, jobs)
    busy = ssh > 0 or jobs > 0 or any(u >= threshold for u in utils)
    assert d.action == ("busy" if busy else "poweroff" if now - min(last_busy, now) >= idle_minutes * 60
                        else "idle")
    assert d.last_busy <= now and d.idle_seconds >= 0


def test_log_line_is_one_line():
    d = decide(now=T0 + 720, gpu_utils=(0, 3))
    line = wd.format_log_line(T0 + 720, d, IDLE_MINUTES, ["no nvidia-smi", "odd\nnote"])
    assert line == ("2027-01-15T08:12:00+00:00 idle idle=12/30m gpu=[0,3]% ssh=0 jobs=0 "
                    "(no nvidia-smi; odd note)")


# --- config -----------------------------------------------------------------------------------

def test_config_defaults():
    c = wd.parse_config({"idle_minutes": 30})
    assert (c.gpu_util_threshold, c.state_dir, c.log_file, c.jobs_dir, c.poweroff_command,
            c.ssh_port) == (5, "/var/lib/gpuctl", "/var/log/gpuctl/idle-watchdog.log",
                            "/var/lib/gpuctl/jobs", ["/sbin/shutdown", "-h", "now"], 22)


@pytest.mark.parametrize("data", [
    [], {}, {"idle_minutes": -1}, {"idle_minutes": "30"}, {"idle_minutes": True},
    {"idle_minutes": 1.5}, {"idle_minutes": 30, "idle_minute": 30},
    {"idle_minutes": 30, "gpu_util_threshold": 0}, {"idle_minutes": 30, "gpu_util_threshold": 101},
    {"idle_minutes": 30, "ssh_port": 0}, {"idle_minutes": 30, "poweroff_command": []},
    {"idle_minutes": 30, "poweroff_command": "shutdown -h now"}, {"idle_minutes": 30, "state_dir": ""},
])
def test_bad_config_is_rejected(data):
    with pytest.raises(wd.ConfigError):
        wd.parse_config(data)


# --- I/O helpers --------------------------------------------------------------------------------

def test_jobs_are_live_pid_files_written_this_boot(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "train.pid").write_text(f"{os.getpid()}\n")
    (tmp_path / "finished.pid").write_text(f"{dead.pid}\n")
    (tmp_path / "garbage.pid").write_text("not a pid\n")
    (tmp_path / "group.pid").write_text("0\n")         # kill(0, 0) would "succeed"
    (tmp_path / "negative.pid").write_text("-1\n")
    (tmp_path / "empty.pid").write_text("")
    (tmp_path / "train.log").write_text(f"{os.getpid()}\n")  # not a .pid file
    (tmp_path / "dir.pid").mkdir()
    assert wd.count_active_jobs(str(tmp_path), booted_at=None) == 1
    assert wd.count_active_jobs(str(tmp_path / "missing"), booted_at=None) == 0

    # A pid file older than this boot names a process that died with the previous boot.
    os.utime(tmp_path / "train.pid", (time.time() - 7200,) * 2)
    assert wd.count_active_jobs(str(tmp_path), booted_at=time.time() - 3600) == 0
    assert wd.count_active_jobs(str(tmp_path), booted_at=time.time() - 10800) == 1


def test_state_from_another_boot_or_unreadable_counts_as_a_first_run(tmp_path):
    state = tmp_path / "idle-state.json"
    notes: list[str] = []
    assert wd.load_last_busy(str(state), "boot-a", notes) is None and notes == ["first run"]
    wd.write_json_atomic(str(state), {"last_busy": T0, "boot_id": "boot-a"})
    assert wd.load_last_busy(str(state), "boot-a", []) == T0
    notes = []
    assert wd.load_last_busy(str(state), "boot-b", notes) is None and notes == ["new boot"]
    for text in ("{not json", "[]", '{"last_busy": "yesterday"}'):
        state.write_text(text)
        notes = []
        assert wd.load_last_busy(str(state), "boot-a", notes) is None
        assert notes == ["unreadable state reset"]
    assert [p.name for p in tmp_path.iterdir()] == ["idle-state.json"]  # no temp files left


def test_log_rotates_to_dot_1(tmp_path):
    log = tmp_path / "logs" / "idle.log"
    for i in range(10):
        wd.append_log(str(log), f"line {i:03d}", max_bytes=40)  # 9 bytes a line
    assert log.read_text().splitlines() == ["line 005", "line 006", "line 007", "line 008",
                                            "line 009"]
    assert Path(str(log) + ".1").read_text().splitlines()[0] == "line 000"
    assert sorted(p.name for p in log.parent.iterdir()) == ["idle.log", "idle.log.1"]


# --- end to end: the script as cron runs it ------------------------------------------------------

class Host:
    """A fake host: a config pointing at temp dirs, and a way to run the script against it."""

    def __init__(self, root: Path, **overrides):
        self.root = root
        self.marker = root / "powered-off"
        self.log = root / "log" / "idle-watchdog.log"
        self.jobs = root / "jobs"
        self.state = root / "state" / "idle-state.json"
        # An SSH port nobody else can hold: the test listens on it, so the only established
        # connections to it are the ones a test makes.
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.config = root / "idle-watchdog.json"
        config = {"idle_minutes": IDLE_MINUTES, "gpu_util_threshold": 5,
                  "state_dir": str(self.state.parent), "log_file": str(self.log),
                  "jobs_dir": str(self.jobs), "poweroff_command": ["touch", str(self.marker)],
                  "ssh_port": self.listener.getsockname()[1],
                  # A host without GPUs, whether or not the test machine has nvidia-smi.
                  "nvidia_smi": str(root / "no-such-nvidia-smi")}
        config.update(overrides)
        self.config.write_text(json.dumps(config))

    def run(self, now: float, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPT), "--config", str(self.config),
                               "--now", str(now), *args],
                              capture_output=True, text=True, timeout=60)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def close(self):
        self.listener.close()


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    yield h
    h.close()


def ok(result: subprocess.CompletedProcess) -> None:
    assert (result.returncode, result.stderr) == (0, "")


def test_idle_host_powers_off_after_idle_minutes(host):
    ok(host.run(T0))
    assert host.lines() == ["2027-01-15T08:00:00+00:00 idle idle=0/30m gpu=[]% ssh=0 jobs=0 "
                            "(no nvidia-smi; first run)"]
    assert not host.marker.exists()
    assert json.loads(host.state.read_text())["last_busy"] == T0

    ok(host.run(T0 + IDLE_MINUTES * 60 - 1))
    assert host.lines()[-1].split()[1:3] == ["idle", "idle=29/30m"]
    assert not host.marker.exists()

    ok(host.run(T0 + IDLE_MINUTES * 60))
    assert host.lines()[-1] == ("2027-01-15T08:30:00+00:00 poweroff idle=30/30m gpu=[]% ssh=0 "
                                "jobs=0 (no nvidia-smi)")
    assert host.marker.exists()
    assert len(host.lines()) == 3  # one line per run


def test_live_job_keeps_the_host_up(host):
    ok(host.run(T0))
    host.jobs.mkdir()
    pid_file = host.jobs / "finetune.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this test process: alive for the whole test
    ok(host.run(T0 + IDLE_MINUTES * 60))
    assert host.lines()[-1].split()[1:7] == ["busy", "idle=0/30m", "gpu=[]%", "ssh=0", "jobs=1",
                                             "(no"]
    assert not host.marker.exists()

    # The job ends: the idle period starts from the last busy sample, not from the first run.
    pid_file.unlink()
    ok(host.run(T0 + IDLE_MINUTES * 60 * 2 - 60))
    assert host.lines()[-1].split()[1:3] == ["idle", "idle=29/30m"]
    assert not host.marker.exists()
    ok(host.run(T0 + IDLE_MINUTES * 60 * 2))
    assert host.lines()[-1].split()[1] == "poweroff"
    assert host.marker.exists()


def test_ssh_session_keeps_the_host_up(host):
    ok(host.run(T0))
    client = socket.create_connection(host.listener.getsockname(), timeout=5)
    server_side, _ = host.listener.accept()
    try:
        ok(host.run(T0 + IDLE_MINUTES * 60))
    finally:
        client.close()
        server_side.close()
    assert host.lines()[-1].split()[1:6] == ["busy", "idle=0/30m", "gpu=[]%", "ssh=1", "jobs=0"]
    assert not host.marker.exists()


def test_busy_gpu_keeps_the_host_up(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nprintf '0\\n87\\n[N/A]\\n'\n")
    fake.chmod(0o755)
    host = Host(tmp_path, nvidia_smi=str(fake))
    try:
        ok(host.run(T0))
        ok(host.run(T0 + IDLE_MINUTES * 60))
    finally:
        host.close()
    assert host.lines()[-1] == ("2027-01-15T08:30:00+00:00 busy idle=0/30m gpu=[0,87]% ssh=0 "
                                "jobs=0 (no utilisation for 1 GPU(s))")
    assert not host.marker.exists()


def test_dry_run_decides_but_never_powers_off(host):
    ok(host.run(T0, "--dry-run"))
    ok(host.run(T0 + 3600, "--dry-run", "--once"))
    assert host.lines()[-1].split()[1] == "poweroff"
    assert host.lines()[-1].endswith("dry-run)")
    assert not host.marker.exists()


def test_disabled_never_powers_off(tmp_path):
    host = Host(tmp_path, idle_minutes=0)
    try:
        ok(host.run(T0))
        ok(host.run(T0 + 86400))
    finally:
        host.close()
    assert [line.split()[1] for line in host.lines()] == ["disabled", "disabled"]
    assert not host.marker.exists()


def test_failing_poweroff_command_still_exits_0(tmp_path):
    host = Host(tmp_path, poweroff_command=[str(tmp_path / "no-such-shutdown")])
    try:
        ok(host.run(T0))
        result = host.run(T0 + 3600)
    finally:
        host.close()
    assert result.returncode == 0 and "poweroff command" in result.stderr
    assert host.lines()[-1].split()[1] == "poweroff"


@pytest.mark.parametrize("text, message", [
    (None, "config file not found"),
    ("{oops", "not valid JSON"),
    ('{"idle_minutes": -5}', "idle_minutes must be"),
    ('{"idle_minutes": 30, "gpu_util_treshold": 5}', "unknown config key(s): gpu_util_treshold"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, text, message):
    config = tmp_path / "idle-watchdog.json"
    if text is not None:
        config.write_text(text)
    result = subprocess.run([sys.executable, str(SCRIPT), "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert result.stdout == ""


def test_script_is_self_contained():
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env python3\n")
    assert "gpuctl" not in "".join(line for line in text.splitlines()
                                   if line.startswith(("import ", "from ")))
