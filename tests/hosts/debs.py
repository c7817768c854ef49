"""A local package source for throwaway hosts: Debian's own .debs, served inside the host's
network namespace on loopback as a flat apt repository.

The throwaway rootfs is shaped like a stock cloud image (no python3-venv); a test that needs
a step to install packages gives the host this source, as a VM would have its mirror. The
.debs are what the host's apt would fetch: apt on this machine resolves them against the
rootfs's dpkg status (so only what the host lacks, at the versions of its own suite) and
`apt-get download`s them once into ~/.cache/gpuctl-dev/debs-bookworm-<hash of their file
names>/. Nothing is baked into the rootfs.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

from .mounts import remove_tree
from .rootfs import SUITE, cache_root

VENV_PACKAGES = ["python3.11-venv"]  # what PythonStep installs on Debian 12 for --python 3.11


def _apt(args: list[str], rootfs: Path) -> subprocess.CompletedProcess:
    # The rootfs's dpkg status as the "installed" set; its suite preferred over security
    # updates, so versions match the rootfs's python3.11 exactly.
    argv = ["apt-get", "-qq", "-o", "Debug::NoLocking=1",
            "-o", f"Dir::State::status={rootfs / 'var/lib/dpkg/status'}",
            "-o", f"APT::Default-Release={SUITE}", *args]
    return subprocess.run(argv, capture_output=True, text=True)


def resolve(rootfs: Path, packages: list[str]) -> list[tuple[str, str]]:
    """(package, version) of every .deb the host would fetch to install `packages`."""
    done = _apt(["--print-uris", "install", *packages], rootfs)
    if done.returncode != 0:
        raise RuntimeError(f"apt cannot resolve {packages} for the test host: {done.stderr.strip()}")
    out = []
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].endswith(".deb"):
            name, version, _arch = urllib.parse.unquote(parts[1][:-4]).split("_")
            out.append((name, version))
    if not out:
        raise RuntimeError(f"apt says the test host already has {packages}: is the rootfs stock?")
    return sorted(out)


def ensure_debs(rootfs: Path, packages: list[str] = VENV_PACKAGES, log=print) -> Path:
    """A directory holding the .debs and a flat-repository index (Packages, Release)."""
    wanted = resolve(rootfs, packages)
    key = hashlib.sha256(repr(wanted).encode()).hexdigest()[:12]
    target = cache_root() / f"debs-{SUITE}-{key}"
    if (target / "Release").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "Release").is_file():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            specs = [f"{name}={version}" for name, version in wanted]
            got = subprocess.run(["apt-get", "-qq", "download", *specs], cwd=tmp,
                                 capture_output=True, text=True)
            if got.returncode != 0:  # a stale index on this machine: refresh once
                subprocess.run(["apt-get", "-qq", "update"], capture_output=True)
                got = subprocess.run(["apt-get", "-qq", "download", *specs], cwd=tmp,
                                     capture_output=True, text=True)
            if got.returncode != 0:
                raise RuntimeError(f"apt-get download {' '.join(specs)}: {got.stderr.strip()}")
            write_index(tmp)
            if target.exists():
                remove_tree(target)
            os.rename(tmp, target)
        finally:
            if tmp.exists():
                remove_tree(tmp)
        log(f"fetched {len(wanted)} .debs into {target}")
    return target


def write_index(directory: Path) -> None:
    """Packages and Release for `deb [trusted=yes] URL ./` (what dpkg-scanpackages and
    apt-ftparchive would write, without needing them)."""
    stanzas = []
    for deb in sorted(directory.glob("*.deb")):
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True,
                                 check=True).stdout.rstrip("\n")
        data = deb.read_bytes()
        stanzas.append(f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                       f"MD5sum: {hashlib.md5(data).hexdigest()}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    packages = "\n".join(stanzas).encode()
    (directory / "Packages").write_bytes(packages)
    (directory / "Release").write_text(
        "Origin: gpuctl-test\nLabel: gpuctl-test\nSuite: local\nCodename: local\n"
        "Date: Thu, 01 Jan 1970 00:00:00 UTC\nSHA256:\n"
        f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n")


class PackageSource:
    """An HTTP server for `directory`, on 127.0.0.1 inside the host's network namespace (the
    host reaches it as it would reach a mirror; nothing leaves the namespace). Stopped on
    exit; the host's own stop would kill it too, as it kills everything in the netns."""

    def __init__(self, host, directory: Path):
        self.host, self.directory = host, directory
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> "PackageSource":
        server = ("import http.server, functools, sys\n"
                  "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n"
                  "h.log_message = lambda *a: None\n"
                  "s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n"
                  "print(s.server_address[1], flush=True)\n"
                  "s.serve_forever()\n")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.host.name, sys.executable,
                                      "-c", server, str(self.directory)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        port = self.proc.stdout.readline().strip()
        if not port.isdigit():
            self.__exit__()
            raise RuntimeError(f"the package source for {self.host.name} did not start")
        self.url = f"http://127.0.0.1:{port}/"
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc.stdout.close()
            self.proc = None

    def make_only_apt_source(self) -> None:
        """Point the host's apt at this source alone, as a VM's sources name its mirror."""
        self.host.run_local(f"echo 'deb [trusted=yes] {self.url} ./' > /etc/apt/sources.list "
                            "&& rm -f /etc/apt/sources.list.d/*")
