"""`gpuctl run | jobs | logs | cancel | fetch | progress | plot`: training runs on a VM or host.

Thin: each command parses options, calls one function of gpuctl.runs.service (or the pure
parser for `progress`), and renders the result. Nothing here imports Fabric or paramiko at
module level.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import complete_profiles, json_option

ssh_key_option = click.option("--ssh-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                              help="Private key for a user@host target.")
known_hosts_option = click.option("--known-hosts", type=click.Path(dir_okay=False, path_type=Path),
                                  help="known_hosts with the host's key (user@host targets).")


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    from ..errors import UsageError

    out = {}
    for value in values:
        key, eq, val = value.partition("=")
        if not eq or not key:
            # Not repeated back: `--secret hf_...` (the value where KEY=REF belongs) is a secret.
            raise UsageError(f"an {option} value is not KEY=VALUE (not shown, in case it is a secret)",
                             f"e.g. {option} WANDB_MODE=offline")
        out[key] = val
    return out


def _price(price_per_hour: float | None, profile: str | None) -> tuple[float | None, str | None]:
    from ..errors import UsageError

    if price_per_hour is not None and profile:
        raise UsageError("give --price-per-hour or --profile, not both")
    if price_per_hour is not None:
        if not price_per_hour >= 0 or price_per_hour == float("inf"):
            raise UsageError(f"--price-per-hour {price_per_hour} is not a price", "e.g. 1.65")
        return price_per_hour, "--price-per-hour"
    if profile:
        from ..runs.pricing import profile_price

        return profile_price(profile), f"profile {profile}"
    return None, None


def format_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _stdout_bytes():
    """Raw stdout, for log bytes (tqdm's \r must reach the terminal as written)."""
    sys.stdout.flush()
    return getattr(sys.stdout, "buffer", sys.stdout)


def _currency():
    from ..context import load_context

    return load_context().currency


def build_spec(args: tuple[str, ...], *, run_name, env_pairs, secret_pairs, timeout, requirements,
               output_dir, workdir, no_sync):
    """(spec, workdir to sync or None) from a job file or a command, with the flags applied."""
    import datetime as dt

    from ..errors import UsageError
    from ..jobspec import load_job_spec, parse_job_spec
    from ..runs.service import default_run_name
    from ..safe_read import present

    data: dict
    base_dir = Path.cwd()
    if args and args[0].endswith((".yaml", ".yml")):
        job_file = Path(args[0])
        if not present(job_file):
            raise UsageError(f"job file {job_file} not found", "check the path, or put the command after --")
        data = load_job_spec(job_file).model_dump(exclude_defaults=True)
        base_dir = job_file.resolve().parent
        if len(args) > 1:
            data["command"] = list(args[1:])
    elif args:
        data = {"command": list(args),
                "name": default_run_name(list(args), dt.datetime.now())}
    else:
        raise UsageError("nothing to run", "gpuctl run VM -- python train.py ...  or  gpuctl run VM job.yaml")
    if run_name:
        data["name"] = run_name
    if env_pairs:
        data["env"] = {**data.get("env", {}), **_pairs(env_pairs, "--env")}
    if secret_pairs:
        data["secrets"] = {**data.get("secrets", {}), **_pairs(secret_pairs, "--secret")}
    for key, value in (("timeout", timeout), ("requirements", requirements),
                       ("output_dir", output_dir)):
        if value:
            data[key] = value
    if workdir is not None:
        data["workdir"] = str(workdir)
    spec = parse_job_spec(data, "the run")
    sync_dir = None
    if not no_sync:
        sync_dir = (base_dir / spec.workdir) if spec.workdir else base_dir
    return spec, sync_dir


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Local directory to sync (default: the job file's, or the current one).")
@click.option("--cwd", default="", help="Subdirectory of the workdir to run in.")
@click.option("--env", "env_pairs", multiple=True, metavar="K=V", help="Environment for the run.")
@click.option("--secret", "secret_pairs", multiple=True, metavar="K=REF",
              help="A secret by reference: env:NAME or file:PATH (read here, sent on stdin).")
@click.option("--name", "run_name", help="Run name (default: the job's, or script-MMDD-HHMM).")
@click.option("--timeout", help="Stop the run after this long, e.g. 12h.")
@click.option("--requirements", help="pip install -r this file (relative to the workdir) first.")
@click.option("--output-dir", help="Where the run writes checkpoints (checked: NVMe or boot disk).")
@click.option("--no-sync", is_flag=True, help="Send no code; run in the login's home.")
@click.option("--grace", default="30s", show_default=True, help="Time between SIGTERM and SIGKILL on cancel/timeout.")
@click.option("--price-per-hour", type=float, help="USD per hour of the host (user@host targets).")
@click.option("--profile", shell_complete=complete_profiles, help="Price the host as this profile.")
@ssh_key_option
@known_hosts_option
@click.option("-f", "--follow", is_flag=True, help="Follow the log until the run ends; exit with its status.")
@click.option("--dry-run", is_flag=True, help="Show what would be synced and started; change nothing.")
@json_option
def run(target, args, workdir, cwd, env_pairs, secret_pairs, run_name, timeout, requirements,
        output_dir, no_sync, grace, price_per_hour, profile, ssh_key, known_hosts, follow, dry_run,
        as_json) -> None:
    """Start a training run on TARGET (a gpuctl VM or user@host[:port]), detached.

    \b
      gpuctl run a100 -- python train.py --epochs 3
      gpuctl run a100 job.yaml            (the same YAML job format as GKE training)

    Code is synced (incrementally, honouring .gitignore); the run survives SSH disconnects and
    your laptop sleeping; stdout/stderr go to a log on the NVMe.
    """
    from ..runs.service import RunRequest, start_run
    from ..units import parse_duration
    from . import render

    spec, sync_dir = build_spec(args, run_name=run_name, env_pairs=env_pairs,
                                secret_pairs=secret_pairs, timeout=timeout,
                                requirements=requirements, output_dir=output_dir, workdir=workdir,
                                no_sync=no_sync)
    price, source = _price(price_per_hour, profile)
    req = RunRequest(target=target, spec=spec, workdir=sync_dir, cwd=cwd, ssh_key=ssh_key,
                     known_hosts=known_hosts, price_per_hour=price, price_source=source,
                     grace_seconds=parse_duration(grace), dry_run=dry_run)
    report = start_run(req, on_notice=None if as_json else lambda t: click.echo(t, err=True))
    if as_json:
        render.print_json(report)
    else:
        _render_started(report)
    if follow and not dry_run:
        _follow(report["name"], tail_lines=None, exit_with_status=True)


def _render_started(report: dict) -> None:
    out = click.echo
    sync = report.get("sync")
    if report["dry_run"]:
        out(f"dry run: would start {report['name']} on {report['host']}: {report['command']}")
    else:
        out(f"started {report['name']} on {report['host']} ({report['launcher']}, pid "
            f"{report.get('pid')}): {report['command']}")
    if sync:
        verb = "would sync" if report["dry_run"] else "synced"
        out(f"  {verb} {sync['upload']} file(s) ({format_size(sync['upload_bytes'])}), "
            f"deleted {sync['delete']}, {sync['unchanged']} unchanged ({sync['source']}) "
            f"-> {sync['code_dir']}")
    if report.get("log"):
        out(f"  log: {report['log']}")
    if report.get("state") not in (None, "running", "starting"):
        out(f"  already {report['state']} (exit {report.get('exit_code')}): `gpuctl logs {report['name']}`")
    for note in report["notes"]:
        click.secho(f"note: {note}", fg="cyan", err=True)
    for warning in report["warnings"]:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if not report["dry_run"]:
        out(f"follow: gpuctl logs -f {report['name']}   progress: gpuctl jobs   "
            f"stop: gpuctl cancel {report['name']}")


def _follow(name: str, tail_lines: int | None, exit_with_status: bool) -> None:
    from ..runs.service import follow_log

    stdout = _stdout_bytes()

    def write(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    final = follow_log(name, write, lambda t: click.secho(t, fg="yellow", err=True),
                       tail_lines=tail_lines)
    code = final.get("exit_code")
    click.secho(f"\n{name}: {final.get('state')} (exit {code})", err=True,
                fg="green" if final.get("state") == "succeeded" else "red")
    if exit_with_status and isinstance(code, int) and code != 0:
        sys.exit(min(code, 255))


@click.command()
@click.argument("names", nargs=-1)
@json_option
def jobs(names, as_json) -> None:
    """Runs with state, step, loss, eval loss, ETA, cost so far and to complete."""
    from ..runs.service import list_runs
    from . import render

    views = list_runs(list(names) or None)
    if as_json:
        render.print_json(views)
        return
    if not views:
        click.echo("no runs yet: gpuctl run VM -- python train.py")
        return
    render_jobs(views, _currency())


STATE_STYLE = {"running": "green", "starting": "green", "succeeded": "bold green",
               "failed": "red", "cancelled": "yellow", "timed-out": "red", "lost": "red",
               "unreachable": "yellow"}
TREND = {"down": "↓", "up": "↑", "flat": "→"}


def render_jobs(views: list[dict], cur) -> None:
    from rich.table import Table

    from ..units import format_duration
    from . import render

    table = Table(title="Runs", title_justify="left")
    for column in ("run", "where", "state", "step", "loss (smoothed)", "eval", "ETA",
                   "cost so far", "to finish"):
        table.add_column(column, justify="right" if column in ("step", "ETA", "cost so far",
                                                               "to finish") else "left")
    for v in views:
        state = v["state"] + (f" ({v['exit_code']})" if v.get("exit_code") not in (None, 0) else "")
        step = "-"
        if v["step"] is not None:
            step = f"{v['step']}/{v['total_steps']}" if v["total_steps"] else str(v["step"])
            if v["percent"] is not None:
                step += f" {v['percent']:.0f}%"
        loss = "-"
        if v["loss"] is not None or not v["loss_finite"]:
            loss = f"{v['loss']:.4g}" if v["loss"] is not None else "nan"
            if v["smoothed_loss"] is not None:
                loss += f" ({v['smoothed_loss']:.4g}{TREND.get(v['loss_trend'], '')})"
        eval_loss = "-" if v["eval_loss"] is None else f"{v['eval_loss']:.4g}"
        eta = "-" if v["eta_seconds"] is None else (
            "done" if v["finished"] else format_duration(v["eta_seconds"]))
        table.add_row(v["name"], v["target"], f"[{STATE_STYLE.get(v['state'], '')}]{state}[/]",
                      step, loss, eval_loss, eta,
                      render.money(v["cost_so_far_usd"], cur) if v["cost_so_far_usd"] is not None else "-",
                      render.money(v["cost_to_complete_usd"], cur) if v["cost_to_complete_usd"] is not None else "-")
    out = render.console()
    out.print(table)
    for v in views:
        for warning in v["warnings"]:
            out.print(f"[yellow]{v['name']}: {warning}[/]")
        if v.get("error"):
            out.print(f"[yellow]{v['name']}: {v['error']} (last known state: {v['last_state']})[/]")
        if v["price_per_hour_usd"] is None and v["state"] in ("running", "starting"):
            out.print(f"[dim]{v['name']}: no price known; start runs with --price-per-hour or "
                      "--profile to see cost[/]")


@click.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep following until the run ends (reconnects).")
@click.option("--tail", "tail_lines", type=click.IntRange(1), help="Only the last N lines.")
def logs(name: str, follow: bool, tail_lines: int | None) -> None:
    """Show (or follow) a run's output."""
    if follow:
        _follow(name, tail_lines, exit_with_status=False)
        return
    from ..runs.service import read_log

    stdout = _stdout_bytes()
    status = read_log(name, stdout.write, tail_lines)
    stdout.flush()
    if status.get("state") not in ("running", "starting"):
        click.secho(f"{name}: {status.get('state')} (exit {status.get('exit_code')})", err=True)


@click.command()
@click.argument("name")
@click.option("--grace", default="30s", show_default=True, help="Wait this long after SIGTERM before SIGKILL.")
@json_option
def cancel(name: str, grace: str, as_json: bool) -> None:
    """Stop a run: SIGTERM to its process group, then SIGKILL after the grace period."""
    from ..runs.service import cancel_run
    from ..units import parse_duration
    from . import render

    result = cancel_run(name, parse_duration(grace))
    if as_json:
        render.print_json(result)
    elif result.get("already_ended"):
        click.echo(f"{name} had already ended: {result['state']} (exit {result.get('exit_code')})")
    else:
        how = "killed after the grace period" if result.get("killed") else "stopped cleanly"
        click.echo(f"{name}: {how}; {result['state']} (exit {result.get('exit_code')})")


@click.command()
@click.argument("name")
@click.argument("path")
@click.argument("dest", required=False, type=click.Path(file_okay=False, path_type=Path))
@json_option
def fetch(name: str, path: str, dest: Path | None, as_json: bool) -> None:
    """Copy PATH (relative to the run's directory, or absolute) from the host into DEST
    (default ./NAME/); files already there unchanged are skipped."""
    from ..runs.service import fetch as fetch_outputs
    from . import render

    result = fetch_outputs(name, path, dest if dest is not None else Path(name))
    if as_json:
        render.print_json(result)
    else:
        click.echo(f"fetched {result['files']} file(s), {format_size(result['bytes'])} into "
                   f"{result['dest']} ({result['unchanged']} unchanged)")


@click.command()
@click.argument("source", default="-")
@click.option("--price-per-hour", type=float, help="USD per hour, for cost figures.")
@click.option("--profile", shell_complete=complete_profiles, help="Price as this profile.")
@click.option("--time-left", help="Time until the machine's guard fires (e.g. 6h): warn if the run needs longer.")
@json_option
def progress(source, price_per_hour, profile, time_left, as_json) -> None:
    """Step, loss, ETA and cost to complete from any training log (a FILE, or - for stdin)."""
    from ..runs.estimate import Guard, figures
    from ..runs.progress import ProgressParser
    from ..units import parse_duration
    from . import render

    price, _ = _price(price_per_hour, profile)
    parser = ProgressParser()
    with _open_log(source) as stream:
        for block in iter(lambda: stream.read(1024 * 1024), b""):
            parser.feed(block)
    p = parser.close()
    guards = [Guard("--time-left", float(parse_duration(time_left)), "ends the VM")] if time_left else []
    fig = figures(p, price_per_hour=price, guards=guards)
    if as_json:
        render.print_json(fig)
        return
    render_figures(fig, _currency(), [point[1] for point in p.losses])


def _open_log(source: str):
    """stdin for '-', else a regular file through the safe reader (a FIFO or /dev/zero would
    never end); read in blocks, so a log of any size keeps memory flat."""
    import contextlib

    from ..errors import UsageError
    from ..safe_read import open_stream

    if source == "-":
        return contextlib.nullcontext(getattr(sys.stdin, "buffer", sys.stdin))
    return open_stream(source, "log", UsageError, "check the path, or pipe the log in with -")


def render_figures(fig: dict, cur, losses: list[float]) -> None:
    from ..runs.plot import sparkline
    from ..units import format_duration
    from . import render

    rows = []
    if fig["step"] is not None:
        total = f"/{fig['total_steps']}" if fig["total_steps"] else ""
        pct = f" ({fig['percent']:.1f}%)" if fig["percent"] is not None else ""
        rows.append(("step", f"{fig['step']}{total}{pct}"))
    if fig["loss"] is not None or not fig["loss_finite"]:
        trend = f", {fig['loss_trend']}" if fig["loss_trend"] else ""
        latest = "nan" if fig["loss"] is None else f"{fig['loss']:.4g}"
        smooth = f"{fig['smoothed_loss']:.4g}" if fig["smoothed_loss"] is not None else "-"
        rows.append(("loss", f"{latest} (smoothed {smooth}{trend})  {sparkline(losses)}"))
    if fig["eval_loss"] is not None:
        rows.append(("eval loss", f"{fig['eval_loss']:.4g} (best {fig['best_eval_loss']:.4g})"))
    if fig["overflows"]:
        rows.append(("fp16 overflows", f"{fig['overflows']} (loss scale {fig['loss_scale']:g})"
                     if fig["loss_scale"] is not None else str(fig["overflows"])))
    if fig["finished"]:
        rows.append(("finished", "yes" + (f", train loss {fig['train_loss']:.4g}" if fig["train_loss"] else "")))
    elif fig["eta_seconds"] is not None:
        rows.append(("ETA", format_duration(fig["eta_seconds"])))
    if fig["cost_so_far_usd"] is not None:
        rows.append(("cost so far", render.money(fig["cost_so_far_usd"], cur)))
    if fig["cost_to_complete_usd"] is not None:
        rows.append(("cost to complete", render.money(fig["cost_to_complete_usd"], cur)))
    if not rows:
        rows.append(("progress", "nothing recognised yet (Trainer dicts, tqdm bars, DeepSpeed lines)"))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"{label:>{width}}: {value}")
    for warning in fig["warnings"]:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


@click.command()
@click.argument("run_or_log")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG file (default: RUN-loss.png).")
@json_option
def plot(run_or_log: str, output: Path | None, as_json: bool) -> None:
    """Plot a run's loss curves (training and eval loss against step) as a PNG, and a sparkline
    here. RUN_OR_LOG is a run name or a log file."""
    from ..runs import registry
    from ..runs.plot import render_png, sparkline
    from . import render

    path = Path(run_or_log)
    if registry.load(run_or_log) is None and _is_file(path):
        from ..runs.progress import ProgressParser

        parser = ProgressParser()
        with _open_log(run_or_log) as f:
            for block in iter(lambda: f.read(1024 * 1024), b""):
                parser.feed(block)
        p, title = parser.close(), path.stem
    else:
        from ..runs.service import run_progress

        _, p, view = run_progress(run_or_log)
        title = run_or_log
        if view.get("error"):
            click.secho(f"{run_or_log}: {view['error']}; plotting what was read before", fg="yellow", err=True)
    output = output or Path(f"{title}-loss.png")
    _write_png(output, render_png(p.losses, p.eval_losses, f"{title}: loss"))
    train, evals = [pt[1] for pt in p.losses], [pt[1] for pt in p.eval_losses]
    if as_json:
        render.print_json({"png": str(output), "losses": p.losses, "eval_losses": p.eval_losses})
        return
    click.echo(f"train loss {sparkline(train) or '(none yet)'}"
               + (f"  {train[-1]:.4g}" if train else ""))
    if evals:
        click.echo(f"eval loss  {sparkline(evals)}  {evals[-1]:.4g}")
    click.echo(f"wrote {output}")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a 300-character name: not a log here; a run name is checked
        return False


def _write_png(output: Path, data: bytes) -> None:
    from ..errors import UsageError, shown

    try:
        output.write_bytes(data)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a usable path"
        raise UsageError(f"cannot write {shown(str(output), 120)}: {reason}",
                         "pass -o with a path in a directory you can write") from None
