"""The Web UI's authenticating proxy (a sidecar in the helper image; the standard library, and
`kubernetes` through incluster.py to renew the Lease).

The UI listens on 127.0.0.1 inside the pod, so this proxy is the only way in. Every TCP
connection must open with a request that carries the token from the Secret
gpuctl-webui-token, as `Authorization: Bearer <token>`, as the cookie this proxy sets, or
once as `?gpuctl_token=<token>` (answered with a redirect that sets the cookie and drops the
token from the address). A connection whose first request fails gets 401 and is closed
before a byte reaches the UI; one whose first request passes is piped to the UI as is, so
keep-alive, streaming responses and WebSockets work. Only one party holds each connection,
so later requests on it come from whoever presented the token.

Each authorised connection, and traffic on it, renews the Lease gpuctl-webui-activity (at
most every 30 s); the idle rule (idle.py) scales the Deployment to zero when it goes stale.
`/gpuctl/healthz` answers without a token (the kubelet's readiness probe), says only whether
the UI is ready (its own health path answers 2xx, e.g. once its model is loaded), and never
counts as use.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable

try:  # inside the gpuctl package
    from .incluster import Api, ApiError, in_cluster_namespace, micro_time
except ImportError:  # run as a script next to incluster.py (the ConfigMap)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from incluster import Api, ApiError, in_cluster_namespace, micro_time

TOKEN_ENV = "GPUCTL_WEBUI_TOKEN"
COOKIE = "gpuctl_webui_token"
QUERY = "gpuctl_token"
HEALTH_PATH = "/gpuctl/healthz"
MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 30.0
MIN_TOKEN_LENGTH = 16
ACTIVITY_INTERVAL = 30.0


class BadRequest(Exception):
    pass


def parse_head(raw: bytes) -> tuple[str, str, str, list[tuple[str, str]]]:
    """(method, target, version, headers) of an HTTP/1.x request head ending in CRLFCRLF."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        raise BadRequest("undecodable head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise BadRequest("malformed request line")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise BadRequest("malformed header line")
        headers.append((name, value.strip()))
    return parts[0], parts[1], parts[2], headers


def build_head(method: str, target: str, version: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"{method} {target} {version}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _cookies(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    found = []
    for name, value in headers:
        if name.lower() == "cookie":
            for item in value.split(";"):
                key, _, val = item.strip().partition("=")
                found.append((key, val))
    return found


def _matches(candidate: str, token: str) -> bool:
    return hmac.compare_digest(candidate.encode(), token.encode())


def credential(target: str, headers: list[tuple[str, str]], token: str) -> str | None:
    """How the request proves it holds the token: "bearer", "cookie", "query", or None."""
    for name, value in headers:
        if name.lower() == "authorization":
            scheme, _, given = value.partition(" ")
            if scheme.lower() == "bearer" and _matches(given.strip(), token):
                return "bearer"
    for key, value in _cookies(headers):
        if key == COOKIE and _matches(value, token):
            return "cookie"
    query = urllib.parse.urlsplit(target).query
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key == QUERY and _matches(value, token):
            return "query"
    return None


def strip_credentials(headers: list[tuple[str, str]], token: str) -> list[tuple[str, str]]:
    """The headers without gpuctl's token, so the UI behind never sees it."""
    out = []
    for name, value in headers:
        lower = name.lower()
        if lower == "authorization":
            scheme, _, given = value.partition(" ")
            if scheme.lower() == "bearer" and _matches(given.strip(), token):
                continue
        if lower == "cookie":
            kept = [item.strip() for item in value.split(";")
                    if item.strip().partition("=")[0] != COOKIE]
            if not kept:
                continue
            value = "; ".join(kept)
        out.append((name, value))
    return out


def without_query_token(target: str) -> str:
    parts = urllib.parse.urlsplit(target)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
             if k != QUERY]
    return urllib.parse.urlunsplit(("", "", parts.path or "/", urllib.parse.urlencode(query),
                                    parts.fragment))


def _response(status: str, body: str, extra: list[tuple[str, str]] = ()) -> bytes:
    data = body.encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data))),
               ("Connection", "close"), ("Cache-Control", "no-store"), *extra]
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


class ActivityRecorder:
    """Renews the Lease's renewTime at most every `interval` seconds, off the event loop."""

    def __init__(self, api: Api | None, namespace: str, lease: str, holder: str,
                 interval: float = ACTIVITY_INTERVAL, clock: Callable[[], float] = time.time):
        self.api, self.namespace, self.lease, self.holder = api, namespace, lease, holder
        self.interval, self.clock = interval, clock
        self._last = float("-inf")
        self._lock = threading.Lock()
        self.errors = 0

    def touch(self) -> None:
        now = self.clock()
        with self._lock:
            if now - self._last < self.interval:
                return
            self._last = now
        if self.api is not None:
            threading.Thread(target=self._write, args=(now,), daemon=True).start()

    def _write(self, now: float) -> None:
        when = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        try:
            self.api.patch_lease(self.namespace, self.lease,
                                 {"spec": {"renewTime": micro_time(when),
                                           "holderIdentity": self.holder}})
        except ApiError as exc:
            self.errors += 1
            with self._lock:  # try again on the next request
                self._last = float("-inf")
            print(f"authproxy: could not record activity: {exc}", file=sys.stderr, flush=True)


