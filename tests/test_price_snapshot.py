"""The bundled price snapshot: built from the dated CSV by scripts/build-catalog.py, complete
for the catalog, true to the CSV row by row, and honest where the CSV has gaps."""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from gpuctl_infra.catalog import GPUS, MACHINES, REGIONS

from gpuctl.prices.store import bundled_price_book

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT / "scripts" / "catalog" / "gcp-gpu-catalog.csv"
BOOK = bundled_price_book()
GPU_OF_CSV = {"T4": "nvidia-tesla-t4", "P4": "nvidia-tesla-p4", "P100": "nvidia-tesla-p100",
              "V100": "nvidia-tesla-v100", "L4": "nvidia-l4", "A100": "nvidia-tesla-a100",
              "A100-80GB": "nvidia-a100-80gb", "H100": "nvidia-h100-80gb",
              "H100-MEGA": "nvidia-h100-mega-80gb", "H200": "nvidia-h200-141gb", "B200": "nvidia-b200"}


def csv_rows() -> list[dict]:
    assert CSV.is_file(), f"the catalog snapshot {CSV} is missing (see its README)"
    with CSV.open(newline="") as handle:
        return list(csv.DictReader(handle))


def all_rates():
    for region, prices in BOOK.regions.items():
        for kind in ("machines", "gpus", "disks", "network"):
            for item, rate in getattr(prices, kind).items():
                yield f"{region}/{kind}/{item}", rate


def test_snapshot_says_its_date_and_source_in_plain_words():
    assert BOOK.currency == "USD"
    assert BOOK.as_of == dt.date(2026, 12, 1)
    for words in ("SkyPilot", "skypilot-catalog", "017e250", "Cloud Billing Catalog API",
                  "its own date not recorded", "gpuctl prices refresh"):
        assert words in BOOK.source
    assert "GCP_FACTS" not in BOOK.source  # an internal file is no source for a user


def test_the_bundled_files_are_what_the_script_builds_from_the_csv(tmp_path):
    catalog, prices = tmp_path / "catalog_data.py", tmp_path / "prices.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build-catalog.py"), str(CSV),
                    "--bundled-on", BOOK.as_of.isoformat(), "--out-catalog", str(catalog),
                    "--out-prices", str(prices)], check=True, capture_output=True)
    assert catalog.read_text() == (ROOT / "infra" / "gpuctl_infra" / "catalog_data.py").read_text()
    assert prices.read_text() == (ROOT / "orchestrator" / "gpuctl" / "data" / "prices.json").read_text()


def test_every_region_with_a_gpu_is_priced():
    assert set(REGIONS) <= set(BOOK.regions)
    assert len(REGIONS) == 30  # 35 regions in the CSV, 5 of them with N1 hosts but no GPU


def test_every_csv_price_is_in_the_book_unchanged():
    rows = csv_rows()
    assert len(rows) == 2648
    for row in rows:
        region = BOOK.regions[row["Region"]]
        if row["InstanceType"]:
            rate = region.machines[row["InstanceType"]]
            count = 1
        else:
            rate = region.gpus[GPU_OF_CSV[row["AcceleratorName"]]]
            count = int(row["AcceleratorCount"])
        assert rate.ondemand * count == pytest.approx(float(row["Price"]), abs=1e-4)
        if row["SpotPrice"]:
            assert rate.spot * count == pytest.approx(float(row["SpotPrice"]), abs=1e-4)


def test_a_gap_in_the_csv_stays_a_gap():
    # B200 has no spot price in us-central1-b (the only B200 zone there): no spot B200 here.
    assert BOOK.regions["us-central1"].gpus["nvidia-b200"].spot is None
    assert "us-central1" not in MACHINES["a4-highgpu-8g"].spot_zones
    assert "us-central1" in MACHINES["a4-highgpu-8g"].zones
    # No A4 host row and no G4 row at all: no price, never a guess.
    assert all("a4-highgpu-8g" not in r.machines for r in BOOK.regions.values())
    assert all("g4-standard-48" not in r.machines for r in BOOK.regions.values())
    assert GPUS["nvidia-rtx-pro-6000"].zones == {}


def test_spot_above_on_demand_is_kept_as_the_data_says():
    tokyo = BOOK.regions["asia-northeast1"].gpus["nvidia-h100-80gb"]
    assert tokyo.spot > tokyo.ondemand  # the CSV's H100 in asia-northeast1-b


def test_every_figure_says_where_it_comes_from():
    for name, rate in all_rates():
        assert rate.basis, name
        assert rate.spot is not None or rate.ondemand is not None, name


def test_figures_the_old_table_had_are_confirmed_by_the_snapshot():
    """GCP_FACTS.md's on-demand figures (whole VMs and GPUs) agree with the CSV; its spot figures
    were an older snapshot and moved (spot prices change)."""
    us = BOOK.regions["us-central1"]
    assert (us.gpus["nvidia-tesla-t4"].ondemand, round(us.gpus["nvidia-l4"].ondemand, 2)) == (0.35, 0.56)
    assert us.machines["a2-highgpu-1g"].ondemand + us.gpus["nvidia-tesla-a100"].ondemand == \
        pytest.approx(3.6734, abs=1e-3)
    assert us.machines["g2-standard-8"].ondemand + us.gpus["nvidia-l4"].ondemand == \
        pytest.approx(0.8536, abs=1e-3)
    assert "nvidia-a100-80gb" not in BOOK.regions["asia-northeast1"].gpus  # none in Tokyo


def test_disks_ip_and_e2_are_priced_where_google_s_pages_were_read():
    us = BOOK.regions["us-central1"]
    assert (us.disks["pd-ssd"].ondemand, us.disks["local-ssd"].ondemand) == (0.17, 0.08)
    assert us.machines["e2-standard-2"].ondemand == 0.067006
    for region in REGIONS:
        ip = BOOK.regions[region].network["external-ipv4"]
        assert (ip.spot, ip.ondemand) == (0.0025, 0.005)
