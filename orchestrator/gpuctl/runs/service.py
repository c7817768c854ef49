"""Runs on a gpuctl VM or any SSH host: start, list with progress, logs, cancel, fetch.

Library functions: they return dicts (JSON-ready) and report along the way through callbacks;
they never print. The host side is host_scripts/run_host.py, one round trip per call.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..adapters.ssh import RemoteHost, SshError, SshTarget
from ..errors import UsageError
from ..jobspec import NAME_RE, JobSpec, notes_for_target
from ..provision.settings import DEFAULT_MOUNT
from . import registry
from .estimate import figures, hours_text
from .pricing import Economics, economics
from .progress import ProgressParser
from .registry import RunCache, RunRecord
from .remote import Frames, Helper, RunError, quote
from .sync import LocalTree, code_key, plan_sync, scan, write_tar

STATUS_CHUNK = 8 * 1024 * 1024
OUTPUT_FLAGS = ("--output_dir", "--output-dir", "--outdir", "--save_dir", "--save-dir",
                "--checkpoint_dir", "--checkpoint-dir")
RUNNING = ("running", "starting")
Notice = Callable[[str], None]


@dataclass
class RunRequest:
    target: str  # a gpuctl VM name or user@host[:port]
    spec: JobSpec
    workdir: Path | None  # the local directory to sync; None runs in the login's home
    cwd: str = ""  # where in workdir the command runs
    ssh_key: Path | None = None
    known_hosts: Path | None = None
    price_per_hour: float | None = None
    price_source: str | None = None
    grace_seconds: float = 30.0
    dry_run: bool = False
    mount: str = DEFAULT_MOUNT
    launcher: str | None = None  # None: the helper picks (systemd-run when it can)
    notes: list[str] = field(default_factory=list)


# --- naming and checks (pure) -----------------------------------------------------------------

def default_run_name(argv: list[str], now: dt.datetime) -> str:
    """'python train_lora.py ...' at 03:00 on 23 Nov -> 'train-lora-1123-0300'."""
    script = next((a for a in argv if a.endswith((".py", ".sh"))), argv[0] if argv else "run")
    stem = re.sub(r"[^a-z0-9]+", "-", Path(script).stem.lower()).strip("-") or "run"
    if not stem[0].isalpha():
        stem = "run-" + stem
    return f"{stem[:26].rstrip('-')}-{now:%m%d-%H%M}"


def pick_name(wanted: str, taken: set[str]) -> str:
    if wanted not in taken:
        return wanted
    for i in range(2, 1000):
        candidate = f"{wanted[:36].rstrip('-')}-{i}"
        if candidate not in taken and NAME_RE.fullmatch(candidate):
            return candidate
    raise UsageError(f"run names {wanted}-2 to -999 are all taken", "pick one with --name")


def output_dirs(spec: JobSpec) -> list[str]:
    """Where the run will write: output_dir, and --output_dir-style flags of the command."""
    found = [spec.output_dir] if spec.output_dir else []
    try:
        argv = shlex.split(spec.command) if isinstance(spec.command, str) else list(spec.command)
    except ValueError:
        argv = []
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag in OUTPUT_FLAGS:
            if eq and value:
                found.append(value)
            elif not eq and i + 1 < len(argv):
                found.append(argv[i + 1])
    return list(dict.fromkeys(found))


def resolve_secrets(spec: JobSpec, environ: dict | None = None) -> dict[str, str]:
    """Secret values, read on this machine at start; they travel only on the helper's stdin."""
    from ..jobspec import read_local_secrets

    return read_local_secrets(spec, environ)


def disk_warnings(facts: dict, spec: JobSpec, target: str) -> list[str]:
    warnings = []
    if not facts.get("base_on_nvme"):
        warnings.append(f"no NVMe is mounted at {facts.get('mount')}: the run's log and outputs "
                        f"go to the boot disk ({facts.get('base')}); `gpuctl provision {target}` "
                        "mounts the local NVMe")
    for path in output_dirs(spec):
        kind = facts.get("paths", {}).get(path) if path.startswith("/") else facts.get("base_disk")
        if kind == "boot":
            warnings.append(f"output dir {path} is on the boot disk, not the NVMe: checkpoints "
                            f"(126 GB each for a 7.5B model) fill it; write under "
                            f"{facts.get('mount')}")
    return warnings


