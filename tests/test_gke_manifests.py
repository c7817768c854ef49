"""GKE manifests from job specs and from the Web UI's kustomize base, without a cluster.

Invariants checked on every rendered object: a pod that asks for GPUs selects the matching
accelerator nodes and tolerates their taint (and a pod that selects GPU nodes asks for GPUs);
no Service is ever reachable from outside the cluster; everything carries gpuctl's labels.
tests/test_gke_workloads.py sends the same objects to a real apiserver.
"""

from __future__ import annotations

import ast
import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuctl.cli.main import cli
from gpuctl.gke import kustomize
from gpuctl.gke.incluster_scripts.authproxy import UI_PORT
from gpuctl.gke.manifests import (ACCELERATOR_LABEL, COMPLETION_INDEX, GPU_RESOURCE, SPOT_LABEL,
                                  build_job_manifests, job_manifests_from_data, job_notes,
                                  manifests_yaml)
from gpuctl.gke.webui import (LEASE, SCRIPTS, WebuiSettings, render_webui, script_sources,
                              token_secret)
from gpuctl.jobspec import GKE_ACCELERATORS, JobSpecError, parse_job_spec

REPO = Path(__file__).resolve().parents[1]
KUSTOMIZE_VERSION = "v5.8.2"  # v5.8.3 needs Go 1.27
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

BASE_SPEC = {
    "name": "llama-lora",
    "image": "us-docker.pkg.dev/my-project/train/llama:1.0",
    "command": ["torchrun", "train.py", "--epochs", "3"],
    "gpus_per_node": 1,
    "accelerator": "nvidia-l4",
    "env": {"WANDB_MODE": "offline", "DEBUG": True},
    "secrets": {"HF_TOKEN": "k8s:hf-token/token"},
    "timeout": "12h",
    "max_retries": 2,
}


def render(**changes) -> list[dict]:
    data = {**copy.deepcopy(BASE_SPEC), **changes}
    return job_manifests_from_data(data, namespace="gpuctl", owner="alice")


