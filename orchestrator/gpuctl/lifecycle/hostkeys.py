"""Pin a VM's SSH host key from its guest attributes, so the first connection is verified.

The Google guest agent publishes the host's public keys under the guest attribute namespace
`hostkeys/` (key = key type, value = base64 key). gpuctl writes them to its own known_hosts,
replacing any earlier pin for the same address (addresses are reused by new VMs).
"""

from __future__ import annotations

import os
import re

from ..paths import gpuctl_home

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "ssh-rsa")
_B64 = re.compile(r"^[A-Za-z0-9+/]+={0,3}$")


def known_hosts_path():
    return gpuctl_home() / "known_hosts"


def host_key_lines(address: str, attributes: list[tuple[str, str]]) -> list[str]:
    """known_hosts lines from (key type, base64) pairs; anything malformed is dropped."""
    lines = []
    for key_type, value in attributes:
        value = value.strip().split()[-1] if value.strip() else ""
        if key_type in KEY_TYPES and _B64.fullmatch(value):
            lines.append(f"{address} {key_type} {value}")
    return lines


def pin(address: str, lines: list[str]) -> None:
    path = known_hosts_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    kept = [line for line in (path.read_text().splitlines() if path.exists() else [])
            if line.split(" ", 1)[0] != address]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept + lines))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def unpin(address: str) -> None:
    if address and known_hosts_path().exists():
        pin(address, [])
