"""The Web UI stack (Open WebUI over vLLM): the model-size fit check, the rendered manifests,
the dry-run plan, bad input, and the stack on the test control plane (tests/k8s/): placement
on GPU nodes, the waker answering "starting" while it scales the model server 0 -> 1, the idle
rule taking it back to 0, and `down` leaving nothing."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from gpuctl.adapters.kube import connect
from gpuctl.cli.main import cli
from gpuctl.errors import UsageError
from gpuctl.gke import serving_images
from gpuctl.gke.kustomize import k8s_dir
from gpuctl.gke.serving_fit import check_fit, params_from_name, parse_params
from gpuctl.gke.webui import (AUTH_SECRET, LEASE, MODEL, NAME, TOKEN_SECRET, WebuiSettings,
                              render_webui, require_fit, webui_down, webui_status, webui_up,
                              wait_ready)
from gpuctl.gke.incluster_scripts import idle
from gpuctl.gke.incluster_scripts.incluster import Api, ApiError, parse_time
from gpuctl.gke.webui_waker import Waker, starting_message
from tests.gke_helpers import kube_flags
from tests.k8s.cluster import wait_for
from tests.k8s.nodes import DEFAULT_NODES

L4_NODES = {s.name for s in DEFAULT_NODES if s.labels.get("cloud.google.com/gke-accelerator") == "nvidia-l4"}
CPU_NODES = {s.name for s in DEFAULT_NODES if "cloud.google.com/gke-accelerator" not in s.labels}


def settings(**changes) -> WebuiSettings:
    return WebuiSettings(**{"owner": "alice", "namespace": "gpuctl", **changes})


def objects_by_name(objects) -> dict:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def container(deployment, name):
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


# --- the size parser and the fit ------------------------------------------------------------

@pytest.mark.parametrize(("model", "params"), [
    ("Qwen/Qwen2.5-0.5B-Instruct", 0.5e9), ("meta-llama/Llama-3.1-8B-Instruct", 8e9),
    ("mistralai/Mixtral-8x7B-v0.1", 56e9), ("facebook/opt-125m", 125e6),
    ("Qwen/Qwen3-30B-A3B", 30e9), ("google/gemma-2-2b-it", 2e9),
    ("gs://bucket/runs/llama-3.1-8b-lora/merged", 8e9),
    ("microsoft/phi-3-mini-4k-instruct", None), ("org/mystery", None), ("org/a-7b-13b", None),
])
def test_size_from_the_model_name(model, params):
    assert params_from_name(model) == params


@given(size=st.decimals(min_value="0.1", max_value="999", places=1),
       unit=st.sampled_from(["B", "b", "M", "m"]),
       prefix=st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,8}(-[A-Za-z0-9]{1,6})?", fullmatch=True),
       suffix=st.sampled_from(["", "-Instruct", "-chat-hf", "_v2"]))
def test_any_stated_size_is_read_back(size, unit, prefix, suffix):
    stated = f"{size.normalize():f}"
    name = f"org/{prefix}-{stated}{unit}{suffix}"
    expected = float(stated) * (1e9 if unit in "Bb" else 1e6)
    found = params_from_name(name)
    if found is not None or params_from_name(f"org/{prefix}") is None:
        # A prefix that states a size itself makes the name ambiguous; otherwise exact.
        assert found == pytest.approx(expected)


@given(st.text(max_size=60))
def test_the_parser_never_raises(text):
    result = params_from_name(text)
    assert result is None or 0 < result <= 2e12


def test_8b_fp16_does_not_fit_a_t4_but_fits_an_l4():
    t4 = check_fit("meta-llama/Llama-3.1-8B-Instruct", "nvidia-tesla-t4")
    assert not t4.fits and t4.gpu_memory_gb == 16 and "does not fit T4 (16 GB" in t4.reason
    assert check_fit("meta-llama/Llama-3.1-8B-Instruct", "nvidia-l4").fits
    with pytest.raises(UsageError) as err:
        require_fit(settings(model="meta-llama/Llama-3.1-8B-Instruct", accelerator="nvidia-tesla-t4"))
    assert err.value.hint == "use --gpu nvidia-l4"
    assert check_fit("Qwen/Qwen2.5-0.5B-Instruct", "nvidia-tesla-t4").fits
    with pytest.raises(UsageError, match="cannot tell the size") as err:
        check_fit("org/mystery", "nvidia-l4")
    assert "--params" in err.value.hint
    assert check_fit("org/mystery", "nvidia-l4", parse_params("70B")).fits is False


@pytest.mark.parametrize("text", ["", "big", "8Q", "0B", "3T", "-1B"])
def test_bad_params_are_refused(text):
    with pytest.raises(UsageError):
        parse_params(text)


# --- the manifests ----------------------------------------------------------------------------

def test_render_places_the_model_on_the_gpu_and_the_ui_off_it_from_pinned_images():
    objs = objects_by_name(render_webui(settings(accelerator="nvidia-tesla-t4", idle_minutes=12)))
    model = objs[("Deployment", MODEL)]["spec"]["template"]["spec"]
    ui = objs[("Deployment", NAME)]["spec"]["template"]["spec"]
    assert model["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4",
                                     "cloud.google.com/gke-spot": "true"}
    vllm = container(objs[("Deployment", MODEL)], "vllm")
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert vllm["image"] == serving_images.VLLM_IMAGE and serving_images.is_pinned(vllm["image"])
    assert vllm["args"][:1] == ["Qwen/Qwen2.5-0.5B-Instruct"] and "--dtype" in vllm["args"]
    # The UI never asks for or tolerates a GPU: it must not hold a GPU node up.
    assert "nodeSelector" not in ui and "tolerations" not in ui
    assert all("nvidia.com/gpu" not in json.dumps(c.get("resources", {})) for c in ui["containers"])
    assert {c["image"] for c in ui["containers"]} == {serving_images.OPEN_WEBUI_IMAGE}
    waker_env = {e["name"]: e.get("value") for e in container(objs[("Deployment", NAME)], "waker")["env"]}
    assert waker_env["IDLE_MINUTES"] == "12" and waker_env["SERVED_MODELS"] == "Qwen/Qwen2.5-0.5B-Instruct"
    # The base holds the same pins (what `kustomize build k8s/webui` shows).
    raw = "".join(p.read_text() for p in (k8s_dir() / "webui").glob("*deployment.yaml"))
    assert serving_images.VLLM_IMAGE in raw and serving_images.OPEN_WEBUI_IMAGE in raw


def test_open_webui_login_is_on_with_the_admin_and_key_from_a_secret():
    ui = objects_by_name(render_webui(settings()))[("Deployment", NAME)]
    env = {e["name"]: e for e in container(ui, "open-webui")["env"]}
    assert env["WEBUI_AUTH"]["value"] == "True" and env["ENABLE_SIGNUP"]["value"] == "False"
    for name, key in (("WEBUI_ADMIN_EMAIL", "admin-email"), ("WEBUI_ADMIN_PASSWORD", "admin-password"),
                      ("WEBUI_SECRET_KEY", "secret-key")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": AUTH_SECRET, "key": key}
    assert env["OPENAI_API_BASE_URL"]["value"] == "http://127.0.0.1:8000/v1"  # the waker
    assert env["HOST"]["value"] == "127.0.0.1"  # only the token proxy listens beyond the pod


def test_no_public_service_and_the_model_admits_only_the_ui():
    objects = render_webui(settings())
    services = [o for o in objects if o["kind"] == "Service"]
    assert services and all(s["spec"]["type"] == "ClusterIP" for s in services)
    policy = objects_by_name(objects)[("NetworkPolicy", MODEL)]["spec"]
    assert policy["ingress"] == [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": NAME}}}],
                                  "ports": [{"port": 8000, "protocol": "TCP"}]}]


def test_adapters_gcs_model_and_hf_token_reference():
    objs = objects_by_name(render_webui(settings(
        model="gs://team-ckpt/runs/llama-3.1-8b/merged", hf_token="k8s:hf/token",
        adapters=(("mine", "gs://team-ckpt/runs/lora/output"), ("other", "gs://other-b/x")))))
    deployment = objs[("Deployment", MODEL)]
    vllm = container(deployment, "vllm")
    args = vllm["args"]
    assert args[0] == "/gcs/team-ckpt/runs/llama-3.1-8b/merged"
    assert args[args.index("--served-model-name") + 1] == "merged"
    assert "--enable-lora" in args
    i = args.index("--lora-modules")
    assert args[i + 1:i + 3] == ["mine=/gcs/team-ckpt/runs/lora/output", "other=/gcs/other-b/x"]
    buckets = [v["csi"]["volumeAttributes"]["bucketName"]
               for v in deployment["spec"]["template"]["spec"]["volumes"] if "csi" in v]
    assert buckets == ["team-ckpt", "other-b"]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["gke-gcsfuse/volumes"] == "true"
    hf = next(e for e in vllm["env"] if e["name"] == "HF_TOKEN")
    assert hf["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    waker_env = {e["name"]: e.get("value") for e in container(objs[("Deployment", NAME)], "waker")["env"]}
    assert waker_env["SERVED_MODELS"] == "merged,mine,other"


@pytest.mark.parametrize(("changes", "message"), [
    ({"model": "not a model"}, "neither a Hugging Face id"),
    ({"model": "gs://b"}, "bucket"),
    ({"adapters": (("Bad Name", "gs://b-1/x"),)}, "adapter name"),
    ({"adapters": (("a", "https://x/y"),)}, "gs://"),
    ({"adapters": (("a", "gs://b-1/x"), ("a", "gs://b-1/y"))}, "used twice"),
    ({"hf_token": "hf_abcdefghijklmnopqrstuvwxyz123456"}, "not a secret reference"),
    ({"accelerator": "nvidia-tesla-k80"}, "not a GPU gpuctl knows"),
])
def test_bad_settings_are_refused(changes, message):
    with pytest.raises(UsageError, match=message) as err:
        settings(**changes)
    assert "hf_abcdef" not in err.value.message and err.value.hint


# --- the CLI ------------------------------------------------------------------------------------

@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GPUCTL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("GPUCTL_OWNER", "alice")
    return CliRunner()


def test_dry_run_prints_a_plan_with_pinned_images_fit_and_cost(offline):
    result = offline.invoke(cli, ["webui", "up", "--model", "Qwen/Qwen2.5-0.5B-Instruct", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "nothing to build" in out and serving_images.VLLM_IMAGE in out
    assert serving_images.OPEN_WEBUI_IMAGE in out and "NOT pinned" not in out
    assert "GPU fit: ok" in out and "fits L4" in out
    assert "while up   about $" in out and "while idle about $" in out
    assert "kind: Deployment" not in out  # manifests only with --manifests
    assert "starting, about N minutes" in out
    data = json.loads(offline.invoke(cli, ["webui", "up", "--dry-run", "--json"]).stdout)
    assert data["cost"]["up_usd_per_hour"] > data["cost"]["idle_usd_per_hour"] > 0
    assert all(i["pinned"] and not i["build"] for i in data["images"])
    manifests = offline.invoke(cli, ["webui", "up", "--dry-run", "--manifests"])
    assert manifests.exit_code == 0 and "kind: Deployment" in manifests.stdout
    docs = [d for d in yaml.safe_load_all(manifests.stdout.split("\n---\n", 1)[1]) if d]
    assert all(d["kind"] != "Secret" for d in docs)  # the generated Secrets are never in a plan


def test_gs_sources_name_the_read_grant_each_bucket_needs(offline):
    result = offline.invoke(cli, ["webui", "up", "--model", "gs://team-models/llama-8b",
                                  "--params", "8B", "--adapter", "a=gs://team-ckpt/run1/ckpt-200",
                                  "--adapter", "b=gs://team-ckpt/run2/ckpt-300", "--dry-run",
                                  "--json"])
    assert result.exit_code == 0, result.output
    grants = json.loads(result.stdout)["bucket_grants"]
    assert [g["bucket"] for g in grants] == ["team-ckpt", "team-models"]  # one per bucket
    assert {g["role"] for g in grants} == {"roles/storage.objectViewer"}  # read, never write
    assert all(g["command"].endswith("subject/ns/gpuctl/sa/gpuctl-webui-model") for g in grants)
    hub = offline.invoke(cli, ["webui", "up", "--dry-run", "--json"])
    assert json.loads(hub.stdout)["bucket_grants"] == []  # a Hub model reads no bucket
    text = offline.invoke(cli, ["webui", "up", "--model", "gs://team-models/llama-8b",
                                "--params", "8B", "--dry-run"]).stdout
    assert "storage: the model server reads Cloud Storage as" in text
    assert "gcloud storage buckets add-iam-policy-binding gs://team-models" in text


def test_dry_run_refuses_8b_on_a_t4_with_the_reason(offline):
    result = offline.invoke(cli, ["webui", "up", "--model", "meta-llama/Llama-3.1-8B-Instruct",
                                  "--gpu", "nvidia-tesla-t4", "--dry-run"])
    assert result.exit_code == 2
    assert "GPU fit: REFUSED: 8B fp16" in result.stdout and "does not fit T4 (16 GB" in result.stdout
    assert result.stderr.count("\n") == 1 and "use --gpu nvidia-l4" in result.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["--model", "org/mystery"], "pass --params"),
    (["--params", "lots"], "not a parameter count"),
    (["--adapter", "nameonly"], "NAME=gs://PATH"),
    (["--hf-token", "hf_abcdefghijklmnopqrstuvwxyz123456"], "not a secret reference"),
    (["--gpu", "nvidia-tesla-k80"], "not a GPU gpuctl knows"),
])
def test_bad_input_is_one_line_with_a_hint_and_no_traceback(offline, args, expected):
    result = offline.invoke(cli, ["webui", "up", "--dry-run", *args])
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and "hint" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert "hf_abcdef" not in result.output


# --- on the test control plane ---------------------------------------------------------------

@pytest.fixture(scope="module")
def kube(k8s_cluster):
    client = connect(k8s_cluster.kubeconfig, k8s_cluster.context)
    yield client
    client.close()


def sa_dir(kube, k8s_cluster, namespace, service_account, folder) -> dict:
    """What the kubelet projects into a pod of `service_account`, written to `folder`; the
    pod's environment for the apiserver's address."""
    issued = kube.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
                          body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                "spec": {"expirationSeconds": 600}})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text(issued["status"]["token"])
    (folder / "ca.crt").write_bytes(k8s_cluster.ca_cert.read_bytes())
    (folder / "namespace").write_text(namespace)
    host, port = kube.server.removeprefix("https://").rsplit(":", 1)
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}


def scale_of(kube, namespace) -> int:
    return int(kube.get("apps/v1", "Deployment", MODEL, namespace)["spec"]["replicas"] or 0)


def test_up_places_pods_the_waker_wakes_and_answers_and_idle_takes_it_to_zero(
        kube, k8s_cluster, k8s_namespace, tmp_path):
    s = settings(namespace=k8s_namespace, idle_minutes=30)
    result = webui_up(kube, s, token_factory=lambda: "t" * 43)
    assert result["admin_password"] == "t" * 43 and result["token_created"]
    ui_pod = wait_ready(kube, k8s_namespace, timeout=120)
    assert kube.get("v1", "Pod", ui_pod, k8s_namespace)["spec"]["nodeName"] in CPU_NODES

    def model_pod_node():
        pods = kube.list("v1", "Pod", k8s_namespace, label_selector=f"app.kubernetes.io/name={MODEL}")
        return pods and pods[0]["spec"].get("nodeName")

    assert wait_for(model_pod_node, what="the model pod to be bound") in L4_NODES
    again = webui_up(kube, s, token_factory=lambda: pytest.fail("a secret made twice"))
    assert "admin_password" not in again

    # Idle: the rule (as the waker runs it, with the UI pod's own token) takes it to zero.
    env = sa_dir(kube, k8s_cluster, k8s_namespace, NAME, tmp_path / "sa")
    api = Api.in_cluster(str(tmp_path / "sa"), env)
    waker = Waker(api, k8s_namespace, MODEL, LEASE, "http://127.0.0.1:9", ["m"])
    assert waker.idle_round(30)["action"] == "keep" and scale_of(kube, k8s_namespace) == 1
    assert waker.idle_round(0.0001)["action"] == "scale-down"
    assert scale_of(kube, k8s_namespace) == 0
    wait_for(lambda: not model_pod_node() and not kube.list(
        "v1", "Pod", k8s_namespace, label_selector=f"app.kubernetes.io/name={MODEL}"),
        what="the model pod to go")
    assert webui_status(kube, k8s_namespace)["state"] == "idle (model server scaled to zero)"

    # A chat request through the waker script from the ConfigMap (python -I: no gpuctl, as in
    # the pod) wakes it and answers at once that it is starting.
    scripts = tmp_path / "opt-gpuctl"
    scripts.mkdir()
    for name, text in kube.get("v1", "ConfigMap", "gpuctl-webui-scripts", k8s_namespace)["data"].items():
        (scripts / name).write_text(text)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = parse_time(kube.get("coordination.k8s.io/v1", "Lease", LEASE, k8s_namespace)["spec"]["renewTime"])
    proc = subprocess.Popen(
        [sys.executable, "-I", str(scripts / "webui_waker.py")],
        env={"PATH": "/usr/bin:/bin", **env, "GPUCTL_SA_DIR": str(tmp_path / "sa"),
             "POD_NAMESPACE": k8s_namespace, "LISTEN_PORT": str(port), "IDLE_MINUTES": "30",
             "UPSTREAM": "http://127.0.0.1:9", "SERVED_MODELS": "Qwen/Qwen2.5-0.5B-Instruct",
             "POD_NAME": "ui-pod-test", "PYTHONDONTWRITEBYTECODE": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def ask(method, path, body=None):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request(method, path, body=json.dumps(body) if body else None,
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                return response.status, response.getheader("Content-Type"), response.read()
            except OSError:
                return None

        status, kind, body = wait_for(lambda: ask("GET", "/v1/models"), what="the waker to listen")
        assert status == 200 and [m["id"] for m in json.loads(body)["data"]] == ["Qwen/Qwen2.5-0.5B-Instruct"]
        assert scale_of(kube, k8s_namespace) == 1  # woken by the page's model list
        status, kind, body = ask("POST", "/v1/chat/completions",
                                 {"model": "Qwen/Qwen2.5-0.5B-Instruct", "stream": True,
                                  "messages": [{"role": "user", "content": "hi"}]})
        assert status == 200 and kind == "text/event-stream"
        chunk = json.loads(body.decode().split("\n\n")[0].removeprefix("data: "))
        assert "starting on a GPU node: about 10 minutes left" in chunk["choices"][0]["delta"]["content"]
        assert body.decode().rstrip().endswith("data: [DONE]")
        lease = kube.get("coordination.k8s.io/v1", "Lease", LEASE, k8s_namespace)["spec"]
        assert lease["holderIdentity"] == "ui-pod-test" and parse_time(lease["renewTime"]) > before
        assert wait_for(model_pod_node, what="the woken model pod") in L4_NODES
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert "refusing" not in err, err
    first = json.loads(out.splitlines()[0])  # its idle loop ran at start, with its own token
    assert first["namespace"] == k8s_namespace and first["action"] == "none"  # it was at zero

    result = webui_down(kube, k8s_namespace)
    assert result["left"] == [] and f"Deployment/{MODEL}" in result["deleted"]
    assert f"Secret/{AUTH_SECRET}" in result["deleted"] and f"Secret/{TOKEN_SECRET}" in result["deleted"]
    assert kube.list("v1", "Pod", k8s_namespace) == []


def test_the_waker_may_only_scale_the_model_and_record_use(kube, k8s_cluster, k8s_namespace, tmp_path):
    """The stdlib client (incluster.Api) as the waker's ServiceAccount: what RBAC refuses, the
    idle rule losing a race with a wake, a rotated token, and the errors it reports."""
    webui_up(kube, settings(namespace=k8s_namespace), token_factory=lambda: "t" * 43)
    folder = tmp_path / "sa"
    env = sa_dir(kube, k8s_cluster, k8s_namespace, NAME, folder)
    api = Api.in_cluster(str(folder), env)
    ns = k8s_namespace
    for what, call in {
        "read the UI's scale": lambda: api.read_scale(ns, NAME),
        "scale the UI": lambda: api.patch_scale(ns, NAME, {"spec": {"replicas": 0}}),
        "renew another Lease": lambda: api.patch_lease(ns, "other", {"spec": {"holderIdentity": "x"}}),
        "read the admin Secret": lambda: api.call("GET", f"/api/v1/namespaces/{ns}/secrets/{AUTH_SECRET}"),
        "list pods": lambda: api.call("GET", f"/api/v1/namespaces/{ns}/pods"),
    }.items():
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.status == 403 and "forbidden" in err.value.message, what
    assert api.read_scale(ns, MODEL)["spec"]["replicas"] == 1

    class WokenInBetween(Api):
        """A wake (here: admin scales to 2) lands between the idle rule's read and its patch."""

        def read_scale(self, namespace, deployment):
            scale = super().read_scale(namespace, deployment)
            kube.patch("apps/v1", "Deployment", MODEL, ns, {"spec": {"replicas": 2}})
            return scale

    racing = WokenInBetween.in_cluster(str(folder), env)
    with pytest.raises(ApiError) as err:
        idle.run_once(racing, ns, MODEL, LEASE, 0.0001)
    assert err.value.status == 409 and scale_of(kube, ns) == 2  # the wake won

    # The kubelet rotates the token: each call reads the file afresh.
    good = (folder / "token").read_text()
    (folder / "token").write_text("not-a-token")
    with pytest.raises(ApiError) as err:
        api.read_scale(ns, MODEL)
    assert err.value.status == 401
    (folder / "token").write_text(good)
    assert api.patch_lease(ns, LEASE, {"spec": {"holderIdentity": "rotated"}})["spec"]["holderIdentity"] == "rotated"

    kube.delete("coordination.k8s.io/v1", "Lease", LEASE, ns)
    assert api.read_lease(ns, LEASE) is None  # no use recorded yet: the idle rule reads None
    with pytest.raises(ApiError, match="not found") as err:
        api.patch_lease(ns, LEASE, {"spec": {"holderIdentity": "x"}})
    assert err.value.status == 404
    with pytest.raises(ApiError) as err:
        Api("127.0.0.1", 1, str(folder)).read_scale(ns, MODEL)
    assert err.value.status == 0
    for environ, sa in (({}, folder), (env, tmp_path / "no-such-folder")):
        with pytest.raises(ApiError) as err:
            Api.in_cluster(str(sa), environ)
        assert err.value.status == 0
    assert webui_down(kube, k8s_namespace)["left"] == []