def by_kind(objects: list[dict]) -> dict[str, dict]:
    return {o["kind"]: o for o in objects}


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def pod_templates(obj: dict) -> list[dict]:
    """(pod metadata, pod spec) holders of any workload kind."""
    spec = obj.get("spec") or {}
    if obj["kind"] in ("Job", "Deployment"):
        return [spec["template"]]
    if obj["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]]
    return []


def assert_invariants(objects: list[dict]) -> None:
    """What must hold for every object gpuctl renders."""
    for obj in objects:
        meta = obj["metadata"]
        assert meta["labels"]["gpuctl-managed"] == "true", obj["kind"]
        assert all(LABEL_VALUE.fullmatch(v) and len(v) <= 63 for v in meta["labels"].values())
        assert DNS_LABEL.fullmatch(meta["name"]) and len(meta["name"]) <= 63
        if obj["kind"] == "Service":
            spec = obj["spec"]
            assert spec.get("type", "ClusterIP") == "ClusterIP"
            assert not spec.get("externalIPs") and not spec.get("loadBalancerIP")
            assert all("nodePort" not in p for p in spec.get("ports", []))
        for template in pod_templates(obj):
            assert template["metadata"]["labels"]["gpuctl-managed"] == "true"
            pod = template["spec"]
            gpus = sum(int((c.get("resources") or {}).get("limits", {}).get(GPU_RESOURCE, 0))
                       for c in pod["containers"])
            selector = pod.get("nodeSelector") or {}
            tolerates_gpu = any(t.get("key") == GPU_RESOURCE and t.get("effect") == "NoSchedule"
                                and t.get("operator") == "Exists" for t in pod.get("tolerations", []))
            if gpus:
                assert selector.get(ACCELERATOR_LABEL) in GKE_ACCELERATORS
                assert tolerates_gpu
            else:
                assert ACCELERATOR_LABEL not in selector and not tolerates_gpu
            assert not pod.get("hostNetwork") and not pod.get("hostPID")


# --- single node ------------------------------------------------------------------------------

def test_single_node_spec_becomes_one_job_with_gpu_placement_and_failure_policy():
    objects = render()
    assert [o["kind"] for o in objects] == ["Job"]
    job = objects[0]
    assert job["metadata"]["namespace"] == "gpuctl"
    assert job["metadata"]["labels"] == {"gpuctl-managed": "true", "gpuctl-owner": "alice",
                                         "gpuctl-component": "train", "gpuctl-job": "llama-lora"}
    spec = job["spec"]
    assert "completionMode" not in spec
    assert spec["backoffLimit"] == 2
    assert spec["activeDeadlineSeconds"] == 12 * 3600
    assert spec["ttlSecondsAfterFinished"] > 0
    rules = spec["podFailurePolicy"]["rules"]
    # Disruptions first (a preempted trainer exits 137 too), then any non-zero exit fails the Job.
    assert rules[0]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    assert rules[0]["action"] in ("Count", "Ignore")
    assert rules[1] == {"action": "FailJob", "onExitCodes": {
        "containerName": "trainer", "operator": "NotIn", "values": [0]}}
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {ACCELERATOR_LABEL: "nvidia-l4", SPOT_LABEL: "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    (container,) = pod["containers"]
    assert container["name"] == "trainer"
    assert container["command"] == ["torchrun", "train.py", "--epochs", "3"]
    assert container["resources"] == {"limits": {GPU_RESOURCE: "1"}}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory"}
    assert volumes[mounts["/scratch"]]["emptyDir"] == {}
    env = env_of(container)
    assert env["HF_HOME"]["value"].startswith("/scratch/")
    assert env["WANDB_MODE"]["value"] == "offline" and env["DEBUG"]["value"] == "true"
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {
        "secretKeyRef": {"name": "hf-token", "key": "token"}}}
    assert env["NODE_RANK"]["value"] == "0" and env["PET_NPROC_PER_NODE"]["value"] == "1"
    assert "MASTER_ADDR" not in env
    assert_invariants(objects)


def test_string_command_runs_through_a_shell_and_user_env_wins_over_cache_defaults():
    (job,) = render(command="python train.py && echo done", env={"HF_HOME": "/data/hf"})
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c", "python train.py && echo done"]
    env = [e["name"] for e in container["env"]]
    assert env.count("HF_HOME") == 1 and env_of(container)["HF_HOME"]["value"] == "/data/hf"


def test_on_demand_avoids_spot_nodes_and_no_timeout_gets_the_default_cap():
    (job,) = render(spot=False, timeout=None)
    pod = job["spec"]["template"]["spec"]
    assert SPOT_LABEL not in pod["nodeSelector"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": SPOT_LABEL, "operator": "NotIn", "values": ["true"]}]
    assert job["spec"]["activeDeadlineSeconds"] == 86400
    assert any("no timeout" in n for n in job_notes(parse_job_spec({**BASE_SPEC, "timeout": None})))


def test_cpu_only_job_has_no_gpu_selector_toleration_or_limit():
    (job,) = render(gpus_per_node=0, accelerator=None)
    pod = job["spec"]["template"]["spec"]
    assert "resources" not in pod["containers"][0]
    assert ACCELERATOR_LABEL not in pod.get("nodeSelector", {})
    assert all(t["key"] != GPU_RESOURCE for t in pod.get("tolerations", []))
    assert_invariants([job])
    (job,) = render(gpus_per_node=0)  # an accelerator without GPUs is reported, not used
    assert ACCELERATOR_LABEL not in job["spec"]["template"]["spec"].get("nodeSelector", {})
    assert any("not used" in n for n in job_notes(parse_job_spec({**BASE_SPEC, "gpus_per_node": 0})))


# --- several nodes ----------------------------------------------------------------------------

def test_multi_node_spec_becomes_indexed_job_with_headless_service_and_rendezvous_env():
    objects = render(nodes=4, gpus_per_node=2)
    assert [o["kind"] for o in objects] == ["Service", "Job"]
    service, job = objects
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": "llama-lora"}
    assert service["metadata"]["labels"]["gpuctl-job"] == "llama-lora"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 4
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"]
    env = env_of(pod["containers"][0])
    assert env["MASTER_ADDR"]["value"] == f"llama-lora-0.{service['metadata']['name']}"
    assert env["MASTER_PORT"]["value"] == "29500" == str(service["spec"]["ports"][0]["port"])
    assert env["NNODES"]["value"] == env["PET_NNODES"]["value"] == "4"
    assert env["WORLD_SIZE"]["value"] == "8"
    assert env["NPROC_PER_NODE"]["value"] == "2"
    rank = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}
    assert env["NODE_RANK"]["valueFrom"] == rank and env["PET_NODE_RANK"]["valueFrom"] == rank
    assert pod["containers"][0]["resources"]["limits"][GPU_RESOURCE] == "2"
    assert_invariants(objects)


def test_multi_node_spec_that_sets_rendezvous_env_itself_is_refused():
    with pytest.raises(JobSpecError, match="MASTER_ADDR"):
        render(nodes=2, env={"MASTER_ADDR": "10.0.0.1"})
    render(nodes=1, env={"MASTER_ADDR": "10.0.0.1"})  # one node: theirs to set


# --- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"image": "Not An Image"}, "is not an image reference"),
    ({"accelerator": "nvidia-rtx-9090"}, "is not a GPU gpuctl knows"),
    ({"secrets": {"HF_TOKEN": "hunter2"}}, "is not a secret reference"),
    ({"nodes": 0}, "nodes"),
    ({"name": "Llama_LoRA"}, "must be 1-40 lowercase"),
    ({"gpus": 1}, "unknown key 'gpus'"),
])
def test_invalid_specs_raise_job_spec_error(changes, message):
    # Issue 14 made image, accelerator, workdir, requirements and env:/file: secrets work on
    # GKE (they used to be refused here): see test_one_spec_* below.
    with pytest.raises(JobSpecError, match=re.escape(message)):
        render(**changes)


