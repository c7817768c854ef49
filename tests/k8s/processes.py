"""Starting, stopping and sweeping the control plane's processes.

Every run lives in its own directory under RUNS_DIR holding the pytest process's pid
(owner.pid) and one pid file per started process. A later run removes the directories whose
owner is gone, killing only the recorded pids whose command line still names that directory,
so a recycled pid is never killed. Children also get SIGKILL from the kernel when pytest dies
(PR_SET_PDEATHSIG), so even a `kill -9` of pytest leaves nothing running.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

RUNS_DIR = Path(tempfile.gettempdir()) / "gpuctl-k8s"
RUN_PREFIX = "run-"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A loopback port nobody listens on now. The tiny window before the process binds it is
    acceptable for tests; a clash shows up as a start failure with the port in the log."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_run_dir() -> Path:
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=RUNS_DIR))
    (run_dir / "owner.pid").write_text(str(os.getpid()))
    (run_dir / "pids").mkdir()
    (run_dir / "logs").mkdir()
    return run_dir


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ManagedProcess:
    """One control-plane binary, logging to <run>/logs/<name>.log."""

    def __init__(self, run_dir: Path, name: str, argv: list[str], env: dict[str, str] | None = None):
        self.name = name
        self.log_path = run_dir / "logs" / f"{name}.log"
        self._pid_file = run_dir / "pids" / name
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}, cwd=run_dir,
                start_new_session=True,  # Ctrl-C in the terminal goes to pytest, not to etcd
                preexec_fn=_die_with_parent)
        self._pid_file.write_text(str(self.popen.pid))

    def exited(self) -> int | None:
        return self.popen.poll()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `grace` seconds."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._pid_file.unlink(missing_ok=True)


def sweep_leftover_runs() -> list[str]:
    """Remove the run directories of pytest processes that are gone, and their processes.
    Runs whose owner is alive (a parallel session) are left alone. Returns the names removed."""
    removed = []
    for run_dir in sorted(RUNS_DIR.glob(RUN_PREFIX + "*")) if RUNS_DIR.is_dir() else []:
        if _owner_alive(run_dir):
            continue
        for pid_file in (run_dir / "pids").glob("*"):
            _kill_if_ours(pid_file, run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(run_dir.name)
    return removed


def _owner_alive(run_dir: Path) -> bool:
    try:
        os.kill(int((run_dir / "owner.pid").read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def _kill_if_ours(pid_file: Path, run_dir: Path) -> None:
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return  # already gone
    if str(run_dir) not in cmdline:
        return  # the pid was reused by an unrelated process
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed child of ours stays a zombie until it is waited for)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
