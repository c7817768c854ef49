"""How to reach a VM gpuctl made: its address, login, per-VM key and pinned host key.

A VM made with --iap has no external address: gpuctl connects through an IAP tunnel (iap.py)
and pins and looks up its host key under the VM's name, which is what the SSH session is told
it connects to. Every command that reaches a VM (provision, run, logs, fetch, cancel, ssh)
takes its target from here, so each goes through IAP when the VM was made with it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..adapters.ssh import SshTarget
from ..errors import GpuctlError
from . import iap, records
from .hostkeys import known_hosts_path


def host_key_name(record: records.VmRecord) -> str | None:
    """The name the VM's host key is pinned under: its address, or its name through IAP."""
    return record.name if record.iap else record.address


def target_for_record(record: records.VmRecord) -> SshTarget:
    key = Path(record.key_file) if record.key_file else None
    if record.iap:
        return SshTarget(record.name, record.ssh_user, 22, key, known_hosts_path(),
                         tunnel=iap.tunnel(record.name, record.zone, record.project))
    return SshTarget(record.address, record.ssh_user, 22, key, known_hosts_path())


def ssh_target_for_vm(name: str) -> SshTarget:
    record = records.require(name)
    if record.state == "creating":
        raise GpuctlError(f"VM {name} is still being created (or its `up` was interrupted)",
                          f"wait for `gpuctl up` to finish, or run `gpuctl down {name}`")
    if not record.iap and not record.address:
        raise GpuctlError(f"VM {name} has no known address", f"run `gpuctl status {name}`")
    if record.iap and not record.zone:
        raise GpuctlError(f"VM {name} has no known zone", f"run `gpuctl status {name}`")
    return target_for_record(record)


def ssh_command(name: str, remote: list[str] | None = None) -> list[str]:
    """An OpenSSH command line that trusts only the pinned host key and uses the VM's key.
    Through IAP: gcloud's tunnel as ProxyCommand, and HostKeyAlias so that OpenSSH looks the
    key up under the VM's name, as gpuctl pinned it."""
    target = ssh_target_for_vm(name)
    if target.tunnel is not None:
        iap.require_gcloud()
    argv = ["ssh", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={target.known_hosts}", "-p", str(target.port)]
    if target.tunnel is not None:
        argv += ["-o", f"ProxyCommand={shlex.join(target.tunnel.argv)}",
                 "-o", f"HostKeyAlias={target.host}"]
    if target.key_file:
        argv += ["-i", str(target.key_file)]
    argv.append(f"{target.user}@{target.host}")
    if remote:
        argv += ["--", *remote]
    return argv
