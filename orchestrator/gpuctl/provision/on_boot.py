"""Provision the machine this runs on with the steps `gpuctl up` runs over SSH.

A `run --recover` replacement VM is made by its managed instance group with no laptop in sight,
yet it needs what `gpuctl up` gives a VM: the NVMe formatted and mounted (RAID0 over several),
caches on it, the time zone, the NVIDIA driver, CUDA and the profile's Python with a working venv.
So gpuctl packs the provisioning steps into one zip (`pack()`, stdlib only: no pip, no network
to reach PyPI for gpuctl) that the recovery bootstrap runs as root before it starts the run:

    python3 provision.pyz < settings.json     # settings: ProvisionSettings as a JSON object

It prints the step report as JSON and exits 0 when every step is done, 3 when the driver needs a
reboot (the bootstrap reboots; the startup script runs again on the next boot and the steps,
each re-checking, go on from there), and 1 when a step failed.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from dataclasses import asdict, fields

OK, FAILED, REBOOTING = 0, 1, 3

# What the steps import, as paths under the installed packages. A test runs the packed zip on an
# interpreter with no site-packages, so a missing module fails there, not on a VM at 3 a.m.
MODULES = {
    "gpuctl": ("__init__.py", "errors.py", "adapters/__init__.py", "adapters/ssh.py",
               "provision/__init__.py", "provision/base.py", "provision/checks.py", "provision/facts.py",
               "provision/files.py", "provision/gpu_steps.py", "provision/local_host.py",
               "provision/nvme.py", "provision/on_boot.py", "provision/packages.py",
               "provision/python_step.py", "provision/runner.py", "provision/settings.py",
               "provision/system_steps.py", "provision/host_scripts/__init__.py",
               "provision/host_scripts/idle_watchdog.py"),
    "gpuctl_infra": ("__init__.py", "errors.py", "spec.py"),
}
MAIN = "from gpuctl.provision.on_boot import main\nimport sys\nsys.exit(main())\n"


def pack() -> bytes:
    """The zip the bootstrap runs (Python runs a zip with a __main__.py: `python3 file.pyz`)."""
    from importlib import resources

    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        for package, paths in MODULES.items():
            root = resources.files(package)
            for path in paths:
                archive.writestr(f"{package}/{path}", root.joinpath(path).read_bytes())
        archive.writestr("__main__.py", MAIN)
    return sink.getvalue()


def settings_document(settings) -> dict:
    """ProvisionSettings as JSON. A daily stop is not carried: on a recovering VM a stopped VM is
    recreated by its group (recovery/plan.py says so in the plan)."""
    document = asdict(settings)
    document.pop("daily_stop", None)
    document["requirements"] = list(settings.requirements)
    return document


def settings_from(document: dict):
    from .settings import ProvisionSettings

    known = {f.name for f in fields(ProvisionSettings)} - {"daily_stop"}
    values = {k: v for k, v in document.items() if k in known}
    values["requirements"] = tuple(values.get("requirements") or ())
    return ProvisionSettings(**values)


def main() -> int:
    from .base import RebootRequested
    from .local_host import LocalHost
    from .runner import default_steps, run_steps

    try:
        settings = settings_from(json.loads(sys.stdin.read()))
    except (ValueError, TypeError, AttributeError) as exc:
        print(json.dumps({"ok": False, "error": f"bad settings: {exc}"}))
        return FAILED
    host = LocalHost(settings.login_user)
    try:
        report = run_steps(host, settings, default_steps(), label="this VM")
    except RebootRequested as exc:
        print(json.dumps({"ok": False, "rebooting": True, "reason": str(exc)}))
        return REBOOTING
    print(json.dumps(report.as_dict()))
    return OK if report.ok else FAILED
