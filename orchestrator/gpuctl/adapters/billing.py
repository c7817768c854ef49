"""Live prices from the Cloud Billing Catalog API, read into a PriceBook.

The catalog prices Compute Engine by component, the way GCE bills: one SKU per GPU, one per
vCPU and one per GB of memory of each machine family, one per GB-month of each disk kind.
A machine type's host price is therefore vcpus * core + memory_gb * ram of its family.

google-cloud-billing and google-auth are imported inside functions: `gpuctl --help` and the
offline commands must not pay for importing them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gpuctl_infra.catalog import GPUS, MACHINES, MachineType

from ..errors import PriceError
from ..prices.model import PriceBook, Rate, RegionPrices
from .transport import is_transport_error, network_error, per_attempt_timeout

COMPUTE_ENGINE_SERVICE = "services/6F81-5844-456A"
ENDPOINT_ENV = "GPUCTL_BILLING_ENDPOINT"
GOOGLE_ENDPOINT = "cloudbilling.googleapis.com"
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
_NO_CREDENTIALS_HINT = ("run `gcloud auth application-default login`, or keep using the "
                        "bundled snapshot")

# Descriptions after _normalise(); an exact match keeps look-alikes out (T4 Virtual
# Workstation, H100 Mega, Regional SSD PD, Custom or Sole Tenancy cores...).
_GPU_SKUS = {
    "nvidia tesla t4 gpu": "nvidia-tesla-t4",
    "nvidia l4 gpu": "nvidia-l4",
    "nvidia tesla a100 gpu": "nvidia-tesla-a100",
    "nvidia a100 80gb gpu": "nvidia-a100-80gb",
    "nvidia h100 80gb gpu": "nvidia-h100-80gb",
    "nvidia tesla p4 gpu": "nvidia-tesla-p4",
    "nvidia tesla p100 gpu": "nvidia-tesla-p100",
    "nvidia tesla v100 gpu": "nvidia-tesla-v100",
    # Descriptions of the newer GPUs' SKUs as SkyPilot's catalog generator reads them
    # (unverified against a live catalog answer): an unmatched SKU only leaves the snapshot's
    # price in force.
    "nvidia h100 80gb mega gpu": "nvidia-h100-mega-80gb",
    "nvidia h200 141gb gpu": "nvidia-h200-141gb",
    "nvidia b200 gpu": "nvidia-b200",
    "nvidia rtx pro 6000 gpu": "nvidia-rtx-pro-6000",
}
_CORE_RAM_SKUS = {
    "n1 predefined instance core": ("n1", "core"),
    "n1 predefined instance ram": ("n1", "ram"),
    "a2 instance core": ("a2", "core"),
    "a2 instance ram": ("a2", "ram"),
    "g2 instance core": ("g2", "core"),
    "g2 instance ram": ("g2", "ram"),
    "a3 instance core": ("a3", "core"),
    "a3 instance ram": ("a3", "ram"),
    "a4 instance core": ("a4", "core"),
    "a4 instance ram": ("a4", "ram"),
    "g4 instance core": ("g4", "core"),
    "g4 instance ram": ("g4", "ram"),
}
_DISK_SKUS = {
    "ssd backed local storage": "local-ssd",
    "ssd backed pd capacity": "pd-ssd",
    "balanced pd capacity": "pd-balanced",
    "storage pd capacity": "pd-standard",
}
# The unit each kind is stored in. GCE's "GB" of memory and disk are binary gigabytes (GiB),
# as Google's pricing pages say, so GiBy rates apply to the catalog's sizes unchanged. A SKU
# priced in another unit is skipped rather than converted by guesswork.
_UNITS = {"gpu": "h", "core": "h", "ram": "GiBy.h", "disk": "GiBy.mo"}
# Commitments (Commit1Yr, Commit3Yr...) and other usage types are not what a VM of ours pays.
_MODELS = {"OnDemand": "ondemand", "Preemptible": "spot"}

_PREFIX = re.compile(r"^(spot\s+)?preemptible\s+")
_SPOT_SUFFIX = re.compile(r"\s+attached to (spot\s+)?preemptible vms\b")
_REQUEST_PREFIX = re.compile(r"^[A-Z]+ \S+: ")  # "GET https://...: " that api_core prepends
_PLACE_SUFFIX = re.compile(r"\s+(running\s+)?in\s+[a-z][a-z0-9 .,/()-]*$")


@dataclass(frozen=True)
class SkuPrice:
    """One price the catalog gave that gpuctl uses."""

    kind: str  # "gpu", "core", "ram" or "disk"
    key: str  # GPU name, machine family ("n1") or disk name
    model: str  # "spot" or "ondemand"
    regions: tuple[str, ...]
    usd: float


def refresh_price_book(regions: list[str], *, client=None, endpoint: str | None = None,
                       credentials=None, today: dt.date | None = None,
                       retry_first_delay_s: float = 1.0,
                       retry_deadline_s: float = 60.0) -> PriceBook:
    """Current list prices for `regions` from the Cloud Billing Catalog (Compute Engine SKUs).

    Raises PriceError with a hint when there are no credentials, the API refuses, stays
    unavailable, or answers nothing usable.
    """
    endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
    if client is None:
        client = _catalog_client(endpoint, credentials)
    where = getattr(client, "api_endpoint", None) or endpoint or GOOGLE_ENDPOINT
    retry = _retry(retry_first_delay_s, retry_deadline_s)
    with _translated_errors(where):
        prices = [price for sku in _list_skus(client, retry) if (price := read_sku(sku))]
    source = f"Cloud Billing Catalog API ({where}, {COMPUTE_ENGINE_SERVICE}): public list prices in USD"
    return build_price_book(prices, regions, as_of=today or dt.date.today(), source=source)


def save_price_book(book: PriceBook, path: Path) -> None:
    """Write atomically: a reader (or a crash mid-write) never sees half a file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(book.model_dump(mode="json"), out, indent=2)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise PriceError(f"could not save prices to {path}: {exc.strerror or exc}",
                         "check that GPUCTL_HOME points to a writable directory") from exc


