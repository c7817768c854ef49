"""The live price refresh, driven through the real google-cloud-billing client (REST transport,
anonymous credentials) against a local stand-in of the Cloud Billing Catalog API."""

from __future__ import annotations

import datetime as dt
import json
import socket

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import billing_v1

from gpuctl.adapters.billing import refresh_price_book, save_price_book
from gpuctl.errors import PriceError
from gpuctl.paths import price_cache_path
from gpuctl.prices.model import load_price_book
from gpuctl.prices.store import active_price_book, bundled_price_book
from tests.standins.billing_catalog import BillingCatalogStandIn

REGIONS = ["us-central1", "asia-northeast1"]
REFRESHED_ON = dt.date(2026, 11, 20)
FAST = {"retry_first_delay_s": 0.01, "retry_deadline_s": 2.0}


@pytest.fixture
def catalog():
    with BillingCatalogStandIn(page_size=5) as standin:
        yield standin


def client_for(standin: BillingCatalogStandIn) -> billing_v1.CloudCatalogClient:
    return billing_v1.CloudCatalogClient(transport="rest",
                                         client_options={"api_endpoint": standin.endpoint},
                                         credentials=AnonymousCredentials())


def refresh(standin: BillingCatalogStandIn, regions=REGIONS):
    return refresh_price_book(regions, client=client_for(standin), today=REFRESHED_ON, **FAST)


def test_gpu_prices_per_region_and_model(catalog):
    book = refresh(catalog)
    us, tokyo = book.regions["us-central1"].gpus, book.regions["asia-northeast1"].gpus
    assert (us["nvidia-tesla-t4"].spot, us["nvidia-tesla-t4"].ondemand) == (0.1915, 0.35)
    assert (tokyo["nvidia-tesla-t4"].spot, tokyo["nvidia-tesla-t4"].ondemand) == (0.1507, 0.44)
    # "Nvidia L4 GPU attached to Spot Preemptible VMs running in Americas" is the L4's spot SKU.
    assert (us["nvidia-l4"].spot, us["nvidia-l4"].ondemand) == (0.2862, 0.56)
    assert us["nvidia-tesla-a100"].ondemand == pytest.approx(2.933908)
    assert us["nvidia-a100-80gb"].spot == pytest.approx(2.1604)
    # units "11" + nanos 60000000
    assert us["nvidia-h100-80gb"].ondemand == pytest.approx(11.06)
    assert (tokyo["nvidia-h100-80gb"].spot, tokyo["nvidia-h100-80gb"].ondemand) == (3.0195, None)
    assert book.as_of == REFRESHED_ON
    assert book.source.startswith(f"Cloud Billing Catalog API ({catalog.endpoint}, ")


@pytest.mark.parametrize(("region", "machine", "vcpus", "mem", "core", "ram"), [
    ("us-central1", "n1-highmem-8", 8, 52, (0.00698, 0.031611), (0.000935, 0.004237)),
    ("us-central1", "n1-standard-8", 8, 30, (0.00698, 0.031611), (0.000935, 0.004237)),
    ("asia-northeast1", "n1-highmem-16", 16, 104, (0.0089, 0.040618), (0.0012, 0.005444)),
    ("us-central1", "g2-standard-8", 8, 32, (0.01, 0.024988), (0.00119, 0.002928)),
    ("asia-northeast1", "g2-standard-16", 16, 64, (0.0145, 0.032), (0.00173, 0.00375)),
    ("us-central1", "a2-highgpu-1g", 12, 85, (0.0166, 0.031611), (0.00222, 0.004237)),
    ("asia-northeast1", "a2-highgpu-4g", 48, 340, (0.0234, 0.040618), (0.0031, 0.005444)),
    ("us-central1", "a2-ultragpu-1g", 12, 170, (0.0166, 0.031611), (0.00222, 0.004237)),
])
def test_host_price_is_vcpus_times_core_plus_memory_times_ram(catalog, region, machine, vcpus, mem,
                                                              core, ram):
    rate = refresh(catalog).regions[region].machines[machine]
    assert rate.spot == pytest.approx(vcpus * core[0] + mem * ram[0])
    assert rate.ondemand == pytest.approx(vcpus * core[1] + mem * ram[1])
    assert f"{vcpus} vCPU" in rate.basis