def test_cli_up_prints_the_admin_password_once_and_status_shows_costs(k8s_cluster, k8s_namespace, offline):
    where = kube_flags(k8s_cluster, k8s_namespace)
    result = offline.invoke(cli, ["webui", "up", "--idle-minutes", "15", "--timeout", "60", "-y", *where])
    assert result.exit_code == 0, result.output
    assert "Open WebUI admin: admin@gpuctl.invalid  password: " in result.stdout
    assert "the chat page is ready" in result.stdout
    again = offline.invoke(cli, ["webui", "up", "--idle-minutes", "15", "--timeout", "60", "-y", *where])
    assert again.exit_code == 0 and "password:" not in again.stdout
    status = offline.invoke(cli, ["webui", "status", *where])
    assert status.exit_code == 0, status.output
    assert "cost while up" in status.stdout and "cost while idle" in status.stdout
    assert "15 min idle" in status.stdout
    data = json.loads(offline.invoke(cli, ["webui", "status", "--json", *where]).stdout)
    assert data["cost"]["up_usd_per_hour"] > data["cost"]["idle_usd_per_hour"] > 0
    assert offline.invoke(cli, ["webui", "down", "-y", *where]).exit_code == 0
    assert "not installed" in offline.invoke(cli, ["webui", "status", *where]).stdout