# --- reading SKUs (pure) ---------------------------------------------------------------------


def read_sku(sku) -> SkuPrice | None:
    """The price a SKU gives gpuctl, or None when gpuctl has no use for it."""
    model = _MODELS.get(sku.category.usage_type)
    kind_key = _classify(sku.description, sku.category.resource_group) if model else None
    if kind_key is None:
        return None
    kind, key = kind_key
    usd = _unit_price(sku, _UNITS[kind])
    if usd is None:
        return None
    return SkuPrice(kind, key, model, tuple(sku.service_regions), usd)


def _normalise(description: str) -> str:
    """'Spot Preemptible Nvidia L4 GPU running in Americas' -> 'nvidia l4 gpu'."""
    text = " ".join(description.lower().split())
    text = _PREFIX.sub("", text)
    text = _SPOT_SUFFIX.sub("", text)
    return _PLACE_SUFFIX.sub("", text)


def _classify(description: str, resource_group: str) -> tuple[str, str] | None:
    name = _normalise(description)
    if resource_group == "GPU":
        gpu = _GPU_SKUS.get(name)
        return ("gpu", gpu) if gpu else None
    if name in _CORE_RAM_SKUS:
        family, part = _CORE_RAM_SKUS[name]
        return part, family
    if name in _DISK_SKUS:
        return "disk", _DISK_SKUS[name]
    return None


def _unit_price(sku, expected_unit: str) -> float | None:
    """USD per unit of the first tier that charges anything (a free first tier is skipped)."""
    if not sku.pricing_info:
        return None
    expression = sku.pricing_info[0].pricing_expression
    if expression.usage_unit != expected_unit:
        return None
    for tier in sorted(expression.tiered_rates, key=lambda t: t.start_usage_amount):
        price = tier.unit_price
        if price.currency_code not in ("", "USD"):
            return None
        usd = price.units + price.nanos / 1e9
        if usd > 0:
            return usd
    return None


# --- building the book (pure) ----------------------------------------------------------------


def build_price_book(prices: Iterable[SkuPrice], regions: list[str], *, as_of: dt.date,
                     source: str) -> PriceBook:
    found: dict[tuple[str, str, str, str], float] = {}
    for price in prices:
        for region in price.regions:
            # The first SKU seen wins: the catalog lists one per item, model and geography.
            found.setdefault((region, price.kind, price.key, price.model), price.usd)
    book = {region: _region_prices(found, region) for region in regions}
    book = {region: prices for region, prices in book.items()
            if prices.machines or prices.gpus or prices.disks}
    if not book:
        raise PriceError(f"the Cloud Billing Catalog returned no Compute Engine prices for "
                         f"{', '.join(regions)}",
                         "check the region names; the bundled snapshot stays in use")
    return PriceBook(currency="USD", as_of=as_of, source=source, regions=book)


def _region_prices(found: dict, region: str) -> RegionPrices:
    def rate(kind: str, key: str, basis: str = "catalog") -> Rate | None:
        spot, ondemand = (found.get((region, kind, key, m)) for m in ("spot", "ondemand"))
        if spot is None and ondemand is None:
            return None
        return Rate(spot=spot, ondemand=ondemand, basis=basis)

    gpus = {name: r for name in GPUS if _offered(name, region) and (r := rate("gpu", name))}
    disks = {name: r for name in _DISK_SKUS.values() if (r := rate("disk", name))}
    machines = {m.name: r for m in MACHINES.values()
                if (r := _machine_rate(found, region, m)) is not None}
    return RegionPrices(machines=machines, gpus=gpus, disks=disks)


