"""Provisioning beside pyinfra, on throwaway hosts shaped like a stock cloud image.

Both tools make the same state (NVMe formatted and mounted by UUID, caches file and
directories, time zone, shutdown cron, idle watchdog, Python 3.11 venv with pip; the files
byte for byte gpuctl's) on a Debian 12 host without python3-venv whose apt mirror is the
local package source (tests/hosts/debs.py). Each round:
  * first run on a fresh host, gpuctl and pyinfra on a host each;
  * no-op reruns on the same ready host, alternating gpuctl and pyinfra (--reruns each).
Both run as CLIs in a fresh subprocess (interpreter start and imports count for both). SSH
commands are counted on the host: the login shell is a wrapper that logs every command
sshd hands it (SFTP uploads, which pyinfra uses for files, are not commands and not counted).

pyinfra is installed from PyPI into its own venv, ~/.cache/gpuctl-dev/bench-pyinfra-<version>/,
never into gpuctl's. Needs root (network namespaces, loop devices).
Run: .venv/bin/python bench/provision.py [--rounds 3] [--reruns 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gpuctl.provision.settings import ProvisionSettings  # noqa: E402
from gpuctl.provision.system_steps import (CACHE_DIRS, CachesStep, IdleWatchdogStep,  # noqa: E402
                                           ShutdownCronStep)
from gpuctl_infra.spec import DailyStop  # noqa: E402
from tests.hosts.debs import PackageSource, ensure_debs  # noqa: E402
from tests.hosts.host import ThrowawayHost  # noqa: E402
from tests.hosts.rootfs import cache_root, ensure_rootfs  # noqa: E402

PYINFRA_VERSION = "3.10.0"
PYINFRA_VENV = cache_root() / f"bench-pyinfra-{PYINFRA_VERSION}"
GPUCTL = REPO / ".venv" / "bin" / "gpuctl"
COUNT_LOG = "/tmp/gpuctl-bench-commands"
COUNTING_SHELL = f"""#!/bin/sh
# Login shell for the benchmark: one line per command sshd runs, then the real shell.
echo x >> {COUNT_LOG}
exec /bin/bash "$@"
"""

DEPLOY = '''
import json
from pyinfra.operations import apt, files, pip, server

c = json.load(open(__file__.replace("deploy.py", "state.json")))
mp, disk, user, venv = c["mount"], c["disk"], c["user"], c["venv"]
server.shell(name="format the NVMe (once)", _sudo=True, commands=[
    f"blkid -s LABEL -o value {disk} | grep -qx gpuctl-nvme || mkfs.ext4 -q -F -L gpuctl-nvme {disk}"])
files.directory(name="mount point", path=mp, _sudo=True)
server.mount(name="mount the NVMe", path=mp, device=disk, options=["discard", "defaults"], _sudo=True)
server.shell(name="fstab by UUID", _sudo=True, commands=[
    f"grep -q ' {mp} ' /etc/fstab || echo \\"UUID=$(blkid -s UUID -o value {disk}) {mp} ext4 "
    f"discard,defaults,nofail 0 2\\" >> /etc/fstab"])
files.directory(name="mount point owner", path=mp, user=user, group=user, mode="775", _sudo=True)
for d in c["cache_dirs"]:
    files.directory(name=f"cache {d}", path=f"{mp}/cache/{d}", user=user, group=user, _sudo=True)
for path, (src, mode) in c["files"].items():
    files.put(name=f"put {path}", src=src, dest=path, user="root", group="root", mode=mode,
              _sudo=True)
files.link(name="time zone", path="/etc/localtime", target=f"/usr/share/zoneinfo/{c['tz']}",
           _sudo=True)
apt.packages(name="venv package", packages=["python3.11-venv"], update=True, cache_time=3600,
             _sudo=True)
pip.venv(name="virtualenv", path=venv, python="python3.11")
'''


def ensure_pyinfra() -> Path:
    exe = PYINFRA_VENV / "bin" / "pyinfra"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PYINFRA_VENV)], check=True)
        subprocess.run([str(PYINFRA_VENV / "bin" / "pip"), "install", "-q",
                        f"pyinfra=={PYINFRA_VERSION}"], check=True)
    return exe


def settings_for(host) -> ProvisionSettings:
    return ProvisionSettings(login_user=host.user, time_zone="Asia/Tokyo",
                             daily_stop=DailyStop(6, 0, "Asia/Tokyo"), python="3.11")


def pyinfra_project(host, workdir: Path) -> Path:
    """An inventory and deploy making gpuctl's state with pyinfra's own operations."""
    s = settings_for(host)
    wanted = {**CachesStep()._wanted(s), **ShutdownCronStep()._wanted(s),
              **IdleWatchdogStep()._wanted(s), "/etc/timezone": ("Asia/Tokyo\n", "0644")}
    put = {}
    for i, (path, (content, mode)) in enumerate(wanted.items()):
        src = workdir / f"file{i}"
        src.write_text(content)
        put[path] = (str(src), mode[1:])
    state = {"mount": s.mount_point, "disk": host.disks[0], "user": host.user, "venv": s.venv,
             "tz": s.time_zone, "cache_dirs": [d for _, d in CACHE_DIRS], "files": put}
    (workdir / "state.json").write_text(json.dumps(state))
    (workdir / "deploy.py").write_text(DEPLOY)
    (workdir / "inventory.py").write_text(
        f"hosts = [({host.address!r}, {{'ssh_user': {host.user!r}, 'ssh_port': {host.port}, "
        f"'ssh_key': {str(host.key_path)!r}, 'ssh_known_hosts_file': "
        f"{str(host.known_hosts_path)!r}, 'ssh_strict_host_key_checking': 'yes'}})]\n")
    return workdir


def count_commands(host) -> None:
    (host.root / "usr/local/bin/gpuctl-bench-sh").write_text(COUNTING_SHELL)
    host.run_local(f"chmod 0755 /usr/local/bin/gpuctl-bench-sh && "
                   f"usermod -s /usr/local/bin/gpuctl-bench-sh {host.user}")


def commands_since(host, before: int) -> int:
    out = host.run_local(f"cat {COUNT_LOG} 2>/dev/null | wc -l").stdout
    return int(out.strip() or 0) - before


def timed(host, argv: list[str], env: dict) -> tuple[float, int]:
    before = commands_since(host, 0)
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return seconds, commands_since(host, before)


def gpuctl_argv(host) -> list[str]:
    return [str(GPUCTL), "provision", f"{host.user}@{host.address}:{host.port}",
            "--ssh-key", str(host.key_path), "--known-hosts", str(host.known_hosts_path),
            "--tz", "Asia/Tokyo", "--stop-at", "06:00", "--idle-minutes", "30",
            "--python", "3.11", "--json"]


def pyinfra_argv(exe: Path, project: Path) -> list[str]:
    return [str(exe), "-y", str(project / "inventory.py"), str(project / "deploy.py")]


def one_round(rootfs, debs, pyinfra: Path, reruns: int, env: dict) -> dict:
    out: dict[str, list] = {"gpuctl_first": [], "pyinfra_first": [], "gpuctl_rerun": [],
                            "pyinfra_rerun": []}
    with ThrowawayHost(disks=1, rootfs=rootfs) as host, PackageSource(host, debs) as source, \
            tempfile.TemporaryDirectory() as tmp:
        source.make_only_apt_source()
        count_commands(host)
        project = pyinfra_project(host, Path(tmp))
        out["gpuctl_first"].append(timed(host, gpuctl_argv(host), env))
        timed(host, pyinfra_argv(pyinfra, project), env)  # pyinfra's view of the same state
        for _ in range(reruns):
            out["gpuctl_rerun"].append(timed(host, gpuctl_argv(host), env))
            out["pyinfra_rerun"].append(timed(host, pyinfra_argv(pyinfra, project), env))
    with ThrowawayHost(disks=1, rootfs=rootfs) as host, PackageSource(host, debs) as source, \
            tempfile.TemporaryDirectory() as tmp:
        source.make_only_apt_source()
        count_commands(host)
        project = pyinfra_project(host, Path(tmp))
        out["pyinfra_first"].append(timed(host, pyinfra_argv(pyinfra, project), env))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reruns", type=int, default=3)
    parser.add_argument("--out", type=Path,
                        default=REPO / "bench" / "results" / f"provision-{dt.date.today()}.md")
    args = parser.parse_args()
    rootfs = ensure_rootfs()
    debs = ensure_debs(rootfs)
    pyinfra = ensure_pyinfra()
    home = tempfile.mkdtemp(prefix="gpuctl-bench-")
    env = {**os.environ, "GPUCTL_HOME": home, "GPUCTL_CONFIG": f"{home}/config.toml"}
    samples: dict[str, list] = {}
    for _ in range(args.rounds):
        for key, values in one_round(rootfs, debs, pyinfra, args.reruns, env).items():
            samples.setdefault(key, []).extend(values)
    med = {k: (statistics.median(s for s, _ in v), statistics.median(c for _, c in v))
           for k, v in samples.items()}
    lines = [
        f"# Provisioning: gpuctl beside pyinfra {PYINFRA_VERSION} ({dt.date.today()})", "",
        "Throwaway Debian 12 hosts shaped like a stock cloud image (python3 without "
        "python3-venv), apt mirror = local package source; both tools make the same state. "
        f"Medians of {args.rounds} rounds (first runs: one fresh host per tool per round; "
        f"no-op reruns: {args.reruns} per tool per round, alternating on the same ready host). "
        f"nproc {os.cpu_count()}. GPU steps skipped by gpuctl (no GPU); pyinfra's deploy has none.",
        "", "| run | gpuctl s | pyinfra s | ratio | gpuctl SSH commands | pyinfra SSH commands |",
        "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for kind, label in (("first", "first run (fresh host)"), ("rerun", "no-op rerun (ready host)")):
        g, p = med[f"gpuctl_{kind}"], med[f"pyinfra_{kind}"]
        lines.append(f"| {label} | {g[0]:.2f} | {p[0]:.2f} | {g[0] / p[0]:.2f} | {g[1]:.0f} | "
                     f"{p[1]:.0f} |")
    lines += ["", "Ratio = gpuctl / pyinfra wall time, both as CLIs in a fresh subprocess. SSH "
              "commands counted on the host by the login shell (pyinfra's SFTP uploads are not "
              "commands). gpuctl's no-op rerun asks every step's functional check in one command."]
    report = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
