"""A stand-in for the Cloud Billing Catalog API v1 (REST), served on 127.0.0.1.

It answers `GET /v1/services/{service}/skus` with the JSON shapes of the API reference
(camelCase, int64 as strings, `nextPageToken` until the last page), so the real
google-cloud-billing client can be pointed at it with `client_options.api_endpoint`.
Faults are injected on demand: 403 PERMISSION_DENIED, or a number of 503 UNAVAILABLE
answers before the real ones. Every request is recorded for assertions.

    with BillingCatalogStandIn(sample_compute_engine_skus(), page_size=5) as catalog:
        client = billing_v1.CloudCatalogClient(
            transport="rest", client_options={"api_endpoint": catalog.endpoint},
            credentials=AnonymousCredentials())
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from tests.standins import discovery
from tests.standins.loopback import HttpCall, LoopbackServer

COMPUTE_ENGINE = "6F81-5844-456A"

AMERICAS = ["us-central1", "us-east1", "us-west1", "northamerica-northeast1"]
JAPAN = ["asia-northeast1"]
EMEA = ["europe-west4", "europe-west1"]

_UNITS = {  # usageUnit -> (usageUnitDescription, baseUnit, baseUnitConversionFactor)
    "h": ("hour", "s", 3600),
    "GiBy.h": ("gibibyte hour", "By.s", 2**30 * 3600),
    "GiBy.mo": ("gibibyte month", "By.s", 2**30 * 3600 * 730),
}


def money(usd: float) -> dict:
    """google.type.Money in its JSON form: units is an int64, hence a string."""
    units = int(usd)
    return {"currencyCode": "USD", "units": str(units), "nanos": round((usd - units) * 1e9)}


def make_sku(description: str, usage_type: str, regions: list[str], price: float | list,
             unit: str, *, group: str, family: str = "Compute") -> dict:
    """One SKU as the API returns it. `price` is USD per unit, or [(start, usd), ...] tiers."""
    tiers = price if isinstance(price, list) else [(0, price)]
    sku_id = hashlib.sha1(f"{description}|{usage_type}|{regions}".encode()).hexdigest()[:12]
    sku_id = "-".join((sku_id[:4], sku_id[4:8], sku_id[8:])).upper()
    unit_description, base_unit, factor = _UNITS[unit]
    return {
        "name": f"services/{COMPUTE_ENGINE}/skus/{sku_id}",
        "skuId": sku_id,
        "description": description,
        "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": family,
                     "resourceGroup": group, "usageType": usage_type},
        "serviceRegions": list(regions),
        "pricingInfo": [{
            "effectiveTime": "2026-11-20T08:00:00.000Z",
            "summary": "",
            "pricingExpression": {
                "usageUnit": unit,
                "usageUnitDescription": unit_description,
                "baseUnit": base_unit,
                "baseUnitDescription": "second" if base_unit == "s" else "byte second",
                "baseUnitConversionFactor": factor,
                "displayQuantity": 1,
                "tieredRates": [{"startUsageAmount": start, "unitPrice": money(usd)}
                                for start, usd in tiers],
            },
            "currencyConversionRate": 1,
        }],
        "serviceProviderName": "Google",
    }


def sample_compute_engine_skus() -> list[dict]:
    """A slice of the Compute Engine catalog: what gpuctl reads, and look-alikes it must not.

    Prices are chosen for the tests, close to late-2026 list prices but not a copy of them.
    Japan has no A3 SKUs here, so a refresh leaves the snapshot's a3 price in force there.
    """
    od, spot = "OnDemand", "Preemptible"
    skus = [
        # GPUs, with the description variants the real catalog uses for spot.
        make_sku("Nvidia Tesla T4 GPU running in Americas", od, AMERICAS, 0.35, "h", group="GPU"),
        make_sku("Spot Preemptible Nvidia Tesla T4 GPU running in Americas", spot, AMERICAS, 0.1915, "h",
                 group="GPU"),
        make_sku("Nvidia Tesla T4 GPU running in Japan", od, JAPAN, 0.44, "h", group="GPU"),
        make_sku("Spot Preemptible Nvidia Tesla T4 GPU running in Japan", spot, JAPAN, 0.1507, "h",
                 group="GPU"),
        make_sku("Nvidia L4 GPU running in Americas", od, AMERICAS, 0.56, "h", group="GPU"),
        make_sku("Nvidia L4 GPU attached to Spot Preemptible VMs running in Americas", spot, AMERICAS,
                 0.2862, "h", group="GPU"),
        make_sku("Nvidia L4 GPU running in Japan", od, JAPAN, 0.7, "h", group="GPU"),
        make_sku("Spot Preemptible Nvidia L4 GPU running in Japan", spot, JAPAN, 0.4152, "h", group="GPU"),
        make_sku("Nvidia Tesla A100 GPU running in Americas", od, AMERICAS, 2.933908, "h", group="GPU"),
        make_sku("Spot Preemptible Nvidia Tesla A100 GPU running in Americas", spot, AMERICAS, 1.5399, "h",
                 group="GPU"),
        make_sku("Nvidia Tesla A100 GPU running in Japan", od, JAPAN, 3.75, "h", group="GPU"),
        make_sku("Spot Preemptible Nvidia Tesla A100 GPU running in Japan", spot, JAPAN, 1.7915, "h",
                 group="GPU"),
        make_sku("Nvidia A100 80GB GPU running in Americas", od, ["us-central1", "us-east4"], 3.92723, "h",
                 group="GPU"),
        make_sku("Spot Preemptible Nvidia A100 80GB GPU running in Americas", spot,
                 ["us-central1", "us-east4"], 2.1604, "h", group="GPU"),
        make_sku("Nvidia H100 80GB GPU running in Americas", od, AMERICAS, 11.06, "h", group="GPU"),
        make_sku("Spot Preemptible Nvidia H100 80GB GPU running in Americas", spot, AMERICAS, 5.3387, "h",
                 group="GPU"),
        make_sku("Spot Preemptible Nvidia H100 80GB GPU running in Japan", spot, JAPAN, 3.0195, "h",
                 group="GPU"),
        # vCPU and memory per family.
        *_core_ram("N1 Predefined Instance", "N1Standard", AMERICAS, core=(0.031611, 0.00698),
                   ram=(0.004237, 0.000935)),
        *_core_ram("N1 Predefined Instance", "N1Standard", JAPAN, core=(0.040618, 0.0089),
                   ram=(0.005444, 0.0012)),
        *_core_ram("G2 Instance", "CPU", AMERICAS, core=(0.024988, 0.01), ram=(0.002928, 0.00119)),
        *_core_ram("G2 Instance", "CPU", JAPAN, core=(0.032, 0.0145), ram=(0.00375, 0.00173)),
        *_core_ram("A2 Instance", "CPU", AMERICAS, core=(0.031611, 0.0166), ram=(0.004237, 0.00222)),
        *_core_ram("A2 Instance", "CPU", JAPAN, core=(0.040618, 0.0234), ram=(0.005444, 0.0031)),
        *_core_ram("A3 Instance", "CPU", AMERICAS, core=(0.0329, 0.0102), ram=(0.0044, 0.000888)),
        # Disks per GB-month; pd-standard in Japan has a free first tier.
        make_sku("SSD backed Local Storage", od, AMERICAS, 0.08, "GiBy.mo", group="LocalSSD",
                 family="Storage"),
        make_sku("SSD backed Local Storage attached to Spot Preemptible VMs", spot, AMERICAS, 0.048,
                 "GiBy.mo", group="LocalSSD", family="Storage"),
        make_sku("SSD backed Local Storage in Japan", od, JAPAN, 0.104, "GiBy.mo", group="LocalSSD",
                 family="Storage"),
        make_sku("SSD backed Local Storage attached to Spot Preemptible VMs in Japan", spot, JAPAN,
                 0.0624, "GiBy.mo", group="LocalSSD", family="Storage"),
        make_sku("SSD backed PD Capacity", od, AMERICAS, 0.17, "GiBy.mo", group="SSD", family="Storage"),
        make_sku("SSD backed PD Capacity in Japan", od, JAPAN, 0.221, "GiBy.mo", group="SSD",
                 family="Storage"),
        make_sku("Balanced PD Capacity", od, AMERICAS, 0.1, "GiBy.mo", group="SSD", family="Storage"),
        make_sku("Balanced PD Capacity in Japan", od, JAPAN, 0.13, "GiBy.mo", group="SSD",
                 family="Storage"),
        make_sku("Storage PD Capacity", od, AMERICAS, 0.04, "GiBy.mo", group="PDStandard",
                 family="Storage"),
        make_sku("Storage PD Capacity in Japan", od, JAPAN, [(0, 0.0), (1, 0.052)], "GiBy.mo",
                 group="PDStandard", family="Storage"),
    ]
    # Decoys first: a SKU wrongly taken for a relevant one would win (the first seen wins).
    return irrelevant_skus() + skus


def irrelevant_skus() -> list[dict]:
    """SKUs a refresh must ignore: commitments, look-alikes, other families and regions."""
    od = "OnDemand"
    return [
        make_sku("Commitment v1: Nvidia Tesla T4 GPU in Americas for 1 Year", "Commit1Yr", AMERICAS,
                 0.22, "h", group="GPU"),
        # Only the usage type tells this one apart: gpuctl must read category.usageType.
        make_sku("Nvidia Tesla T4 GPU running in Americas", "Commit3Yr", AMERICAS, 0.16, "h", group="GPU"),
        make_sku("Commitment v1: N1 Predefined Instance Core in Americas for 3 Year", "Commit3Yr",
                 AMERICAS, 0.0142, "h", group="N1Standard"),
        make_sku("Nvidia Tesla T4 Virtual Workstation GPU running in Americas", od, AMERICAS, 0.55, "h",
                 group="GPU"),
        make_sku("Nvidia H100 80GB Mega GPU running in Americas", od, AMERICAS, 12.5, "h", group="GPU"),
        make_sku("Nvidia Tesla V100 GPU running in Americas", od, AMERICAS, 2.48, "h", group="GPU"),
        # Catalog lists it, but gpuctl's catalog says Tokyo has no A100 80GB.
        make_sku("Nvidia A100 80GB GPU running in Japan", od, JAPAN, 4.9, "h", group="GPU"),
        make_sku("Nvidia Tesla T4 GPU running in EMEA", od, EMEA, 0.39, "h", group="GPU"),
        make_sku("N1 Predefined Instance Core running in EMEA", od, EMEA, 0.0348, "h", group="N1Standard"),
        make_sku("N2 Instance Core running in Americas", od, AMERICAS, 0.031611, "h", group="CPU"),
        make_sku("Custom Instance Ram running in Americas", od, AMERICAS, 0.00445, "GiBy.h", group="RAM"),
        make_sku("Sole Tenancy Instance Core running in Americas", od, AMERICAS, 0.0348, "h",
                 group="CPU"),
        # A relevant description in a unit gpuctl does not convert.
        make_sku("Balanced PD Capacity", od, AMERICAS, 0.0033, "h", group="SSD", family="Storage"),
        make_sku("Regional SSD backed PD Capacity", od, AMERICAS, 0.34, "GiBy.mo", group="SSD",
                 family="Storage"),
        make_sku("Network Internet Egress from Americas to Japan", od, AMERICAS, 0.12, "GiBy.mo",
                 group="PremiumInternetEgress", family="Network"),
    ]


def _core_ram(prefix: str, group: str, regions: list[str], *, core: tuple[float, float],
              ram: tuple[float, float]) -> list[dict]:
    """(on-demand, spot) per vCPU-hour and per GiB-hour, named the way the catalog names them."""
    where = "Japan" if regions == JAPAN else "Americas"
    out = []
    for part, (ondemand, spot), unit in (("Core", core, "h"), ("Ram", ram, "GiBy.h")):
        name = f"{prefix} {part} running in {where}"
        out.append(make_sku(name, "OnDemand", regions, ondemand, unit, group=group))
        out.append(make_sku(f"Spot Preemptible {name}", "Preemptible", regions, spot, unit, group=group))
    return out


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None


class BillingCatalogStandIn(LoopbackServer):
    """The stand-in server; a context manager, started on a free port of 127.0.0.1."""

    def __init__(self, skus: list[dict] | None = None, *, page_size: int = 5,
                 service: str = COMPUTE_ENGINE):
        self.skus = list(skus if skus is not None else sample_compute_engine_skus())
        self.page_size = page_size
        self.service = service
        self.requests: list[RecordedRequest] = []
        self.contract_violations: list[str] = []  # what cloudbilling.v1.json refused
        self._lock = threading.Lock()
        self._unavailable_left = 0
        self._denied: str | None = None

    # -- faults --
    def deny_permission(self, message: str = "Permission denied: Cloud Billing API has not been "
                        "used in project 0 before or it is disabled.") -> None:
        """Every following request gets 403 PERMISSION_DENIED."""
        self._denied = message

    def fail_unavailable(self, times: int) -> None:
        """The next `times` requests get 503 UNAVAILABLE."""
        self._unavailable_left = times

    def serve(self, call: HttpCall) -> tuple[int, dict]:
        return self.answer(call.method, call.path, call.query, call.authorization)

    @property
    def sku_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/skus")]

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.skus) // self.page_size))

    # -- answering --
    def answer(self, method: str, path: str, query: dict[str, str],
               authorization: str | None) -> tuple[int, dict]:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, authorization))
            if self._denied is not None:
                return _error(403, self._denied, "PERMISSION_DENIED")
            if self._unavailable_left > 0:
                self._unavailable_left -= 1
                return _error(503, "The service is currently unavailable.", "UNAVAILABLE")
        if method != "GET" or path != f"/v1/services/{self.service}/skus":
            if path.startswith("/v1/services/") and path.endswith("/skus"):
                return _error(404, f"Service {path.split('/')[3]} not found.", "NOT_FOUND")
            return _error(404, f"{method} {path} is not served here.", "NOT_FOUND")
        code, body = self._page(query)
        problems = discovery.response_problems("cloudbilling.v1", discovery.methods("cloudbilling.v1")[
            "cloudbilling.services.skus.list"], body) if code == 200 else []
        if problems:  # a stand-in defect: fail loudly so the test that reached it sees it
            self.contract_violations.extend(problems)
            return _error(500, "stand-in defect: its answer violates cloudbilling.v1.json: " + "; ".join(problems),
                          "INTERNAL")
        return code, body

    def _page(self, query: dict[str, str]) -> tuple[int, dict]:
        try:
            size = int(query.get("pageSize") or self.page_size)
            start = int(query["pageToken"].removeprefix("page-")) if query.get("pageToken") else 0
        except ValueError:
            return _error(400, "Invalid page token or page size.", "INVALID_ARGUMENT")
        if size <= 0 or start < 0 or start > len(self.skus):
            return _error(400, "Invalid page token or page size.", "INVALID_ARGUMENT")
        end = start + min(size, self.page_size)
        body: dict = {"skus": self.skus[start:end]}
        if end < len(self.skus):
            body["nextPageToken"] = f"page-{end}"
        return 200, body


def _error(code: int, message: str, status: str) -> tuple[int, dict]:
    return code, {"error": {"code": code, "message": message, "status": status}}


