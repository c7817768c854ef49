"""`gpuctl check`: the first command after install. One line per thing the live commands
need, pass or fail with the fix; exits non-zero when a live command would fail."""

from __future__ import annotations

import click

from .options import json_option


@click.command()
@click.option("--profile", help="Check GPU quota for this profile (e.g. t4-spot).")
@click.option("--region", help="Region for the quota check (default: the profile's, then the config's).")
@json_option
def check(profile: str | None, region: str | None, as_json: bool) -> None:
    """Credentials, project, APIs, IAM permissions, GPU quota, Pulumi CLI, SSH source address."""
    from ..checks.runner import run_checks
    from ..context import load_context
    from rich.markup import escape

    from ..errors import GpuctlError
    from . import render

    results = run_checks(load_context(), profile, region)
    if as_json:
        render.print_json([r.as_dict() for r in results])
    else:
        marks = {"ok": "[green]  ok[/]", "fail": "[red]FAIL[/]", "skip": "[dim]skip[/]"}
        out = render.console()
        for r in results:
            fix = f" [yellow]fix: {escape(r.fix)}[/]" if r.failed and r.fix else ""
            out.print(f"{marks[r.status]}  {r.name}: {escape(r.detail)}{fix}",
                      soft_wrap=True, highlight=False)
    failed = [r for r in results if r.failed]
    if failed:
        # The first failure in full: later ones often follow from it (no network, no login).
        first = failed[0]
        others = f" (and {len(failed) - 1} more above)" if len(failed) > 1 else ""
        raise GpuctlError(f"check failed: {first.name}: {first.detail}{others}",
                          f"{first.fix or 'see the FAIL lines above'}; then rerun `gpuctl check`")