class Proxy:
    def __init__(self, token: str, upstream_host: str, upstream_port: int,
                 activity: ActivityRecorder | None = None, health_path: str | None = None):
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the token must be at least {MIN_TOKEN_LENGTH} characters")
        self.token = token
        self.upstream = (upstream_host, upstream_port)
        self.activity = activity
        self.health_path = health_path  # None: ready when the UI accepts connections

    def _touch(self) -> None:
        if self.activity is not None:
            self.activity.touch()

    async def serve(self, host: str, port: int) -> asyncio.base_events.Server:
        return await asyncio.start_server(self.handle, host, port, limit=MAX_HEAD)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader, writer) -> None:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError:
            writer.write(_response("431 Request Header Fields Too Large", "header too large\n"))
            await writer.drain()
            return
        try:
            method, target, version, headers = parse_head(raw)
        except BadRequest as exc:
            writer.write(_response("400 Bad Request", f"{exc}\n"))
            await writer.drain()
            return
        if urllib.parse.urlsplit(target).path == HEALTH_PATH:
            ok = await self._upstream_accepts()
            writer.write(_response("200 OK", "ok\n") if ok else
                         _response("503 Service Unavailable", "the UI is not up yet\n"))
            await writer.drain()
            return
        via = credential(target, headers, self.token)
        if via is None:
            writer.write(_response("401 Unauthorized",
                                   "a gpuctl Web UI token is required: use `gpuctl webui open`\n",
                                   [("WWW-Authenticate", 'Bearer realm="gpuctl-webui"')]))
            await writer.drain()
            return
        self._touch()
        if via == "query":
            cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            writer.write(_response("303 See Other", "signed in\n",
                                   [("Location", without_query_token(target)),
                                    ("Set-Cookie", cookie)]))
            await writer.drain()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.write(_response("502 Bad Gateway", "the Web UI is still starting\n"))
            await writer.drain()
            return
        try:
            up_writer.write(build_head(method, target, version,
                                       strip_credentials(headers, self.token)))
            await asyncio.gather(self._pipe(reader, up_writer, count=True),
                                 self._pipe(up_reader, writer, count=False))
        finally:
            up_writer.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    count: bool) -> None:
        try:
            while True:
                chunk = await source.read(64 * 1024)
                if not chunk:
                    break
                if count:
                    self._touch()
                sink.write(chunk)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()
        except (ConnectionError, OSError):
            sink.close()

    async def _upstream_accepts(self) -> bool:
        """Whether the UI is ready: its health path answers 2xx (or, without one, it accepts
        a connection)."""
        try:
            reader, probe = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 2)
        except (OSError, asyncio.TimeoutError):
            return False
        try:
            if not self.health_path:
                return True
            host = f"{self.upstream[0]}:{self.upstream[1]}"
            probe.write(f"GET {self.health_path} HTTP/1.1\r\nHost: {host}\r\n"
                        "Connection: close\r\n\r\n".encode("latin-1"))
            await probe.drain()
            status = await asyncio.wait_for(reader.readline(), 5)
            parts = status.decode("latin-1").split(" ")
            return len(parts) >= 2 and parts[1].startswith("2")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            return False
        finally:
            probe.close()


def main() -> int:
    token = os.environ.get(TOKEN_ENV, "")
    if len(token) < MIN_TOKEN_LENGTH:
        # Fail closed: without a token the proxy would have nothing to check.
        print(f"authproxy: {TOKEN_ENV} is missing or shorter than {MIN_TOKEN_LENGTH} "
              "characters; refusing to start", file=sys.stderr, flush=True)
        return 2
    lease = os.environ.get("ACTIVITY_LEASE")
    recorder = None
    if lease:
        try:
            api = Api.in_cluster()
        except ApiError as exc:
            # Fail closed here too: unrecorded use would let the idle rule stop a busy UI.
            print(f"authproxy: cannot record activity on {lease}: {exc.message}; refusing to start",
                  file=sys.stderr, flush=True)
            return 2
        recorder = ActivityRecorder(api, in_cluster_namespace(), lease,
                                    os.environ.get("POD_NAME", "gpuctl-webui-proxy"))
    proxy = Proxy(token, os.environ.get("UPSTREAM_HOST", "127.0.0.1"),
                  int(os.environ.get("UPSTREAM_PORT", "7860")), recorder,
                  os.environ.get("UPSTREAM_HEALTH_PATH") or None)

    async def run() -> None:
        server = await proxy.serve(os.environ.get("LISTEN_HOST", "0.0.0.0"),
                                   int(os.environ.get("LISTEN_PORT", "8080")))
        async with server:
            await server.serve_forever()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
