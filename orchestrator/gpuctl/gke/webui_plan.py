"""What `gpuctl webui up` will make, where, from which images, whether the model fits the GPU,
what it costs per hour while the model server is up and while it is idle, and its guards.
A pure function of the settings and the price book: `up --dry-run` prints it offline."""

from __future__ import annotations

from ..prices.model import PriceBook
from .serving_images import OPEN_WEBUI_IMAGE, is_pinned
from .webui import (MODEL, NAME, WebuiSettings, generated_secrets, model_fit, model_image,
                    served_names)

START_MINUTES = (4, 10)  # a GPU node from zero (GCP_FACTS.md), before the model loads


def cluster_baseline(prices: PriceBook, region: str) -> dict:
    """What the cluster bills with no GPU node: its fee and one default system node, where the
    UI pod runs. The UI adds nothing to it while it fits on that node."""
    from dataclasses import fields

    from gpuctl_infra.gke_spec import GkeSpec

    from ..errors import PriceError
    from .costs import CLUSTER_FEE_USD_PER_HOUR, disk_hourly, system_machine_hourly

    defaults = {f.name: f.default for f in fields(GkeSpec)}
    machine = defaults["system_machine_type"]
    try:
        usd = (CLUSTER_FEE_USD_PER_HOUR + system_machine_hourly(region, machine, prices)
               + disk_hourly(prices, region, defaults["system_disk_type"],
                             defaults["system_disk_size_gb"]))
    except PriceError as exc:
        return {"usd_per_hour": None, "detail": exc.message}
    return {"usd_per_hour": round(usd, 4),
            "detail": f"cluster fee + 1x {machine} system node, on-demand, {region}"}


def webui_cost(prices: PriceBook, region: str, accelerator: str, spot: bool) -> dict:
    """{"up_usd_per_hour", "idle_usd_per_hour", "gpu_node", "cluster"}: up = the GPU node on
    top of the cluster; idle = the cluster alone (the GPU pool is at zero nodes)."""
    from .pricing import gpu_node_hourly

    gpu = gpu_node_hourly(prices, region, accelerator, 1, spot)
    base = cluster_baseline(prices, region)
    up = None
    if gpu["usd_per_hour"] is not None and base["usd_per_hour"] is not None:
        up = round(gpu["usd_per_hour"] + base["usd_per_hour"], 4)
    return {"up_usd_per_hour": up, "idle_usd_per_hour": base["usd_per_hour"],
            "gpu_node": gpu, "cluster": base}


def plan_webui(settings: WebuiSettings, prices: PriceBook, region: str) -> dict:
    fit = model_fit(settings)
    images = {"model server": model_image(settings), "chat UI": OPEN_WEBUI_IMAGE}
    return {
        "what": {"model": settings.model, "served_as": served_names(settings),
                 "adapters": [{"name": n, "location": loc} for n, loc in settings.adapters],
                 "hf_token": settings.hf_token},  # a reference, never a value
        "where": {"namespace": settings.namespace,
                  "model_server": f"Deployment {MODEL}: 1x {settings.accelerator} "
                                  f"({'spot' if settings.spot else 'on-demand'}), 0 <-> 1 replicas",
                  "chat_ui": f"Deployment {NAME}: Open WebUI on the CPU system pool, ClusterIP "
                             "only, reached with `gpuctl webui open` (port-forward)"},
        "images": [{"role": role, "image": ref, "pinned": is_pinned(ref), "build": False}
                   for role, ref in images.items()],
        "fit": fit.as_dict(),
        "cost": webui_cost(prices, region, settings.accelerator, settings.spot),
        "start_minutes": list(START_MINUTES),
        "guards": [
            (f"idle rule: the model server scales to zero after {settings.idle_minutes:g} min "
             "without a request (checked every minute by the waker in the UI pod)")
            if settings.idle_minutes else
            "idle rule OFF (--idle-minutes 0): the GPU node bills until `gpuctl webui down`",
            "GKE's autoscaler removes the GPU node once no pod needs it (GPU pools start at 0)",
            "Open WebUI login on (WEBUI_AUTH=True, sign-up off); a token proxy in front; no "
            "LoadBalancer or NodePort; NetworkPolicy admits only the UI to the model server",
        ],
        "secrets": generated_secrets(),
        "bucket_grants": bucket_grants(settings),
    }


def bucket_grants(settings: WebuiSettings) -> list[dict]:
    """The read grant each gs:// source (base model, adapters) needs for the model server's
    Kubernetes service account, one per bucket (see gke/bucket_access.py)."""
    from ..validation import gcs_url
    from .bucket_access import READ, grant_command

    sources = [settings.model] + [location for _, location in settings.adapters]
    buckets = sorted({gcs_url(s)[0] for s in sources if s.startswith("gs://")})
    return [{"bucket": b, "role": READ, "account": MODEL,
             "command": grant_command(b, settings.namespace, MODEL, READ)} for b in buckets]
