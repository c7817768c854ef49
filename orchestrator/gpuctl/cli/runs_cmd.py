"""`gpuctl run | jobs | logs | cancel | fetch | progress | plot`: one command set for jobs on a
VM or host (over SSH) and on GKE (`--gke`).

Thin: each command parses options, picks a backend (gpuctl.backends), calls one of its
methods and renders the typed result. Nothing here imports Fabric, paramiko or kubernetes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .kube_options import kube_options
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


def build_spec(args: tuple[str, ...], *, run_name=None, env_pairs=(), secret_pairs=(),
               timeout=None, requirements=None, output_dir=None, workdir=None, no_sync=False,
               job_file_only=False):
    """(spec, workdir to sync or None) from a job file or a command, with the flags applied.
    `job_file_only`: args[0] is a job file whatever its name (`train SPEC`), never a command."""
    import datetime as dt

    from ..errors import UsageError
    from ..jobspec import load_job_spec, parse_job_spec
    from ..runs.service import default_run_name
    from ..safe_read import present

    data: dict
    base_dir = Path.cwd()
    if args and (job_file_only or args[0].endswith((".yaml", ".yml"))):
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
    return spec, base_dir


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--gke", "on_gke", is_flag=True,
              help="Run it as a Job on gpuctl's GKE cluster (then TARGET is the job file).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Local directory to ship (default: the job file's, or the current one).")
@click.option("--cwd", default="", help="Subdirectory of the workdir to run in.")
@click.option("--env", "env_pairs", multiple=True, metavar="K=V", help="Environment for the run.")
@click.option("--secret", "secret_pairs", multiple=True, metavar="K=REF",
              help="A secret by reference: env:NAME or file:PATH (read here, never stored in the spec).")
@click.option("--name", "run_name", help="Run name (default: the job's, or script-MMDD-HHMM).")
@click.option("--timeout", help="Stop the run after this long, e.g. 12h.")
@click.option("--requirements", help="pip install -r this file (relative to the workdir) first.")
@click.option("--output-dir", help="Where the run writes checkpoints (checked: NVMe or boot disk).")
@click.option("--no-sync", is_flag=True, help="Send no code; run in the login's home (or the image's).")
@click.option("--grace", default="30s", show_default=True, help="Time between SIGTERM and SIGKILL on cancel/timeout.")
@click.option("--price-per-hour", type=float, help="USD per hour of the host (user@host targets).")
@click.option("--profile", shell_complete=complete_profiles, help="Price the host as this profile.")
@ssh_key_option
@known_hosts_option
@click.option("-f", "--follow", is_flag=True, help="Follow the log until the run ends; exit with its status.")
@click.option("--dry-run", is_flag=True, help="Show what would be shipped and started; change nothing "
              "(GKE: print the manifests, contact nothing).")
@click.option("--validate", is_flag=True, help="GKE: have the cluster admit the manifests; create nothing.")
@click.option("-y", "--yes", is_flag=True, help="GKE: do not ask for confirmation.")
@click.option("--recover", is_flag=True, help="A spot VM group of one that Google Cloud replaces after "
              "each preemption; the run resumes from its checkpoints with no laptop (TARGET: a new name). "
              "`recover: true` in the job file does the same.")
@click.option("--budget", help="--recover: USD for every replacement together; the group is deleted then.")
@click.option("--ttl", help="--recover: delete the group (and its VM) after this long, e.g. 24h.")
@click.option("--region", help="--recover: the region whose zones the group may use.")
@click.option("--preemptions", type=click.IntRange(0), default=3, show_default=True,
              help="--recover: how many preemptions the plan's cost-to-finish allows for.")
@click.option("--eta", help="--recover: how long the run takes with no preemption (e.g. 10h).")
@click.option("--checkpoint-every", help="--recover: how often the run saves (e.g. 30m): the most a preemption redoes.")
@kube_options
@json_option
def run(target, args, on_gke, workdir, cwd, env_pairs, secret_pairs, run_name, timeout,
        requirements, output_dir, no_sync, grace, price_per_hour, profile, ssh_key, known_hosts,
        follow, dry_run, validate, yes, recover, budget, ttl, region, preemptions, eta, checkpoint_every,
        kubeconfig, context, namespace, as_json) -> None:
    """Start a job on TARGET (a gpuctl VM or user@host[:port]), detached, or with --gke as a
    Job on GKE (then TARGET is the job file).

    \b
      gpuctl run a100 -- python train.py --epochs 3
      gpuctl run a100 job.yaml            the same job file runs on a VM...
      gpuctl run --gke job.yaml           ...and on GKE (alias: gpuctl train --gke job.yaml)

    Code is shipped (honouring .gitignore): synced to the VM, or packed into a ConfigMap on
    GKE. A VM run survives SSH disconnects and your laptop sleeping.
    """
    from ..backends import SubmitRequest, backend_for
    from ..units import parse_duration

    if recover:
        _run_recover(target, args, locals())
        return
    if on_gke:
        target, args = None, (target, *args)
    spec, spec_dir = build_spec(args, run_name=run_name, env_pairs=env_pairs,
                                secret_pairs=secret_pairs, timeout=timeout,
                                requirements=requirements, output_dir=output_dir,
                                workdir=workdir, no_sync=no_sync)
    if spec.recover and not on_gke:  # `recover: true` in the job file: the --recover path
        _run_recover(target, args, locals(), built=(spec, spec_dir))
        return
    if not on_gke and (validate or yes):
        from ..errors import UsageError

        raise UsageError("--validate and -y apply to GKE jobs", "add --gke, or drop them")
    price, source = _price(price_per_hour, profile)
    request = SubmitRequest(spec=spec, spec_dir=spec_dir, dry_run=dry_run, ship_code=not no_sync,
                            target=target, cwd=cwd, ssh_key=ssh_key, known_hosts=known_hosts,
                            price_per_hour=price, price_source=source,
                            grace_seconds=parse_duration(grace), validate=validate)
    backend = backend_for(on_gke, kubeconfig=kubeconfig, context=context, namespace=namespace)
    submit_and_render(backend, request, follow=follow, yes=yes, as_json=as_json)


def _run_recover(target: str, args: tuple[str, ...], opts: dict, built=None) -> None:
    """`run NAME job.yaml --recover` (or `recover: true` in job.yaml): the plan (--dry-run), or,
    confirmed, the group itself. `built`: the (spec, its folder) `run` already read."""
    from ..context import load_context
    from ..errors import UsageError
    from ..recovery.plan import RecoverOptions, plan_recover_run
    from ..units import parse_duration
    from . import render

    if opts["on_gke"]:
        raise UsageError("--recover is for VMs; on GKE a preempted pod is replaced by the Job",
                         "drop --recover (GKE jobs recover by themselves)")
    if opts["validate"]:
        raise UsageError("--validate applies to GKE jobs", "drop it; --dry-run shows the --recover plan")
    spec, spec_dir = built or build_spec(
        args, run_name=opts["run_name"], env_pairs=opts["env_pairs"], secret_pairs=opts["secret_pairs"],
        timeout=opts["timeout"], requirements=opts["requirements"], output_dir=opts["output_dir"],
        workdir=opts["workdir"], no_sync=opts["no_sync"])
    hours = lambda text: parse_duration(text) / 3600 if text else None  # noqa: E731
    options = RecoverOptions(
        name=target, profile=opts["profile"], region=opts["region"], ttl=opts["ttl"], budget=opts["budget"],
        preemptions=opts["preemptions"], run_hours=hours(opts["eta"]),
        checkpoint_minutes=hours(opts["checkpoint_every"]) * 60 if opts["checkpoint_every"] else None)
    workdir = None if opts["no_sync"] else (opts["workdir"] or spec_dir)
    report = {**plan_recover_run(load_context(), spec, options, workdir), "dry_run": bool(opts["dry_run"])}
    if opts["dry_run"]:
        if opts["as_json"]:
            render.print_json(report)
            return
        _render_recover_plan(report)
        return
    if not (opts["yes"] or opts["as_json"]):
        _render_recover_plan(report)
        click.confirm("Start it?", abort=True)
    _start_recover(spec, options, workdir, opts)


def _start_recover(spec, options, workdir, opts: dict) -> None:
    from ..recovery.apply import start_recover_run
    from . import render
    from .vm_cmd import _deps, _event_printer

    ctx, deps = _deps(need_engine=True)
    started = start_recover_run(ctx, spec, options, workdir, deps, cwd=opts["cwd"] or None,
                                on_event=_event_printer(opts["as_json"]))
    if opts["as_json"]:
        render.print_json(started)
        return
    cost = started["cost"]
    click.echo(f"started {started['run']} under group {started['name']} in {started['region']} "
               f"(VM {started['vm'] or 'being created'}); worst case ${cost['worst_case_usd']:.2f} until "
               f"{started['guards']['deadline']['at']}")
    render.next_steps(started["next_steps"])


def _render_recover_plan(report: dict) -> None:
    from . import render

    out, cost, guards = click.echo, report["cost"], report["guards"]
    out(f"{'dry run: would start' if report['dry_run'] else 'plan: start'} {report['run']} under a spot VM group {report['name']} "
        f"({report['profile']}, {report['machine_type']}) in {report['region']}: zones "
        f"{', '.join(report['zones'])}")
    out("  resources: " + ", ".join(f"{r['type']} {r['name']}" for r in report["resources"]))
    out(f"  checkpoints: {report['checkpoints']}/ (replacements resume from the newest complete one)")
    out(f"  would upload: {', '.join(u.rsplit('/', 1)[-1] for u in report['uploads'])} "
        f"-> {report['checkpoints']}/.gpuctl/")
    prov = report["provision"]
    out(f"  provisioned at boot: NVMe at {prov['mount']}, NVIDIA driver {prov['driver']}, CUDA {prov['cuda']}, "
        f"Python {prov['python']}" + (f", time zone {prov['time_zone']}" if prov["time_zone"] else "")
        + f" ({prov['when']})")
    out(f"  deadline: {guards['deadline']['at']} ({guards['deadline']['hours']:.2f} h, from the "
        f"{guards['deadline']['from']}): {guards['deadline']['action']}")
    out(f"  hard cap: {guards['hard_cap']['termination_time']}: {guards['hard_cap']['action']}")
    out(f"  worst case: ${cost['worst_case_usd']:.2f} = {cost['deadline_hours']:.2f} h x "
        f"${cost['price_per_hour']:.4f}/h, every replacement billed, one VM at a time, "
        "however often it is preempted")
    per = cost["restart_minutes"] + cost["redo_minutes"]
    if cost["run_hours"] is not None:
        out(f"  with {cost['preemptions']} preemptions x ({cost['restart_minutes']:.0f} min restart + "
            f"{cost['redo_minutes']:.0f} min redone): {cost['hours_with_preemptions']:.2f} h, "
            f"${cost['cost_with_preemptions_usd']:.2f} to finish; the deadline absorbs "
            f"{cost['preemptions_absorbed']} preemptions")
        if not cost["finishes"]:
            render.warn_line(f"with {cost['preemptions']} preemptions the run needs "
                             f"{cost['hours_with_preemptions']:.2f} h, past the deadline: raise --budget or --ttl")
    else:
        out(f"  each preemption costs about {per:.0f} min ({cost['restart_minutes']:.0f} restart + "
            f"{cost['redo_minutes']:.0f} redone); pass --eta to see the cost to finish")
    out(f"  {guards['daily_stop']}")


def submit_and_render(backend, request, *, follow: bool, yes: bool, as_json: bool) -> None:
    """Shared by `run` and its alias `train --gke`: confirm what asks for it, submit, render."""
    from . import render

    if backend.name == "gke" and not (request.dry_run or request.validate or yes or as_json):
        render.preview(backend.preview(request))
        click.confirm("Submit it?", abort=True)
    notice = None if as_json else (lambda t: click.echo(t, err=True))
    submitted = backend.submit(request, on_notice=notice)
    if as_json:
        render.print_json(submitted.as_dict())
    elif backend.name == "gke":
        render.gke_submitted(submitted)
    else:
        _render_started(submitted.detail)
        render.next_steps(submitted.next_steps)
    if follow and not submitted.dry_run:
        _follow(backend, submitted.name, tail_lines=None, exit_with_status=True)


def _render_started(report: dict) -> None:
    from . import render

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
        render.warn_line(note, prefix="note: ", color="cyan")
    for warning in report["warnings"]:
        render.warn_line(warning)


def _follow(backend, name: str, tail_lines: int | None, exit_with_status: bool) -> None:
    from . import render

    stdout = _stdout_bytes()

    def write(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    end = backend.logs(name, write, follow=True, tail_lines=tail_lines,
                       on_notice=lambda t: render.warn_line(t, prefix=""))
    code = end.exit_code
    click.secho(f"\n{name}: {end.state} (exit {code})", err=True,
                fg="green" if end.state == "succeeded" else "red")
    if exit_with_status and isinstance(code, int) and code != 0:
        sys.exit(min(code, 255))


@click.command()
@click.argument("names", nargs=-1)
@click.option("--gke", "on_gke", is_flag=True, help="Jobs on gpuctl's GKE cluster.")
@kube_options
@json_option
def jobs(names, on_gke, kubeconfig, context, namespace, as_json) -> None:
    """Jobs with their state; VM runs also with step, loss, eval loss, ETA, cost so far and to
    complete."""
    from ..backends import backend_for
    from . import render

    backend = backend_for(on_gke, kubeconfig=kubeconfig, context=context, namespace=namespace)
    views = _vm_and_recovering_views(backend, list(names)) if not on_gke else backend.list(list(names) or None)
    if as_json:
        render.print_json([v.as_dict() for v in views])
        return
    if not views:
        click.echo("no jobs yet: gpuctl run --gke job.yaml" if on_gke
                   else "no runs yet: gpuctl run VM -- python train.py")
        return
    if on_gke:
        render.gke_jobs([v.detail for v in views])
    else:
        render_jobs([v.detail for v in views], _currency())


def _vm_and_recovering_views(backend, names: list[str]) -> list:
    """Runs on hosts (over SSH) and `run --recover` groups (from Compute Engine), by name."""
    from ..backends.base import JobView
    from ..recovery.cancel import is_recovering
    from ..runs.service import recovering_run_views

    groups = [n for n in names if is_recovering(n)]
    hosts = [n for n in names if n not in groups]
    views = backend.list(hosts or None) if hosts or not names else []
    return views + [JobView("vm", v["name"], v["target"], v["state"], v)
                    for v in (recovering_run_views(groups or None) if groups or not names else [])]


STATE_STYLE = {"running": "green", "starting": "green", "succeeded": "bold green",
               "failed": "red", "cancelled": "yellow", "timed-out": "red", "lost": "red",
               "unreachable": "yellow"}
TREND = {"down": "↓", "up": "↑", "flat": "→"}


def render_jobs(views: list[dict], cur) -> None:
    from rich.table import Table

    from ..units import format_duration
    from . import render

    from rich.markup import escape

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
        style = STATE_STYLE.get(v["state"])  # states not listed (a group's "finished (...)") unstyled
        shown = f"[{style}]{escape(state)}[/]" if style else escape(state)
        table.add_row(escape(v["name"]), escape(v["target"]), shown,
                      step, loss, eval_loss, eta,
                      render.money(v["cost_so_far_usd"], cur) if v["cost_so_far_usd"] is not None else "-",
                      render.money(v["cost_to_complete_usd"], cur) if v["cost_to_complete_usd"] is not None else "-")
    out = render.console()
    out.print(table)
    for v in views:
        if v.get("recover"):
            out.print(recover_line(v["recover"], cur))
        for warning in v["warnings"]:
            out.print(f"[yellow]{v['name']}: {warning}[/]")
        if v.get("error"):
            out.print(f"[yellow]{v['name']}: {v['error']} (last known state: {v['last_state']})[/]")
        if v["price_per_hour_usd"] is None and v["state"] in ("running", "starting"):
            out.print(f"[dim]{v['name']}: no price known; start runs with --price-per-hour or "
                      "--profile to see cost[/]")


def recover_line(g: dict, cur) -> str:
    """One line for a `run --recover` group: where it runs, recreations, cost, worst case left,
    and from the hosts' records the step, the steps preemptions made it redo and the cost to
    finish (each `unknown` when not known, never 0)."""
    from . import render

    where = f"VM {g['vm']} in {g['zone']} ({(g['vm_status'] or '-').lower()})" if g["zone"] else "no VM now"
    return (f"{g['name']}: run {g['run']}, {where}; recreated {g['recreations']} time(s) after "
            f"{g['preemptions']} preemption(s); cost so far {render.money(g['cost_so_far_usd'], cur)} "
            f"(every replacement); worst case left {render.money(g['worst_case_left_usd'], cur)} "
            f"(planned in all: {render.money(g['planned_worst_case_usd'], cur)}); " + recover_steps(g, cur))


def recover_steps(g: dict, cur) -> str:
    """'step 70/100 (70%), 17 step(s) redone after preemptions, to finish $0.42 (1m)'."""
    from ..units import format_duration
    from . import render

    step = g.get("step")
    total = g.get("total_steps")
    text = "step " + ("unknown" if step is None else f"{step}/{total} ({min(100.0, 100 * step / total):.0f}%)"
                      if total else str(step))
    redone = g.get("steps_redone")
    text += f", steps redone after preemptions {'unknown' if redone is None else redone}"
    cost = g.get("cost_to_finish_usd")
    text += ", to finish " + ("unknown" if cost is None else render.money(cost, cur) + (
        f" ({format_duration(g['eta_seconds'])})" if g.get("eta_seconds") is not None else ""))
    return text + (f" ({g['steps_note']})" if g.get("steps_note") else "")


@click.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep following until the job ends (reconnects).")
@click.option("--tail", "tail_lines", type=click.IntRange(1), help="Only the last N lines.")
@click.option("--gke", "on_gke", is_flag=True, help="A Job on gpuctl's GKE cluster (rank 0's output).")
@kube_options
def logs(name: str, follow: bool, tail_lines: int | None, on_gke: bool, kubeconfig, context,
         namespace) -> None:
    """Show (or follow) a job's output."""
    from ..backends import backend_for

    backend = backend_for(on_gke, kubeconfig=kubeconfig, context=context, namespace=namespace)
    if follow:
        _follow(backend, name, tail_lines, exit_with_status=False)
        return
    stdout = _stdout_bytes()
    end = backend.logs(name, stdout.write, tail_lines=tail_lines)
    stdout.flush()
    if end.state is not None:
        click.secho(f"{name}: {end.state} (exit {end.exit_code})", err=True)


