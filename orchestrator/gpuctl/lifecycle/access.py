"""How to reach a VM gpuctl made: its address, login, per-VM key and pinned host key."""

from __future__ import annotations

from pathlib import Path

from ..adapters.ssh import SshTarget
from ..errors import GpuctlError
from . import records
from .hostkeys import known_hosts_path


def ssh_target_for_vm(name: str) -> SshTarget:
    record = records.require(name)
    if record.state == "creating":
        raise GpuctlError(f"VM {name} is still being created (or its `up` was interrupted)",
                          f"wait for `gpuctl up` to finish, or run `gpuctl down {name}`")
    if not record.address:
        raise GpuctlError(f"VM {name} has no known address", f"run `gpuctl status {name}`")
    return SshTarget(record.address, record.ssh_user, 22,
                     Path(record.key_file) if record.key_file else None, known_hosts_path())


def ssh_command(name: str, remote: list[str] | None = None) -> list[str]:
    """An OpenSSH command line that trusts only the pinned host key and uses the VM's key."""
    target = ssh_target_for_vm(name)
    argv = ["ssh", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={target.known_hosts}", "-p", str(target.port)]
    if target.key_file:
        argv += ["-i", str(target.key_file)]
    argv.append(f"{target.user}@{target.host}")
    if remote:
        argv += ["--", *remote]
    return argv
