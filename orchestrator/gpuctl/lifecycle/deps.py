"""What the live lifecycle needs from the outside world, gathered in one place.

`live_deps` checks, in seconds and before anything is created, each thing the live path
needs (Google credentials, a project, the Pulumi CLI, the caller's address) and names the
one that is missing. Tests build a `LiveDeps` with a stand-in engine and API endpoint.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from ..adapters.compute import CloudAccessError, ComputeApi
from ..adapters.deadline import DeadlineApi
from ..adapters.pulumi_engine import AutomationEngine, StackEngine, find_pulumi_cli
from ..context import Context

VM_PROJECT = "gpuctl-vm"  # the Pulumi project every VM stack belongs to
# The service account a VM's deadline job acts as: it needs compute.instances.delete.
DEADLINE_ACCOUNT_ENV = "GPUCTL_DEADLINE_SERVICE_ACCOUNT"


@dataclass
class Timeouts:
    running_s: float = 300.0  # insert done -> RUNNING
    host_keys_s: float = 300.0  # RUNNING -> guest agent published host keys
    ssh_s: float = 300.0  # host keys -> sshd accepts our key
    poll_s: float = 5.0


@dataclass
class LiveDeps:
    engine: StackEngine
    compute: ComputeApi
    project: str
    caller_cidr: str
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.timezone.utc))
    sleep: Callable[[float], None] = time.sleep
    timeouts: Timeouts = field(default_factory=Timeouts)
    deadlines: Callable[[str], DeadlineApi] | None = None  # region -> API; tests may pass their own
    storage: object | None = None  # a StorageApi (checkpoint buckets); made on first use

    def storage_api(self):
        """Cloud Storage for this project (GPUCTL_STORAGE_ENDPOINT reaches it, as for gpuctl's
        other adapters); imported lazily: google-cloud-storage is only for checkpointed VMs."""
        if self.storage is None:
            from ..adapters.storage import StorageApi

            self.storage = StorageApi(self.project)
        return self.storage

    def deadline_api(self, region: str) -> DeadlineApi:
        """The Cloud Scheduler API for deadline jobs in `region` (a VM's job lives in the VM's
        region and deletes it as a service account allowed to)."""
        if self.deadlines is not None:
            return self.deadlines(region)
        account = os.environ.get(DEADLINE_ACCOUNT_ENV) or f"gpuctl-deadline@{self.project}.iam.gserviceaccount.com"
        return DeadlineApi(self.project, region, account)


def resolve_project(ctx: Context) -> str:
    if ctx.config.project:
        return ctx.config.project
    credentials, project = default_credentials()
    if not project:
        raise CloudAccessError("no Google Cloud project is set",
                               "set `project` in the gpuctl config, GPUCTL_PROJECT, or "
                               "`gcloud config set project PROJECT`")
    return project


def default_credentials():
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except DefaultCredentialsError:
        raise CloudAccessError("no Google Cloud credentials found (Application Default Credentials)",
                               "run `gcloud auth application-default login`") from None


def caller_cidr(ctx: Context, explicit: str | None = None) -> str:
    """The one address SSH is opened to: --ssh-from, the config, or detected."""
    if explicit:
        from ..validation import ssh_source

        return ssh_source(explicit)
    address = ctx.config.ssh_from or detect_public_address()
    return address if "/" in address else f"{address}/{128 if ':' in address else 32}"


def detect_public_address(timeout_s: float = 5.0) -> str:
    import ipaddress
    import urllib.request

    for url in ("https://checkip.amazonaws.com", "https://api.ipify.org"):
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (fixed https URLs)
                text = response.read(64).decode().strip()
            return str(ipaddress.ip_address(text))
        except (OSError, ValueError):
            continue
    raise CloudAccessError("could not detect your public address for the SSH firewall rule",
                           "pass --ssh-from YOUR.PUBLIC.IP (or set ssh_from in the config)")


def live_deps(ctx: Context, ssh_from: str | None = None, need_engine: bool = True,
              iap: bool = False) -> LiveDeps:
    """Everything the live path needs, each missing piece reported by name, in seconds. With
    iap, SSH goes through gcloud's IAP tunnel (checked here, before anything is created) and
    the caller's address is not needed: the firewall admits IAP's range only."""
    default_credentials()  # fails fast and names ADC when absent
    project = resolve_project(ctx)
    if need_engine:
        find_pulumi_cli()
    if iap:
        from .iap import require_gcloud

        require_gcloud()
    engine = AutomationEngine(VM_PROJECT, ctx.config.pulumi_backend)
    cidr = caller_cidr(ctx, ssh_from) if need_engine and not iap else ""
    return LiveDeps(engine=engine, compute=ComputeApi(project), project=project, caller_cidr=cidr)
