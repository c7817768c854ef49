"""One way to reach a host: what a user typed (a gpuctl VM's name or `user@host[:port]`), or
what a run recorded, becomes a connected RemoteHost whose host key is verified.

Everything that talks to a host (runs, provisioning, guards) starts here; the bytes then go
through adapters/ssh.RemoteHost and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .adapters.ssh import RemoteHost, SshTarget


@dataclass(frozen=True)
class Reached:
    """A target resolved: where it is, the known_hosts files that verify it, and the VM's
    name when it is a gpuctl VM (None for `user@host`)."""

    target: SshTarget
    known_hosts: list[Path]
    vm: str | None


def resolve(text: str, ssh_key: Path | None = None, known_hosts: Path | None = None) -> Reached:
    from .targets import is_vm_name, resolve_target

    target, known = resolve_target(text, ssh_key, known_hosts)
    return Reached(target, known, text if is_vm_name(text) else None)


def open_host(target: SshTarget, known_hosts: list[Path]) -> RemoteHost:
    """A connected RemoteHost that trusts only the keys in `known_hosts`."""
    host = RemoteHost(target)
    for path in known_hosts:
        host.load_known_hosts(path)
    host.connect()
    return host


def connect(text: str, ssh_key: Path | None = None,
            known_hosts: Path | None = None) -> tuple[RemoteHost, Reached]:
    reached = resolve(text, ssh_key, known_hosts)
    return open_host(reached.target, reached.known_hosts), reached
