"""The provisioning Host (provision/base.py) for the machine this code runs on.

`gpuctl up` provisions a VM over SSH (adapters/ssh.RemoteHost). A VM that Google Cloud makes by
itself (a `run --recover` replacement) has nobody connected to it, so its startup script runs the
same steps here, as root (provision/on_boot.py). To read the host exactly as the SSH path does,
a command runs as the login user in that user's plain environment, and as root only when the step
asks for sudo: every check then sees what the login user would see (a mount it cannot write to is
not "done" because root can).
"""

from __future__ import annotations

import os
import subprocess
import time

from ..adapters.ssh import CommandFailed, CommandResult
from ..errors import GpuctlError
from .base import RebootRequested

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


REBOOTED = "/var/lib/gpuctl/provision-rebooted"  # on the boot disk: survives the reboot it records


class LocalHost:
    def __init__(self, login_user: str, *, reboot_argv: tuple[str, ...] = ("systemctl", "reboot"),
                 rebooted_marker: str = REBOOTED):
        self.login_user = login_user
        self.reboot_argv = reboot_argv
        self.rebooted_marker = rebooted_marker
        self.round_trips = 0  # commands run; the runner reports it as SSH round trips

    def _argv(self, command: str, sudo: bool) -> tuple[list[str], str]:
        """(argv, working directory): root with sudo, else the login user as an SSH login has it
        (HOME, USER, a standard PATH; nothing of this process's environment)."""
        if sudo or self.login_user == "root":
            env = {"HOME": "/root", "USER": "root", "LOGNAME": "root"}
            prefix: list[str] = []
        else:
            home = f"/home/{self.login_user}"
            env = {"HOME": home, "USER": self.login_user, "LOGNAME": self.login_user}
            prefix = ["runuser", "-u", self.login_user, "--"]
        env |= {"PATH": PATH, "SHELL": "/bin/sh", "LANG": "C.UTF-8"}
        return [*prefix, "env", "-i", *(f"{k}={v}" for k, v in env.items()), "sh", "-c", command], env["HOME"]

    def run(self, command: str, *, sudo: bool = False, check: bool = True,
            timeout: int | None = 600) -> CommandResult:
        argv, home = self._argv(command, sudo)
        self.round_trips += 1
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                  cwd=home if _is_dir(home) else "/")
        except subprocess.TimeoutExpired:
            out = CommandResult("", f"timed out after {timeout} s", 124)
        else:
            out = CommandResult(done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"),
                                done.returncode)
        if check and not out.ok:
            raise CommandFailed(command, out.exit_code, out.stderr or out.stdout)
        return out

    def reboot_and_wait(self, timeout_s: float = 600, poll_s: float = 5) -> None:
        """Reboot; the steps cannot wait for it here, as this process ends with the boot. The
        startup script runs again on the next boot and the steps resume (each re-checks).
        Once only: a step that still needs a reboot after one fails, as it would over SSH
        (else a driver that never loads would reboot the VM, billing, until the deadline)."""
        if os.path.exists(self.rebooted_marker):
            raise GpuctlError("still not working after a reboot (this VM rebooted for it once already)",
                              "see the step's error above; the VM gives up rather than reboot again")
        os.makedirs(os.path.dirname(self.rebooted_marker), exist_ok=True)
        with open(self.rebooted_marker, "w") as f:
            f.write(f"{time.time()}\n")
        done = subprocess.run(list(self.reboot_argv), check=False, capture_output=True)
        if done.returncode != 0:
            raise GpuctlError(f"`{' '.join(self.reboot_argv)}` exited {done.returncode}: "
                              f"{done.stderr.decode(errors='replace').strip()[-200:]}", "reboot the VM by hand")
        raise RebootRequested("the NVIDIA driver loads after a reboot: provisioning resumes on the next boot")


def _is_dir(path: str) -> bool:
    return os.path.isdir(path)
