"""The SSH adapter: a Fabric connection that verifies host keys, and errors a user can act on.

Fabric trusts unknown host keys by default (AutoAddPolicy); gpuctl never does. The host key
comes from gpuctl's own known_hosts (filled from the VM's guest attributes, or by the user for
`gpuctl provision user@host`), and an unknown or changed key stops the connection.

Every byte gpuctl sends to or reads from a host goes through RemoteHost: `run` (text in, text
out), `exec_stream` (binary stdin, stdout handed on as it arrives), `open_reader` (a long
stdout read as a file), `put` and `get`. Only this module touches paramiko.

A target may name a Tunnel: a program whose stdin and stdout are the TCP stream to the host's
sshd (OpenSSH's ProxyCommand; for a VM made with --iap, `gcloud compute start-iap-tunnel ...
--listen-on-stdin`). The SSH session runs inside it unchanged, so the host key is verified the
same way, under the name the target gives (`host`), which need not be an address.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import GpuctlError

CONNECT_TIMEOUT_S = 10
OPEN_TIMEOUT_S = 15
KEEPALIVE_S = 15


class SshError(GpuctlError):
    """The host could not be reached, or it is not who we think it is."""


class TunnelMissing(SshError):
    """The tunnel's program is not installed: waiting or retrying cannot help."""


class CommandFailed(GpuctlError):
    def __init__(self, command: str, exit_code: int, stderr: str):
        tail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        super().__init__(f"`{command}` exited {exit_code}: {tail}",
                         "rerun with --json for the full step report; nothing after it ran")
        self.command, self.exit_code, self.stderr = command, exit_code, stderr


@dataclass(frozen=True)
class Tunnel:
    """A ProxyCommand: `argv` relays its stdin/stdout to the host's sshd. `what` names it in
    errors ("the IAP tunnel"); the hints say what to do when its program is missing or it fails."""

    argv: tuple[str, ...]
    what: str
    missing_hint: str
    failure_hint: str


