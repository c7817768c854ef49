"""Where the control-plane binaries are, as built by scripts/build-controlplane.sh.

The script owns the versions and the cache layout; asking it for the bin dir keeps them in
one place (scripts/controlplane-versions.env).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-controlplane.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class MissingBinaries(Exception):
    pass


def bin_dir() -> Path:
    out = subprocess.run([str(BUILD_SCRIPT), "--print-bin-dir"], check=True,
                         capture_output=True, text=True).stdout
    return Path(out.strip())


def require_binaries() -> Path:
    """The bin dir, or MissingBinaries naming the build script when anything is absent."""
    directory = bin_dir()
    missing = [name for name in BINARIES if not (directory / name).is_file()]
    if missing:
        raise MissingBinaries(
            f"the test control plane is not built: {', '.join(missing)} missing in {directory}; "
            f"run scripts/build-controlplane.sh (about 10 min cold on 2 cores, cached afterwards)")
    return directory
