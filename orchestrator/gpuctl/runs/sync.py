"""Incremental code sync without rsync: list the files (honouring .gitignore), hash them, compare
with the host's manifest, and send only what changed as one gzip'd tar stream.

In a git work tree the list is `git ls-files -co --exclude-standard` (tracked plus untracked
files that are not ignored). Elsewhere a walk skips a built-in list of caches and virtualenvs
and the patterns of a top-level .gitignore (a subset: globs, `dir/`, anchored `a/b`; no `!`).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

SYNC_META = ".gpuctl-sync.json"  # the helper reads this member first: deletions and hashes
MAX_SYNC_BYTES = 2 * 1024**3
DEFAULT_IGNORES = (".git/", ".hg/", ".svn/", "__pycache__/", "*.pyc", ".venv/", "venv/",
                   ".mypy_cache/", ".pytest_cache/", ".ruff_cache/", ".ipynb_checkpoints/",
                   "node_modules/", "wandb/", ".tox/", "*.egg-info/", ".DS_Store")


class SyncError(UsageError):
    """The code to sync cannot be read, or is too big to send."""


@dataclass
class LocalTree:
    root: Path
    files: dict[str, tuple[int, str]]  # rel -> (size, sha256)
    source: str  # "git" | "walk"
    skipped: list[str] = field(default_factory=list)  # symlinks and specials, not sent

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.files.values())


@dataclass
class SyncPlan:
    upload: list[str]
    delete: list[str]
    unchanged: int
    upload_bytes: int

    @property
    def changes(self) -> bool:
        return bool(self.upload or self.delete)

    def as_dict(self) -> dict:
        return {"upload": len(self.upload), "delete": len(self.delete),
                "unchanged": self.unchanged, "upload_bytes": self.upload_bytes}


def code_key(root: Path) -> str:
    """One code cache per local directory: readable name, hash of the full path."""
    root = root.resolve()
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in root.name)[:40] or "code"
    return f"{slug}-{hashlib.sha256(str(root).encode()).hexdigest()[:10]}"


def git_files(root: Path) -> list[str] | None:
    """Files git would consider part of the project, or None outside a work tree."""
    if shutil.which("git") is None:
        return None
    try:
        done = subprocess.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard",
                               "-z"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    names = [n for n in done.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    return sorted(set(names))


def read_ignore_patterns(root: Path) -> list[str]:
    path = root / ".gitignore"
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()
    return [line.strip() for line in lines
            if line.strip() and not line.lstrip().startswith(("#", "!"))]


def ignored(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        pat = pattern.rstrip("/")
        if dir_only and not is_dir:
            continue
        if "/" in pat:
            if fnmatch.fnmatchcase(rel, pat.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pat):
            return True
    return False


def walk_files(root: Path) -> list[str]:
    patterns = list(DEFAULT_IGNORES) + read_ignore_patterns(root)
    found = []
    for top, dirs, files in os.walk(root):
        rel_top = os.path.relpath(top, root)
        rel_top = "" if rel_top == "." else rel_top.replace(os.sep, "/") + "/"
        dirs[:] = sorted(d for d in dirs if not ignored(rel_top + d, True, patterns))
        found += [rel_top + f for f in files if not ignored(rel_top + f, False, patterns)]
    return sorted(found)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def scan(root: Path) -> LocalTree:
    root = Path(root)
    if not root.is_dir():
        raise SyncError(f"workdir {root} is not a directory", "pass --workdir DIR")
    names = git_files(root)
    source = "git"
    if names is None:
        names, source = walk_files(root), "walk"
    files, skipped = {}, []
    for rel in names:
        path = root / rel
        if path.is_symlink() or not path.is_file():
            if path.is_symlink() or path.exists():
                skipped.append(rel)
            continue  # deleted but still in git's index
        try:
            files[rel] = (path.stat().st_size, sha256_file(path))
        except OSError as exc:
            raise SyncError(f"cannot read {path}: {exc.strerror}", "fix its permissions") from None
    return LocalTree(root, files, source, skipped)


def plan_sync(local: LocalTree, remote: dict[str, list]) -> SyncPlan:
    upload = [rel for rel, (size, sha) in sorted(local.files.items())
              if (remote.get(rel) or [None, None])[1] != sha]
    delete = sorted(set(remote) - set(local.files))
    size = sum(local.files[rel][0] for rel in upload)
    if size > MAX_SYNC_BYTES:
        biggest = sorted(upload, key=lambda r: -local.files[r][0])[:3]
        raise SyncError(f"the code to send is {size / 1024**3:.1f} GiB, over the "
                        f"{MAX_SYNC_BYTES // 1024**3} GiB limit (largest: {', '.join(biggest)})",
                        "put data and weights in .gitignore and load them on the VM "
                        "(from the NVMe or a bucket)")
    return SyncPlan(upload, delete, len(local.files) - len(upload), size)


def write_tar(sink, tree: LocalTree, plan: SyncPlan) -> None:
    """Stream the changed files (and the deletion list) into `sink` as a gzip'd tar."""
    # Level 1: code compresses well at any level, and a big diff should not wait on the CPU.
    with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=1) as gz, \
            tarfile.open(fileobj=gz, mode="w|") as tar:
        meta = json.dumps({"delete": plan.delete,
                           "files": {rel: tree.files[rel][1] for rel in plan.upload}}).encode()
        info = tarfile.TarInfo(SYNC_META)
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
        for rel in plan.upload:
            path = tree.root / rel
            info = tar.gettarinfo(str(path), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as f:
                tar.addfile(info, f)


def pack(root: Path) -> bytes:
    """The whole tree of `root` (what a sync would send to an empty host) as one gzip'd tar:
    how a workdir travels to GKE."""
    tree = scan(root)
    sink = io.BytesIO()
    write_tar(sink, tree, plan_sync(tree, {}))
    return sink.getvalue()