@dataclass(frozen=True)
class SshTarget:
    host: str  # an address, or (through a tunnel) the name the host key is pinned under
    user: str
    port: int = 22
    key_file: Path | None = None
    known_hosts: Path | None = None
    tunnel: Tunnel | None = None

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class CommandResult:
    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class StreamResult:
    """What exec_stream returns: bytes, because logs carry tqdm's \\r and tars are binary."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    def json(self):
        return json.loads(self.stdout.decode() or "null")


class RemoteReader:
    """A command whose stdout is read as a file (a tar of outputs); `finish` waits for it and
    returns (exit code, stderr)."""

    def __init__(self, channel):
        self._chan = channel
        self.file = channel.makefile("rb")

    def finish(self) -> tuple[int, bytes]:
        code = self._chan.recv_exit_status()
        errors = self._chan.makefile_stderr("rb").read()
        self._chan.close()
        return code, errors

    def close(self) -> None:
        self._chan.close()


def parse_target(text: str, default_user: str) -> tuple[str, str, int]:
    """'user@host:2222' -> (user, host, port)."""
    user, _, rest = text.rpartition("@")
    host, port = rest, 22
    if rest.count(":") == 1:  # host:port (a bare IPv6 address has several colons)
        host, port_text = rest.split(":")
        if not port_text.isdigit():
            raise SshError(f"'{text}' has a bad port", "write user@host or user@host:2222")
        port = int(port_text)
    if not host:
        raise SshError(f"'{text}' names no host", "write user@host")
    return user or default_user, host, port


class RemoteHost:
    """One SSH connection to a host; counts round trips so benchmarks can report them."""

    def __init__(self, target: SshTarget, connect_timeout: int = CONNECT_TIMEOUT_S):
        from fabric import Connection
        from paramiko import RejectPolicy

        self.target = target
        self.round_trips = 0
        connect_kwargs = {"look_for_keys": False, "allow_agent": False,
                          "banner_timeout": connect_timeout, "auth_timeout": connect_timeout}
        if target.key_file:
            connect_kwargs["key_filename"] = str(target.key_file)
        self._conn = Connection(target.host, user=target.user, port=target.port,
                                connect_timeout=connect_timeout, connect_kwargs=connect_kwargs)
        self._conn.client.set_missing_host_key_policy(RejectPolicy())
        if target.known_hosts:
            self._conn.client.load_host_keys(str(target.known_hosts))
        self._tunnel: TunnelSocket | None = None

    def load_known_hosts(self, path: Path) -> None:
        self._conn.client.load_host_keys(str(path))

    def connect(self) -> None:
        if self.target.tunnel is not None:
            # A fresh tunnel per connection: a ProxyCommand carries one TCP stream, and a
            # reconnect (reboot, dropped link) needs a new one. Fabric hands `sock` to paramiko.
            self._tunnel = TunnelSocket(self.target.tunnel, self.target.label)
            self._conn.connect_kwargs["sock"] = self._tunnel
        try:
            self._conn.open()
        except Exception as exc:  # translated below; paramiko raises many kinds
            tunnel_error = self._tunnel.failure() if self._tunnel is not None else None
            if self._tunnel is not None:
                self._tunnel.close()
            raise (tunnel_error or translate_connect_error(exc, self.target)) from None

    def run(self, command: str, *, sudo: bool = False, check: bool = True,
            timeout: int | None = 600) -> CommandResult:
        """Run through `sh -c` (as root with sudo -n when asked): no password prompts, ever."""
        wrapped = f"sh -c {shlex.quote(command)}"
        if sudo and self.target.user != "root":
            wrapped = f"sudo -n {wrapped}"
        self.connect_if_needed()
        self.round_trips += 1
        try:
            result = self._conn.run(wrapped, hide=True, warn=True, timeout=timeout, in_stream=False)
        except Exception as exc:
            raise translate_run_error(exc, self.target, command) from None
        out = CommandResult(result.stdout, result.stderr, result.exited)
        if check and not out.ok:
            raise CommandFailed(command, out.exit_code, out.stderr or out.stdout)
        return out

    # --- byte streams on the same verified transport ------------------------------------------
    # Fabric's run has no binary stdin and hands stdout over only at the end; runs need both
    # (a tar of the code in, a log followed as it grows), so these open their own channel.

    def _transport(self):
        self.connect_if_needed()
        transport = self._conn.client.get_transport()
        if transport is None or not transport.is_active():
            self.close()
            self.connect()
            transport = self._conn.client.get_transport()
        transport.set_keepalive(KEEPALIVE_S)
        return transport

    def _dropped(self, what: str) -> SshError:
        return SshError(f"the connection to {self.target.label} dropped during {what}",
                        "rerun the same command: work started on the host keeps going")

    def _open_session(self, transport):
        """A channel; when the connection turns out dead before anything ran on it (an idle
        connection the network dropped), reconnect once: nothing can have run twice."""
        try:
            return transport.open_session(timeout=OPEN_TIMEOUT_S)
        except Exception as exc:  # paramiko's SSHException, EOFError, socket errors
            if transport.is_active() and not isinstance(exc, (EOFError, OSError)):
                raise
            self.close()
            return self._transport().open_session(timeout=OPEN_TIMEOUT_S)

    def exec_stream(self, command: str, *, stdin: bytes | None = None,
                    writer: Callable | None = None,
                    on_stdout: Callable[[bytes], None] | None = None,
                    idle_timeout: float | None = None, timeout: float | None = 600,
                    what: str | None = None) -> StreamResult:
        """Run `command` through the login shell; feed it `stdin` (or let `writer(file)` stream
        into it); collect its stdout or hand it to `on_stdout` as it arrives. One round trip.
        Raises SshError when the connection drops, goes quiet past `idle_timeout`, or the
        command outlives `timeout`."""
        what = what or f"`{command[:60]}`"
        self.round_trips += 1
        chan = self._start(command, what, stdin=stdin, writer=writer)
        out, err = bytearray(), bytearray()
        started = last = time.monotonic()
        try:
            while True:
                select.select([chan], [], [], 0.5)
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
                    raise self._dropped(what)
                if idle_timeout is not None and now - last > idle_timeout:
                    raise SshError(f"{self.target.label} sent nothing for {idle_timeout:.0f}s "
                                   f"during {what}", "the connection is probably dead; rerun")
                if timeout is not None and now - started > timeout:
                    raise SshError(f"{what} on {self.target.host} timed out after {timeout:.0f}s",
                                   "the host may be overloaded; rerun")
        finally:
            chan.close()
        code = chan.recv_exit_status()
        if code == -1 and not chan.get_transport().is_active():
            raise self._dropped(what)  # closed with the transport, not by the command's exit
        return StreamResult(code, bytes(out), bytes(err))

    def open_reader(self, command: str, stdin: bytes = b"") -> RemoteReader:
        """Start `command` and return its stdout as a file to read at the caller's pace."""
        self.round_trips += 1
        return RemoteReader(self._start(command, f"`{command[:60]}`", stdin=stdin))

    def _start(self, command: str, what: str, *, stdin: bytes | None = None,
               writer: Callable | None = None):
        """A channel running `command`, its stdin fed (bytes, or `writer(file)` streaming) and
        closed. Raises SshError when the connection drops before that is done."""
        transport = self._transport()
        chan = None
        try:
            chan = self._open_session(transport)
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
        except Exception as exc:
            if not _ended_before_reading_stdin(chan, transport, exc):
                if transport.is_active() and not isinstance(exc, (EOFError, OSError)):
                    raise  # our own bug or a local file problem, not the network
                raise self._dropped(what) from exc
            # Otherwise the command exited before it read all of its stdin (the run helper's
            # `exit 97` when it is not installed yet, a `cat` that failed): its exit status
            # and stderr say what happened. Not a dropped connection.
        return chan

    def put(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        """Write `data` to `remote_path` (created with its directory; replaced atomically)."""
        path = shlex.quote(remote_path)
        tmp = shlex.quote(remote_path + ".gpuctl-tmp")
        done = self.exec_stream(f"mkdir -p \"$(dirname {path})\" && cat > {tmp} && "
                                f"chmod {mode:o} {tmp} && mv -f {tmp} {path}", stdin=data,
                                what=f"writing {remote_path}")
        if done.exit_code != 0:
            raise CommandFailed(f"write {remote_path}", done.exit_code,
                                done.stderr.decode(errors="replace"))

    def get(self, remote_path: str) -> bytes:
        """The bytes of `remote_path`."""
        done = self.exec_stream(f"cat {shlex.quote(remote_path)}", what=f"reading {remote_path}")
        if done.exit_code != 0:
            raise CommandFailed(f"read {remote_path}", done.exit_code,
                                done.stderr.decode(errors="replace"))
        return done.stdout

    def reboot_and_wait(self, timeout_s: float = 600, poll_s: float = 5) -> None:
        """Reboot the host, then reconnect once sshd answers again (a driver install needs it)."""
        import time

        try:
            self.run("nohup sh -c 'sleep 1; systemctl reboot || reboot' >/dev/null 2>&1 &",
                     sudo=True, check=False, timeout=30)
        except SshError:
            pass  # the connection may drop before the command returns
        self.close()
        time.sleep(poll_s)
        self.wait_for_ssh(timeout_s, poll_s)

    def wait_for_ssh(self, timeout_s: float = 600, poll_s: float = 5,
                     tolerate_auth: bool = False) -> None:
        """Reconnect until the host answers, or give up after timeout_s with the last error.
        A new VM may refuse our key for a while (its guest agent installs it after sshd
        starts): tolerate_auth keeps waiting then. A wrong host key always stops at once."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.close()
                self.connect()
                return
            except TunnelMissing:
                raise  # nothing to wait for: the program is not installed
            except SshError as exc:
                if "host key" in exc.message or ("refused the SSH key" in exc.message
                                                 and not tolerate_auth):
                    raise  # a different machine answered: waiting will not help
                if time.monotonic() + poll_s > deadline:
                    last = f" (last: {exc.message})" if self.target.tunnel is not None else ""
                    raise SshError(f"{self.target.label} did not come back within "
                                   f"{timeout_s:.0f}s{last}",
                                   exc.hint if last else
                                   "check the VM's serial console; rerun provision afterwards") from None
                time.sleep(poll_s)

    def connect_if_needed(self) -> None:
        if not self._conn.is_connected:
            self.connect()

    def close(self) -> None:
        self._conn.close()
        if self._tunnel is not None:
            self._tunnel.close()
            self._tunnel = None

    def __enter__(self) -> "RemoteHost":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TunnelSocket:
    """The socket paramiko's Transport reads and writes, backed by a tunnel program's stdin and
    stdout (the role of paramiko's ProxyCommand, which spins until its timeout once the program
    has exited; here its end of output is an end of stream, so a dead tunnel fails at once).
    Its stderr goes to a private temporary file, never a pipe that could fill and stall it; the
    last line is what a failure reports."""

    def __init__(self, tunnel: Tunnel, label: str):
        if shutil.which(tunnel.argv[0]) is None:
            raise TunnelMissing(f"{tunnel.argv[0]} is not on PATH, and {tunnel.what} to {label} "
                                "needs it", tunnel.missing_hint)
        self.tunnel, self.label = tunnel, label
        self._stderr = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(list(tunnel.argv), stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0,
                                            start_new_session=True)  # Ctrl-C reaches gpuctl only
        except OSError as exc:
            self._stderr.close()
            raise TunnelMissing(f"{tunnel.what} to {label} could not start: {exc.strerror}",
                                tunnel.missing_hint) from None
        self.timeout: float | None = None
        self._last_line: str | None = None

    def send(self, data: bytes) -> int:
        try:
            return self.process.stdin.write(data) or 0
        except (BrokenPipeError, ValueError):
            raise EOFError(f"{self.tunnel.what} closed") from None

    def recv(self, size: int) -> bytes:
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        if not ready:
            raise socket.timeout()
        return os.read(self.process.stdout.fileno(), size)  # b"" at its end: paramiko's EOFError

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    @property
    def closed(self) -> bool:
        return self.process.poll() is not None

    _closed = closed

    def failure(self) -> SshError | None:
        """Why the connection failed, when the tunnel program is the reason (it exited)."""
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return None  # still running: the tunnel works, the trouble is past it
        return SshError(f"{self.tunnel.what} to {self.label} failed (exit {code}): "
                        f"{self.last_error_line()}", self.tunnel.failure_hint)

    def last_error_line(self) -> str:
        """Its stderr's last line (read once: paramiko may close the tunnel before gpuctl asks)."""
        if self._last_line is None:
            self._stderr.seek(0)
            lines = self._stderr.read()[-4096:].decode(errors="replace").strip().splitlines()
            self._last_line = redact(lines[-1].strip())[:300] if lines else "no message"
        return self._last_line

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if not self._stderr.closed:
            self.last_error_line()
        for stream in (self.process.stdin, self.process.stdout, self._stderr):
            if stream is not None and not stream.closed:
                stream.close()


_TOKEN = re.compile(r"(ya29\.[\w.-]+|eyJ[\w-]+\.[\w-]+\.[\w-]+|(?i:bearer)\s+\S+)")


def redact(text: str) -> str:
    """An OAuth access token or a JWT never reaches a message, even if a tool printed one."""
    return _TOKEN.sub("[redacted]", text)


def translate_connect_error(exc: Exception, target: SshTarget) -> GpuctlError:
    import paramiko

    if isinstance(exc, paramiko.BadHostKeyException):
        return SshError(f"{target.host} presented a different host key than the one gpuctl pinned",
                        "this may not be your machine; if it was rebuilt, remove its line from "
                        f"{target.known_hosts}")
    if isinstance(exc, paramiko.AuthenticationException):
        return SshError(f"{target.label} refused the SSH key",
                        "pass the right key with --ssh-key, and check the user name")
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return SshError(f"{target.host} has no pinned host key, so gpuctl will not trust it",
                        "add its key to gpuctl's known_hosts (ssh-keyscan, checked out of band) "
                        "or pass --known-hosts")
    text = str(exc)
    if isinstance(exc, socket.gaierror):
        return SshError(f"cannot resolve {target.host}: no network or a wrong name",
                        "check the address (gpuctl status shows it) and the network")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return SshError(f"{target.label} did not answer within {CONNECT_TIMEOUT_S}s",
                        "check the address, the firewall rule and that the machine is running")
    if isinstance(exc, paramiko.SSHException) and "banner" in text.lower():
        # paramiko: "Error reading SSH protocol banner" (garbage or silence instead of
        # "SSH-2.0-..."); a host still booting, or another service on that port.
        return SshError(f"{target.label} answered, but not with an SSH banner",
                        f"check that sshd listens on port {target.port} (not another service), "
                        "or wait for the host to finish booting and rerun")
    if isinstance(exc, (paramiko.SSHException, EOFError)):
        # Past the banner: key exchange or packet errors ("Incompatible ssh peer",
        # "Indecipherable packet", the peer closing mid-handshake).
        return SshError(f"the SSH handshake with {target.label} failed: "
                        f"{text or type(exc).__name__}",
                        "check that the port is sshd's and the host is up; wait a minute and rerun")
    if isinstance(exc, OSError):
        return SshError(f"cannot reach {target.label}: {exc}",
                        "check the address and port, and that sshd runs there")
    return SshError(f"SSH to {target.label} failed: {exc}", "rerun with GPUCTL_DEBUG=1 for details")


def translate_run_error(exc: Exception, target: SshTarget, command: str) -> GpuctlError:
    from invoke.exceptions import CommandTimedOut

    if isinstance(exc, CommandTimedOut):
        return SshError(f"`{command}` on {target.host} timed out",
                        "the host may be overloaded; rerun to resume where it stopped")
    return SshError(f"the connection to {target.label} dropped during `{command}`",
                    "rerun the same command: finished steps are not redone")


def _ended_before_reading_stdin(chan, transport, exc: BaseException) -> bool:
    """Whether a write into `chan` failed only because its command had already exited and
    the server closed the channel, on a connection that is still up. A fast command wins
    that race more often on a loaded host, so this must not read as a dropped connection."""
    return (chan is not None and isinstance(exc, OSError) and chan.closed
            and transport is not None and transport.is_active())

