#!/usr/bin/env python3
"""Build gpuctl's bundled GPU catalog and price snapshot from a SkyPilot-format GCP catalog CSV.

    scripts/build-catalog.py [CSV] [--readme README] [--bundled-on YYYY-MM-DD]

Reads CSV (default scripts/catalog/gcp-gpu-catalog.csv) and scripts/gcp-machine-facts.toml (facts
the CSV lacks, each with its Google source), and writes:

- infra/gpuctl_infra/catalog_data.py: GPUs, machine types, the zones (and spot zones) of each,
  as one Python literal (imports in about a millisecond, no JSON parse at startup);
- orchestrator/gpuctl/data/prices.json: the price book (USD, per region: host, per-GPU,
  disks, external IPv4, E2), dated, with its source in words.

Rerun it on a newer snapshot; the output is deterministic (sorted), so the diff is the news.
A gap in the CSV stays a gap: an empty SpotPrice means no spot in that zone, never a guess.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import pprint
import sys
from collections import defaultdict
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "scripts" / "gcp-machine-facts.toml"
CATALOG_OUT = ROOT / "infra" / "gpuctl_infra" / "catalog_data.py"
PRICES_OUT = ROOT / "orchestrator" / "gpuctl" / "data" / "prices.json"
DEFAULT_CSV = ROOT / "scripts" / "catalog" / "gcp-gpu-catalog.csv"  # see scripts/catalog/README.md
HEADER = ["InstanceType", "vCPUs", "MemoryGiB", "AcceleratorName", "AcceleratorCount", "GpuInfo",
          "Region", "AvailabilityZone", "Price", "SpotPrice"]


def _price(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    value = float(text)
    if not 0 < value < 1e6:
        raise SystemExit(f"price {text!r} is out of range")
    return value


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != HEADER:
            raise SystemExit(f"{path}: header {reader.fieldnames} is not {HEADER}")
        return list(reader)


def _zone_map(zones) -> dict[str, str]:
    """{'us-central1-a', 'us-central1-c'} -> {'us-central1': 'ac'} (compact, sorted)."""
    out: dict[str, list[str]] = defaultdict(list)
    for zone in zones:
        region, suffix = zone.rsplit("-", 1)
        if len(suffix) != 1:
            raise SystemExit(f"zone {zone}: gpuctl expects one-letter zone suffixes")
        out[region].append(suffix)
    return {region: "".join(sorted(s)) for region, s in sorted(out.items())}


def build(rows: list[dict], facts: dict) -> tuple[dict, dict]:
    gpu_facts = facts["gpus"]
    gpu_type = {name: f["type"] for name, f in gpu_facts.items()}
    # zone -> GPU type -> (on-demand, spot) per GPU; machine -> zone -> (on-demand, spot)
    gpu_zone: dict[str, dict[str, tuple]] = defaultdict(dict)
    host_zone: dict[str, dict[str, tuple]] = defaultdict(dict)
    shape: dict[str, tuple[float, float]] = {}
    for row in rows:
        zone, region = row["AvailabilityZone"], row["Region"]
        if zone.rsplit("-", 1)[0] != region:
            raise SystemExit(f"zone {zone} is not in region {region}")
        od, spot = _price(row["Price"]), _price(row["SpotPrice"])
        if row["InstanceType"]:
            name = row["InstanceType"]
            shape[name] = (float(row["vCPUs"]), float(row["MemoryGiB"]))
            host_zone[name][zone] = (od, spot)
        else:
            name = row["AcceleratorName"]
            if name not in gpu_type:
                raise SystemExit(f"GPU {name} has no entry in {FACTS.name}: add its GCE type there")
            count = int(row["AcceleratorCount"])
            per = (None if od is None else od / count, None if spot is None else spot / count)
            kept = gpu_zone[gpu_type[name]].get(zone)
            if kept is None or count == 1:  # the 1-GPU row is the unrounded per-GPU price
                gpu_zone[gpu_type[name]][zone] = per

    gpus = {}
    for name, f in sorted(gpu_facts.items(), key=lambda kv: kv[1]["type"]):
        zones = gpu_zone.get(f["type"], {})
        gpus[f["type"]] = {"short": name, "display": f["display"], "memory_gb": f["memory_gb"],
                           "zones": _zone_map(zones),
                           "spot_zones": _zone_map(z for z, p in zones.items() if p[1] is not None)}

    machines = {}
    n1 = facts["n1"]
    attach = {gpu_type[g]: {int(c): v for c, v in counts.items()} for g, counts in n1["attach"].items()}
    for name in sorted(n for n in host_zone if n.startswith("n1-")):
        vcpus, mem = shape[name]
        machines[name] = {
            "vcpus": int(vcpus), "memory_gb": mem, "gpu": None, "gpus": 0,
            "attach": {g: {c: v for c, v in counts.items() if int(vcpus) <= v}
                       for g, counts in attach.items()},
            "bundled_ssd": 0, "ssd_counts": list(n1["local_ssd_counts"]),
            "models": ["STANDARD", "SPOT"], "gvnic": False,
            "zones": _zone_map(host_zone[name]),
            "spot_zones": _zone_map(z for z, p in host_zone[name].items() if p[1] is not None),
            "source": n1["source"], "unverified": list(n1.get("unverified", [])),
        }
        machines[name]["attach"] = {g: c for g, c in machines[name]["attach"].items() if c}
    family_source = facts["sources"]
    for name, f in sorted(facts["machines"].items()):
        gpu = gpu_type[f["gpu"]]
        hosts = host_zone.get(name, {})
        gzones = gpu_zone.get(gpu, {})
        if name in shape:
            vcpus, mem = shape[name]
        else:
            vcpus, mem = f["vcpus"], f["memory_gb"]
        if hosts:
            zones = {z for z in hosts if z in gzones}
            spot = {z for z in zones if hosts[z][1] is not None and gzones[z][1] is not None}
        else:  # no host row (A4, G4): where the GPU is, as far as the snapshot says
            zones = set(gzones)
            spot = {z for z in zones if gzones[z][1] is not None}
        models = f.get("models", ["STANDARD", "SPOT"])
        flex = name.startswith(("a2-", "a3-", "a4-", "g2-"))  # accelerator-optimized, not G4/A4X
        if flex and "FLEX_START" not in models:
            models = [*models, "FLEX_START"]
        machines[name] = {
            "vcpus": int(vcpus), "memory_gb": float(mem), "gpu": gpu, "gpus": f["gpus"], "attach": {},
            "bundled_ssd": f.get("bundled", 0), "ssd_counts": f.get("local_ssd_counts", []),
            "models": sorted(models), "gvnic": f.get("gvnic", False),
            "zones": _zone_map(zones), "spot_zones": _zone_map(spot),
            "source": f"{family_source['gpus']}; {family_source['local_ssd']}; flex-start: "
                      f"{family_source['flex_start'].split()[0].rstrip(':')}",
            "unverified": list(f.get("unverified", [])),
        }

    prices: dict[str, dict] = defaultdict(lambda: {"machines": {}, "gpus": {}, "disks": {},
                                                   "network": {}})
    for name, zones in host_zone.items():
        for zone, (od, spot) in zones.items():
            region = zone.rsplit("-", 1)[0]
            entry = prices[region]["machines"].setdefault(name, {"basis": "snapshot"})
            _merge(entry, od, spot)
    for gpu, zones in gpu_zone.items():
        for zone, (od, spot) in zones.items():
            region = zone.rsplit("-", 1)[0]
            entry = prices[region]["gpus"].setdefault(gpu, {"basis": "snapshot, per GPU"})
            _merge(entry, od, spot)
    extra = facts["extra"]
    for region in list(prices):
        ip = extra["ip"]
        prices[region]["network"]["external-ipv4"] = {"spot": ip["spot"], "ondemand": ip["ondemand"],
                                                      "basis": ip["basis"]}
    for region, table in extra["e2"].items():
        for name, usd in table.items():
            if name != "basis":
                prices[region]["machines"][name] = {"spot": None, "ondemand": usd, "basis": table["basis"]}
    for region, table in extra["disks"].items():
        for name, figures in table.items():
            if name != "basis":
                spot, od = (figures + [None])[:2] if len(figures) == 2 else (None, figures[0])
                prices[region]["disks"][name] = {"spot": spot, "ondemand": od, "basis": table["basis"]}
    for region in prices.values():
        for table in region.values():
            for entry in table.values():
                entry.pop("_zones", None)
    return ({"gpus": gpus, "machines": machines},
            {name: prices[name] for name in sorted(prices)})


def _merge(entry: dict, od: float | None, spot: float | None) -> None:
    """One price per region: the snapshot has no zone-level price differences (checked here)."""
    for key, value in (("ondemand", od), ("spot", spot)):
        if value is None:
            entry.setdefault(key, None)
            continue
        value = round(value, 6)
        if entry.get(key) is not None and abs(entry[key] - value) > 1e-5:
            raise SystemExit(f"zone prices differ inside a region ({entry[key]} vs {value}): "
                             "gpuctl's price book is per region; teach it zone prices first")
        entry[key] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--source", default="SkyPilot's public GCP catalog (repository "
                        "skypilot-org/skypilot-catalog, catalogs/v7/gcp/vms.csv, commit 017e250), "
                        "generated by SkyPilot from Google's Cloud Billing Catalog API")
    parser.add_argument("--out-catalog", type=Path, default=CATALOG_OUT)
    parser.add_argument("--out-prices", type=Path, default=PRICES_OUT)
    parser.add_argument("--bundled-on", default=dt.date.today().isoformat(),
                        help="the date this snapshot was taken into gpuctl (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    data = args.csv.read_bytes()
    rows = read_rows(args.csv)
    facts = tomllib.loads(FACTS.read_text(encoding="utf-8"))
    catalog, regions = build(rows, facts)
    digest = hashlib.sha256(data).hexdigest()[:16]
    snapshot = {"file": args.csv.name, "sha256_16": digest, "rows": len(rows),
                "bundled_on": args.bundled_on, "source": args.source}
    header = ('"""GENERATED by scripts/build-catalog.py from {file} and scripts/gcp-machine-facts.toml:\n'
              'do not edit; change the facts file (or take a newer CSV) and rerun the script."""\n\n'
              ).format(file=args.csv.name)
    body = (header + "# fmt: off\nSNAPSHOT = " + pprint.pformat(snapshot, width=100, sort_dicts=True)
            + "\n\nSOURCES = " + pprint.pformat(facts["sources"], width=100, sort_dicts=True)
            + "\n\nGPUS = " + pprint.pformat(catalog["gpus"], width=100, sort_dicts=True)
            + "\n\nMACHINES = " + pprint.pformat(catalog["machines"], width=100, sort_dicts=True) + "\n")
    args.out_catalog.write_text(body, encoding="utf-8")
    book = {
        "currency": "USD",
        "as_of": args.bundled_on,
        "source": (f"{args.source}; snapshot file {args.csv.name} (sha256 {digest}), its own date not "
                   f"recorded (2025 or later), bundled into gpuctl on {args.bundled_on}. Local SSD, "
                   "disk, external IPv4 and E2 figures come from Google's pricing pages as each basis "
                   "says. `gpuctl prices refresh` fetches current prices from the Cloud Billing "
                   "Catalog API."),
        "regions": regions,
    }
    args.out_prices.write_text(json.dumps(book, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"{len(catalog['machines'])} machine types, {len(catalog['gpus'])} GPUs, "
          f"{len(regions)} regions -> {args.out_catalog}, {args.out_prices}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