# --- property tests ----------------------------------------------------------------------------

_junk = st.one_of(st.none(), st.integers(-5, 100), st.text(max_size=20), st.booleans(),
                  st.lists(st.text(max_size=5), max_size=3),
                  st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))
_env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True)
_k8s_refs = st.builds(lambda s, k: f"k8s:{s}/{k}",
                      st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,10}[a-z0-9])?", fullmatch=True),
                      st.from_regex(r"[-._a-zA-Z0-9]{1,10}", fullmatch=True))
# Specs that should render: every key drawn from its valid range.
_valid_specs = st.fixed_dictionaries(
    {"name": st.from_regex(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", fullmatch=True),
     "command": st.one_of(st.lists(st.text(min_size=1, max_size=10).filter(str.strip),
                                   min_size=1, max_size=4),
                          st.text(min_size=1, max_size=30).filter(str.strip)),
     "image": st.sampled_from(["python:3.12", "us-docker.pkg.dev/p/r/t:1", "ubuntu",
                               "ubuntu@sha256:" + "a" * 64, "localhost:5000/a/b:c"]),
     "accelerator": st.sampled_from(GKE_ACCELERATORS)},
    optional={
        "nodes": st.integers(1, 64), "gpus_per_node": st.integers(0, 8), "spot": st.booleans(),
        "env": st.dictionaries(_env_names, st.one_of(st.text(max_size=8), st.integers(),
                                                     st.booleans()), max_size=4),
        "secrets": st.dictionaries(_env_names, _k8s_refs, max_size=3),
        "timeout": st.sampled_from(["90m", "12h", "1d12h", "30s"]),
        "max_retries": st.integers(0, 100),
        "output_dir": st.sampled_from(["/out", "gs://b/out"]),
    })
# Ways a person gets it wrong: a value of the wrong type or range, a key that is not there,
# a key that does not apply to GKE, a secret reference of another scheme.
_bad_values = {
    "name": st.one_of(st.text(max_size=45), _junk), "command": _junk,
    "image": st.one_of(st.sampled_from(["Bad Image", "", " python", "a:b:c"]), _junk),
    "nodes": st.one_of(st.integers(-1, 70), _junk), "gpus_per_node": st.one_of(st.integers(-1, 10), _junk),
    "accelerator": st.one_of(st.sampled_from(["nvidia-x", ""]), _junk),
    "spot": _junk, "env": st.one_of(st.dictionaries(st.text(max_size=6), _junk, max_size=2), _junk),
    "secrets": st.one_of(st.dictionaries(_env_names, st.sampled_from(
        ["env:HOME", "file:/tmp/x", "k8s:/x", "k8s:bad name/key", "plain"]), min_size=1, max_size=2), _junk),
    "timeout": st.one_of(st.sampled_from(["0s", "6", "forever", ""]), _junk),
    "max_retries": st.one_of(st.integers(-2, 120), _junk),
    "workdir": _junk, "requirements": _junk, "mystery": _junk,
}


@st.composite
def _specs(draw):
    data = draw(_valid_specs)
    for key in draw(st.lists(st.sampled_from(sorted(_bad_values) + ["-drop"]), max_size=2, unique=True)):
        if key == "-drop":
            data.pop(draw(st.sampled_from(sorted(data))), None)
        else:
            data[key] = draw(_bad_values[key])
    return data


def test_the_spec_strategy_reaches_both_outcomes():
    from hypothesis import find

    def renders(data):
        try:
            job_manifests_from_data(data, namespace="g", owner="a")
        except JobSpecError:
            return False
        return True

    assert renders(find(_specs(), renders))
    assert not renders(find(_specs(), lambda d: not renders(d)))
    assert len(render_multi := job_manifests_from_data(
        find(_valid_specs, lambda d: d.get("nodes", 1) > 1), namespace="g", owner="a")) == 2
    assert render_multi[0]["kind"] == "Service"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_specs())
