"""SSH to a VM with no external address, through Identity-Aware Proxy TCP forwarding.

The tunnel is the Google Cloud CLI's own: `gcloud compute start-iap-tunnel INSTANCE 22
--listen-on-stdin --zone ZONE --project PROJECT` relays its stdin and stdout to the instance's
port 22 through IAP (https://cloud.google.com/sdk/gcloud/reference/compute/start-iap-tunnel:
INSTANCE_NAME and INSTANCE_PORT are its positional arguments, --zone the instance's zone, and
--project the gcloud-wide flag; --listen-on-stdin is the stdin/stdout mode gcloud's own
`compute ssh --tunnel-through-iap` uses as ssh's ProxyCommand). gpuctl uses it as the SSH
adapter's Tunnel, so the SSH session inside (and its host-key check) is unchanged.

Google's requirements (https://cloud.google.com/iap/docs/using-tcp-forwarding): a firewall rule
admitting 35.235.240.0/20 on port 22 (the VM program makes it), and the caller holding a role
with IAP tunnel access, IAP-Secured Tunnel User (roles/iap.tunnelResourceAccessor).
"""

from __future__ import annotations

import shutil

from ..adapters.ssh import Tunnel
from ..errors import GpuctlError

GCLOUD = "gcloud"
MISSING_HINT = ("install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install) and run "
                "`gcloud auth login`, or rerun without --iap")
FAILURE_HINT = ("check `gcloud auth login`, that your account holds roles/iap.tunnelResourceAccessor "
                "(IAP-Secured Tunnel User) and that the VM is running")


def tunnel_argv(instance: str, zone: str, project: str, port: int = 22) -> tuple[str, ...]:
    return (GCLOUD, "compute", "start-iap-tunnel", instance, str(port), "--listen-on-stdin",
            "--zone", zone, "--project", project)


def tunnel(instance: str, zone: str, project: str) -> Tunnel:
    return Tunnel(tunnel_argv(instance, zone, project), "the IAP tunnel", MISSING_HINT, FAILURE_HINT)


def require_gcloud() -> None:
    """Before anything is created: an IAP VM no one can reach is worse than none."""
    if shutil.which(GCLOUD) is None:
        raise GpuctlError("--iap needs the Google Cloud CLI (`gcloud`), and it is not on PATH",
                          MISSING_HINT)
