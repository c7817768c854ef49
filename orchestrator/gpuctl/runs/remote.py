"""Byte streams over the SSH connection a RemoteHost already holds, and the run helper on the
host (host_scripts/run_host.py) called through them.

RemoteHost.run (Fabric) is text in, text out, with no stdin. Runs need binary stdin (a tar of
the code, a JSON spec holding secrets) and stdout read as it arrives (a log being followed),
so this opens its own channel on the same verified transport. Every call is one round trip,
counted on the RemoteHost like its own runs.
"""

from __future__ import annotations

import hashlib
import json
import select
import shlex
import time
from dataclasses import dataclass
from importlib import resources
from typing import Callable

from ..adapters.ssh import RemoteHost, SshError
from ..errors import GpuctlError

HELPER_NAME = "run_host.py"
EXIT_NO_HELPER = 97
EXIT_NO_PYTHON = 98
OPEN_TIMEOUT_S = 15


class RunError(GpuctlError):
    """A run could not be started, found, followed or stopped."""


@dataclass(frozen=True)
class Exec:
    exit_code: int
    stdout: bytes
    stderr: bytes

    def json(self):
        return json.loads(self.stdout.decode() or "null")


def helper_source() -> bytes:
    return resources.files("gpuctl.runs.host_scripts").joinpath(HELPER_NAME).read_bytes()


def helper_path() -> str:
    """Named by its content's hash, so a host never runs a stale helper and no version check
    costs a round trip."""
    digest = hashlib.sha256(helper_source()).hexdigest()[:12]
    return f"$HOME/.cache/gpuctl/run_host-{digest}.py"


def _transport(host: RemoteHost):
    host.connect_if_needed()
    # RemoteHost keeps its Fabric connection private; this module is its byte-stream twin.
    transport = host._conn.client.get_transport()  # noqa: SLF001
    if transport is None or not transport.is_active():
        host.close()
        host.connect()
        transport = host._conn.client.get_transport()  # noqa: SLF001
    transport.set_keepalive(15)
    return transport


def _dropped(host: RemoteHost, what: str) -> SshError:
    return SshError(f"the connection to {host.target.label} dropped during {what}",
                    "rerun the same command: runs on the host keep going")


def _open_session(host: RemoteHost, transport):
    """Open a channel; when the connection turns out dead before anything ran on it (an
    idle connection the network dropped), reconnect once: nothing can have run twice."""
    try:
        return transport.open_session(timeout=OPEN_TIMEOUT_S)
    except (EOFError, OSError, Exception) as exc:  # paramiko's SSHException included
        if transport.is_active() and not isinstance(exc, (EOFError, OSError)):
            raise
        host.close()
        return _transport(host).open_session(timeout=OPEN_TIMEOUT_S)


def execute(host: RemoteHost, command: str, *, stdin: bytes | None = None,
            writer: Callable | None = None, on_stdout: Callable[[bytes], None] | None = None,
            idle_timeout: float | None = None, timeout: float | None = 600,
            what: str | None = None) -> Exec:
    """Run `command` through the login shell; feed it `stdin` (or let `writer(file)` stream
    into it); collect or hand on its stdout. Raises SshError when the connection drops."""
    what = what or f"`{command[:60]}`"
    host.round_trips += 1
    transport = _transport(host)
    try:
        chan = _open_session(host, transport)
        transport = chan.get_transport()
        chan.exec_command(command)
        if writer is not None:
            with chan.makefile("wb") as sink:
                writer(sink)
        elif stdin:
            chan.sendall(stdin)
        chan.shutdown_write()
    except SshError:
        raise
    except Exception as exc:  # paramiko raises SSHException, EOFError, socket errors
        if transport.is_active() and not isinstance(exc, (EOFError, OSError)):
            raise  # our own bug or a local file problem, not the network
        raise _dropped(host, what) from exc
    out, err = bytearray(), bytearray()
    started = last = time.monotonic()
    try:
        while True:
            ready, _, _ = select.select([chan], [], [], 0.5)
            got = False
            while chan.recv_ready():
                data = chan.recv(65536)
                if not data:
                    break
                got = True
                if on_stdout is not None:
                    on_stdout(data)
                else:
                    out += data
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
                got = True
            now = time.monotonic()
            if got:
                last = now
            if chan.exit_status_ready() and chan.eof_received and not chan.recv_ready() \
                    and not chan.recv_stderr_ready():
                break
            if chan.closed or not chan.get_transport().is_active():
                if chan.exit_status_ready():
                    break
                raise _dropped(host, what)
            if idle_timeout is not None and now - last > idle_timeout:
                raise SshError(f"{host.target.label} sent nothing for {idle_timeout:.0f}s "
                               f"during {what}", "the connection is probably dead; rerun")
            if timeout is not None and now - started > timeout:
                raise SshError(f"{what} on {host.target.host} timed out after {timeout:.0f}s",
                               "the host may be overloaded; rerun")
    finally:
        chan.close()
    code = chan.recv_exit_status()
    if code == -1 and not transport.is_active():
        raise _dropped(host, what)  # closed with the transport, not by the command's exit
    return Exec(code, bytes(out), bytes(err))


def open_reader(host: RemoteHost, command: str, stdin: bytes = b""):
    """(channel, file) for reading a long stdout as a stream (a tar of outputs)."""
    host.round_trips += 1
    try:
        chan = _transport(host).open_session(timeout=OPEN_TIMEOUT_S)
        chan.exec_command(command)
        if stdin:
            chan.sendall(stdin)
        chan.shutdown_write()
    except Exception as exc:
        raise _dropped(host, f"`{command[:60]}`") from exc
    return chan, chan.makefile("rb")


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
        done = execute(self.host, script, stdin=helper_source(), what="installing the run helper")
        if done.exit_code != 0:
            raise RunError(f"cannot install gpuctl's run helper on {self.host.target.label}: "
                           f"{done.stderr.decode(errors='replace').strip()[-200:]}",
                           "check that the home directory is writable")

    def call(self, args: str, *, check: bool = True, **kwargs) -> Exec:
        done = execute(self.host, self.command(args), what=f"`{args.split()[0]}`", **kwargs)
        if done.exit_code == EXIT_NO_HELPER:
            self.install()
            done = execute(self.host, self.command(args), what=f"`{args.split()[0]}`", **kwargs)
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
        return open_reader(self.host, self.command(args), json.dumps(payload).encode())


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
