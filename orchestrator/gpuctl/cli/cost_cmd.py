from __future__ import annotations

import click

from .options import json_option, profile_argument


@click.command()
@profile_argument
@click.option("--region", help="Region to price (default: the profile's or your config's).")
@click.option("--hours", type=float, help="Also show the cost of running this many hours.")
@click.option("--budget", help="Show how many hours an amount buys, e.g. 20, $20 or 3000JPY.")
@click.option("--ttl", help="With --cap: the movable deadline, e.g. 6h (what `up --ttl` sets).")
@click.option("--cap", help="With --ttl: the hard cap, e.g. 24h; shows the cost of each limit.")
@click.option("--iap", is_flag=True, help="Price it as `up --iap` makes it: no external address, a Cloud NAT.")
@json_option
def cost(profile: str, region: str | None, hours: float | None, budget: str | None,
         ttl: str | None, cap: str | None, iap: bool, as_json: bool) -> None:
    """Hourly breakdown of PROFILE and what forgetting it costs (running, or stopped with disks)."""
    from ..context import load_context
    from ..reports import cost_report
    from ..units import format_duration
    from . import render

    report = cost_report(load_context(), profile, region=region, hours=hours, budget=budget,
                         ttl=ttl, cap=cap, iap=iap)
    if as_json:
        render.print_json(report)
        return
    cur = report["currency"]
    out = render.console()
    out.print(f"[bold]{report['profile']}[/]" + (" (SSH through IAP: no external address, Cloud NAT)"
                                                  if report["iap"] else ""))
    out.print(render.breakdown_table(report, cur))
    if "for_hours" in report:
        h = report["for_hours"]
        out.print(f"{h['hours']:g} hours: [bold]{render.money(h['usd'], cur)}[/]")
    if "budget" in report:
        b = report["budget"]
        out.print(f"{render.money(b['usd'], cur)} buys [bold]{format_duration(b['hours'] * 3600)}[/] "
                  f"of running (use it as `gpuctl up {report['profile']} --budget {b['usd']:g}`)")
    if "limits" in report:
        lim = report["limits"]
        out.print(f"deadline {format_duration(lim['deadline_hours'] * 3600)}: "
                  f"[bold]{render.money(lim['deadline_usd'], cur)}[/] (movable with `gpuctl extend`); "
                  f"hard cap {format_duration(lim['cap_hours'] * 3600)}: "
                  f"[bold]{render.money(lim['cap_usd'], cur)}[/], the worst case if the deadline job fails")
    out.print(render.forgotten_table(report, cur))
    for note in (render.prices_note(report), render.currency_note(cur)):
        if note:
            out.print(f"[dim]{note}[/]")