def test_starting_message_counts_down_in_whole_minutes():
    assert "about 10 minutes left" in starting_message(600)
    assert "about 1 minute left" in starting_message(5)


# --- the waker in front of a live model server ------------------------------------------------

class RecordingLeases:
    """The two Lease calls the waker makes while the model server is up, recorded (the cluster
    side of the waker is tested on the control plane above)."""

    def __init__(self):
        self.patches = []

    def patch_lease(self, namespace, name, patch):
        self.patches.append((namespace, name, patch))
        return patch


def test_the_waker_streams_through_to_a_healthy_model_server():
    import http.server
    import threading

    class ModelServer(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            body = b"" if self.path == "/health" else b'{"data": []}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for word in ("hello", " ", request["model"]):
                data = f"data: {json.dumps({'delta': word})}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

    from gpuctl.gke.webui_waker import make_handler

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ModelServer)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    leases = RecordingLeases()
    waker = Waker(leases, "ns", MODEL, LEASE, f"http://127.0.0.1:{upstream.server_address[1]}", ["m"])
    front = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(waker))
    threading.Thread(target=front.serve_forever, daemon=True).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", front.server_address[1], timeout=10)
        conn.request("POST", "/v1/chat/completions", body=json.dumps({"model": "mine", "stream": True}),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
        events = [json.loads(line.removeprefix("data: "))["delta"]
                  for line in response.read().decode().split("\n\n") if line]
        assert "".join(events) == "hello mine"
    finally:
        front.shutdown()
        upstream.shutdown()
    assert waker.starting_since is None  # never woke anything: it was up
    (namespace, name, patch), = leases.patches  # one renewal (at most one per 30 s)
    assert (namespace, name) == ("ns", LEASE) and patch["spec"]["holderIdentity"] == "gpuctl-webui-waker"