def guard_notes(econ: Economics, spec: JobSpec) -> tuple[list[str], list[str]]:
    """(warnings, notes) about the guard that will end the machine, before the run starts."""
    if not econ.guards:
        return [], []
    first = min(econ.guards, key=lambda g: g.seconds_left)
    limit = spec.timeout_seconds
    where = "host" if "host" in first.action else "VM"
    if limit and limit > first.seconds_left or first.seconds_left < 3600:
        needs = f"the run may take up to {hours_text(limit)} (timeout) but " if limit else ""
        text = f"{needs}the {first.kind} {first.action} in {hours_text(first.seconds_left)}"
        if first.fix and limit:
            from .estimate import extra_hours

            text += ": " + first.fix.format(hours=extra_hours(limit, first.seconds_left))
        return [text], []
    return [], [f"the {where}'s {first.kind} ends it in {hours_text(first.seconds_left)}; "
                "`gpuctl jobs` warns if the run needs longer"]


# --- connections (all through gpuctl.hosts) ------------------------------------------------

def connect_request(req: RunRequest) -> tuple[RemoteHost, SshTarget, list[Path]]:
    from .. import hosts

    host, reached = hosts.connect(req.target, req.ssh_key, req.known_hosts)
    return host, reached.target, reached.known_hosts


def record_target(record: RunRecord) -> tuple[SshTarget, list[Path]]:
    if record.vm:
        from ..lifecycle import records as vm_records

        if vm_records.load(record.vm) is not None:
            from .. import hosts

            reached = hosts.resolve(record.vm)
            return reached.target, reached.known_hosts
    target = SshTarget(record.host, record.user, record.port,
                       Path(record.key_file) if record.key_file else None, None)
    return target, [Path(p) for p in record.known_hosts if Path(p).exists()]


def connect_record(record: RunRecord) -> RemoteHost:
    from ..hosts import open_host

    target, known = record_target(record)
    return open_host(target, known)


# --- start -------------------------------------------------------------------------------------

