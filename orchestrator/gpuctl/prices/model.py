"""The shape of a price book: USD per component, per region, spot and on-demand.

Components are priced separately because that is how GCE bills them: the host (vCPU and
memory of the machine type, without GPUs), each GPU, local SSD and the boot disk. A machine
type whose GPU is built in (a2, a3, g2) is still billed as host + GPU.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from ..errors import PriceError

HOURS_PER_MONTH = 730.0  # Google prices disks per month of 730 hours


class Rate(BaseModel):
    # Strictly positive and finite: a zero price would divide a budget into an endless run, and
    # a cache is a file anyone (or a bad refresh) can write.
    spot: float | None = Field(default=None, gt=0, le=1e6, allow_inf_nan=False)
    ondemand: float | None = Field(default=None, gt=0, le=1e6, allow_inf_nan=False)
    # Where the figure comes from: "catalog", or how it was derived from published figures.
    basis: str = ""

    def pick(self, spot: bool) -> float | None:
        return self.spot if spot else self.ondemand


class RegionPrices(BaseModel):
    machines: dict[str, Rate] = {}  # USD per hour for the host only (no GPU)
    gpus: dict[str, Rate] = {}  # USD per GPU-hour
    disks: dict[str, Rate] = {}  # USD per GB-month: local-ssd, pd-ssd, pd-balanced, pd-standard
    network: dict[str, Rate] = {}  # USD per hour: external-ipv4 (in use; lower rate for spot VMs)


class PriceBook(BaseModel):
    currency: str = "USD"
    as_of: dt.date
    source: str
    regions: dict[str, RegionPrices]

    def region(self, region: str) -> RegionPrices:
        try:
            return self.regions[region]
        except KeyError:
            raise PriceError(f"no prices for region {region}",
                             f"known regions: {', '.join(sorted(self.regions))}") from None

    def _rate(self, table: dict[str, Rate], key: str, spot: bool, what: str, region: str) -> float:
        rate = table.get(key)
        value = rate.pick(spot) if rate else None
        if value is None:
            model = "spot" if spot else "on-demand"
            raise PriceError(f"no {model} price for {what} {key} in {region}",
                             "run `gpuctl prices refresh` with Google Cloud credentials")
        return value

    def machine_hourly(self, region: str, machine_type: str, spot: bool) -> float:
        return self._rate(self.region(region).machines, machine_type, spot, "machine type", region)

    def gpu_hourly(self, region: str, gpu: str, spot: bool) -> float:
        return self._rate(self.region(region).gpus, gpu, spot, "GPU", region)

    def network_hourly(self, region: str, item: str, spot: bool) -> float:
        return self._rate(self.region(region).network, item, spot, "network item", region)

    def disk_gb_month(self, region: str, disk: str, spot: bool) -> float:
        """Persistent disks have one price; local SSD is cheaper attached to spot VMs."""
        rate = self.region(region).disks.get(disk)
        if rate is not None and spot and rate.spot is not None:
            return rate.spot
        return self._rate(self.region(region).disks, disk, False, "disk", region)


def load_price_book(path: Path) -> PriceBook:
    from ..safe_read import load_json
    from ..validation import first_error

    hint = "delete it to fall back to the bundled snapshot, or run `gpuctl prices refresh`"
    data = load_json(path, "price file", PriceError, hint)
    try:
        return PriceBook.model_validate(data)
    except ValidationError as exc:
        raise PriceError(f"price file {path} is unusable: {first_error(exc)}", hint) from None
