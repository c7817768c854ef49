"""The GKE workload library without a cluster: the idle rule, the Web UI's authenticating
proxy and gpuctl's local forwarder (over real sockets), following logs across attempts, and
the adapter's error mapping."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import http.server
import json
import socket
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuctl.adapters import kube as kube_adapter
from gpuctl.gke import jobs
from gpuctl.gke.forward import LocalForward, inject_token
from gpuctl.gke.incluster_scripts.authproxy import (COOKIE, HEALTH_PATH, Proxy, credential,
                                                    parse_head, strip_credentials,
                                                    without_query_token)
from gpuctl.gke.incluster_scripts.idle import decide, last_activity
from gpuctl.gke.incluster_scripts.incluster import micro_time, parse_time
from tests.gke_helpers import running_proxy

NOW = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.timezone.utc)
TOKEN = "k9JmXrS2pQ7vT4wY8zB1cD5fG3hL6nA0eR"


# --- the idle rule --------------------------------------------------------------------------------

@pytest.mark.parametrize("last, idle_minutes, replicas, action, target", [
    (NOW - dt.timedelta(minutes=29), 30, 1, "keep", 1),
    (NOW - dt.timedelta(minutes=30), 30, 1, "scale-down", 0),
    (NOW - dt.timedelta(hours=9), 30, 1, "scale-down", 0),
    (None, 30, 1, "scale-down", 0),  # nothing ever recorded: nobody is using it
    (NOW - dt.timedelta(hours=9), 30, 0, "none", 0),
    (NOW - dt.timedelta(hours=9), 0, 1, "none", 1),  # rule off
    (NOW + dt.timedelta(minutes=5), 30, 1, "keep", 1),  # clock skew: counts as just now
    (NOW - dt.timedelta(seconds=90), 1.5, 2, "scale-down", 0),
])
def test_decide(last, idle_minutes, replicas, action, target):
    decision = decide(last, NOW, idle_minutes, replicas)
    assert (decision.action, decision.replicas) == (action, target)
    assert decision.reason


@given(st.integers(0, 10_000), st.integers(1, 600), st.integers(1, 5), st.integers(0, 10_000))
def test_decide_scales_down_exactly_once_idle_reaches_the_limit(idle_s, minutes, replicas, later):
    last = NOW - dt.timedelta(seconds=idle_s)
    decision = decide(last, NOW, minutes, replicas)
    assert decision.scale_down == (idle_s >= minutes * 60)
    if decision.scale_down:  # and stays so as time goes on
        assert decide(last, NOW + dt.timedelta(seconds=later), minutes, replicas).scale_down
    else:
        assert decision.replicas == replicas


def test_last_activity_reads_renew_time_then_acquire_time():
    assert last_activity(None) is None
    assert last_activity({"spec": {}}) is None
    assert last_activity({"spec": {"acquireTime": "2026-11-23T02:00:00.000000Z"}}) == NOW - dt.timedelta(hours=1)
    assert last_activity({"spec": {"acquireTime": "2026-11-23T02:00:00.000000Z",
                                   "renewTime": micro_time(NOW)}}) == NOW


def test_time_formats_round_trip():
    assert micro_time(NOW) == "2026-11-23T03:00:00.000000Z"
    assert parse_time(micro_time(NOW)) == NOW
    assert parse_time("2026-11-23T03:00:00Z") == NOW
    assert parse_time("yesterday") is None and parse_time(None) is None


# --- the proxy, over real sockets -----------------------------------------------------------------

class Upstream(http.server.BaseHTTPRequestHandler):
    """The UI stand-in: echoes what reached it (HTTP/1.1 keep-alive, as UIs speak)."""
    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def do_GET(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        Upstream.seen.append({"path": self.path, "headers": dict(self.headers)})
        body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def upstream():
    Upstream.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream):
    """The real Proxy; yields (port, upstream)."""
    with running_proxy(Proxy(TOKEN, "127.0.0.1", upstream.server_address[1])) as port:
        yield port, upstream


def get(port, path="/", headers=None, conn=None):
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


def test_proxy_refuses_requests_without_the_token_before_they_reach_the_ui(proxy):
    port, _ = proxy
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"},
                    {"Authorization": f"Basic {TOKEN}"}, {"Cookie": f"{COOKIE}=nope"}):
        response, body = get(port, "/", headers)
        assert response.status == 401
        assert response.getheader("WWW-Authenticate", "").startswith("Bearer")
    response, _ = get(port, "/?gpuctl_token=nope")
    assert response.status == 401
    assert Upstream.seen == []


def test_proxy_passes_bearer_requests_without_the_token(proxy):
    port, _ = proxy
    response, body = get(port, "/chat?q=1", {"Authorization": f"Bearer {TOKEN}", "X-Keep": "yes"})
    assert response.status == 200
    echoed = json.loads(body)
    assert echoed["path"] == "/chat?q=1" and echoed["headers"]["X-Keep"] == "yes"
    assert "Authorization" not in echoed["headers"]


def test_proxy_keeps_an_authorised_connection_alive_for_later_requests(proxy):
    port, _ = proxy
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    first, _ = get(port, "/a", {"Authorization": f"Bearer {TOKEN}"}, conn)
    second, body = get(port, "/b", {}, conn)  # same connection: its holder showed the token
    assert (first.status, second.status) == (200, 200)
    assert json.loads(body)["path"] == "/b"
    fresh, _ = get(port, "/c")  # a new connection must show it again
    assert fresh.status == 401


def test_query_token_sets_an_http_only_cookie_and_drops_the_token_from_the_address(proxy):
    port, _ = proxy
    response, _ = get(port, f"/ui?x=1&gpuctl_token={TOKEN}")
    assert response.status == 303
    assert response.getheader("Location") == "/ui?x=1"
    cookie = response.getheader("Set-Cookie")
    assert cookie.startswith(f"{COOKIE}={TOKEN}") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    response, body = get(port, "/ui", {"Cookie": f"theme=dark; {COOKIE}={TOKEN}"})
    assert response.status == 200
    assert json.loads(body)["headers"]["Cookie"] == "theme=dark"  # ours stripped, theirs kept
    assert Upstream.seen[0]["path"] == "/ui"


def test_healthz_needs_no_token_never_reaches_the_ui_and_reports_it(proxy):
    port, upstream = proxy
    response, body = get(port, HEALTH_PATH)
    assert (response.status, body) == (200, b"ok\n")
    assert Upstream.seen == []
    upstream.shutdown()
    upstream.server_close()
    response, _ = get(port, HEALTH_PATH)
    assert response.status == 503
    response, _ = get(port, "/", {"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 502


def test_proxy_answers_garbage_with_400_and_refuses_a_short_token(proxy):
    port, _ = proxy
    for garbage in (b"NOT A REQUEST\r\n\r\n", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(garbage)
            assert sock.recv(100).startswith(b"HTTP/1.1 400")
    assert Upstream.seen == []
    with pytest.raises(ValueError):
        Proxy("short", "127.0.0.1", 1)


def test_credential_and_strip_helpers():
    headers = [("Authorization", f"bearer {TOKEN}"), ("Cookie", f"{COOKIE}={TOKEN}")]
    assert credential("/", headers, TOKEN) == "bearer"
    assert credential("/", headers[1:], TOKEN) == "cookie"
    assert credential(f"/?gpuctl_token={TOKEN}", [], TOKEN) == "query"
    assert credential("/", [("Authorization", "Bearer x")], TOKEN) is None
    assert strip_credentials(headers, TOKEN) == []
    assert strip_credentials([("Authorization", "Bearer theirs")], TOKEN) == [("Authorization", "Bearer theirs")]
    assert without_query_token(f"/p?a=1&gpuctl_token={TOKEN}&b=2") == "/p?a=1&b=2"


# --- gpuctl's local forwarder ---------------------------------------------------------------------

def test_local_forward_adds_the_token_so_a_browser_needs_none(proxy):
    port, _ = proxy
    with LocalForward(lambda: socket.create_connection(("127.0.0.1", port)), TOKEN) as forward:
        assert forward.url.startswith("http://127.0.0.1:")
        response, body = get(forward.port, "/", {"Authorization": "Bearer someone-elses"})
        assert response.status == 200
        assert "Authorization" not in json.loads(body)["headers"]
        # POST with a body and a second request on the same connection.
        conn = http.client.HTTPConnection("127.0.0.1", forward.port, timeout=5)
        conn.request("POST", "/api", body=b"x" * 100_000, headers={"Content-Length": "100000"})
        assert conn.getresponse().read() and True
        conn.request("GET", "/again")
        assert json.loads(conn.getresponse().read())["path"] == "/again"
    assert forward.connections >= 2


def test_local_forward_binds_loopback_only():
    forward = LocalForward(lambda: None, TOKEN)
    try:
        assert forward._server.getsockname()[0] == "127.0.0.1"
    finally:
        forward.stop()


def test_inject_token_replaces_any_authorization():
    head = b"GET /x HTTP/1.1\r\nHost: a\r\nauthorization: Basic abc\r\n\r\n"
    method, target, version, headers = parse_head(inject_token(head, TOKEN))
    assert (method, target) == ("GET", "/x")
    assert [v for k, v in headers if k.lower() == "authorization"] == [f"Bearer {TOKEN}"]


# --- following logs across attempts (a Kube stand-in at the library boundary) -----------------------

class FakeKube:
    """Answers the calls stream_logs makes from a script of cluster states."""

    def __init__(self, states):
        self.states = list(states)
        self.state = self.states.pop(0)

    def advance(self):
        if self.states:
            self.state = self.states.pop(0)

    def get(self, api_version, kind, name, namespace=None, **_):
        if kind == "Job":
            return self.state["job"]
        return None

    def list(self, api_version, kind, namespace=None, label_selector=None, **_):
        return [dict(p) for p in self.state["pods"]] if kind == "Pod" else []

    def pod_log(self, namespace, pod, container=None, follow=False, tail_lines=None):
        text = self.state["logs"].get(pod, b"")
        self.advance()
        yield from (text[i:i + 3] for i in range(0, len(text), 3))


def pod(name, phase, created, scheduled=True):
    conditions = [] if scheduled else [{"type": "PodScheduled", "status": "False",
                                        "reason": "Unschedulable", "message": "0/4 nodes are available"}]
    return {"metadata": {"name": name, "creationTimestamp": created, "annotations": {}},
            "status": {"phase": phase, "conditions": conditions}, "spec": {}}


def job(condition=None):
    status = {"conditions": [{"type": condition, "status": "True"}]} if condition else {"active": 1}
    return {"metadata": {"name": "train"}, "spec": {}, "status": status}


def test_follow_waits_for_a_node_then_follows_each_attempt_and_returns_the_outcome():
    states = [
        {"job": job(), "pods": [pod("train-a", "Pending", "t1", scheduled=False)], "logs": {}},
        {"job": job(), "pods": [pod("train-a", "Running", "t1")], "logs": {"train-a": "step 1 ✓\n".encode()}},
        {"job": job(), "pods": [pod("train-a", "Failed", "t1"), pod("train-b", "Running", "t2")],
         "logs": {"train-b": b"step 2\n"}},
        {"job": job("Complete"), "pods": [pod("train-a", "Failed", "t1"), pod("train-b", "Succeeded", "t2")],
         "logs": {}},
    ]
    fake = FakeKube(states)
    out, notes = [], []

    def sleep(_):
        fake.advance()

    code = jobs.stream_logs(fake, "ns", "train", True, out.append, notify=notes.append, sleep=sleep)
    assert code == 0
    assert "".join(out) == "step 1 ✓\nstep 2\n"  # multi-byte text split across chunks survives
    assert any("waiting for a node" in n and "0/4 nodes" in n for n in notes)
    assert any(n.startswith("attempt 2") for n in notes)
    assert notes[-1] == "job train succeeded"


def test_follow_returns_1_when_the_job_failed_and_plain_logs_return_what_is_there():
    failed = {"job": job("Failed"), "pods": [pod("train-a", "Failed", "t1")], "logs": {"train-a": b"boom\n"}}
    out = []
    assert jobs.stream_logs(FakeKube([failed, failed]), "ns", "train", True, out.append,
                            sleep=lambda _: None) == 1
    assert out == ["boo", "m\n"]
    out = []
    assert jobs.stream_logs(FakeKube([failed]), "ns", "train", False, out.append) == 0
    assert "".join(out) == "boom\n"


def test_logs_of_a_missing_job_say_how_to_list_jobs():
    class Empty(FakeKube):
        def get(self, *args, **kwargs):
            return None

    with pytest.raises(kube_adapter.KubeNotFound, match="job nope not found") as err:
        jobs.stream_logs(Empty([{"job": None, "pods": [], "logs": {}}]), "ns", "nope", True, print)
    assert "gpuctl jobs --gke" in err.value.hint


# --- the adapter's pure parts ---------------------------------------------------------------------

def test_object_paths():
    assert kube_adapter.object_path("batch/v1", "Job", "x", "ns") == "/apis/batch/v1/namespaces/ns/jobs/x"
    assert kube_adapter.object_path("v1", "Namespace", "ns") == "/api/v1/namespaces/ns"
    assert kube_adapter.object_path("apps/v1", "Deployment", "d", "ns", "scale") == \
        "/apis/apps/v1/namespaces/ns/deployments/d/scale"
    with pytest.raises(kube_adapter.KubeError, match="does not handle"):
        kube_adapter.object_path("v1", "Gadget", "x", "ns")


@pytest.mark.parametrize("code, cls, text", [
    (401, kube_adapter.KubeError, "credentials"),
    (403, kube_adapter.KubeError, "not allowed"),
    (404, kube_adapter.KubeNotFound, "not found"),
    (409, kube_adapter.KubeConflict, "exists"),
    (400, kube_adapter.KubeInvalid, "rejected"),
    (422, kube_adapter.KubeInvalid, "rejected"),
    (500, kube_adapter.KubeError, "could not complete"),
    (503, kube_adapter.KubeUnreachable, "503"),
])
def test_status_codes_become_errors_with_hints(code, cls, text):
    body = json.dumps({"kind": "Status", "message": "jobs.batch \"x\" already exists", "reason": "R"})
    with pytest.raises(cls, match=text) as err:
        kube_adapter._raise_for(code, body, "Job x", "https://k")
    assert err.value.hint and err.value.status == code


# --- what a GPU node costs --------------------------------------------------------------------------

@pytest.mark.parametrize("accelerator, gpus, machine, fits", [
    ("nvidia-l4", 1, "g2-standard-8", True),
    ("nvidia-tesla-t4", 2, "n1-standard-8", True),
    ("nvidia-tesla-a100", 1, "a2-highgpu-1g", True),
    ("nvidia-tesla-a100", 3, "a2-highgpu-4g", False),  # a bigger pool than gpuctl's default
    ("nvidia-l4", 4, "g2-standard-48", False),  # the g2 shape with 4 L4s: a bigger pool
    ("nvidia-h100-80gb", 1, None, False),  # no H100 pool on GKE
])
def test_gpu_node_hourly_prices_the_machine_the_pod_needs(ctx, accelerator, gpus, machine, fits):
    from gpuctl.gke.pricing import gpu_node_hourly

    node = gpu_node_hourly(ctx.prices, "us-central1", accelerator, gpus, True)
    assert node["machine"] == machine and node["fits_default_pool"] is fits
    if machine is None:
        assert node["usd_per_hour"] is None and node["detail"]
    else:
        from gpuctl_infra import gke_rules
        from gpuctl_infra.gke_spec import GpuPoolSpec
        from gpuctl.prices.model import HOURS_PER_MONTH

        # Everything GCE bills for the node, item by item from the book: host, GPUs, the local
        # SSDs the pool gets, its 100 GB boot disk and the external address.
        pool = GpuPoolSpec(accelerator=accelerator, machine_type=machine, max_nodes=1, gpus_per_node=gpus)
        book, region = ctx.prices, "us-central1"
        expected = (book.machine_hourly(region, machine, True)
                    + gpus * book.gpu_hourly(region, accelerator, True)
                    + gke_rules.local_ssds(pool) * 375 * book.disk_gb_month(region, "local-ssd", True) / HOURS_PER_MONTH
                    + pool.disk_size_gb * book.disk_gb_month(region, pool.disk_type, False) / HOURS_PER_MONTH
                    + book.network_hourly(region, "external-ipv4", True))
        assert node["usd_per_hour"] == pytest.approx(expected, abs=1e-4)
        assert node["usd_per_hour"] < gpu_node_hourly(ctx.prices, "us-central1", accelerator,
                                                      gpus, False)["usd_per_hour"]


def test_healthz_relays_the_uis_own_readiness(upstream):
    """With a health path, the proxy is ready only when the UI says it is (model loaded)."""
    state = {"code": 503}

    class UI(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(state["code"] if self.path == "/healthz" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    ui = http.server.ThreadingHTTPServer(("127.0.0.1", 0), UI)
    threading.Thread(target=ui.serve_forever, daemon=True).start()
    instance = Proxy(TOKEN, "127.0.0.1", ui.server_address[1], health_path="/healthz")
    try:
        assert asyncio.run(instance._upstream_accepts()) is False  # loading
        state["code"] = 200
        assert asyncio.run(instance._upstream_accepts()) is True
    finally:
        ui.shutdown()
        ui.server_close()
