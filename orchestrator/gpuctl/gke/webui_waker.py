"""The Web UI's waker: the OpenAI-compatible address Open WebUI talks to, in front of vLLM.

It runs beside Open WebUI in its pod (on the CPU system pool, always up), on the Open WebUI
image's own Python: standard library only, shipped in the scripts ConfigMap with idle.py and
incluster.py. It is the pod's only container with an API token and the only one that talks to
the apiserver (incluster.Api, as the ServiceAccount gpuctl-webui). Every request counts as use
(the Lease gpuctl-webui-activity, renewed at most every 30 s). While the model server answers its
/health, requests go through to it unchanged (streaming included). While it does not, the waker
scales its Deployment 0 -> 1 and answers at once, in OpenAI's shapes, so the chat page shows
what is happening instead of a timeout: /v1/models lists the served names (Open WebUI gives a
model list 10 s: AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST), and a chat or completion gets one reply
"The model server is starting on a GPU node: about N minutes left...". A thread applies the
idle rule (idle.run_once) every minute: no request for IDLE_MINUTES scales the model server to 0.
"""

from __future__ import annotations

import datetime as dt
import http.client
import http.server
import json
import math
import os
import sys
import threading
import time
import urllib.parse

try:  # inside the gpuctl package
    from .incluster_scripts import idle
    from .incluster_scripts.incluster import Api, ApiError, in_cluster_namespace, micro_time
except ImportError:  # run as a script next to idle.py and incluster.py (the ConfigMap)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import idle  # type: ignore[no-redef]
    from incluster import Api, ApiError, in_cluster_namespace, micro_time  # type: ignore[no-redef]

START_SECONDS = 600.0  # a GPU node from zero: 4-10 minutes (GCP_FACTS.md), then the model loads
HEALTH_CACHE = 3.0
ACTIVITY_INTERVAL = 30.0
MAX_BODY = 8 * 1024 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host", "content-length"}


def starting_message(remaining_seconds: float) -> str:
    minutes = max(1, math.ceil(remaining_seconds / 60))
    return (f"The model server is starting on a GPU node: about {minutes} minute"
            f"{'s' if minutes != 1 else ''} left (a GPU node from zero takes 4-10 minutes, then "
            "the model loads). Send your message again when it is up.")


def chat_reply(model: str, text: str, stream: bool) -> tuple[str, bytes]:
    """(content type, body) of an OpenAI chat completion whose answer is `text`."""
    created = int(time.time())
    if stream:
        chunk = {"id": "gpuctl-starting", "object": "chat.completion.chunk", "created": created,
                 "model": model, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                    "content": text},
                                              "finish_reason": "stop"}]}
        return "text/event-stream", f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    body = {"id": "gpuctl-starting", "object": "chat.completion", "created": created,
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant",
                                                                 "content": text},
                                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
    return "application/json", json.dumps(body).encode()


class Waker:
    def __init__(self, api: Api, namespace: str, deployment: str, lease: str, upstream: str,
                 models: list[str], start_seconds: float = START_SECONDS,
                 clock=time.time, holder: str = "gpuctl-webui-waker"):
        self.api, self.namespace, self.deployment, self.lease = api, namespace, deployment, lease
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.models = models or ["model"]
        self.start_seconds, self.clock, self.holder = start_seconds, clock, holder
        self.starting_since: float | None = None
        self._health = (0.0, False)
        self._last_touch = float("-inf")
        self._lock = threading.Lock()
        self.errors: list[str] = []

    # --- the cluster ---------------------------------------------------------------------
    def touch(self) -> None:
        now = self.clock()
        with self._lock:
            if now - self._last_touch < ACTIVITY_INTERVAL:
                return
            self._last_touch = now
        when = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        try:
            self.api.patch_lease(self.namespace, self.lease,
                                 {"spec": {"renewTime": micro_time(when), "holderIdentity": self.holder}})
        except ApiError as exc:
            with self._lock:
                self._last_touch = float("-inf")
            self.errors.append(f"activity: {exc}")

    def wake(self) -> float:
        """Scale the model server to 1 if it is at 0; the seconds it probably still needs."""
        try:
            scale = self.api.read_scale(self.namespace, self.deployment)
            if int((scale.get("spec") or {}).get("replicas") or 0) == 0:
                self.api.patch_scale(self.namespace, self.deployment, {"spec": {"replicas": 1}})
                self.starting_since = self.clock()
        except ApiError as exc:
            self.errors.append(f"wake: {exc}")
        if self.starting_since is None:
            self.starting_since = self.clock()
        return max(60.0, self.start_seconds - (self.clock() - self.starting_since))

    def healthy(self) -> bool:
        checked, ok = self._health
        if self.clock() - checked < HEALTH_CACHE:
            return ok
        try:
            conn = http.client.HTTPConnection(*self.upstream, timeout=2)
            conn.request("GET", "/health")
            ok = conn.getresponse().status == 200
            conn.close()
        except OSError:
            ok = False
        self._health = (self.clock(), ok)
        if ok:
            self.starting_since = None
        return ok

    def idle_round(self, idle_minutes: float) -> dict:
        decision = idle.run_once(self.api, self.namespace, self.deployment, self.lease, idle_minutes)
        return {"namespace": self.namespace, "deployment": self.deployment,
                "action": decision.action, "reason": decision.reason}


