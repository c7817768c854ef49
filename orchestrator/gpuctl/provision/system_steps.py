"""Host settings owned as whole files: caches on NVMe, time zone, shutdown cron, idle watchdog.

Each step is done when the files hold exactly the intended bytes with the intended mode and
owner, and what reads them works: cron is installed (and enabled where systemd runs), the
watchdog's interpreter exists, the cache directories are writable by the login user.
"""

from __future__ import annotations

import json
import shlex
from importlib import resources

from . import facts
from .base import Host, StepPlan, ask, settled
from .checks import DONE, SKIP, TODO, Check, Verdict, decided, file_line, keyed, stale_files
from .files import write_file_command
from .packages import apt_install
from .settings import ProvisionSettings

CACHES_FILE = "/etc/profile.d/gpuctl-caches.sh"
SHUTDOWN_CRON = "/etc/cron.d/gpuctl-shutdown"
WATCHDOG_BIN = "/usr/local/sbin/gpuctl-idle-watchdog"
WATCHDOG_CONFIG = "/etc/gpuctl/idle-watchdog.json"
WATCHDOG_CRON = "/etc/cron.d/gpuctl-idle-watchdog"
WATCHDOG_LOG = "/var/log/gpuctl/idle-watchdog.log"
CRON_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CACHE_DIRS = (("HF_HOME", "huggingface"), ("PIP_CACHE_DIR", "pip"), ("UV_CACHE_DIR", "uv"),
              ("TORCH_HOME", "torch"))

# cron reads /etc/cron.d only when the daemon runs: installed, and enabled where systemd is
# init (a chroot or container has none, and there the daemon is whoever starts it).
CRON_PROBE = ('[ -x /usr/sbin/cron ] && echo cron installed\n'
              '[ -d /run/systemd/system ] && echo "systemd $(systemctl is-enabled cron 2>&1)"')


def files_probe(paths) -> str:
    return "\n".join(f"gpuctl_file {shlex.quote(p)}" for p in paths)


def cron_problem(answers: dict[str, list[str]]) -> str | None:
    if "cron" not in answers:
        return "cron is not installed"
    if "systemd" in answers and answers["systemd"][0] != "enabled":
        return f"cron is not enabled ({answers['systemd'][0] or 'unknown'})"
    return None


def make_cron_ready(host: Host) -> None:
    if host.run("test -x /usr/sbin/cron", check=False).exit_code != 0:
        apt_install(host, ["cron"], "cron runs the guards")
    host.run("if [ -d /run/systemd/system ]; then systemctl enable --now cron; fi", sudo=True)


def files_verdict(text: str, wanted: dict[str, tuple[str, str]], done_reason: str,
                  needs_cron: bool = False) -> Verdict:
    """DONE when every file has its bytes, mode and owner (and cron runs, if it reads them)."""
    answers = keyed(text)
    stale = stale_files(answers, {p: file_line(p, c, m) for p, (c, m) in wanted.items()})
    cron = cron_problem(answers) if needs_cron else None
    if stale:
        return Verdict(TODO, f"{', '.join(stale)} differ from the intended content or mode",
                       {"stale": stale, "cron": cron})
    if cron:
        return Verdict(TODO, cron, {"stale": [], "cron": cron})
    return Verdict(DONE, done_reason, {"stale": [], "cron": None})


def files_plan(verdict: Verdict, wanted: dict[str, tuple[str, str]]) -> StepPlan:
    stale, cron = verdict.data["stale"], verdict.data.get("cron")
    actions = [f"write {path}" for path in stale] + (["install/enable cron"] if cron else [])

    def apply(h: Host) -> None:
        if cron:
            make_cron_ready(h)
        for path in stale:
            content, mode = wanted[path]
            h.run(write_file_command(path, content, mode), sudo=True)

    return StepPlan(actions=actions, apply=apply)


class CachesStep:
    """Model, pip/uv and torch caches on the NVMe: 126 GB checkpoints do not fit a boot disk."""

    id = "caches"

    def _wanted(self, s: ProvisionSettings) -> dict[str, tuple[str, str]]:
        base = f"{s.mount_point}/cache"
        content = "".join(f"export {k}={base}/{v}\n" for k, v in CACHE_DIRS)
        return {CACHES_FILE: (content, "0644")}

    def check(self, s: ProvisionSettings) -> Check:
        mp = shlex.quote(s.mount_point)
        dirs = " ".join(shlex.quote(f"{s.mount_point}/cache/{d}") for _, d in CACHE_DIRS)
        command = (f"mountpoint -q {mp} && echo mounted yes\n"
                   f"for d in {dirs}; do [ -d \"$d\" ] && [ -w \"$d\" ] || echo \"unwritable $d\"; "
                   f"done\n{files_probe([CACHES_FILE])}")
        wanted = self._wanted(s)

        def judge(text: str) -> Verdict:
            answers = keyed(text)
            if "mounted" not in answers:
                return Verdict(SKIP, f"{s.mount_point} is not mounted")
            verdict = files_verdict(text, wanted, "caches point at NVMe and are writable")
            if answers.get("unwritable"):
                return Verdict(TODO, f"{answers['unwritable'][0]} is missing or not writable",
                               {"stale": verdict.data.get("stale", []), "dirs": True})
            return verdict
        return Check(command, judge)

    def plan(self, host: Host, s: ProvisionSettings, verdict: Verdict | None = None) -> StepPlan:
        verdict = ask(host, self.check(s), verdict)
        done = settled(verdict)
        if done:
            return done
        plan = files_plan(verdict, self._wanted(s))
        if not verdict.data.get("dirs"):
            return plan
        base = f"{s.mount_point}/cache"
        make_dirs = (f"mkdir -p " + " ".join(f"{base}/{d}" for _, d in CACHE_DIRS) +
                     f" && chown -R {shlex.quote(s.login_user)}: {base}")
        inner = plan.apply

        def apply(h: Host) -> None:
            h.run(make_dirs, sudo=True)
            inner(h)

        return StepPlan(actions=[make_dirs, *plan.actions], apply=apply)


