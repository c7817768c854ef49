"""The run helper on a host (host_scripts/run_host.py), called through the SSH adapter.

Runs need binary stdin (a tar of the code, a JSON spec holding secrets) and stdout read as it
arrives (a log being followed): RemoteHost.exec_stream and open_reader give both, on the
host's one verified connection. Each helper call is one round trip.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from importlib import resources

from ..adapters.ssh import RemoteHost, StreamResult
from ..errors import GpuctlError

HELPER_NAME = "run_host.py"
EXIT_NO_HELPER = 97
EXIT_NO_PYTHON = 98

Exec = StreamResult  # the helper's answers are the adapter's stream results


class RunError(GpuctlError):
    """A run could not be started, found, followed or stopped."""


def helper_source() -> bytes:
    return resources.files("gpuctl.runs.host_scripts").joinpath(HELPER_NAME).read_bytes()


def helper_path() -> str:
    """Named by its content's hash, so a host never runs a stale helper and no version check
    costs a round trip."""
    digest = hashlib.sha256(helper_source()).hexdigest()[:12]
    return f"$HOME/.cache/gpuctl/run_host-{digest}.py"


class Helper:
    """The run helper on one host: installed on first use, then one round trip per call."""

    def __init__(self, host: RemoteHost):
        self.host = host
        self.path = helper_path()

    def command(self, args: str) -> str:
        return (f'f="{self.path}"; [ -f "$f" ] || exit {EXIT_NO_HELPER}; '
                f"command -v python3 >/dev/null 2>&1 || exit {EXIT_NO_PYTHON}; "
                f'exec python3 "$f" {args}')

    def install(self) -> None:
        directory = "$HOME/.cache/gpuctl"
        script = (f'mkdir -p "{directory}" && cat > "{self.path}.tmp" && mv -f "{self.path}.tmp" '
                  f'"{self.path}" && for o in "{directory}"/run_host-*.py; do '
                  f'[ "$o" = "{self.path}" ] || rm -f "$o"; done')
        done = self.host.exec_stream(script, stdin=helper_source(),
                                     what="installing the run helper")
        if done.exit_code != 0:
            raise RunError(f"cannot install gpuctl's run helper on {self.host.target.label}: "
                           f"{done.stderr.decode(errors='replace').strip()[-200:]}",
                           "check that the home directory is writable")

    def call(self, args: str, *, check: bool = True, **kwargs) -> Exec:
        what = f"`{args.split()[0]}`"
        done = self.host.exec_stream(self.command(args), what=what, **kwargs)
        if done.exit_code == EXIT_NO_HELPER:
            self.install()
            done = self.host.exec_stream(self.command(args), what=what, **kwargs)
        if done.exit_code == EXIT_NO_PYTHON:
            raise RunError(f"{self.host.target.label} has no python3",
                           "`gpuctl provision` installs Python (or install python3 yourself)")
        if check and done.exit_code != 0:
            raise RunError(helper_error(done), "rerun with GPUCTL_DEBUG=1 for details")
        return done

    def call_json(self, args: str, payload: dict | None = None, **kwargs):
        stdin = json.dumps(payload).encode() if payload is not None else None
        return self.call(args, stdin=stdin, **kwargs).json()

    def reader(self, args: str, payload: dict):
        """A RemoteReader on the helper's stdout (a tar stream)."""
        return self.host.open_reader(self.command(args), json.dumps(payload).encode())


def helper_error(done: Exec) -> str:
    text = done.stderr.decode(errors="replace").strip()
    for line in reversed(text.splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
    tail = text.splitlines()[-1] if text else f"exit status {done.exit_code}"
    return f"the run helper failed: {tail}"


def quote(value: str) -> str:
    return shlex.quote(value)


class Frames:
    """Decodes the helper's framed output: `KIND [json]\\n` then, for data frames, `len` bytes."""

    def __init__(self):
        self._buf = bytearray()
        self._want: tuple[bytes, dict, int] | None = None

    def feed(self, data: bytes):
        self._buf += data
        frames = []
        while True:
            if self._want is not None:
                kind, header, size = self._want
                if len(self._buf) < size:
                    break
                payload = bytes(self._buf[:size])
                del self._buf[:size]
                self._want = None
                frames.append((kind, header, payload))
                continue
            newline = self._buf.find(b"\n")
            if newline < 0:
                break
            line = bytes(self._buf[:newline])
            del self._buf[:newline + 1]
            kind, _, rest = line.partition(b" ")
            header = json.loads(rest.decode()) if rest else {}
            size = int(header.get("len") or 0) if isinstance(header, dict) else 0
            if size:
                self._want = (kind, header, size)
            else:
                frames.append((kind, header, b""))
        return frames
