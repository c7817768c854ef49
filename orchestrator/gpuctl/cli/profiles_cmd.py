from __future__ import annotations

import click

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
    table = render.Table(title="Profiles", title_justify="left")
    for col in ("profile", "machine", "GPU", "NVMe", "model"):
        table.add_column(col)
    for region in regions:
        table.add_column(f"{region} $/h", justify="right")
        table.add_column(f"{region} zones")
    for row in report["profiles"]:
        cells = [row["name"], row["machine_type"], f"{row['gpu_count']}x {row['gpu']}",
                 str(row["local_nvme"]), "spot" if row["spot"] else "on-demand"]
        for region in regions:
            info = row["regions"].get(region)
            if info is None:
                cells += ["—", "not offered"]
            else:
                cells += [render.money(info["hourly_usd"], cur, 3),
                          ",".join(z.rsplit("-", 1)[-1] for z in info["zones"])]
        table.add_row(*cells)
    out = render.console()
    out.print(table)
    out.print(f"[dim]{render.prices_note(report)}[/]")
    note = render.currency_note(cur)
    if note:
        out.print(f"[dim]{note}[/]")