def start_run(req: RunRequest, on_notice: Notice | None = None) -> dict:
    notice = on_notice or (lambda _text: None)
    spec = req.spec
    notes = list(req.notes) + notes_for_target(spec, "vm")
    secrets = resolve_secrets(spec)
    from ..targets import is_vm_name

    vm = req.target if is_vm_name(req.target) else None
    if spec.checkpoints:
        notes += require_checkpoint_access(spec.checkpoints, vm, req.target)
    tree: LocalTree | None = scan(req.workdir) if req.workdir is not None else None
    if tree is not None and req.cwd and not (tree.root / req.cwd).is_dir():
        raise UsageError(f"{req.cwd} is not a directory inside {tree.root}", "check --cwd")
    host, target, known = connect_request(req)
    with host:
        helper = Helper(host)
        notice(f"connected to {target.label}")
        hello_args = {"mount": req.mount, "code_key": code_key(tree.root) if tree else None,
                      "check_paths": [p for p in output_dirs(spec) if p.startswith("/")]}
        try:
            facts = helper.call_json("hello", hello_args)
        except SshError:
            # `hello` only reads: when the fresh connection drops under it, ask once more.
            host.close()
            facts = helper.call_json("hello", hello_args)
        econ = economics(vm, req.target, req.price_per_hour, req.price_source, facts)
        warnings = disk_warnings(facts, spec, req.target)
        guard_warn, guard_info = guard_notes(econ, spec)
        warnings += guard_warn
        notes += guard_info
        taken = set(facts.get("existing_runs") or []) | {r.name for r in registry.all_records()}
        name = pick_name(spec.name, taken)
        if name != spec.name:
            notes.append(f"a run named {spec.name} exists; this one is {name}")
        plan = plan_sync(tree, facts.get("manifest") or {}) if tree else None
        report = {
            "name": name, "target": req.target, "host": target.label, "vm": vm,
            "command": spec.command_line, "dry_run": req.dry_run,
            "sync": None if plan is None else {**plan.as_dict(), "source": tree.source,
                                               "skipped_links": len(tree.skipped),
                                               "code_dir": facts.get("code_dir")},
            "base": facts.get("base"), "base_on_nvme": facts.get("base_on_nvme"),
            "price_per_hour_usd": econ.price_per_hour, "price_source": econ.price_source,
            "guards": [g.as_dict() for g in econ.guards],
            "env": sorted(spec.env), "secrets": sorted(secrets),
            "warnings": warnings, "notes": notes,
        }
        checkpoints = None
        if spec.checkpoints:
            from ..checkpoints import prepare_checkpoints

            checkpoints = prepare_checkpoints(spec, name, facts["base"], vm, create=not req.dry_run)
            report["checkpoints"] = checkpoints.as_dict()
        if req.dry_run:
            report["round_trips"] = host.round_trips
            return report
        if plan is not None and plan.changes:
            notice(f"syncing {len(plan.upload)} file(s), {plan.upload_bytes} bytes")
            applied = helper.call_json(f"apply --dir {quote(facts['code_dir'])}",
                                       writer=lambda sink: write_tar(sink, tree, plan))
            report["sync"]["applied"] = applied
        started = helper.call_json("start", {
            "name": name, "base": facts["base"],
            "code_dir": facts.get("code_dir") if tree else None,
            "cwd": req.cwd if tree else None, "argv": spec.argv, "env": spec.env,
            "secrets": secrets, "requirements": spec.requirements,
            "timeout": spec.timeout_seconds, "grace": req.grace_seconds,
            "launcher": req.launcher,
            # The syncer travels with the run (stdlib only): runs/host_scripts/checkpoint_sync.py.
            "checkpoints": {**checkpoints.as_dict(), "syncer": syncer_source()} if checkpoints else None,
        })
        notes += started.get("notes") or []
        record = RunRecord(
            name=name, target=req.target, host=target.host, user=target.user, port=target.port,
            run_dir=started["run_dir"], started_at=dt.datetime.now(dt.timezone.utc).isoformat(),
            command=spec.command_line, launcher=started["launcher"], vm=vm,
            key_file=str(target.key_file) if target.key_file else None,
            known_hosts=[str(p) for p in known], price_per_hour=econ.price_per_hour,
            price_source=econ.price_source, base_on_nvme=bool(facts.get("base_on_nvme")),
            cwd=started.get("cwd"))
        registry.save(record)
        registry.save_cache(name, RunCache(status=started))
        report.update({"run_dir": started["run_dir"], "log": started["log"],
                       "launcher": started["launcher"], "pid": started.get("pid"),
                       "state": started["state"], "exit_code": started.get("exit_code"),
                       "round_trips": host.round_trips})
        return report


def require_checkpoint_access(checkpoints: str, vm: str | None, target: str) -> list[str]:
    """A checkpointed run needs a VM whose own service account may write that bucket (made by
    `gpuctl up PROFILE --name VM --checkpoints gs://B/P`); refused here, before anything is
    sent, with the fix. The account cannot be added to a running VM: Compute Engine changes a
    VM's service account only while it is stopped (instances.setServiceAccount; pulumi-gcp's
    Instance.serviceAccount needs allowStoppingForUpdate), and a stop loses the local NVMe, so
    gpuctl recreates instead.
    A user@host target is the user's own machine: its credentials are the user's business."""
    from ..adapters.storage import default_bucket_name, parse_location
    from ..jobspec import AUTO_CHECKPOINTS
    from ..lifecycle import records

    if vm is None:
        return [f"checkpoints: {target} is not a gpuctl VM; the syncer uses the credentials of its "
                "metadata server, which must allow writing the bucket"]
    record = records.load(vm)
    if record is None:
        return []  # resolving the target names the missing VM with its own hint
    wanted = (default_bucket_name(record.project) if checkpoints == AUTO_CHECKPOINTS
              else parse_location(checkpoints).bucket)
    if record.checkpoint_bucket == wanted:
        return []
    has = (f"may write only gs://{record.checkpoint_bucket}" if record.checkpoint_bucket
           else "has no service account, so it cannot write to Cloud Storage")
    flag = "auto" if checkpoints == AUTO_CHECKPOINTS else f"gs://{wanted}"
    raise UsageError(f"VM {vm} {has}, and this job's checkpoints go to gs://{wanted}",
                     f"recreate it with access: `gpuctl down {vm}` then `gpuctl up {record.profile} "
                     f"--name {vm} --checkpoints {flag}` (a running VM's account cannot be changed)")