def test_spot_only_machine_gets_no_ondemand_price(catalog):
    a3 = refresh(catalog).regions["us-central1"].machines["a3-highgpu-1g"]
    assert a3.spot == pytest.approx(26 * 0.0102 + 234 * 0.000888)
    assert a3.ondemand is None  # the A3 family's on-demand SKU exists, but a3-highgpu-1g is spot-only


def test_disk_prices(catalog):
    book = refresh(catalog)
    us, tokyo = book.regions["us-central1"].disks, book.regions["asia-northeast1"].disks
    assert (us["local-ssd"].spot, us["local-ssd"].ondemand) == (0.048, 0.08)
    assert (tokyo["local-ssd"].spot, tokyo["local-ssd"].ondemand) == (0.0624, 0.104)
    assert {k: (r.spot, r.ondemand) for k, r in us.items() if k != "local-ssd"} == {
        "pd-ssd": (None, 0.17), "pd-balanced": (None, 0.1), "pd-standard": (None, 0.04)}
    # A free first tier is skipped: the first tier that charges is the price.
    assert tokyo["pd-standard"].ondemand == 0.052
    assert book.disk_gb_month("asia-northeast1", "local-ssd", spot=True) == 0.0624


def test_paging_is_followed_to_the_last_page(catalog):
    refresh(catalog)
    requests = catalog.sku_requests
    assert catalog.pages >= 5
    assert len(requests) == catalog.pages
    assert all(r.path == "/v1/services/6F81-5844-456A/skus" for r in requests)
    assert "pageToken" not in requests[0].query
    assert [r.query["pageToken"] for r in requests[1:]] == [
        f"page-{5 * i}" for i in range(1, catalog.pages)]
    assert {r.query.get("currencyCode") for r in requests} == {"USD"}
    assert all(r.authorization is None for r in requests)  # anonymous: no token sent


def test_irrelevant_skus_are_ignored(catalog):
    book = refresh(catalog)
    us, tokyo = book.regions["us-central1"], book.regions["asia-northeast1"]
    # Not the commitment (0.22, 0.16), Virtual Workstation (0.55) or EMEA (0.39) T4 SKUs.
    assert us.gpus["nvidia-tesla-t4"].ondemand == 0.35
    assert us.gpus["nvidia-h100-80gb"].ondemand == pytest.approx(11.06)  # not "H100 80GB Mega"
    # H100 Mega and V100 are GPUs of the catalog now: each gets its own SKU, never another's.
    assert us.gpus["nvidia-h100-mega-80gb"].ondemand != us.gpus["nvidia-h100-80gb"].ondemand
    assert set(us.gpus) == {"nvidia-tesla-t4", "nvidia-l4", "nvidia-tesla-a100", "nvidia-a100-80gb",
                            "nvidia-h100-80gb", "nvidia-h100-mega-80gb", "nvidia-tesla-v100"}
    assert "nvidia-a100-80gb" not in tokyo.gpus and "a2-ultragpu-1g" not in tokyo.machines
    assert us.disks["pd-balanced"].ondemand == 0.1  # not the hourly-priced SKU, not regional PD
    assert us.disks["pd-ssd"].ondemand == 0.17
    assert us.machines["n1-highmem-8"].ondemand == pytest.approx(8 * 0.031611 + 52 * 0.004237)
    assert set(book.regions) == set(REGIONS)


def test_only_the_requested_regions(catalog):
    book = refresh(catalog, regions=["asia-northeast1"])
    assert set(book.regions) == {"asia-northeast1"}
    assert "a3-highgpu-1g" not in book.regions["asia-northeast1"].machines  # no A3 SKUs for Japan


def test_permission_denied_becomes_price_error_with_hint(catalog):
    catalog.deny_permission("Cloud Billing API has not been used in project 42 before")
    with pytest.raises(PriceError) as err:
        refresh(catalog)
    assert err.value.message.endswith(": Cloud Billing API has not been used in project 42 before")
    assert "http" not in err.value.message  # the server's words, not the request URL
    assert "Cloud Billing API" in err.value.hint and "IAM" in err.value.hint
    assert len(catalog.sku_requests) == 1  # a 403 is not retried


def test_transient_503s_are_retried(catalog):
    catalog.fail_unavailable(2)
    book = refresh(catalog)
    assert len(catalog.sku_requests) == catalog.pages + 2
    assert book.regions["us-central1"].gpus["nvidia-tesla-t4"].spot == 0.1915


