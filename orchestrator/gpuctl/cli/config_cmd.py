from __future__ import annotations

import click

from .options import json_option


@click.group()
def config() -> None:
    """Where gpuctl's config lives and what is in force."""


@config.command("path")
def path() -> None:
    """Print the config file path (GPUCTL_CONFIG overrides it)."""
    from ..paths import config_path

    click.echo(str(config_path()))


@config.command("show")
@json_option
def show(as_json: bool) -> None:
    """Print the settings in force: file, then GPUCTL_* variables, with defaults filled in."""
    from ..config import load_config
    from ..paths import config_path, gpuctl_home
    from . import render

    cfg = load_config()
    data = {"config_file": str(config_path()), "home": str(gpuctl_home()),
            "owner": cfg.resolved_owner(), **cfg.model_dump(exclude={"owner"})}
    if as_json:
        render.print_json(data)
        return
    for key, value in data.items():
        click.echo(f"{key} = {value!r}")