@click.command()
@click.argument("name")
@click.option("--grace", default="30s", show_default=True, help="Wait this long after SIGTERM before SIGKILL.")
@click.option("--gke", "on_gke", is_flag=True, help="A Job on gpuctl's GKE cluster.")
@kube_options
@json_option
def cancel(name: str, grace: str, on_gke: bool, kubeconfig, context, namespace,
           as_json: bool) -> None:
    """Stop a job: SIGTERM (to its process group, or its pods), then SIGKILL after the grace
    period."""
    from ..backends import backend_for
    from ..recovery.cancel import is_recovering
    from ..units import parse_duration
    from . import render

    if not on_gke and is_recovering(name):
        _cancel_recover(name, as_json)
        return
    backend = backend_for(on_gke, kubeconfig=kubeconfig, context=context, namespace=namespace)
    result = backend.cancel(name, parse_duration(grace))
    if as_json:
        render.print_json(result.as_dict())
    elif on_gke:
        left = result.detail["left"]
        click.echo(f"{name}: deleted {', '.join(result.detail['deleted']) or 'nothing'}"
                   + (f"; still going away: {', '.join(left)}" if left else ""))
    elif result.already_ended:
        click.echo(f"{name} had already ended: {result.state} (exit {result.detail.get('exit_code')})")
    else:
        how = "killed after the grace period" if result.detail.get("killed") else "stopped cleanly"
        click.echo(f"{name}: {how}; {result.state} (exit {result.detail.get('exit_code')})")


