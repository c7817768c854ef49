"""The bundled price snapshot: complete for the catalog, plausible, and true to GCP_FACTS.md."""

from __future__ import annotations

import datetime as dt

import pytest
from gpuctl_infra.catalog import GPUS, MACHINES, REGIONS

from gpuctl.prices.store import bundled_price_book

BOOK = bundled_price_book()


def offered(gpu: str, region: str) -> bool:
    return region in GPUS[gpu].zones


def machines_in(region: str):
    return [m for m in MACHINES.values() if not m.builtin_gpu or offered(m.builtin_gpu, region)]


def only_on_spot_machines(gpu: str) -> bool:
    carriers = [m for m in MACHINES.values() if m.builtin_gpu == gpu or gpu in m.attachable_gpus]
    return all(m.spot_only for m in carriers)


def all_rates():
    for region, prices in BOOK.regions.items():
        for kind in ("machines", "gpus", "disks"):
            for item, rate in getattr(prices, kind).items():
                yield f"{region}/{kind}/{item}", rate


def test_snapshot_loads_with_date_and_source():
    assert BOOK.currency == "USD"
    assert dt.date(2026, 1, 1) <= BOOK.as_of <= dt.date(2027, 1, 1)
    assert "GCP_FACTS" in BOOK.source
    assert set(BOOK.regions) == set(REGIONS)


@pytest.mark.parametrize("region", REGIONS)
def test_every_machine_type_has_spot_and_ondemand_host_prices(region):
    machines = BOOK.regions[region].machines
    for machine in machines_in(region):
        rate = machines[machine.name]
        assert rate.spot > 0, machine.name
        if machine.spot_only:
            assert rate.ondemand is None, f"{machine.name} is sold as spot only"
        else:
            assert rate.ondemand > 0, machine.name
    # No invented prices for types that cannot exist here (A100 80GB is not offered in Tokyo).
    assert set(machines) == {m.name for m in machines_in(region)}


@pytest.mark.parametrize("region", REGIONS)
def test_every_gpu_offered_has_spot_and_ondemand_prices(region):
    gpus = BOOK.regions[region].gpus
    assert set(gpus) == {g for g in GPUS if offered(g, region)}
    for name, rate in gpus.items():
        assert rate.spot > 0, name
        if only_on_spot_machines(name):
            assert rate.ondemand is None, f"no gpuctl machine carries {name} on demand"
        else:
            assert rate.ondemand > 0, name


@pytest.mark.parametrize("region", REGIONS)
def test_disks(region):
    disks = BOOK.regions[region].disks
    assert disks["local-ssd"].spot > 0 and disks["local-ssd"].ondemand > 0
    for name in ("pd-ssd", "pd-balanced", "pd-standard"):
        assert disks[name].ondemand > 0 and disks[name].spot is None, name


def test_spot_is_cheaper_than_ondemand_everywhere():
    both = [(name, rate) for name, rate in all_rates()
            if rate.spot is not None and rate.ondemand is not None]
    assert len(both) >= 20
    for name, rate in both:
        assert rate.spot < rate.ondemand, name


def test_every_figure_says_where_it_comes_from():
    for name, rate in all_rates():
        assert any(word in rate.basis for word in ("GCP_FACTS snapshot", "derived", "estimate")), name


@pytest.mark.parametrize(("region", "spot", "whole_vm"), [
    ("us-central1", True, 1.928), ("asia-northeast1", True, 2.339), ("us-central1", False, 3.6734)])
def test_a2_highgpu_1g_host_plus_a100_is_the_whole_vm_figure(region, spot, whole_vm):
    total = (BOOK.machine_hourly(region, "a2-highgpu-1g", spot)
             + BOOK.gpu_hourly(region, "nvidia-tesla-a100", spot))
    assert total == pytest.approx(whole_vm, abs=0.01)


def test_gcp_facts_figures_are_kept_as_published():
    us, tokyo = BOOK.regions["us-central1"], BOOK.regions["asia-northeast1"]
    assert [us.gpus[g].spot for g in ("nvidia-tesla-t4", "nvidia-tesla-a100", "nvidia-a100-80gb",
                                      "nvidia-l4", "nvidia-h100-80gb")] == [
        0.1915, 1.5399, 2.1604, 0.2862, 5.3387]
    assert [tokyo.gpus[g].spot for g in ("nvidia-tesla-t4", "nvidia-tesla-a100", "nvidia-l4",
                                         "nvidia-h100-80gb")] == [0.1507, 1.7915, 0.4152, 3.0195]
    assert (us.machines["g2-standard-8"].spot, tokyo.machines["g2-standard-8"].spot) == (0.15004, 0.2176)
    assert us.machines["g2-standard-8"].ondemand + us.gpus["nvidia-l4"].ondemand == pytest.approx(0.8536)
    assert (us.gpus["nvidia-tesla-t4"].ondemand, us.gpus["nvidia-l4"].ondemand) == (0.35, 0.56)
    assert (us.disks["pd-ssd"].ondemand, us.disks["local-ssd"].ondemand) == (0.17, 0.08)