def syncer_source() -> str:
    from importlib import resources

    return resources.files("gpuctl.runs.host_scripts").joinpath("checkpoint_sync.py").read_text()


# --- status, progress, jobs --------------------------------------------------------------------

def _status_call(helper: Helper, items: list[dict]) -> tuple[list[tuple[dict, bytes]], dict]:
    frames = Frames()
    got: list = []
    done = helper.call("status", stdin=json.dumps({"runs": items}).encode())
    clock: dict = {}
    for kind, header, data in frames.feed(done.stdout):
        if kind == b"S":
            got.append((header, data))
        elif kind == b"E":
            clock = header
    return got, clock


def refresh_host(host: RemoteHost, records: list[RunRecord],
                 on_data: Callable[[str, bytes], None] | None = None) -> dict:
    """Bring the caches of `records` (all on `host`) up to date: status and new log bytes, in
    one round trip (more only while a log has over 8 MB unread). Returns the host's clock."""
    helper = Helper(host)
    caches = {r.name: registry.load_cache(r.name) for r in records}
    parsers = {name: cache.load_parser() for name, cache in caches.items()}
    by_dir = {r.run_dir: r for r in records}
    pending = list(records)
    clock: dict = {}
    for _ in range(64):
        if not pending:
            break
        items = [{"dir": r.run_dir, "offset": caches[r.name].offset, "max": STATUS_CHUNK}
                 for r in pending]
        results, clock = _status_call(helper, items)
        pending = []
        for header, data in results:
            record = by_dir.get(header.get("dir"))
            if record is None:
                continue
            cache = caches[record.name]
            if data:
                parsers[record.name].feed(data)
                if on_data:
                    on_data(record.name, data)
            cache.offset = int(header.get("offset") or 0) + len(data)
            cache.status = {k: v for k, v in header.items() if k not in ("len", "offset", "dir")}
            if cache.offset < int(header.get("log_size") or 0) and data:
                pending.append(record)
    for name, cache in caches.items():
        cache.parser = parsers[name].state_dict()
        registry.save_cache(name, cache)
    return clock


def run_view(record: RunRecord, cache: RunCache, clock: dict | None,
             error: str | None = None) -> dict:
    status = cache.status
    state = status.get("state", "unknown")
    running = state in RUNNING and error is None
    econ = economics(record.vm, record.target, record.price_per_hour, record.price_source, clock)
    progress = cache.load_parser().snapshot()
    fig = figures(progress, price_per_hour=econ.price_per_hour,
                  guards=econ.guards if running else [], run_seconds=status.get("run_seconds"),
                  since_update=float(status.get("log_age") or 0.0), running=running)
    return {"name": record.name, "target": record.target, "host": record.host,
            "state": "unreachable" if error else state, "last_state": state,
            "exit_code": status.get("exit_code"), "started_at": record.started_at,
            "run_seconds": status.get("run_seconds"), "command": record.command,
            "run_dir": record.run_dir, "price_source": econ.price_source,
            **fig, "error": error}


def list_runs(names: list[str] | None = None) -> list[dict]:
    """Every run gpuctl started (or the named ones), brought up to date. Hosts are asked once
    each; finished runs whose logs were read to the end are answered from the cache."""
    records = [registry.require(n) for n in names] if names else registry.all_records()
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        if not registry.load_cache(record.name).final:
            groups.setdefault(record.host_key, []).append(record)
    clocks: dict[tuple, dict] = {}
    errors: dict[str, str] = {}
    for key, members in groups.items():
        gone = _vm_gone(members[0])
        if gone:
            errors.update({member.name: gone for member in members})
            continue
        try:
            with connect_record(members[0]) as host:
                clocks[key] = refresh_host(host, members)
        except Exception as exc:  # noqa: BLE001 - one bad host must not hide the others
            from ..errors import GpuctlError

            if not isinstance(exc, (GpuctlError, OSError)):
                raise
            message = getattr(exc, "message", str(exc))
            for member in members:
                errors[member.name] = message
    return [run_view(r, registry.load_cache(r.name), clocks.get(r.host_key), errors.get(r.name))
            for r in records]


