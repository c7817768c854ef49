"""Turn what a user types after a command (`alice@10.0.0.5:2222` or a gpuctl VM's name) into an
SSH target with the known_hosts files that verify it. Used by provision, guards, run, logs..."""

from __future__ import annotations

import getpass
from pathlib import Path

from .adapters.ssh import SshTarget, parse_target


def resolve_target(text: str, ssh_key: Path | None = None,
                   known_hosts: Path | None = None) -> tuple[SshTarget, list[Path]]:
    """A `user@host[:port]` is taken as written; a bare name is a VM made by `gpuctl up`,
    reached with the key gpuctl generated for it and the host key pinned at creation."""
    from .provision.service import known_hosts_files

    if is_vm_name(text):
        from .lifecycle.access import ssh_target_for_vm
        from .validation import gce_name

        target = ssh_target_for_vm(gce_name(text, "VM name"))
        if ssh_key:
            target = SshTarget(target.host, target.user, target.port, ssh_key, target.known_hosts)
        pins = [target.known_hosts] if target.known_hosts else []
        return target, pins + ([known_hosts] if known_hosts else [])
    user, address, port = parse_target(checked_target(text), getpass.getuser())
    return SshTarget(address, user, port, ssh_key, None), known_hosts_files(known_hosts)


def checked_target(text: str) -> str:
    """`user@host[:port]` checked before the SSH adapter splits it: the host by RFC 1123 (or an
    IP), the port 1-65535 in ASCII digits, the user a plain login name. Returned unchanged."""
    import re

    from .errors import UsageError, shown
    from .validation import host as checked_host
    from .validation import port as checked_port

    user, _, rest = text.rpartition("@")
    if user and not re.fullmatch(r"[A-Za-z0-9_][-A-Za-z0-9_.]{0,31}", user, re.ASCII):
        raise UsageError(f"user {shown(user)} is not a login name",
                         "write user@host, e.g. alice@10.0.0.5")
    address = rest
    if rest.count(":") == 1:  # host:port (a bare IPv6 address has several colons)
        address, port_text = rest.split(":")
        checked_port(port_text)
    checked_host(address)
    return text


def is_vm_name(text: str) -> bool:
    """A bare name (no user@, not an address) names a VM made by `gpuctl up`."""
    return "@" not in text and not looks_like_address(text)


def looks_like_address(text: str) -> bool:
    """10.0.0.5, 10.0.0.5:22, ::1 or a DNS name with a dot are hosts, not VM names."""
    host = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    return "." in host or ":" in host
