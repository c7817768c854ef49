"""The Web UI's authenticating proxy: the container auth-proxy in the UI pod, run from the
scripts ConfigMap by the Open WebUI image's own Python (standard library only, no API token).

Open WebUI listens on 127.0.0.1 inside the pod, so this proxy is the only way in. Every TCP
connection must open with a request that carries the token from the Secret
gpuctl-webui-token, as `Authorization: Bearer <token>`, as the cookie this proxy sets, or
once as `?gpuctl_token=<token>` (answered with a redirect that sets the cookie and drops the
token from the address). A connection whose first request fails gets 401 and is closed
before a byte reaches the UI; one whose first request passes is piped to the UI as is, so
keep-alive, streaming responses and WebSockets work. Only one party holds each connection,
so later requests on it come from whoever presented the token.

`/gpuctl/healthz` answers without a token (the kubelet's readiness probe) and says only whether
the UI is ready (its own health path answers 2xx). Use of the model server is recorded by the
waker (gke/webui_waker.py), not here. gpuctl's local forwarder (gke/forward.py) shares the
request-head helpers.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import sys
import urllib.parse

TOKEN_ENV = "GPUCTL_WEBUI_TOKEN"
COOKIE = "gpuctl_webui_token"
QUERY = "gpuctl_token"
HEALTH_PATH = "/gpuctl/healthz"
MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 30.0
MIN_TOKEN_LENGTH = 16
UI_PORT = 8081  # Open WebUI's PORT in k8s/webui/deployment.yaml


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


class Proxy:
    def __init__(self, token: str, upstream_host: str, upstream_port: int,
                 health_path: str | None = None):
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the token must be at least {MIN_TOKEN_LENGTH} characters")
        self.token = token
        self.upstream = (upstream_host, upstream_port)
        self.health_path = health_path  # None: ready when the UI accepts connections

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
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            up_writer.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while True:
                chunk = await source.read(64 * 1024)
                if not chunk:
                    break
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
    proxy = Proxy(token, os.environ.get("UPSTREAM_HOST", "127.0.0.1"),
                  int(os.environ.get("UPSTREAM_PORT", UI_PORT)),
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
