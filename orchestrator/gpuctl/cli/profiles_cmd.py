from __future__ import annotations

import click
from rich import box

from .options import json_option


@click.command()
@json_option
def profiles(as_json: bool) -> None:
    """List machine profiles with their $/hour per region and where their GPU is offered."""
    from ..context import load_context
    from ..reports import profiles_report
    from . import render

    report = profiles_report(load_context())
    if as_json:
        render.print_json(report)
        return
    cur = report["currency"]
    regions = sorted({r for row in report["profiles"] for r in row["regions"]})
    table = render.Table(title="Profiles: price per hour", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("profile", "GPU", "machine", "NVMe"):
        table.add_column(col, no_wrap=True)
    for region in regions:
        table.add_column(region, justify="right", no_wrap=True)
    availability: dict[str, dict[str, list[str]]] = {}
    for row in report["profiles"]:
        cells = [row["name"], f"{row['gpu_count']}x {row['gpu']}", row["machine_type"],
                 str(row["local_nvme"])]
        for region in regions:
            info = row["regions"].get(region)
            cells.append("[dim]—[/]" if info is None else render.money(info["hourly_usd"], cur, 3))
            if info is not None:
                availability.setdefault(row["gpu"], {})[region] = info["zones"]
        table.add_row(*cells)
    zones = render.Table(title="Zones with each GPU (suffixes)", title_justify="left", box=box.SIMPLE_HEAD)
    zones.add_column("GPU", no_wrap=True)
    for region in regions:
        zones.add_column(region)
    for gpu, by_region in sorted(availability.items()):
        zones.add_row(gpu, *(" ".join(z.rsplit("-", 1)[-1] for z in by_region.get(r, []))
                             or "[dim]not offered[/]" for r in regions))
    out = render.console()
    out.print(table)
    out.print(zones)
    out.print(f"[dim]{render.prices_note(report)}[/]")
    note = render.currency_note(cur)
    if note:
        out.print(f"[dim]{note}[/]")