def _cancel_recover(name: str, as_json: bool) -> None:
    from ..recovery.cancel import cancel_recover_run
    from . import render
    from .vm_cmd import _deps

    _, deps = _deps(need_engine=False)
    result = cancel_recover_run(name, deps)
    if as_json:
        render.print_json(result)
    elif result["already_ended"]:
        click.echo(f"{name} was already cancelled; `gpuctl down {name}` removes the rest")
    else:
        click.echo(f"{name}: deleted {', '.join(result['deleted'])}: no VM runs and none will be made again. "
                   f"Cost ${result['cost_so_far_usd']:,.2f} over {result['recreations'] + 1} VM(s). Kept: "
                   f"{', '.join(result['kept'])}; `gpuctl down {name}` removes the rest")


@click.command()
@click.argument("name")
@click.argument("path")
@click.argument("dest", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--gke", "on_gke", is_flag=True, help="A Job on GKE (says where its outputs are).")
@json_option
def fetch(name: str, path: str, dest: Path | None, on_gke: bool, as_json: bool) -> None:
    """Copy PATH (relative to the run's directory, or absolute) from the host into DEST
    (default ./NAME/); files already there unchanged are skipped."""
    from ..backends import backend_for
    from . import render

    result = backend_for(on_gke).fetch(name, path, dest if dest is not None else Path(name))
    if as_json:
        render.print_json(result.as_dict())
    else:
        click.echo(f"fetched {result.files} file(s), {format_size(result.bytes)} into "
                   f"{result.dest} ({result.unchanged} unchanged)")


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
        if sys.stdin.isatty():  # nothing piped in: say how, instead of waiting on the keyboard
            raise UsageError("no log given", "pass a log file (gpuctl progress train.log) or pipe one "
                                              "in (tail -f train.log | gpuctl progress -)")
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
        render.warn_line(warning)


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
            render.warn_line(f"{run_or_log}: {view['error']}; plotting what was read before", prefix="")
    if not p.losses and not p.eval_losses:  # an empty chart would look like a result
        from ..errors import UsageError

        raise UsageError(f"{run_or_log} has no loss logged yet, so there is nothing to plot",
                         f"check the log (gpuctl progress {run_or_log}), or plot again later")
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
