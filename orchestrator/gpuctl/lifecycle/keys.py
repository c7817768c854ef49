"""Per-VM SSH key pairs, made on the user's machine; the private half never leaves it.

ed25519 via `cryptography` (already a dependency of paramiko), written 0600 in a 0700
directory. Only the public half goes into the VM's metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..paths import gpuctl_home


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_line: str  # "ssh-ed25519 AAAA... gpuctl-NAME"


def keys_dir() -> Path:
    return gpuctl_home() / "keys"


def key_path(name: str) -> Path:
    return keys_dir() / name / "id_ed25519"


def ensure_key_pair(name: str) -> KeyPair:
    """The VM's key pair, created on first use; reused when an interrupted `up` resumes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = key_path(name)
    pub_path = path.with_suffix(".pub")
    if path.exists() and pub_path.exists():
        os.chmod(path, 0o600)
        return KeyPair(path, pub_path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    line = f"{public} gpuctl-{name}"
    pub_path.write_text(line + "\n")
    return KeyPair(path, line)


def remove_key_pair(name: str) -> None:
    directory = key_path(name).parent
    for child in directory.glob("*") if directory.exists() else ():
        child.unlink()
    if directory.exists():
        directory.rmdir()
