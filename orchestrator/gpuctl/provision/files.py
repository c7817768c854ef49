"""Managed files: write whole files atomically and only when their content differs.

Owning a whole file (/etc/cron.d/gpuctl-shutdown rather than a line in root's crontab) is
what makes reruns safe: rewriting it can never add a second line.
"""

from __future__ import annotations

import base64
import shlex


def read_file_command(path: str) -> str:
    return f"cat {shlex.quote(path)} 2>/dev/null || true"


def write_file_command(path: str, content: str, mode: str = "0644") -> str:
    """mkdir, write to a temp file, chmod, rename: an interruption leaves the old file or the new."""
    data = base64.b64encode(content.encode()).decode()
    q = shlex.quote(path)
    tmp = shlex.quote(path + ".gpuctl-tmp")
    parent = shlex.quote(path.rsplit("/", 1)[0] or "/")
    return (f"mkdir -p {parent} && echo {data} | base64 -d > {tmp} && chmod {mode} {tmp} "
            f"&& mv -f {tmp} {q}")


def fstab_with_line(current: list[str], mount_point: str, line: str) -> list[str]:
    """fstab lines with any entry for mount_point replaced by `line` (so reruns never duplicate)."""
    kept = [entry for entry in current
            if entry.lstrip().startswith("#") or len(entry.split()) < 2 or entry.split()[1] != mount_point]
    return kept + [line]
