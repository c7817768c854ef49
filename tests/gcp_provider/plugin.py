"""Putting the real Pulumi CLI and this double where the engine finds them, for a test.

The CLI comes from scripts/build-pulumi.sh (built from the Go module proxy, cached under
~/.cache/gpuctl-dev). A missing build fails the test with the command that makes it: these
tests exist to run the real engine, so they never skip. The double is installed as an
executable named `pulumi-resource-gcp` on PATH, which the engine uses as an ambient plugin
(it says "using pulumi-resource-gcp from $PATH") instead of looking in its plugin cache.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGIN_NAME = "pulumi-resource-gcp"
# The version scripts/build-pulumi.sh builds (scripts/pulumi-version.env).
PINNED_CLI_VERSION = (REPO / "scripts" / "pulumi-version.env").read_text().split("PULUMI_CLI_VERSION=")[1].split()[0]


class PulumiBuildMissing(AssertionError):
    pass


def pulumi_bin_dir() -> Path:
    out = subprocess.run([str(REPO / "scripts" / "build-pulumi.sh"), "--print-bin-dir"],
                         check=True, capture_output=True, text=True).stdout.strip()
    bin_dir = Path(out)
    if not (bin_dir / "pulumi").is_file():
        raise PulumiBuildMissing(f"no Pulumi CLI at {bin_dir}: run scripts/build-pulumi.sh "
                                 "(./dev test builds it)")
    return bin_dir


def install_plugin(bin_dir: Path) -> Path:
    """An executable that starts the double with this interpreter and this checkout."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / PLUGIN_NAME
    script.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH={shlex.quote(str(REPO))}"${{PYTHONPATH:+:$PYTHONPATH}}"\n'
        "export PYTHONPATH\n"
        f"exec {shlex.quote(sys.executable)} -m tests.gcp_provider \"$@\"\n")
    script.chmod(0o755)
    return script


def engine_environment(work: Path) -> dict[str, str]:
    """Environment for a test process that drives the real engine with the double."""
    plugin_dir = work / "plugin-bin"
    install_plugin(plugin_dir)
    path = os.pathsep.join([str(pulumi_bin_dir()), str(plugin_dir), os.environ.get("PATH", "")])
    return {"PATH": path, "PULUMI_HOME": str(work / "pulumi-home"),
            "PULUMI_SKIP_UPDATE_CHECK": "true"}
