"""The one HTTP server under every API stand-in: a free port on 127.0.0.1 (or `bind`), a thread
per request, the request handed over as an `HttpCall`, the answer sent as JSON (or as a
`TextAnswer`, for the metadata server's plain text).

A stand-in subclasses `LoopbackServer` and implements `serve(call) -> (status, payload)`; this
module owns the sockets, so the stand-ins hold only what their API does.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class HttpCall:
    method: str
    path: str
    query_lists: dict[str, list[str]]
    headers: dict[str, str]
    raw: bytes

    @property
    def query(self) -> dict[str, str]:
        """Each query parameter's last value, as Google's front ends read repeated scalars."""
        return {key: values[-1] for key, values in self.query_lists.items()}

    def header(self, name: str) -> str | None:
        """A header by name, in any case (HTTP header names are case-insensitive)."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)

    @property
    def authorization(self) -> str | None:
        return self.header("Authorization")

    def json(self):
        """The body as JSON (None when empty); ValueError when it is not JSON."""
        return json.loads(self.raw) if self.raw else None


@dataclass(frozen=True)
class TextAnswer:
    """An answer that is not JSON: its content type, text and extra headers."""

    content_type: str
    text: str
    headers: tuple[tuple[str, str], ...] = ()


class LoopbackServer:
    """start()/stop(), a context manager, and `endpoint` (http://127.0.0.1:PORT). `bind` is the
    address to listen on: loopback, unless a test host must reach the server over its veth."""

    bind = "127.0.0.1"
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def serve(self, call: HttpCall) -> tuple[int, object]:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self):
        self._server = ThreadingHTTPServer((self.bind, 0), _handler_for(self))
        self._server.daemon_threads = True
        # A short poll interval: stop() returns at once instead of after half a second.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"


def _handler_for(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; without this, Nagle plus delayed ACKs
        # add ~40 ms to every answer.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def do_PATCH(self) -> None:  # noqa: N802
            self._serve("PATCH")

        def do_PUT(self) -> None:  # noqa: N802
            self._serve("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            call = HttpCall(method, url.path, parse_qs(url.query, keep_blank_values=True),
                            dict(self.headers.items()), self.rfile.read(length) if length else b"")
            status, payload = server.serve(call)
            if isinstance(payload, TextAnswer):
                data, kind, extra = payload.text.encode(), payload.content_type, payload.headers
            else:
                data, kind, extra = json.dumps(payload).encode(), "application/json; charset=UTF-8", ()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            for name, value in extra:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # keep test output quiet
            pass

    return Handler
