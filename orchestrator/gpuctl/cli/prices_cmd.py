from __future__ import annotations

import click

from .options import json_option


@click.group()
def prices() -> None:
    """Show or refresh the prices gpuctl uses."""


@prices.command("show")
@click.option("--region", help="Only this region.")
@json_option
def show(region: str | None, as_json: bool) -> None:
    """Print the price book in force (bundled snapshot, or the last refresh)."""
    from ..prices.store import active_price_book
    from . import render

    book = active_price_book()
    data = book.model_dump(mode="json")
    if region:
        data["regions"] = {region: book.region(region).model_dump(mode="json")}
    if as_json:
        render.print_json(data)
        return
    out = render.console()
    for name, region_prices in data["regions"].items():
        table = render.Table(title=f"{name} (USD)", title_justify="left")
        for col in ("kind", "item", "spot", "on-demand", "unit", "basis"):
            table.add_column(col)
        for kind, unit in (("machines", "/h host"), ("gpus", "/h per GPU"), ("disks", "/GB-month")):
            for item, rate in sorted(region_prices[kind].items()):
                table.add_row(kind, item, _fmt(rate["spot"]), _fmt(rate["ondemand"]), unit, rate["basis"])
        out.print(table)
    out.print(f"[dim]as of {data['as_of']}: {data['source']}[/]")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


@prices.command("refresh")
@click.option("--endpoint", envvar="GPUCTL_BILLING_ENDPOINT",
              help="Cloud Billing API endpoint (default: Google's).")
@json_option
def refresh(endpoint: str | None, as_json: bool) -> None:
    """Fetch current prices from the Cloud Billing Catalog API and cache them."""
    from gpuctl_infra.catalog import REGIONS

    from ..adapters.billing import refresh_price_book, save_price_book
    from ..paths import price_cache_path
    from . import render

    book = refresh_price_book(list(REGIONS), endpoint=endpoint)
    path = price_cache_path()
    save_price_book(book, path)
    counts = {name: sum(len(getattr(r, k)) for k in ("machines", "gpus", "disks"))
              for name, r in book.regions.items()}
    if as_json:
        render.print_json({"saved": str(path), "as_of": book.as_of.isoformat(), "items": counts})
        return
    for name, count in counts.items():
        click.echo(f"{name}: {count} prices")
    click.echo(f"saved to {path} (as of {book.as_of})")