def make_handler(waker: Waker):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ValueError("request body too large")
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _handle(self, method: str) -> None:
            try:
                body = self._body()
            except ValueError as exc:
                self._send(413, "application/json", json.dumps({"error": str(exc)}).encode())
                return
            waker.touch()
            if waker.healthy():
                self._forward(method, body)
                return
            remaining = waker.wake()
            self._starting(self.path.split("?")[0], body, remaining)

        def _starting(self, path: str, body: bytes, remaining: float) -> None:
            text = starting_message(remaining)
            if path.endswith("/models"):
                data = {"object": "list", "data": [
                    {"id": name, "object": "model", "owned_by": "gpuctl"} for name in waker.models]}
                self._send(200, "application/json", json.dumps(data).encode())
                return
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                request = {}
            model = request.get("model") if isinstance(request, dict) else None
            model = model if isinstance(model, str) else waker.models[0]
            if path.endswith("/chat/completions"):
                self._send(200, *chat_reply(model, text, bool(request.get("stream"))))
                return
            error = {"error": {"message": text, "type": "model_starting", "code": 503}}
            self.send_response(503)
            self.send_header("Retry-After", str(int(remaining)))
            data = json.dumps(error).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _forward(self, method: str, body: bytes) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn = http.client.HTTPConnection(*waker.upstream, timeout=600)
            try:
                conn.request(method, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                while True:
                    chunk = response.read1(65536)
                    if not chunk:
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    waker.touch()
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True
            finally:
                conn.close()

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

        def do_DELETE(self):
            self._handle("DELETE")

    return Handler


def main() -> int:
    namespace = in_cluster_namespace()
    try:
        api = Api.in_cluster()
    except ApiError as exc:
        # Fail closed: a waker that cannot scale or record use would leave the GPU up or down.
        print(f"waker: cannot reach the Kubernetes API: {exc}; refusing to start",
              file=sys.stderr, flush=True)
        return 2
    try:
        idle_minutes = float(os.environ.get("IDLE_MINUTES", idle.DEFAULT_IDLE_MINUTES))
    except ValueError:
        idle_minutes = idle.DEFAULT_IDLE_MINUTES
    waker = Waker(api, namespace, os.environ.get("MODEL_DEPLOYMENT", "gpuctl-webui-model"),
                  os.environ.get("ACTIVITY_LEASE", "gpuctl-webui-activity"),
                  os.environ.get("UPSTREAM", "http://gpuctl-webui-model:8000"),
                  [m for m in os.environ.get("SERVED_MODELS", "").split(",") if m],
                  float(os.environ.get("START_SECONDS", START_SECONDS)),
                  holder=os.environ.get("POD_NAME", "gpuctl-webui-waker"))
    interval = float(os.environ.get("IDLE_CHECK_SECONDS", "60"))

    def idle_loop() -> None:
        while True:
            try:
                print(json.dumps(waker.idle_round(idle_minutes)), flush=True)
            except ApiError as exc:
                print(json.dumps({"idle_error": str(exc)}), flush=True)
            time.sleep(interval)

    threading.Thread(target=idle_loop, daemon=True).start()
    server = http.server.ThreadingHTTPServer(
        (os.environ.get("LISTEN_HOST", "127.0.0.1"), int(os.environ.get("LISTEN_PORT", "8000"))),
        make_handler(waker))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
