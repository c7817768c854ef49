"""GKE workloads on a real control plane (tests/k8s/): etcd, kube-apiserver, kube-scheduler and
kube-controller-manager, with KWOK nodes labelled and tainted like GKE's spot GPU pools.

What is real here: admission and validation (server-side dry run with fieldValidation=Strict,
and the apiserver's own /openapi/v3 schemas), the scheduler's placement, the Job controller's
pod failure policy and Indexed completions, the Deployment/ReplicaSet controllers, RBAC for
the Web UI's ServiceAccount (a token issued by the apiserver), and the garbage collector. What
is played: the kubelets (KWOK stages decide how a pod ends).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuctl.adapters.kube import (Kube, KubeConfigError, KubeConflict, KubeError, KubeInvalid,
                                  KubeNotFound, KubeUnreachable, connect)
from gpuctl.cli.main import cli
from gpuctl.gke import jobs
from gpuctl.gke.manifests import COMPLETION_INDEX, build_job_manifests, headless_service_name
from gpuctl.gke.webui import (NAME, WebuiSettings, auth_secret, render_webui, token_secret,
                              webui_down, webui_up)
from gpuctl.jobspec import parse_job_spec
from tests.k8s.cluster import wait_for
from tests.k8s.nodes import DEFAULT_NODES
from tests.k8s.stages import OUTCOME_ANNOTATION, RUNTIME_ANNOTATION
from tests.gke_helpers import kube_flags

L4_NODES = {s.name for s in DEFAULT_NODES if s.labels.get("cloud.google.com/gke-accelerator") == "nvidia-l4"}
A100_NODES = {s.name for s in DEFAULT_NODES
              if s.labels.get("cloud.google.com/gke-accelerator") == "nvidia-tesla-a100"}
CPU_NODES = {s.name for s in DEFAULT_NODES if "cloud.google.com/gke-accelerator" not in s.labels}
IMAGE = "us-docker.pkg.dev/my-project/train/llama:1.0"
MANAGED = "gpuctl-managed=true"


@pytest.fixture(scope="module")
def kube(k8s_cluster) -> Kube:
    client = connect(k8s_cluster.kubeconfig, k8s_cluster.context)
    yield client
    client.close()


def spec(**changes):
    data = {"name": "train", "image": IMAGE, "command": ["torchrun", "train.py"],
            "gpus_per_node": 1, "accelerator": "nvidia-l4", "max_retries": 3, **changes}
    return parse_job_spec(data)


def manifests(namespace: str, outcome: str | None = None, runtime: str | None = None, **changes):
    """The Job (and Service) gpuctl renders; `outcome` tells the fake kubelet how every attempt
    ends (see tests/k8s/stages.py)."""
    objects = build_job_manifests(spec(**changes), namespace=namespace, owner="alice")
    template = objects[-1]["spec"]["template"]["metadata"]
    if outcome:
        template.setdefault("annotations", {})[OUTCOME_ANNOTATION] = outcome
    if runtime:
        template.setdefault("annotations", {})[RUNTIME_ANNOTATION] = runtime
    return objects


def job_condition(kube, namespace, name, kind):
    job = kube.get("batch/v1", "Job", name, namespace) or {}
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind and cond["status"] == "True":
            return cond
    return None


def pods_of(kube, namespace, job):
    return jobs.job_pods(kube, namespace, job)


def labelled_objects(kube, namespace) -> list[str]:
    kinds = [("batch/v1", "Job"), ("batch/v1", "CronJob"), ("apps/v1", "Deployment"),
             ("apps/v1", "ReplicaSet"), ("v1", "Pod"), ("v1", "Service"), ("v1", "ConfigMap"),
             ("v1", "Secret"), ("v1", "ServiceAccount"), ("rbac.authorization.k8s.io/v1", "Role"),
             ("rbac.authorization.k8s.io/v1", "RoleBinding"), ("coordination.k8s.io/v1", "Lease"),
             ("networking.k8s.io/v1", "NetworkPolicy")]
    return [f"{kind}/{o['metadata']['name']}" for api, kind in kinds
            for o in kube.list(api, kind, namespace, label_selector=MANAGED)]


# --- every manifest, validated by the apiserver ----------------------------------------------

def all_rendered(namespace: str) -> list[dict]:
    objects = []
    for changes in ({}, {"nodes": 3, "gpus_per_node": 2}, {"gpus_per_node": 0, "accelerator": None},
                    {"spot": False, "accelerator": "nvidia-tesla-a100", "timeout": "90m"},
                    {"name": "with-secrets", "secrets": {"HF_TOKEN": "k8s:hf-token/token"},
                     "env": {"WANDB_MODE": "offline"}, "output_dir": "gs://b/out"}):
        objects += build_job_manifests(spec(**changes), namespace=namespace, owner="alice")
    settings_ = WebuiSettings(owner="alice", namespace=namespace, image="us-docker.pkg.dev/p/r/ui:1")
    objects += render_webui(settings_, replicas=1, now=dt.datetime.now(dt.timezone.utc))
    objects += render_webui(WebuiSettings(owner="alice", namespace=namespace, spot=False,
                                          accelerator="nvidia-tesla-a100", idle_minutes=0), replicas=0)
    objects += render_webui(WebuiSettings(owner="alice", namespace=namespace, hf_token="k8s:hf/token",
                                          model="gs://b-ckpt/runs/llama-3.1-8b/merged",
                                          adapters=(("mine", "gs://b-ckpt/runs/lora/out"),)))
    objects.append(token_secret(settings_, "x" * 43))
    objects.append(auth_secret(settings_, "p" * 43, "k" * 43))
    return objects


def test_every_manifest_passes_strict_server_side_dry_run(kube, k8s_namespace):
    for obj in all_rendered(k8s_namespace):
        # Create (what submit does) and apply (what webui up does), both Strict, neither stored.
        kube.create(copy.deepcopy(obj), dry_run=True)
        kube.apply(copy.deepcopy(obj), dry_run=True)
    assert labelled_objects(kube, k8s_namespace) == []


def test_strict_dry_run_rejects_an_unknown_field(kube, k8s_namespace):
    (job,) = build_job_manifests(spec(), namespace=k8s_namespace, owner="alice")
    job["spec"]["template"]["spec"]["nodeSelectr"] = {"x": "y"}
    with pytest.raises(KubeInvalid, match="nodeSelectr"):
        kube.create(job, dry_run=True)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(nodes=st.integers(1, 64), gpus=st.integers(0, 8),
       accelerator=st.sampled_from(["nvidia-tesla-t4", "nvidia-l4", "nvidia-tesla-a100",
                                    "nvidia-a100-80gb", "nvidia-h100-80gb"]),
       spot=st.booleans(), retries=st.integers(0, 100), timeout=st.sampled_from([None, "30s", "2d"]),
       command=st.one_of(st.text(min_size=1, max_size=30).filter(str.strip),
                         st.lists(st.text(min_size=1, max_size=10).filter(str.strip), min_size=1,
                                  max_size=3)),
       env=st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True),
                           st.text(max_size=10), max_size=3))
def test_random_valid_specs_pass_strict_server_side_dry_run(kube, k8s_namespace, nodes, gpus,
                                                           accelerator, spot, retries, timeout,
                                                           command, env):
    from gpuctl.gke.manifests import RENDEZVOUS_ENV

    env = {k: v for k, v in env.items() if k not in RENDEZVOUS_ENV}
    objects = build_job_manifests(
        spec(nodes=nodes, gpus_per_node=gpus, accelerator=accelerator, spot=spot,
             max_retries=retries, timeout=timeout, command=command, env=env),
        namespace=k8s_namespace, owner="alice")
    for obj in objects:
        kube.create(obj, dry_run=True)


class OpenApiSchemas:
    """The apiserver's /openapi/v3 documents, made strict: an object schema that lists its
    properties admits no others (as fieldValidation=Strict does), unless Kubernetes marks it
    x-kubernetes-preserve-unknown-fields."""

    def __init__(self, kube: Kube):
        self.kube = kube
        self.docs: dict[str, dict] = {}

    def doc(self, api_version: str) -> dict:
        key = "api/v1" if api_version == "v1" else f"apis/{api_version}"
        if key not in self.docs:
            self.docs[key] = self._strict(self.kube.openapi_v3(key))
        return self.docs[key]

    def _strict(self, node):
        if isinstance(node, dict):
            node = {k: self._strict(v) for k, v in node.items()}
            if "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            return node
        if isinstance(node, list):
            return [self._strict(v) for v in node]
        return node

    def validator(self, obj: dict):
        import jsonschema

        doc = self.doc(obj["apiVersion"])
        group, _, version = obj["apiVersion"].rpartition("/")
        for name, schema in doc["components"]["schemas"].items():
            for gvk in schema.get("x-kubernetes-group-version-kind") or []:
                if (gvk.get("group", ""), gvk["version"], gvk["kind"]) == (group, version, obj["kind"]):
                    root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
                    return jsonschema.Draft7Validator(root)
        raise AssertionError(f"the apiserver has no schema for {obj['apiVersion']} {obj['kind']}")


@pytest.fixture(scope="module")
def schemas(kube) -> OpenApiSchemas:
    return OpenApiSchemas(kube)


def test_every_manifest_validates_against_the_apiservers_openapi_v3_schemas(schemas, k8s_namespace):
    for obj in all_rendered(k8s_namespace):
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in schemas.validator(obj).iter_errors(obj)]
        assert errors == [], f"{obj['kind']} {obj['metadata']['name']}: {errors[:5]}"


def test_the_schema_check_can_fail(schemas, k8s_namespace):
    (job,) = build_job_manifests(spec(), namespace=k8s_namespace, owner="alice")
    broken = copy.deepcopy(job)
    broken["spec"]["template"]["spec"]["nodeSelectr"] = {"x": "y"}
    broken["spec"]["backoffLimit"] = "three"
    messages = [e.message for e in schemas.validator(broken).iter_errors(broken)]
    assert any("nodeSelectr" in m for m in messages) and any("'three'" in m for m in messages)


# --- scheduling on GKE-shaped nodes ------------------------------------------------------------

@pytest.mark.parametrize("changes, nodes", [
    ({"accelerator": "nvidia-l4"}, L4_NODES),
    ({"accelerator": "nvidia-tesla-a100"}, A100_NODES),
    ({"gpus_per_node": 0, "accelerator": None}, CPU_NODES),
])
def test_scheduler_puts_pods_only_on_matching_nodes(kube, k8s_namespace, changes, nodes):
    jobs.submit(kube, manifests(k8s_namespace, **changes))
    pod = wait_for(lambda: next((p for p in pods_of(kube, k8s_namespace, "train")
                                 if p["spec"].get("nodeName")), None), what="the pod to be bound")
    assert pod["spec"]["nodeName"] in nodes
    wait_for(lambda: job_condition(kube, k8s_namespace, "train", "Complete"), what="Complete")
    (row,) = jobs.list_jobs(kube, k8s_namespace)
    assert row["status"] == "Succeeded" and row["nodes"] == [pod["spec"]["nodeName"]]
    assert row["accelerator"] == changes["accelerator"]


@pytest.mark.parametrize("changes", [
    {"gpus_per_node": 4},  # L4 nodes have one GPU each
    {"accelerator": "nvidia-tesla-t4"},  # no T4 pool in this cluster
    {"accelerator": "nvidia-l4", "spot": False},  # the L4 pool is spot only
])
def test_pod_stays_pending_when_no_gpu_fits(kube, k8s_namespace, changes):
    jobs.submit(kube, manifests(k8s_namespace, **changes))

    def unschedulable():
        rows = jobs.list_jobs(kube, k8s_namespace)
        return rows and rows[0]["status"] == "Pending" and rows[0]["reason"] == "Unschedulable" and rows[0]

    row = wait_for(unschedulable, what="the scheduler to give up on the pod")
    assert "nodes are available" in row["message"]
    time.sleep(1.5)  # and it stays so
    (pod,) = pods_of(kube, k8s_namespace, "train")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    with pytest.raises(KubeError, match="waiting for a node"):
        jobs.stream_logs(kube, k8s_namespace, "train", False, lambda _: None)
    assert jobs.cancel_job(kube, k8s_namespace, "train", grace_seconds=0, wait_seconds=30)["left"] == []


# --- Jobs through the Job controller -----------------------------------------------------------

def test_single_job_completes(kube, k8s_namespace):
    result = jobs.submit(kube, manifests(k8s_namespace))
    assert result["objects"] == ["Job/train"] and result["service"] is None
    wait_for(lambda: job_condition(kube, k8s_namespace, "train", "Complete"), what="Complete")
    (row,) = jobs.list_jobs(kube, k8s_namespace)
    assert row["pods"]["succeeded"] == 1 and row["pods"]["failed"] == 0
    assert row["owner"] == "alice" and row["gpus_per_node"] == 1 and row["age_seconds"] >= 0


def test_indexed_job_pods_get_ranks_hostnames_and_the_rendezvous_service(kube, k8s_cluster, k8s_namespace):
    result = jobs.submit(kube, manifests(k8s_namespace, outcome="hold", nodes=2))
    service = headless_service_name("train")
    assert result["service"] == service
    svc = kube.get("v1", "Service", service, k8s_namespace)
    assert svc["spec"]["clusterIP"] == "None"
    owner = svc["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", "train", result["uid"])

    def running():
        pods = [p for p in pods_of(kube, k8s_namespace, "train") if p["status"].get("phase") == "Running"]
        return len(pods) == 2 and pods

    pods = wait_for(running, what="both ranks running")
    ranks = sorted(int(p["metadata"]["annotations"][COMPLETION_INDEX]) for p in pods)
    assert ranks == [0, 1]
    for pod in pods:
        rank = pod["metadata"]["annotations"][COMPLETION_INDEX]
        assert pod["spec"]["hostname"] == f"train-{rank}"
        assert pod["spec"]["subdomain"] == service
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["MASTER_ADDR"]["value"] == f"train-0.{service}"
        assert env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == \
            f"metadata.annotations['{COMPLETION_INDEX}']"
        assert env["NNODES"]["value"] == "2" and env["WORLD_SIZE"]["value"] == "2"
    # One GPU per L4 node: the two ranks had to land on the two L4 nodes.
    assert {p["spec"]["nodeName"] for p in pods} == L4_NODES

    # The endpoints controller publishes both ranks under their hostnames: rank 0 resolves as
    # train-0.<service> for the others.
    from kubernetes import client as k8s

    def endpoints():
        slices = k8s.DiscoveryV1Api(k8s_cluster.api_client()).list_namespaced_endpoint_slice(
            k8s_namespace, label_selector=f"kubernetes.io/service-name={service}").items
        names = sorted(e.hostname for s in slices for e in (s.endpoints or []))
        return names == ["train-0", "train-1"] and names

    wait_for(endpoints, what="EndpointSlice with both ranks")
    for pod in pods:
        k8s_cluster.set_pod_outcome(k8s_namespace, pod["metadata"]["name"], "succeed")
    wait_for(lambda: job_condition(kube, k8s_namespace, "train", "Complete"), what="Complete")
    (row,) = jobs.list_jobs(kube, k8s_namespace)
    assert row["pods"]["succeeded"] == 2 and row["pods"]["completions"] == 2


def test_disrupted_pod_is_retried_and_the_job_succeeds(kube, k8s_cluster, k8s_namespace):
    jobs.submit(kube, manifests(k8s_namespace, outcome="hold", max_retries=1))
    first = wait_for(lambda: next((p for p in pods_of(kube, k8s_namespace, "train")
                                   if p["status"].get("phase") == "Running"), None), what="running")
    k8s_cluster.preempt_pod(k8s_namespace, first["metadata"]["name"])

    def replacement():
        pods = pods_of(kube, k8s_namespace, "train")
        return next((p for p in pods if p["metadata"]["name"] != first["metadata"]["name"]
                     and p["status"].get("phase") == "Running"), None)

    second = wait_for(replacement, what="a replacement pod")
    old = kube.get("v1", "Pod", first["metadata"]["name"], k8s_namespace)
    if old is not None:  # the disrupted attempt, as the kubelet left it
        conditions = {c["type"]: c for c in old["status"]["conditions"]}
        assert conditions["DisruptionTarget"]["status"] == "True"
    k8s_cluster.set_pod_outcome(k8s_namespace, second["metadata"]["name"], "succeed")
    wait_for(lambda: job_condition(kube, k8s_namespace, "train", "Complete"), what="Complete")
    job = kube.get("batch/v1", "Job", "train", k8s_namespace)
    assert job["status"]["failed"] == 1 and job["status"]["succeeded"] == 1
    (row,) = jobs.list_jobs(kube, k8s_namespace)
    assert (row["status"], row["restarts"]) == ("Succeeded", 1)  # `gpuctl jobs --gke` shows it


def test_failed_trainer_is_not_retried(kube, k8s_namespace):
    jobs.submit(kube, manifests(k8s_namespace, outcome="fail", max_retries=3))
    cond = wait_for(lambda: job_condition(kube, k8s_namespace, "train", "Failed"), what="Failed")
    assert cond["reason"] == "PodFailurePolicy"
    assert "trainer" in cond["message"] and "exit code 1" in cond["message"]
    time.sleep(1.0)
    assert len(pods_of(kube, k8s_namespace, "train")) == 1  # never a second attempt
    (row,) = jobs.list_jobs(kube, k8s_namespace)
    assert row["status"] == "Failed" and row["reason"] == "PodFailurePolicy"
    assert row["restarts"] == 0  # a code error is not a restart


def test_disruptions_use_up_max_retries_so_a_lost_pool_cannot_loop_forever(kube, k8s_namespace):
    jobs.submit(kube, manifests(k8s_namespace, outcome="disrupt", max_retries=1))
    cond = wait_for(lambda: job_condition(kube, k8s_namespace, "train", "Failed"), timeout=45,
                    what="Failed")
    assert cond["reason"] == "BackoffLimitExceeded"
    job = kube.get("batch/v1", "Job", "train", k8s_namespace)
    assert job["status"]["failed"] == 2  # the first attempt and one retry
    (row,) = jobs.list_jobs(kube, k8s_namespace)
    assert row["restarts"] == 2


def test_submitting_the_same_name_twice_is_a_conflict_with_a_hint(kube, k8s_namespace):
    jobs.submit(kube, manifests(k8s_namespace, outcome="hold"))
    with pytest.raises(KubeConflict, match="already exists") as err:
        jobs.submit(kube, manifests(k8s_namespace))
    assert "gpuctl cancel --gke train" in err.value.hint


def test_cancel_leaves_no_gpuctl_labelled_object(kube, k8s_namespace):
    jobs.submit(kube, manifests(k8s_namespace, outcome="hold", nodes=2))
    wait_for(lambda: len([p for p in pods_of(kube, k8s_namespace, "train")
                          if p["status"].get("phase") == "Running"]) == 2, what="running")
    result = jobs.cancel_job(kube, k8s_namespace, "train", grace_seconds=0, wait_seconds=30)
    assert "Job/train" in result["deleted"]
    assert result["left"] == []
    assert labelled_objects(kube, k8s_namespace) == []
    with pytest.raises(KubeNotFound, match="job train not found"):
        jobs.cancel_job(kube, k8s_namespace, "train")


def test_cancel_refuses_a_job_gpuctl_did_not_make(kube, k8s_namespace):
    (job,) = manifests(k8s_namespace, outcome="hold")
    del job["metadata"]["labels"]["gpuctl-managed"]
    kube.create(job)
    with pytest.raises(KubeError, match="not made by gpuctl"):
        jobs.cancel_job(kube, k8s_namespace, "train")


# --- the Web UI (0 -> 1 -> 0 and the waker: tests/test_webui_stack.py) ----------------------------

def webui_settings(namespace, **changes):
    return WebuiSettings(**{"owner": "alice", "namespace": namespace, "idle_minutes": 30,
                            "image": "us-docker.pkg.dev/p/r/webui:1", **changes})


# --- the adapter's errors ----------------------------------------------------------------------

def test_wrong_credentials_unreachable_cluster_and_unknown_context_have_hints(k8s_cluster, tmp_path):
    config = yaml.safe_load(k8s_cluster.kubeconfig.read_text())
    config["users"][0]["user"] = {"token": "not-a-real-token"}
    bad = tmp_path / "bad.kubeconfig"
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(KubeError, match=r"did not accept gpuctl's credentials \(401\)") as err:
        connect(bad, k8s_cluster.context).list("batch/v1", "Job", "default")
    assert "--kubeconfig/--context" in err.value.hint

    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    gone = tmp_path / "gone.kubeconfig"
    gone.write_text(yaml.safe_dump(config))
    with pytest.raises(KubeUnreachable) as err:
        connect(gone, k8s_cluster.context).list("batch/v1", "Job", "default")
    assert err.value.hint == "is the cluster up? gpuctl gke status"

    with pytest.raises(KubeConfigError, match="context nope is not in") as err:
        connect(k8s_cluster.kubeconfig, "nope")
    assert k8s_cluster.context in err.value.hint


def test_forbidden_is_reported_with_what_was_refused(kube, k8s_cluster, k8s_namespace):
    webui_up(kube, webui_settings(k8s_namespace), token_factory=lambda: "t" * 43)
    issued = kube.request("POST", f"/api/v1/namespaces/{k8s_namespace}/serviceaccounts/{NAME}/token",
                          body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                "spec": {"expirationSeconds": 600}})
    as_waker = Kube(k8s_cluster.api_client(issued["status"]["token"]))
    with pytest.raises(KubeError, match=r"not allowed: .*jobs.* \(403\)"):
        jobs.list_jobs(as_waker, k8s_namespace)
    webui_down(kube, k8s_namespace)


# --- the CLI against the control plane ----------------------------------------------------------

def test_cli_train_submit_then_validate_and_webui_status(k8s_cluster, k8s_namespace, tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"name": "cli-job", "image": IMAGE, "command": "python train.py",
                                    "gpus_per_node": 1, "accelerator": "nvidia-tesla-a100"}))
    where = kube_flags(k8s_cluster, k8s_namespace)
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--gke", str(path), "--validate", *where])
    assert result.exit_code == 0, result.output
    assert "validated by the cluster" in result.stdout
    result = runner.invoke(cli, ["train", "--gke", str(path), "-y", "--json", *where])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["job"] == "cli-job" and data["cost"]["usd_per_hour"] > 0
    kube = connect(k8s_cluster.kubeconfig, k8s_cluster.context)
    wait_for(lambda: job_condition(kube, k8s_namespace, "cli-job", "Complete"), what="Complete")
    result = runner.invoke(cli, ["train", "--gke", str(path), "-y", *where])
    assert result.exit_code == 1 and "already exists" in result.stderr

    result = runner.invoke(cli, ["webui", "status", "--json", *where])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "not installed"
    result = runner.invoke(cli, ["webui", "up", "--validate", *where])
    assert result.exit_code == 0, result.output
    assert labelled_objects(kube, k8s_namespace) == ["Job/cli-job", "Pod/" + pods_of(
        kube, k8s_namespace, "cli-job")[0]["metadata"]["name"]]


# --- the token proxy, run as its container runs it ------------------------------------------------

def test_proxy_script_from_the_configmap_guards_the_ui_without_an_api_token(kube, k8s_namespace, tmp_path):
    """authproxy.py from the ConfigMap, on a bare Python (-I) with no ServiceAccount token (the
    pod mounts one for the waker only)."""
    import http.client
    import http.server
    import socket
    import subprocess
    import sys
    import threading

    from gpuctl.gke.webui import read_token

    webui_up(kube, webui_settings(k8s_namespace), token_factory=lambda: "t" * 43)
    scripts = tmp_path / "opt-gpuctl"
    scripts.mkdir()
    for name, text in kube.get("v1", "ConfigMap", "gpuctl-webui-scripts", k8s_namespace)["data"].items():
        (scripts / name).write_text(text)

    class UI(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ui")

        def log_message(self, *args):
            pass

    ui = http.server.ThreadingHTTPServer(("127.0.0.1", 0), UI)
    threading.Thread(target=ui.serve_forever, daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        listen = probe.getsockname()[1]
    token = read_token(kube, k8s_namespace)
    proxy = subprocess.Popen(
        [sys.executable, "-I", str(scripts / "authproxy.py")],
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "GPUCTL_WEBUI_TOKEN": token,
             "LISTEN_HOST": "127.0.0.1", "LISTEN_PORT": str(listen),
             "UPSTREAM_PORT": str(ui.server_address[1])},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        def answer(headers):
            conn = http.client.HTTPConnection("127.0.0.1", listen, timeout=5)
            try:
                conn.request("GET", "/", headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            except OSError:
                return None
            finally:
                conn.close()

        assert wait_for(lambda: answer({}), what="the proxy to listen")[0] == 401
        assert answer({"Authorization": f"Bearer {token}"}) == (200, b"ui")
    finally:
        proxy.terminate()
        out, err = proxy.communicate(timeout=10)
        ui.shutdown()
        ui.server_close()
    assert "Traceback" not in err, err
    assert webui_down(kube, k8s_namespace)["left"] == []


def test_proxy_script_refuses_to_start_without_a_token(tmp_path):
    import subprocess
    import sys

    from gpuctl.gke.webui import script_sources

    for name, text in script_sources().items():
        (tmp_path / name).write_text(text)
    result = subprocess.run([sys.executable, "-I", str(tmp_path / "authproxy.py")],
                            env={"PATH": "/usr/bin:/bin", "GPUCTL_WEBUI_TOKEN": "short"},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "refusing to start" in result.stderr


def test_open_forwards_to_the_ready_pod_with_the_clusters_token(kube, k8s_namespace, monkeypatch):
    """`webui open` end to end except the last hop: KWOK has no kubelet to port-forward into,
    so the pod's port is a local proxy holding the token from the cluster's Secret."""
    import http.client
    import http.server
    import socket
    import threading

    from gpuctl.gke.incluster_scripts.authproxy import Proxy
    from gpuctl.gke.webui import PROXY_PORT, open_local, read_token
    from tests.gke_helpers import running_proxy

    class UI(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = json.dumps({"auth": self.headers.get("Authorization")}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with pytest.raises(KubeNotFound, match="token Secret gpuctl-webui-token is missing") as err:
        open_local(kube, k8s_namespace)
    assert "gpuctl webui up" in err.value.hint
    webui_up(kube, webui_settings(k8s_namespace))  # a real random token this time
    ui = http.server.ThreadingHTTPServer(("127.0.0.1", 0), UI)
    threading.Thread(target=ui.serve_forever, daemon=True).start()
    asked = []
    proxy = Proxy(read_token(kube, k8s_namespace), "127.0.0.1", ui.server_address[1])
    with running_proxy(proxy) as pod_port:
        def port_forward(namespace, pod, port):
            asked.append((namespace, pod, port))
            return socket.create_connection(("127.0.0.1", pod_port))

        monkeypatch.setattr(kube, "port_forward", port_forward)
        forward, pod = open_local(kube, k8s_namespace, timeout=120)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", forward.port, timeout=5)
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read()) == {"auth": None}
        finally:
            forward.stop()
            ui.shutdown()
    assert asked == [(k8s_namespace, pod, PROXY_PORT)]
    assert kube.get("v1", "Pod", pod, k8s_namespace)["status"]["phase"] == "Running"
    assert webui_down(kube, k8s_namespace)["left"] == []


def test_a_finished_job_goes_away_with_its_service_after_the_ttl(kube, k8s_namespace):
    objects = build_job_manifests(spec(nodes=2), namespace=k8s_namespace, owner="alice",
                                  ttl_after_finished=1)
    jobs.submit(kube, objects)
    try:
        wait_for(lambda: job_condition(kube, k8s_namespace, "train", "Complete"), what="Complete")
    except TimeoutError as exc:  # say where the two ranks got to, so a rare miss can be read
        seen = [(p["metadata"]["name"], p["status"].get("phase"), p["spec"].get("nodeName"),
                 [c.get("reason") for c in p["status"].get("conditions") or [] if c.get("reason")])
                for p in pods_of(kube, k8s_namespace, "train")]
        nodes = [(n["metadata"]["name"], n["spec"].get("unschedulable"), n["spec"].get("taints"))
                 for n in kube.list("v1", "Node", None)]
        raise AssertionError(f"{exc}; pods {seen}; nodes {nodes}") from None
    # The TTL controller deletes the Job; the garbage collector its pods and the Service it owns.
    wait_for(lambda: labelled_objects(kube, k8s_namespace) == [], timeout=45,
             what="nothing labelled left after the TTL")
