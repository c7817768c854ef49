"""The VM backend: a job spec runs detached on a gpuctl VM or any `user@host`, over SSH
(runs/service.py does the work; this maps it onto the Backend interface)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..jobspec import notes_for_target
from .base import Cancelled, Fetched, JobView, LogEnd, Notice, Preview, SubmitRequest, Submitted, Write


class VmBackend:
    name = "vm"

    def preview(self, request: SubmitRequest) -> Preview:
        notes = notes_for_target(request.spec, "vm")
        return Preview("vm", request.spec.name, request.target or "?", notes)

    def submit(self, request: SubmitRequest, on_notice: Notice | None = None) -> Submitted:
        from ..runs.service import RunRequest, start_run

        if not request.target:
            raise UsageError("no VM or host to run on",
                             "gpuctl run VM job.yaml, or gpuctl run --gke job.yaml")
        report = start_run(RunRequest(
            target=request.target, spec=request.spec, workdir=request.workdir, cwd=request.cwd,
            ssh_key=request.ssh_key, known_hosts=request.known_hosts,
            price_per_hour=request.price_per_hour, price_source=request.price_source,
            grace_seconds=request.grace_seconds, dry_run=request.dry_run), on_notice=on_notice)
        name = report["name"]
        steps = [] if request.dry_run else [f"gpuctl logs -f {name}", "gpuctl jobs",
                                            f"gpuctl cancel {name}"]
        return Submitted("vm", name, report["host"], request.dry_run, report["notes"],
                         report["warnings"], steps, report)

    def list(self, names: list[str] | None = None) -> list[JobView]:
        from ..runs.service import list_runs

        return [_view(v) for v in list_runs(names)]

    def status(self, name: str) -> JobView:
        return self.list([name])[0]

    def logs(self, name: str, write: Write, *, follow: bool = False,
             tail_lines: int | None = None, on_notice: Notice | None = None) -> LogEnd:
        from ..runs.service import follow_log, read_log

        if follow:
            final = follow_log(name, write, on_notice, tail_lines=tail_lines)
        else:
            final = read_log(name, write, tail_lines)
        state = final.get("state")
        return LogEnd(name, None if state in ("running", "starting") else state,
                      final.get("exit_code"))

    def cancel(self, name: str, grace_seconds: float = 30.0) -> Cancelled:
        from ..runs.service import cancel_run

        result = cancel_run(name, grace_seconds)
        return Cancelled("vm", name, result["state"], bool(result.get("already_ended")), result)

    def fetch(self, name: str, path: str, dest: Path) -> Fetched:
        from ..runs.service import fetch

        r = fetch(name, path, dest)
        return Fetched(name, path, r["dest"], r["files"], r["bytes"], r["unchanged"])


def _view(v: dict) -> JobView:
    return JobView("vm", v["name"], v["target"], v["state"], v)