def test_lasting_503s_become_price_error(catalog):
    catalog.fail_unavailable(10_000)
    with pytest.raises(PriceError) as err:
        refresh_price_book(REGIONS, client=client_for(catalog), retry_first_delay_s=0.01,
                           retry_deadline_s=0.3)
    assert err.value.message == ("the Cloud Billing Catalog API is unavailable: "
                                 "The service is currently unavailable.")
    assert "retry later" in err.value.hint
    assert len(catalog.sku_requests) > 1


def test_endpoint_from_environment_builds_an_anonymous_rest_client(catalog, monkeypatch):
    monkeypatch.setenv("GPUCTL_BILLING_ENDPOINT", catalog.endpoint)
    book = refresh_price_book(REGIONS, today=REFRESHED_ON, **FAST)
    assert book.regions["us-central1"].gpus["nvidia-l4"].ondemand == 0.56
    assert catalog.endpoint in book.source
    assert len(catalog.sku_requests) == catalog.pages
    assert all(r.authorization is None for r in catalog.sku_requests)


def test_unreachable_endpoint_becomes_price_error():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PriceError) as err:
        refresh_price_book(REGIONS, endpoint=f"http://127.0.0.1:{port}", **FAST)
    assert f"127.0.0.1:{port}" in err.value.message
    assert "GPUCTL_BILLING_ENDPOINT" in err.value.hint


def test_no_default_credentials_becomes_price_error(monkeypatch):
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials(*args, **kwargs):
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    with pytest.raises(PriceError) as err:
        refresh_price_book(REGIONS)
    assert err.value.message == "no Google Cloud credentials"
    assert "gcloud auth application-default login" in err.value.hint


def test_empty_catalog_is_an_error_not_an_empty_book():
    with BillingCatalogStandIn([]) as standin, pytest.raises(PriceError) as err:
        refresh(standin)
    assert "no Compute Engine prices" in err.value.message
    assert "snapshot" in err.value.hint


def test_save_and_load_roundtrip(catalog, tmp_path):
    book = refresh(catalog)
    path = tmp_path / "nested" / "prices.json"
    save_price_book(book, path)
    assert load_price_book(path) == book
    assert json.loads(path.read_text())["as_of"] == "2026-11-20"
    assert [p.name for p in path.parent.iterdir()] == ["prices.json"]  # no temporary file left


def test_save_over_an_existing_file_replaces_it(catalog, tmp_path):
    path = tmp_path / "prices.json"
    path.write_text("{ half a file")
    save_price_book(refresh(catalog), path)
    assert load_price_book(path).as_of == REFRESHED_ON


def test_active_price_book_merges_refresh_over_snapshot(catalog, tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCTL_HOME", str(tmp_path / "home"))
    bundled = bundled_price_book()
    assert active_price_book() == bundled  # nothing refreshed yet

    save_price_book(refresh(catalog), price_cache_path())
    active = active_price_book()
    assert active.as_of == REFRESHED_ON != bundled.as_of
    assert "Cloud Billing Catalog" in active.source
    # Refreshed items carry the catalog's prices...
    assert active.gpu_hourly("us-central1", "nvidia-tesla-t4", spot=False) == 0.35
    assert active.machine_hourly("us-central1", "n1-highmem-8", spot=True) == pytest.approx(
        8 * 0.00698 + 52 * 0.000935)
    assert active.regions["us-central1"].machines["n1-highmem-8"].basis.startswith("catalog")
    # ...and what the catalog did not answer (no A3 SKUs for Japan) keeps the snapshot's.
    tokyo_a3 = bundled.regions["asia-northeast1"].machines["a3-highgpu-1g"]
    assert active.regions["asia-northeast1"].machines["a3-highgpu-1g"] == tokyo_a3


def test_cache_with_only_a_spot_price_keeps_the_snapshot_on_demand_price(isolated_home):
    import datetime as dt

    from gpuctl.adapters.billing import save_price_book
    from gpuctl.paths import price_cache_path
    from gpuctl.prices.model import PriceBook, Rate, RegionPrices
    from gpuctl.prices.store import active_price_book, bundled_price_book

    snapshot = bundled_price_book().regions["us-central1"].gpus["nvidia-tesla-t4"]
    live = PriceBook(as_of=dt.date(2026, 11, 23), source="test refresh", regions={
        "us-central1": RegionPrices(gpus={"nvidia-tesla-t4": Rate(spot=0.2, basis="catalog")})})
    save_price_book(live, price_cache_path())
    merged = active_price_book().regions["us-central1"].gpus["nvidia-tesla-t4"]
    assert merged.spot == 0.2 and merged.ondemand == snapshot.ondemand