def recovering_run_views(names: list[str] | None = None) -> list[dict]:
    """`gpuctl jobs` rows of `run --recover` runs, in run_view's shape plus `recover`. Such a
    run has no host to ask: it is a managed instance group, read from Compute Engine and Cloud
    Scheduler (recovery/view.py): where it runs now, recreations, cost so far across every
    replacement, and the worst case left; the step, the steps preemptions made it redo and the
    cost to finish from the logs its hosts copied to the bucket. Loss is not read here."""
    from ..lifecycle import records as vm_records

    groups = [r for r in vm_records.all_records() if r.group and (not names or r.name in names)]
    if not groups:
        return []
    from ..context import load_context
    from ..lifecycle.deps import live_deps
    from ..recovery.view import group_view

    deps = live_deps(load_context(), need_engine=False)
    rows = []
    for record in groups:
        seen = group_view(record, deps)
        where = f"group {seen.name}" + (f" ({seen.zone})" if seen.zone else "")
        percent = (round(min(100.0, 100.0 * seen.step / seen.total_steps), 1)
                   if seen.step is not None and seen.total_steps else None)
        rows.append({
            "name": seen.name, "target": where, "host": seen.vm, "state": seen.state, "last_state": seen.state,
            "exit_code": None, "started_at": record.created_at, "run_seconds": None, "command": None,
            "run_dir": seen.checkpoints, "price_source": f"profile {record.profile}", "step": seen.step,
            "total_steps": seen.total_steps, "percent": percent, "loss": None, "loss_finite": True,
            "smoothed_loss": None, "loss_trend": None, "eval_loss": None, "eta_seconds": seen.eta_seconds,
            "finished": False, "cost_so_far_usd": seen.cost_so_far_usd, "cost_to_complete_usd": seen.cost_to_finish_usd,
            "price_per_hour_usd": seen.hourly_usd, "warnings": [], "error": None, "recover": seen.as_dict()})
    return rows


def _vm_gone(record: RunRecord) -> str | None:
    """A run on a VM gpuctl has since deleted: say so instead of timing out on its address."""
    if not record.vm:
        return None
    from ..lifecycle import records as vm_records

    if vm_records.load(record.vm) is None:
        return f"VM {record.vm} no longer exists (deleted with its local disk)"
    return None


def run_progress(name: str):
    """(record, Progress, view) for one run, refreshed when its host answers."""
    record = registry.require(name)
    view = list_runs([name])[0]
    return record, registry.load_cache(name).load_parser().snapshot(), view


# --- logs ---------------------------------------------------------------------------------------

def read_log(name: str, on_data: Callable[[bytes], None], tail_lines: int | None = None) -> dict:
    """The log as it is now (or its last `tail_lines` lines); returns the run's status."""
    record = registry.require(name)
    with connect_record(record) as host:
        helper = Helper(host)
        offset, first, status = 0, True, {}
        for _ in range(100000):
            item = {"dir": record.run_dir, "offset": offset, "max": STATUS_CHUNK}
            if first and tail_lines:
                item["tail_lines"] = tail_lines
            results, _ = _status_call(helper, [item])
            if not results:
                break
            header, data = results[0]
            if header.get("state") == "missing":
                raise RunError(f"run {name} is gone from {record.host} ({record.run_dir})",
                               "the VM may have been recreated; its local disk went with it")
            first, status = False, header
            if data:
                on_data(data)
            offset = int(header.get("offset") or 0) + len(data)
            if not data or offset >= int(header.get("log_size") or 0):
                break
        return {k: v for k, v in status.items() if k not in ("len", "offset", "dir")}