def test_any_spec_renders_or_raises_job_spec_error_never_anything_else(data):
    try:
        objects = job_manifests_from_data(data, namespace="gpuctl", owner="alice")
    except JobSpecError as exc:
        assert exc.message and exc.hint
        assert exc.exit_code == 2
        return
    assert_invariants(objects)
    job = objects[-1]
    assert job["kind"] == "Job"
    assert (len(objects) == 2) == (job["spec"].get("completionMode") == "Indexed")
    assert yaml.safe_load_all(manifests_yaml(objects))  # always printable


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 64), st.integers(0, 8), st.sampled_from(GKE_ACCELERATORS), st.booleans())
def test_valid_specs_always_place_gpus_on_matching_nodes(nodes, gpus, accelerator, spot):
    spec = parse_job_spec({**BASE_SPEC, "nodes": nodes, "gpus_per_node": gpus,
                           "accelerator": accelerator, "spot": spot})
    objects = build_job_manifests(spec, namespace="ns", owner="bob")
    assert_invariants(objects)
    pod = objects[-1]["spec"]["template"]["spec"]
    if gpus:
        assert pod["nodeSelector"][ACCELERATOR_LABEL] == accelerator
        assert pod["containers"][0]["resources"]["limits"][GPU_RESOURCE] == str(gpus)
        assert (pod["nodeSelector"].get(SPOT_LABEL) == "true") == spot


# --- the Web UI ---------------------------------------------------------------------------------

def webui_objects(**changes) -> list[dict]:
    settings = WebuiSettings(**{"owner": "alice", "namespace": "team", **changes})
    return render_webui(settings, replicas=1)


