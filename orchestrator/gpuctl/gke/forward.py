"""`gpuctl webui open`: a listener on 127.0.0.1 that carries each connection to the Web UI's
proxy through a Kubernetes port-forward, adding the bearer token to the first request.

The browser needs no token and the token never leaves this process: every connection's
first request head gets `Authorization: Bearer <token>` (any Authorization it had is
dropped), which is exactly what the in-pod proxy checks (authproxy.py); the rest of the
connection is piped as is. The listener binds 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from .incluster_scripts.authproxy import MAX_HEAD, BadRequest, build_head, parse_head

LOOPBACK = "127.0.0.1"


def inject_token(head: bytes, token: str) -> bytes:
    """The request head with our Authorization header in place of any other."""
    method, target, version, headers = parse_head(head)
    kept = [(k, v) for k, v in headers if k.lower() != "authorization"]
    return build_head(method, target, version, kept + [("Authorization", f"Bearer {token}")])


def _read_head(conn) -> tuple[bytes, bytes]:
    """(head through CRLFCRLF, whatever followed it in the same reads)."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise BadRequest("request head too large")
        chunk = conn.recv(65536)
        if not chunk:
            raise BadRequest("connection closed before a request")
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


def _pipe(source, sink, half_close: bool = True) -> None:
    try:
        while True:
            chunk = source.recv(65536)
            if not chunk:
                break
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        if half_close:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass


class LocalForward:
    """Serve 127.0.0.1:`port` (0: any free port) until stop(); `connect` opens a socket-like
    object to the proxy for each accepted connection (a port-forward, or a plain socket)."""

    def __init__(self, connect: Callable[[], object], token: str, port: int = 0,
                 on_error: Callable[[str], None] | None = None):
        self.connect = connect
        self.token = token
        self.on_error = on_error
        self.connections = 0
        self._server = socket.create_server((LOOPBACK, port))
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    def start(self) -> "LocalForward":
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name="gpuctl-webui-forward")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        try:
            self._server.close()
        except OSError:
            pass

    def __enter__(self) -> "LocalForward":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            head, rest = _read_head(client)
            head = inject_token(head, self.token)
            upstream = self.connect()
            upstream.sendall(head + rest)
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            # A port-forward stream ends when its local end is half-closed, which would cut
            # the response short: once the client is done, give the answer time to arrive.
            _pipe(client, upstream, half_close=False)
            back.join(timeout=60)
        except BadRequest:
            pass
        except Exception as exc:  # one broken connection must not stop the listener
            if self.on_error:
                self.on_error(f"{type(exc).__name__}: {exc}")
            try:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n"
                               b"Connection: close\r\n\r\n")
            except OSError:
                pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass
