"""Options shared by several commands."""

from __future__ import annotations

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def complete_profiles(ctx, param, incomplete: str):
    """Shell completion of profile names, from the bundled profiles and the user's config."""
    try:
        from ..config import load_config
        from ..profiles import build_profiles

        names = build_profiles(load_config().profiles)
    except Exception:  # completion must never print a traceback into the shell
        return []
    return [name for name in sorted(names) if name.startswith(incomplete)]


profile_argument = click.argument("profile", shell_complete=complete_profiles)