def test_webui_render_keeps_open_webui_on_loopback_behind_the_token_proxy():
    objects = webui_objects()
    assert_invariants(objects)
    assert all(o["metadata"]["namespace"] == "team" for o in objects)
    assert all(o["metadata"]["labels"]["gpuctl-component"] == "webui" for o in objects)
    assert all(o["metadata"]["labels"]["gpuctl-owner"] == "alice" for o in objects)
    objs = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    ui_deployment, model = objs[("Deployment", "gpuctl-webui")], objs[("Deployment", "gpuctl-webui-model")]
    assert ui_deployment["spec"]["replicas"] == 1 and model["spec"]["replicas"] == 1
    pod = ui_deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    ui, proxy, waker = containers["open-webui"], containers["auth-proxy"], containers["waker"]
    assert env_of(ui)["HOST"]["value"] == "127.0.0.1" and "ports" not in ui and "ports" not in waker
    assert env_of(proxy)["GPUCTL_WEBUI_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "gpuctl-webui-token", "key": "token"}
    assert pod["automountServiceAccountToken"] is False  # only the waker mounts a token
    assert "api-token" in {m["name"] for m in waker["volumeMounts"]}
    assert all("api-token" not in {m["name"] for m in c.get("volumeMounts", [])} for c in (ui, proxy))
    assert objs[("Service", "gpuctl-webui")]["spec"]["ports"][0]["targetPort"] == "http"
    assert {p["name"]: p["containerPort"] for p in proxy["ports"]}["http"] == 8080
    assert model["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][GPU_RESOURCE] == "1"


def test_webui_settings_change_gpu_idle_minutes_and_image():
    objects = webui_objects(accelerator="nvidia-tesla-a100", spot=False, idle_minutes=5,
                            image="us-docker.pkg.dev/p/r/vllm:2.1")
    objs = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    pod = objs[("Deployment", "gpuctl-webui-model")]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {ACCELERATOR_LABEL: "nvidia-tesla-a100"}
    assert pod["affinity"]["nodeAffinity"]  # away from spot nodes
    assert pod["containers"][0]["image"] == "us-docker.pkg.dev/p/r/vllm:2.1"
    waker = next(c for c in objs[("Deployment", "gpuctl-webui")]["spec"]["template"]["spec"]["containers"]
                 if c["name"] == "waker")
    assert env_of(waker)["IDLE_MINUTES"]["value"] == "5"
    assert_invariants(objects)


def test_webui_scripts_configmap_ships_what_the_containers_run_and_rbac_is_narrow():
    objects = webui_objects()
    objs = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    data = objs[("ConfigMap", SCRIPTS)]["data"]
    assert data == script_sources()
    base = yaml.safe_load((REPO / "k8s" / "webui" / "scripts-configmap.yaml").read_text())
    assert set(base["data"]) == set(data)  # the base's placeholders name the same files
    # Exactly the scripts a container runs and what they import; each on the standard library
    # alone (the Open WebUI image's Python has nothing else gpuctl may count on).
    containers = objs[("Deployment", "gpuctl-webui")]["spec"]["template"]["spec"]["containers"]
    wanted = [c["command"][-1].removeprefix("/opt/gpuctl/") for c in containers if "command" in c]
    assert wanted == ["authproxy.py", "webui_waker.py"]
    shipped: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in shipped:
            continue
        shipped.add(name)
        for node in ast.walk(ast.parse(data[name])):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                       [node.module] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for module in modules:
                top = module.split(".")[0]
                if f"{top}.py" in data:
                    wanted.append(f"{top}.py")
                else:
                    assert top in sys.stdlib_module_names or top == "__future__", (name, module)
    assert shipped == set(data)
    ui = next(c for c in containers if c["name"] == "open-webui")
    assert int(env_of(ui)["PORT"]["value"]) == UI_PORT  # the proxy's default upstream
    for kind, name in objs:
        if kind == "Role":
            for rule in objs[(kind, name)]["rules"]:
                assert rule.get("resourceNames"), f"{name} must name what it may touch"
                assert set(rule["verbs"]) <= {"get", "patch"}
    assert objs[("Lease", LEASE)]["spec"]["holderIdentity"]


def test_webui_settings_are_validated():
    with pytest.raises(Exception, match="is not a GPU gpuctl knows"):
        WebuiSettings(owner="a", accelerator="nvidia-rtx-9090")
    with pytest.raises(Exception, match="idle minutes"):
        WebuiSettings(owner="a", idle_minutes=-1)


def test_token_secret_holds_the_token_base64_and_is_labelled():
    secret = token_secret(WebuiSettings(owner="alice"), "s3cret-token-value-xyz")
    assert secret["data"]["token"] == "czNjcmV0LXRva2VuLXZhbHVlLXh5eg=="
    assert secret["metadata"]["labels"]["gpuctl-managed"] == "true"


def test_no_yaml_under_k8s_declares_a_public_service():
    for path in (REPO / "k8s").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Service":
                assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", path
            if doc and doc.get("kind") == "Ingress":
                pytest.fail(f"{path}: an Ingress would expose the UI")


# --- kustomize: gpuctl's transforms equal kustomize's -------------------------------------------

@pytest.fixture(scope="session")
def kustomize_bin() -> Path:
    """The real kustomize, built from the Go module proxy once and cached like the control plane."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpuctl-dev"
    target = cache / f"kustomize-{KUSTOMIZE_VERSION}" / "kustomize"
    if target.is_file():
        return target
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is needed to build kustomize for this test (Go >= 1.22)", pytrace=False)
    env = {**os.environ, "GOBIN": str(target.parent), "GOFLAGS": "-buildvcs=false"}
    subprocess.run([go, "install", "-trimpath", "-ldflags=-s -w",
                    f"sigs.k8s.io/kustomize/kustomize/v5@{KUSTOMIZE_VERSION}"],
                   check=True, env=env, timeout=900)
    return target


def kustomize_build(binary: Path, directory: Path) -> list[dict]:
    out = subprocess.run([str(binary), "build", str(directory)], check=True,
                         capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_python_build_of_the_base_equals_kustomize_build(kustomize_bin):
    assert kustomize.build(REPO / "k8s" / "webui") == kustomize_build(kustomize_bin, REPO / "k8s" / "webui")


def test_python_overrides_equal_a_kustomize_overlay(kustomize_bin, tmp_path):
    shutil.copytree(REPO / "k8s" / "webui", tmp_path / "base")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../base"], "namespace": "team-a",
        "labels": [{"pairs": {"gpuctl-owner": "carol"}, "includeTemplates": True}],
        "images": [{"name": "gpuctl-webui", "newName": "us-docker.pkg.dev/p/r/webui", "newTag": "2.0"},
                   {"name": "python", "newTag": "3.13-slim"}],
        "replicas": [{"name": "gpuctl-webui", "count": 1}],
    }))
    ours = kustomize.build(tmp_path / "base", namespace="team-a", labels={"gpuctl-owner": "carol"},
                           images={"gpuctl-webui": {"newName": "us-docker.pkg.dev/p/r/webui",
                                                    "newTag": "2.0"},
                                   "python": {"newTag": "3.13-slim"}},
                           replicas={"gpuctl-webui": 1})
    assert ours == kustomize_build(kustomize_bin, overlay)


def test_kustomization_with_a_field_gpuctl_does_not_implement_is_refused(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches: []\n")
    with pytest.raises(kustomize.KustomizeError, match="patches"):
        kustomize.build(tmp_path)


@pytest.mark.parametrize("image, expected", [
    ("python", ("python", None, None)),
    ("python:3.12-slim", ("python", "3.12-slim", None)),
    ("localhost:5000/ui", ("localhost:5000/ui", None, None)),
    ("us-docker.pkg.dev/p/r/ui:1@sha256:ab", ("us-docker.pkg.dev/p/r/ui", "1", "sha256:ab")),
])
def test_split_image(image, expected):
    assert kustomize.split_image(image) == expected


# --- CLI ----------------------------------------------------------------------------------------

def write_spec(tmp_path, **changes) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**BASE_SPEC, **changes}))
    return path


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_cli_train_dry_run_prints_manifests_as_yaml(tmp_path):
    result = run("train", "--gke", str(write_spec(tmp_path, nodes=2)), "--dry-run", "-n", "research")
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert [d["kind"] for d in docs] == ["Service", "Job"]
    assert docs[1]["metadata"]["namespace"] == "research"
    assert docs[1]["metadata"]["labels"]["gpuctl-owner"] == "alice"  # from GPUCTL_OWNER
    assert "&id" not in result.stdout and "*id" not in result.stdout  # no YAML aliases


def test_cli_train_bad_spec_is_one_line_and_exit_2(tmp_path):
    result = run("train", "--gke", str(write_spec(tmp_path, accelerator="nvidia-rtx-9090")), "--dry-run")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nvidia-rtx-9090" in lines[0]
    assert "Traceback" not in result.output


def test_cli_train_without_gke_points_at_run_on_a_vm(tmp_path):
    result = run("train", str(write_spec(tmp_path)))
    assert result.exit_code == 2
    assert "gpuctl run VM" in result.stderr


def test_cli_train_without_a_kubeconfig_says_how_to_get_one(tmp_path):
    result = run("train", "--gke", str(write_spec(tmp_path)), "-y")
    assert result.exit_code == 2
    assert "no kubeconfig" in result.stderr and "gpuctl gke up" in result.stderr


def test_cli_webui_up_dry_run_manifests_are_yaml_without_any_secret(tmp_path):
    result = run("webui", "up", "--dry-run", "--manifests", "--idle-minutes", "10")
    assert result.exit_code == 0, result.output
    plan, manifests = result.stdout.split("\n---\n", 1)
    assert "Web UI plan" in plan and "10 min without a request" in plan
    docs = [d for d in yaml.safe_load_all(manifests) if d]
    assert_invariants(docs)
    assert "Secret" not in {d["kind"] for d in docs}
    assert {d["spec"]["replicas"] for d in docs if d["kind"] == "Deployment"} == {1}


def test_cli_webui_up_refuses_a_model_that_does_not_fit_before_contacting_the_cluster(tmp_path):
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    result = run("webui", "up", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "nvidia-tesla-t4",
                 "--kubeconfig", str(config), "--context", "c", "-y")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "8B fp16" in result.stderr and "does not fit T4" in result.stderr
    assert "use --gpu nvidia-l4" in result.stderr and "reach" not in result.stderr


# --- one spec on both backends (issue 14) -----------------------------------------------------------

def test_one_spec_defaults_image_and_accelerator_ships_code_and_installs_requirements():
    from gpuctl.gke.manifests import CODE_KEY, code_configmap_name, secrets_name
    from gpuctl.jobspec import DEFAULT_ACCELERATOR, DEFAULT_IMAGE

    spec = parse_job_spec({"name": "lora", "command": ["python", "train.py"], "workdir": ".",
                           "requirements": "requirements.txt",
                           "secrets": {"HF_TOKEN": "env:HF_TOKEN"}})
    objects = build_job_manifests(spec, namespace="ns", owner="bob", code=b"tgz",
                                  secret_values={"HF_TOKEN": "s3cret"})
    assert_invariants(objects)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Secret", "Job"]
    configmap, secret, job = objects
    assert configmap["metadata"]["name"] == code_configmap_name("lora")
    assert configmap["binaryData"][CODE_KEY] == "dGd6"
    assert secret["metadata"]["name"] == secrets_name("lora") and secret["data"] == {"HF_TOKEN": "czNjcmV0"}
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == DEFAULT_IMAGE
    assert pod["nodeSelector"][ACCELERATOR_LABEL] == DEFAULT_ACCELERATOR
    assert container["workingDir"] == "/workspace"
    script, name, *argv = container["command"][2:]
    assert container["command"][:2] == ["/bin/sh", "-c"] and argv == ["python", "train.py"]
    assert "tar -xzf /gpuctl/code/code.tar.gz" in script and "pip install" in script
    assert script.endswith('exec "$@"')
    assert env_of(container)["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "lora-secrets", "key": "HF_TOKEN"}
    assert {"name": "code", "configMap": {"name": "lora-code"}} in pod["volumes"]
    notes = job_notes(spec)
    assert any("public" in n for n in notes) and any("ConfigMap" in n for n in notes)


def test_code_too_big_for_a_configmap_is_refused_with_the_fix():
    from gpuctl.gke.manifests import MAX_CODE_BYTES

    spec = parse_job_spec({**BASE_SPEC, "workdir": "."})
    with pytest.raises(JobSpecError, match="packs to") as err:
        build_job_manifests(spec, namespace="ns", owner="bob", code=b"x" * (MAX_CODE_BYTES + 1))
    assert ".gitignore" in err.value.hint


def test_spec_errors_are_reported_all_at_once_each_with_key_and_fix(tmp_path):
    result = run("run", "--gke", str(write_spec(tmp_path, accelerator="nvidia-rtx-9090", nodes=0,
                                                gpus=1, timeout="soon")), "--dry-run")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "has 4 problems" in line
    for key in ("accelerator:", "nodes:", "'gpus'", "timeout:"):
        assert key in line
    assert line.count("(fix: ") == 4