class TimezoneStep:
    id = "timezone"

    def check(self, s: ProvisionSettings) -> Check:
        if not s.time_zone:
            return decided(SKIP, "no time zone configured")
        command = ('z=$(readlink -f /etc/localtime 2>/dev/null); echo "localtime $z"\n'
                   '[ -f "$z" ] && echo zonefile ok\n'
                   'echo "timezone $(cat /etc/timezone 2>/dev/null)"')

        def judge(text: str) -> Verdict:
            answers = keyed(text)
            current = facts.parse_timezone((answers.get("localtime") or [""])[0])
            written = (answers.get("timezone") or [""])[0]
            if current == s.time_zone and "zonefile" in answers and written == s.time_zone:
                return Verdict(DONE, f"already {s.time_zone}")
            return Verdict(TODO, f"time zone is {current or 'unset'} ({written or 'no /etc/timezone'})",
                           {"current": current})
        return Check(command, judge)

    def plan(self, host: Host, s: ProvisionSettings, verdict: Verdict | None = None) -> StepPlan:
        verdict = ask(host, self.check(s), verdict)
        done = settled(verdict)
        if done:
            return done
        tz = shlex.quote(s.time_zone)
        # Works with or without systemd (timedatectl is absent in containers and chroots).
        cmd = (f"test -e /usr/share/zoneinfo/{tz} && ln -sf /usr/share/zoneinfo/{tz} /etc/localtime "
               f"&& echo {tz} > /etc/timezone")
        return StepPlan(actions=[f"set time zone {verdict.data.get('current')} -> {s.time_zone}"],
                        apply=lambda h: h.run(cmd, sudo=True))


class ShutdownCronStep:
    id = "shutdown-cron"

    def _wanted(self, s: ProvisionSettings) -> dict[str, tuple[str, str]]:
        stop = s.daily_stop
        content = (f"# gpuctl: power off daily at {stop.clock} {stop.time_zone} (host clock)\n"
                   f"SHELL=/bin/sh\n{CRON_PATH}\n{stop.cron} root /sbin/shutdown -h now\n")
        return {SHUTDOWN_CRON: (content, "0644")}

    def check(self, s: ProvisionSettings) -> Check:
        if s.daily_stop is None:
            return decided(SKIP, "no daily stop configured")
        wanted = self._wanted(s)
        return Check(f"{files_probe(wanted)}\n{CRON_PROBE}",
                     lambda text: files_verdict(text, wanted, f"shutdown at {s.daily_stop.clock} "
                                                "scheduled", needs_cron=True))

    def plan(self, host: Host, s: ProvisionSettings, verdict: Verdict | None = None) -> StepPlan:
        verdict = ask(host, self.check(s), verdict)
        return settled(verdict) or files_plan(verdict, self._wanted(s))


def watchdog_script() -> str:
    return resources.files("gpuctl.provision.host_scripts").joinpath("idle_watchdog.py").read_text()


class IdleWatchdogStep:
    id = "idle-watchdog"

    def _wanted(self, s: ProvisionSettings) -> dict[str, tuple[str, str]]:
        config = json.dumps({"idle_minutes": s.idle_minutes,
                             "gpu_util_threshold": s.gpu_util_threshold,
                             "log_file": WATCHDOG_LOG}, indent=2) + "\n"
        cron = (f"# gpuctl: idle watchdog, every minute\nSHELL=/bin/sh\n{CRON_PATH}\n"
                f"* * * * * root {WATCHDOG_BIN} --config {WATCHDOG_CONFIG}\n")
        return {WATCHDOG_BIN: (watchdog_script(), "0755"), WATCHDOG_CONFIG: (config, "0644"),
                WATCHDOG_CRON: (cron, "0644")}

    def check(self, s: ProvisionSettings) -> Check:
        if not s.idle_minutes:
            return decided(SKIP, "idle watchdog disabled (idle_minutes = 0)")
        wanted = self._wanted(s)
        # The watchdog is a python3 script (#!/usr/bin/env python3): without one it never runs.
        command = f"{files_probe(wanted)}\n{CRON_PROBE}\n[ -x /usr/bin/python3 ] && echo python3 ok"

        def judge(text: str) -> Verdict:
            verdict = files_verdict(text, wanted, f"watchdog scheduled ({s.idle_minutes} idle "
                                    "minutes)", needs_cron=True)
            if "python3" not in keyed(text):
                return Verdict(TODO, "python3 is missing (the watchdog runs on it)",
                               {**verdict.data, "python3": True})
            return verdict
        return Check(command, judge)

    def plan(self, host: Host, s: ProvisionSettings, verdict: Verdict | None = None) -> StepPlan:
        verdict = ask(host, self.check(s), verdict)
        done = settled(verdict)
        if done:
            return done
        plan = files_plan(verdict, self._wanted(s))
        if not verdict.data.get("python3"):
            return plan
        inner = plan.apply

        def apply(h: Host) -> None:
            apt_install(h, ["python3"], "the idle watchdog runs on python3")
            inner(h)

        return StepPlan(actions=["install python3", *plan.actions], apply=apply)
