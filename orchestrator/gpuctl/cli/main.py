"""gpuctl's entry point. Subcommands load lazily so `gpuctl --help` stays fast: nothing here
imports pydantic, rich, pulumi or any Google Cloud library."""

from __future__ import annotations

import importlib
import os
import sys

import click

from .. import __version__

# command name -> (module under gpuctl.cli, attribute, one-line help for --help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "check": ("check_cmd", "check", "Check credentials, project, APIs, permissions, quota, Pulumi, SSH source."),
    "profiles": ("profiles_cmd", "profiles", "List machine profiles with their price and zones."),
    "cost": ("cost_cmd", "cost", "Show what a profile costs per hour and if forgotten."),
    "up": ("up_cmd", "up", "Create a guarded GPU VM (use --dry-run for the plan)."),
    "prices": ("prices_cmd", "prices", "Show or refresh the price snapshot."),
    "config": ("config_cmd", "config", "Show the config file path and the settings in force."),
    "provision": ("provision_cmd", "provision", "Make a host ready over SSH: NVMe, guards, driver, CUDA."),
    "guards": ("provision_cmd", "guards", "Show a host's on-host guards and watchdog decisions."),
    "status": ("vm_cmd", "status", "List gpuctl VMs: state, uptime, cost so far, guards."),
    "list": ("vm_cmd", "status", "Alias of status."),
    "ssh": ("vm_cmd", "ssh", "Open a shell on a gpuctl VM, or run a command there."),
    "extend": ("vm_cmd", "extend", "Move a VM's run limit and show the new worst case."),
    "down": ("vm_cmd", "down", "Delete a VM and everything made for it; report its cost."),
    "sweep": ("vm_cmd", "sweep", "Find (and delete) gpuctl resources left behind."),
    "run": ("runs_cmd", "run", "Start a training run on a VM (detached) or as a Job on GKE (--gke)."),
    "jobs": ("runs_cmd", "jobs", "Runs on a VM or GKE (--gke): step, loss, ETA, cost to complete."),
    "logs": ("runs_cmd", "logs", "Show (or follow) a run's output, on a VM or GKE (--gke)."),
    "cancel": ("runs_cmd", "cancel", "Stop a run on a VM or GKE (--gke): clean stop, then kill."),
    "fetch": ("runs_cmd", "fetch", "Copy a run's outputs back from the VM."),
    "progress": ("runs_cmd", "progress", "Step, loss, ETA and cost to complete from any training log."),
    "plot": ("runs_cmd", "plot", "Plot a run's loss curves (PNG, and a sparkline here)."),
    "gke": ("gke_cmd", "gke", "A GKE cluster with spot GPU node pools: up, down, status."),
    "train": ("train_cmd", "train", "Alias of `run --gke`: a training job spec as a Job on GKE."),
    "webui": ("webui_cmd", "webui", "A Web UI on GKE that scales to zero when unused."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when run, and which turns GpuctlError into
    one line on stderr and a non-zero exit (tracebacks only with GPUCTL_DEBUG=1)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attr, _ = COMMANDS[name]
        module = importlib.import_module(f"{__package__}.{module_name}")
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the table above, so listing commands imports none of them.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        from ..errors import GpuctlError

        debug = os.environ.get("GPUCTL_DEBUG") == "1"
        if not debug:
            quiet_libraries()
        try:
            return super().invoke(ctx)
        except GpuctlError as exc:
            if debug:
                raise
            report_error(exc)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:
            # A bad option or argument is bad input like any other: one line with a hint, not
            # click's three-line usage block.
            if debug:
                raise
            where = " ".join(exc.ctx.command_path.split()[1:]) if exc.ctx else ""
            report_error(GpuctlError(exc.format_message(),
                                     f"run `gpuctl {where + ' ' if where else ''}--help`"))
            ctx.exit(exc.exit_code)
        except Exception as exc:
            # A safety net: adapters translate network failures, but one that slips past them
            # (a library raising from an unexpected place) is still one line, never a traceback.
            failure = None if debug else stray_network_error(exc)
            if failure is None:
                raise
            report_error(failure)
            ctx.exit(failure.exit_code)


# Libraries whose exceptions are network trouble when they reach the top unhandled.
_NETWORK_LIBRARIES = {"requests", "urllib3", "httplib2", "paramiko", "socket", "ssl"}


def stray_network_error(exc: Exception):
    """A NetworkError for a transport exception no adapter caught, else None (a real bug:
    the traceback stays, so it gets reported)."""
    from ..adapters.transport import is_transport_error, network_error

    library = type(exc).__module__.split(".")[0]
    auth = type(exc).__module__.startswith("google.auth")
    if library not in _NETWORK_LIBRARIES and not auth and not isinstance(exc, (ConnectionError,
                                                                               TimeoutError)):
        return None
    if library == "paramiko" and not is_transport_error(exc):
        from ..errors import NetworkError

        return NetworkError(f"SSH failed: {exc}".strip(),
                            "check the host's address and that sshd runs there, then rerun")
    return network_error(exc, "Google Cloud") if is_transport_error(exc) else None


def quiet_libraries() -> None:
    """google-auth, urllib3 and paramiko log (paramiko: whole tracebacks) and warn through
    Python's logging and warnings; with no handler configured, logging's last resort would
    print them to stderr next to gpuctl's one error line. GPUCTL_DEBUG=1 shows them."""
    import logging

    root = logging.getLogger()
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())
    logging.captureWarnings(True)  # e.g. google-auth's "no quota project" UserWarning


def report_error(exc) -> None:
    hint = f" (hint: {exc.hint})" if exc.hint else ""
    text = f"error: {exc.message}{hint}".replace("\n", " ")
    if os.environ.get("NO_COLOR"):  # no-color.org: not even a reset sequence
        click.echo(text, err=True)
    else:
        click.secho(text, fg="red", err=True)


DISTRIBUTION = "gpuctl-gcp"  # the name on PyPI (`gpuctl` there is another project)


def print_version(ctx: click.Context, _param, value: bool) -> None:
    """The version, the distribution it came from, and the date and source of the bundled price
    snapshot every offline figure uses (read only when asked: --help stays fast)."""
    if not value or ctx.resilient_parsing:
        return
    import json

    from ..paths import bundled_data

    snapshot = json.loads(bundled_data("prices.json").read_text())
    source = snapshot.get("source", "").split(":")[0]
    click.echo(f"gpuctl {__version__} ({DISTRIBUTION}); bundled prices as of {snapshot.get('as_of')}, "
               f"from {source}; `gpuctl prices show` says which prices are in force")
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=print_version,
              help="Show the version and where the bundled data comes from, then exit.")
def cli() -> None:
    """gpuctl: spot GPU machines on Google Cloud that never leave a bill running.

    \b
    Start here (no cloud account needed):
      gpuctl profiles                  what you can rent, and what it costs
      gpuctl cost a100-spot            hourly breakdown and the cost of forgetting it
      gpuctl up a100-spot --dry-run    everything `up` would create, install and guard
    """


def main() -> None:
    try:
        cli.main(prog_name="gpuctl")
    except KeyboardInterrupt:
        click.secho("interrupted", fg="red", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
