"""A loopback JSON-over-HTTP server for the small stand-ins (Service Usage, Resource Manager,
Compute regions, an OAuth token endpoint): each supplies `answer(request) -> (code, body)`.
Every request is recorded for assertions; the server itself is tests/standins/loopback.py."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from tests.standins.loopback import HttpCall, LoopbackServer


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


class JsonStandIn(LoopbackServer):
    """Subclasses implement answer(request); every request is recorded first."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()

    def answer(self, request: Request) -> tuple[int, dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def serve(self, call: HttpCall) -> tuple[int, dict]:
        text = call.raw.decode(errors="replace") if call.raw else ""
        if "json" in (call.header("Content-Type") or ""):
            try:
                body = json.loads(text) if text else None
            except ValueError:
                return google_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        else:
            body = text or None
        request = Request(call.method, call.path, call.query_lists, body, call.authorization, call.headers)
        with self.lock:
            self.requests.append(request)
        return self.answer(request)
