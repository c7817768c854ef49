"""A loopback JSON-over-HTTP server for the small stand-ins (Service Usage, Resource Manager,
Compute regions, an OAuth token endpoint): each supplies `answer(request) -> (code, body)`.
Every request is recorded for assertions. Same shape as billing_catalog.py's server."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict | str | None
    authorization: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def google_error(code: int, message: str, status: str, reason: str | None = None,
                 domain: str = "googleapis.com") -> tuple[int, dict]:
    """Google's error body (https://cloud.google.com/apis/design/errors)."""
    error: dict = {"code": code, "message": message, "status": status}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": reason, "domain": domain}]
    return code, {"error": error}


class JsonStandIn:
    """Subclasses implement answer(); a context manager on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def answer(self, request: Request) -> tuple[int, dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
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


def _handler_for(standin: JsonStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            if "json" in (self.headers.get("Content-Type") or ""):
                body = json.loads(raw) if raw else None
            else:
                body = raw or None
            request = Request(method, url.path, parse_qs(url.query, keep_blank_values=True), body,
                              self.headers.get("Authorization"), dict(self.headers.items()))
            with standin.lock:
                standin.requests.append(request)
            code, answer = standin.answer(request)
            data = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # keep test output quiet
            pass

    return Handler