def _machine_rate(found: dict, region: str, machine: MachineType) -> Rate | None:
    """Host price = vcpus * core + memory_gb * ram, for each model the catalog prices fully."""
    if machine.builtin_gpu and not _offered(machine.builtin_gpu, region):
        return None  # the type cannot exist where its GPU does not
    hourly: dict[str, float] = {}
    for model in ("spot", "ondemand"):
        core = found.get((region, "core", machine.family, model))
        ram = found.get((region, "ram", machine.family, model))
        if core is not None and ram is not None:
            hourly[model] = round(machine.vcpus * core + machine.memory_gb * ram, 6)
    if machine.spot_only:
        hourly.pop("ondemand", None)  # the family's on-demand SKU does not apply to this type
    if not hourly:
        return None
    basis = (f"catalog: {machine.vcpus} vCPU x core + {machine.memory_gb:g} GB x RAM "
             f"({machine.family.upper()} SKUs)")
    return Rate(**hourly, basis=basis)


def _offered(gpu: str, region: str) -> bool:
    return region in GPUS[gpu].zones


# --- the client and its errors ---------------------------------------------------------------


def _catalog_client(endpoint: str | None, credentials):
    from google.cloud import billing_v1

    # REST everywhere: one code path, the one the tests drive, and no gRPC import at startup.
    options = {"api_endpoint": endpoint} if endpoint else None
    return billing_v1.CloudCatalogClient(transport="rest", client_options=options,
                                         credentials=_credentials(endpoint, credentials))


def _credentials(endpoint: str | None, credentials):
    if credentials is not None:
        return credentials
    if endpoint and endpoint.startswith("http://"):
        # Plain HTTP is a local stand-in or proxy: never send a Google token in clear text.
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        found, _project = google.auth.default(scopes=_SCOPES)
    except DefaultCredentialsError:
        raise PriceError("no Google Cloud credentials", _NO_CREDENTIALS_HINT) from None
    return found


def _retry(first_delay_s: float, deadline_s: float):
    """Retry what Google asks clients to retry (503, 429, 500), per page, with backoff."""
    from google.api_core import exceptions, retry

    transient = retry.if_exception_type(exceptions.ServiceUnavailable,
                                        exceptions.TooManyRequests,
                                        exceptions.InternalServerError)
    return retry.Retry(predicate=transient, initial=first_delay_s,
                       maximum=first_delay_s * 16, multiplier=2.0,
                       timeout=deadline_s)


def _list_skus(client, retry) -> Iterator:
    from google.cloud import billing_v1

    request = billing_v1.ListSkusRequest(parent=COMPUTE_ENGINE_SERVICE, currency_code="USD",
                                         page_size=5000)
    # The pager fetches the next page as iteration reaches it, with the same retry.
    yield from client.list_skus(request=request, retry=retry, timeout=per_attempt_timeout())


@contextmanager
def _translated_errors(where: str):
    """Library errors become PriceErrors a user can act on; the snapshot stays in use."""
    from google.api_core import exceptions
    from google.auth import exceptions as auth_exceptions

    # Over REST, api_core raises the HTTP-status classes (Forbidden, Unauthorized); the gRPC
    # ones (PermissionDenied, Unauthenticated) are their subclasses, so both are caught.
    try:
        yield
    except exceptions.Forbidden as exc:
        raise PriceError(f"the Cloud Billing Catalog API refused access: {_reason(exc)}",
                         "enable the Cloud Billing API (cloudbilling.googleapis.com) in your "
                         "project and check your IAM permissions; the bundled snapshot stays "
                         "in use") from exc
    except (exceptions.Unauthorized, auth_exceptions.RefreshError) as exc:
        raise PriceError(f"Google Cloud rejected the credentials: {_reason(exc)}",
                         _NO_CREDENTIALS_HINT) from exc
    except (exceptions.ServiceUnavailable, exceptions.TooManyRequests,
            exceptions.InternalServerError, exceptions.RetryError) as exc:
        raise PriceError(f"the Cloud Billing Catalog API is unavailable: {_reason(exc)}",
                         "retry later; the bundled snapshot stays in use") from exc
    except exceptions.GoogleAPICallError as exc:
        raise PriceError(f"the Cloud Billing Catalog API failed ({exc.code}): {_reason(exc)}",
                         "retry later, or report it if it persists") from exc
    except Exception as exc:
        # DNS, refused, timeout, TLS: requests/urllib3 or google-auth's token refresh.
        if not is_transport_error(exc):
            raise
        failure = network_error(exc, f"the Cloud Billing Catalog API ({where})", ENDPOINT_ENV,
                                endpoint_set=where != GOOGLE_ENDPOINT)
        raise PriceError(failure.message,
                         f"{failure.hint}; the bundled snapshot stays in use") from exc


def _reason(exc: Exception) -> str:
    """The server's words, without the request URL api_core puts in front of them."""
    from google.api_core import exceptions

    if isinstance(exc, exceptions.RetryError) and exc.cause is not None:
        exc = exc.cause
    message = getattr(exc, "message", None) or str(exc)
    return _REQUEST_PREFIX.sub("", message)