def follow_log(name: str, on_data: Callable[[bytes], None], on_notice: Notice | None = None,
               tail_lines: int | None = None, reconnect_timeout: float = 300,
               idle_timeout: float = 30, poll_s: float = 2.0) -> dict:
    """Stream the log until the run ends, reconnecting (from the last byte received) when the
    connection drops; returns the final status."""
    notice = on_notice or (lambda _text: None)
    record = registry.require(name)
    offset: int | None = None
    host = connect_record(record)
    try:
        while True:
            frames, final = Frames(), {}

            def take(chunk: bytes) -> None:
                nonlocal offset
                for kind, header, data in frames.feed(chunk):
                    if kind == b"O":
                        offset = int(header.get("offset") or 0)
                    elif kind == b"D":
                        on_data(data)
                        offset = (offset or 0) + len(data)
                    elif kind == b"E":
                        final.update(header)

            args = f"follow --run-dir {quote(record.run_dir)} --offset {offset or 0}"
            if offset is None and tail_lines:
                args += f" --tail-lines {int(tail_lines)}"
            try:
                Helper(host).call(args, on_stdout=take, idle_timeout=idle_timeout, timeout=None)
                if final:
                    return {k: v for k, v in final.items() if k != "len"}
                notice("the log stream ended early; reading on")
            except SshError as exc:
                notice(f"{exc.message}; reconnecting")
                host.wait_for_ssh(timeout_s=reconnect_timeout, poll_s=poll_s)
                notice(f"reconnected to {host.target.label}; following from byte {offset or 0}")
    finally:
        host.close()


# --- cancel and fetch ---------------------------------------------------------------------------

def cancel_run(name: str, grace_seconds: float = 30.0) -> dict:
    record = registry.require(name)
    with connect_record(record) as host:
        result = Helper(host).call_json(
            f"cancel --run-dir {quote(record.run_dir)} --grace {float(grace_seconds)}",
            timeout=grace_seconds + 60)
    cache = registry.load_cache(name)
    cache.status = {k: v for k, v in result.items() if k not in ("killed", "already_ended")}
    registry.save_cache(name, cache)
    return {"name": name, **result}


def _local_have(dest: Path, top: str) -> dict[str, list[int]]:
    have = {}
    root = dest / top
    if root.is_file():
        st = root.stat()
        return {top: [st.st_size, int(st.st_mtime)]}
    for path in root.rglob("*") if root.is_dir() else []:
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            have[path.relative_to(dest).as_posix()] = [st.st_size, int(st.st_mtime)]
    return have


def fetch(name: str, path: str, dest: Path) -> dict:
    """Copy PATH (relative to the run's working directory, or absolute) into DEST, skipping
    files already there with the same size and modification time."""
    record = registry.require(name)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    top = Path(path.rstrip("/")).name
    if not top or top in (".", ".."):
        raise UsageError(f"cannot fetch {path!r} as a whole", "name a file or directory")
    base = record.cwd or record.run_dir
    files = total = 0
    with connect_record(record) as host:
        reader = Helper(host).reader(
            "pack", {"base": base, "path": path, "have": _local_have(dest, top)})
        try:
            with tarfile.open(fileobj=reader.file, mode="r|") as tar:
                for member in tar:
                    target = _safe_target(dest, member)
                    if target is None:
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fd, tmp = tempfile.mkstemp(prefix=".gpuctl-fetch-", dir=target.parent)
                    with os.fdopen(fd, "wb") as out:
                        source = tar.extractfile(member)
                        while block := source.read(1024 * 1024):
                            out.write(block)
                    os.chmod(tmp, member.mode & 0o755 | 0o600)
                    os.utime(tmp, (member.mtime, member.mtime))
                    os.replace(tmp, target)
                    files, total = files + 1, total + member.size
        except tarfile.ReadError:
            pass  # an empty stream: the helper refused before writing (reported below)
        exit_code, stderr = reader.finish()
        errors = stderr.decode(errors="replace")
    if exit_code != 0:
        from .remote import Exec, helper_error

        raise RunError(helper_error(Exec(exit_code, b"", errors.encode())),
                       f"paths are relative to {base} on the host")
    skipped = 0
    for line in errors.splitlines():
        if line.startswith("{") and '"skipped"' in line:
            skipped = int(json.loads(line).get("skipped", 0))
    return {"name": name, "path": path, "dest": str(dest / top), "files": files,
            "bytes": total, "unchanged": skipped}


def _safe_target(dest: Path, member: tarfile.TarInfo) -> Path | None:
    if not member.isfile():
        return None
    parts = member.name.split("/")
    if member.name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return None
    return dest.joinpath(*parts)
