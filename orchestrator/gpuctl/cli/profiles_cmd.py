from __future__ import annotations

import click
from rich import box

from .options import json_option


@click.command()
@click.option("--gpu", help="Only profiles with this GPU, e.g. L4, A100, H100, B200.")
@click.option("--region", help="Only these regions: a name, a pattern such as 'europe-*', or a "
              "comma list. Lists each offer (profile x region) instead of one line per profile.")
@click.option("--sort", type=click.Choice(["price", "name", "gpu"]), default="name",
              show_default=True, help="Order of the rows.")
@json_option
def profiles(gpu: str | None, region: str | None, sort: str, as_json: bool) -> None:
    """List machine profiles: GPU, cheapest $/hour and where, in every region of the catalog."""
    from ..context import load_context
    from ..prices.offers import offers_report
    from . import render

    report = offers_report(load_context(), gpu=gpu, region=region, sort=sort)
    if as_json:
        render.print_json(report)
        return
    cur = report["currency"]
    out = render.console()
    if region:
        _offers_table(out, report, cur, render)
    else:
        _profiles_table(out, report, cur, render)
    out.print(f"[dim]{report['price_note']}[/]", overflow="fold")
    note = render.currency_note(cur)
    if note:
        out.print(f"[dim]{note}[/]")


def _profiles_table(out, report: dict, cur: dict, render) -> None:
    # Fits 80 columns: names and prices never wrap; the region column folds if it must.
    table = render.Table(title="Profiles (cheapest zone per hour; --region lists each offer)",
                         title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("profile", no_wrap=True)
    table.add_column("GPU", no_wrap=True)
    table.add_column("NVMe", justify="right", no_wrap=True)
    table.add_column("from/h", justify="right", no_wrap=True)
    table.add_column("cheapest in", overflow="fold")
    table.add_column("regions", justify="right", no_wrap=True)
    for row in report["profiles"]:
        gpu = f"{row['gpu_count']}x {row['gpu_short']}"
        cheapest = row["cheapest"]
        if cheapest is None:
            table.add_row(row["name"], gpu, str(row["local_nvme"]), "[dim]—[/]",
                          "[dim]no zone in the data[/]", "0")
            continue
        price = render.money(cheapest["hourly_usd"], cur, 2)
        partial = any(info["unpriced"] for info in row["regions"].values())
        table.add_row(row["name"], gpu, str(row["local_nvme"]), price + ("+" if partial else ""),
                      cheapest["region"], str(len(row["regions"])))
    out.print(table)
    if any(any(i["unpriced"] for i in r["regions"].values()) for r in report["profiles"]):
        out.print("[dim]+ : some items (local SSD, boot disk or host) have no price in the data "
                  "for that region; `gpuctl cost PROFILE --region R` names them[/]")


def _offers_table(out, report: dict, cur: dict, render) -> None:
    table = render.Table(title="Offers per hour", title_justify="left", box=box.SIMPLE_HEAD,
                         pad_edge=False)
    table.add_column("profile", no_wrap=True)
    table.add_column("region", no_wrap=True)
    table.add_column("zones", no_wrap=True)
    table.add_column("per hour", justify="right", no_wrap=True)
    for offer in report["offers"]:
        price = render.money(offer["hourly_usd"], cur, 2) + ("+" if offer["unpriced"] else "")
        table.add_row(offer["profile"], offer["region"],
                      " ".join(z.rsplit("-", 1)[-1] for z in offer["zones"]), price)
    out.print(table)
    if not report["offers"]:
        out.print("[yellow]no profile is offered there[/]")
