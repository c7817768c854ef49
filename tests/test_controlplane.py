"""The test control plane is real: the real scheduler places GPU pods by label, taint and
nvidia.com/gpu capacity; the real Job controller applies podFailurePolicy to what the KWOK
kubelets report; RBAC is enforced. These tests check the fixture other GKE tests rely on."""

from __future__ import annotations

import subprocess
import sys

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

import tests.conftest as _conftest
from tests.k8s import binaries, processes
from tests.k8s.nodes import ACCELERATOR_LABEL, GPU_RESOURCE, GPU_TAINT
from tests.k8s.stages import OUTCOME_ANNOTATION, RUNTIME_ANNOTATION

# Imported here only until tests/conftest.py imports them for every module: a fixture imported
# by two modules would be two session fixtures, that is two control planes.
if not hasattr(_conftest, "k8s_cluster"):
    from tests.k8s.fixtures import k8s_cluster, k8s_namespace  # noqa: F401


def gpu_pod_spec(accelerator: str, *, restart_policy: str = "Always") -> dict:
    """What gpuctl asks of GKE for one GPU: the accelerator's node selector, the GPU taint's
    toleration and one nvidia.com/gpu."""
    return {
        "restartPolicy": restart_policy,
        "nodeSelector": {ACCELERATOR_LABEL: accelerator},
        "tolerations": [{"key": GPU_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{"name": "train", "image": "us-docker.pkg.dev/example/train:1",
                        "resources": {"limits": {GPU_RESOURCE: "1"}}}],
    }


def make_pod(cluster, namespace: str, name: str, spec: dict) -> None:
    cluster.core.create_namespaced_pod(namespace, {"apiVersion": "v1", "kind": "Pod",
                                                   "metadata": {"name": name}, "spec": spec})


def pod_phase(cluster, namespace: str, name: str) -> str:
    return cluster.core.read_namespaced_pod(name, namespace).status.phase


def make_job(cluster, namespace: str, name: str, *, annotations: dict | None = None,
             accelerator: str = "nvidia-l4", **job_spec) -> None:
    template = {"metadata": {"annotations": annotations or {}},
                "spec": gpu_pod_spec(accelerator, restart_policy="Never")}
    cluster.batch.create_namespaced_job(namespace, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 3, **job_spec, "template": template}})


def job_condition(cluster, namespace: str, name: str, condition: str):
    """The Job's condition of that type when it is True, else None."""
    job = cluster.batch.read_namespaced_job(name, namespace)
    return next((c for c in job.status.conditions or [] if c.type == condition and c.status == "True"), None)


def job_pods(cluster, namespace: str, job: str) -> list[client.V1Pod]:
    return cluster.pods(namespace, label_selector=f"batch.kubernetes.io/job-name={job}")


def test_gpu_pods_go_to_free_l4_nodes_only(k8s_cluster, k8s_namespace):
    for name in ("l4-a", "l4-b", "l4-c"):
        make_pod(k8s_cluster, k8s_namespace, name, gpu_pod_spec("nvidia-l4"))

    k8s_cluster.wait_for(lambda: [pod_phase(k8s_cluster, k8s_namespace, n) for n in ("l4-a", "l4-b")]
                         == ["Running", "Running"], what="two L4 pods Running")
    pods = {pod.metadata.name: pod for pod in k8s_cluster.pods(k8s_namespace)}
    nodes = {pods[n].spec.node_name for n in ("l4-a", "l4-b")}
    assert len(nodes) == 2, "each L4 node has one GPU, so the two pods must be on different nodes"
    for node in nodes:
        assert k8s_cluster.core.read_node(node).metadata.labels[ACCELERATOR_LABEL] == "nvidia-l4"
    # Both L4 GPUs are taken: the third pod waits even though the A100 node is free.
    k8s_cluster.wait_for(lambda: unschedulable_condition(k8s_cluster, k8s_namespace, "l4-c"),
                         what="l4-c unschedulable")
    assert k8s_cluster.core.read_namespaced_pod("l4-c", k8s_namespace).spec.node_name is None


def unschedulable_condition(cluster, namespace: str, name: str):
    pod = cluster.core.read_namespaced_pod(name, namespace)
    return next((c for c in pod.status.conditions or []
                 if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"), None)


def test_gpu_pod_for_an_accelerator_without_nodes_stays_pending(k8s_cluster, k8s_namespace):
    make_pod(k8s_cluster, k8s_namespace, "h100", gpu_pod_spec("nvidia-h100-80gb"))

    condition = k8s_cluster.wait_for(lambda: unschedulable_condition(k8s_cluster, k8s_namespace, "h100"),
                                     what="h100 pod unschedulable")
    assert "didn't match Pod's node affinity/selector" in condition.message
    events = k8s_cluster.core.list_namespaced_event(k8s_namespace, field_selector="involvedObject.name=h100")
    assert "FailedScheduling" in {event.reason for event in events.items}
    assert pod_phase(k8s_cluster, k8s_namespace, "h100") == "Pending"


def test_gke_gives_gpu_pods_the_gpu_toleration(k8s_cluster, k8s_namespace):
    spec = gpu_pod_spec("nvidia-tesla-a100")
    del spec["tolerations"]  # GKE's ExtendedResourceToleration admission adds it
    make_pod(k8s_cluster, k8s_namespace, "a100", spec)

    k8s_cluster.wait_for(lambda: pod_phase(k8s_cluster, k8s_namespace, "a100") == "Running",
                         what="a100 pod Running")
    pod = k8s_cluster.core.read_namespaced_pod("a100", k8s_namespace)
    assert pod.spec.node_name == "gke-test-a100-spot-0"
    assert any(t.key == GPU_RESOURCE and t.operator == "Exists" for t in pod.spec.tolerations)


def test_job_completes(k8s_cluster, k8s_namespace):
    make_job(k8s_cluster, k8s_namespace, "train")

    k8s_cluster.wait_for(lambda: job_condition(k8s_cluster, k8s_namespace, "train", "Complete"),
                         what="job Complete")
    [pod] = job_pods(k8s_cluster, k8s_namespace, "train")
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


def test_indexed_job_runs_its_indexes_in_parallel_on_separate_gpus(k8s_cluster, k8s_namespace):
    # 3 s per pod, so both indexes run at the same time and each needs its own L4 node.
    make_job(k8s_cluster, k8s_namespace, "sweep", completions=2, parallelism=2,
             completionMode="Indexed", annotations={RUNTIME_ANNOTATION: "3s"})

    k8s_cluster.wait_for(lambda: job_condition(k8s_cluster, k8s_namespace, "sweep", "Complete"),
                         what="indexed job Complete")
    pods = job_pods(k8s_cluster, k8s_namespace, "sweep")
    indexes = sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert indexes == ["0", "1"]
    assert len({p.spec.node_name for p in pods}) == 2
    assert k8s_cluster.batch.read_namespaced_job("sweep", k8s_namespace).status.completed_indexes == "0,1"


def test_code_error_fails_the_job_through_its_pod_failure_policy(k8s_cluster, k8s_namespace):
    make_job(k8s_cluster, k8s_namespace, "buggy", annotations={OUTCOME_ANNOTATION: "fail"},
             podFailurePolicy={"rules": [
                 {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}]})

    failed = k8s_cluster.wait_for(lambda: job_condition(k8s_cluster, k8s_namespace, "buggy", "Failed"),
                                  what="job Failed")
    assert failed.reason == "PodFailurePolicy"
    [pod] = job_pods(k8s_cluster, k8s_namespace, "buggy")  # FailJob: no retry despite backoffLimit 3
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 1


def test_preempted_pod_is_replaced_and_the_job_then_completes(k8s_cluster, k8s_namespace):
    # `hold` keeps each attempt running until the test decides how it ends.
    make_job(k8s_cluster, k8s_namespace, "spot", annotations={OUTCOME_ANNOTATION: "hold"},
             backoffLimit=0, podFailurePolicy={"rules": [
                 {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                 {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [0]}}]})

    def running_pods():
        return [p for p in job_pods(k8s_cluster, k8s_namespace, "spot") if p.status.phase == "Running"]

    [first] = k8s_cluster.wait_for(running_pods, what="first attempt Running")
    k8s_cluster.preempt_pod(k8s_namespace, first.metadata.name)

    [second] = k8s_cluster.wait_for(
        lambda: [p for p in running_pods() if p.metadata.uid != first.metadata.uid],
        what="a replacement pod Running")
    k8s_cluster.set_pod_outcome(k8s_namespace, second.metadata.name, "succeed")
    k8s_cluster.wait_for(lambda: job_condition(k8s_cluster, k8s_namespace, "spot", "Complete"),
                         what="job Complete after the preemption")

    preempted = k8s_cluster.core.read_namespaced_pod(first.metadata.name, k8s_namespace)
    assert preempted.status.phase == "Failed"
    disruption = next(c for c in preempted.status.conditions if c.type == "DisruptionTarget")
    assert (disruption.status, disruption.reason) == ("True", "TerminationByKubelet")
    assert preempted.status.container_statuses[0].state.terminated.exit_code == 137
    assert len(job_pods(k8s_cluster, k8s_namespace, "spot")) == 2


def test_namespace_teardown_frees_the_gpus_of_running_job_pods(k8s_cluster, k8s_namespace):
    # Another test's Job holds both L4 GPUs; podFailurePolicy makes the Job controller keep
    # its finalizer on each pod until the fake kubelet reports it terminated.
    other = k8s_cluster.create_namespace("gpu-holder")
    make_job(k8s_cluster, other, "holder", parallelism=2, completions=2,
             annotations={OUTCOME_ANNOTATION: "hold"},
             podFailurePolicy={"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]})
    k8s_cluster.wait_for(lambda: [p.status.phase for p in job_pods(k8s_cluster, other, "holder")]
                         == ["Running", "Running"], what="both L4 GPUs taken")

    k8s_cluster.delete_namespace(other)

    make_pod(k8s_cluster, k8s_namespace, "next", gpu_pod_spec("nvidia-l4"))
    k8s_cluster.wait_for(lambda: pod_phase(k8s_cluster, k8s_namespace, "next") == "Running",
                         what="an L4 pod Running after the teardown")


def test_preempting_a_node_disrupts_its_running_pods(k8s_cluster, k8s_namespace):
    make_pod(k8s_cluster, k8s_namespace, "server", gpu_pod_spec("nvidia-tesla-a100"))
    k8s_cluster.wait_for(lambda: pod_phase(k8s_cluster, k8s_namespace, "server") == "Running",
                         what="a100 pod Running")

    assert k8s_cluster.preempt_node("gke-test-a100-spot-0") == [f"{k8s_namespace}/server"]

    k8s_cluster.wait_for(lambda: pod_phase(k8s_cluster, k8s_namespace, "server") == "Failed",
                         what="the pod Failed by the preemption")
    pod = k8s_cluster.core.read_namespaced_pod("server", k8s_namespace)
    assert pod.status.reason == "Terminated"
    assert any(c.type == "DisruptionTarget" and c.status == "True" for c in pod.status.conditions)


def test_rbac_is_enforced_and_the_apiserver_is_the_pinned_version(k8s_cluster, k8s_namespace):
    version = client.VersionApi(k8s_cluster.api_client()).get_code()
    pinned = dict(line.split("=", 1) for line in
                  (binaries.REPO_ROOT / "scripts/controlplane-versions.env").read_text().splitlines()
                  if line and not line.startswith("#"))
    assert version.git_version == pinned["K8S_VERSION"]

    core = k8s_cluster.core
    core.create_namespaced_service_account(k8s_namespace, {"metadata": {"name": "reader"}})
    token = core.create_namespaced_service_account_token(
        "reader", k8s_namespace, {"spec": {"expirationSeconds": 600}}).status.token
    reader = client.CoreV1Api(k8s_cluster.api_client(token=token))

    with pytest.raises(ApiException) as denied:
        reader.list_namespaced_pod(k8s_namespace)
    assert denied.value.status == 403

    rbac = client.RbacAuthorizationV1Api(k8s_cluster.api_client())
    rbac.create_namespaced_role(k8s_namespace, {"metadata": {"name": "pod-reader"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})
    rbac.create_namespaced_role_binding(k8s_namespace, {
        "metadata": {"name": "reader-reads-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": k8s_namespace}]})
    k8s_cluster.wait_for(lambda: _allowed(reader, k8s_namespace), what="RoleBinding to take effect")


def _allowed(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.list_namespaced_pod(namespace)
    except ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True


def test_missing_binaries_fail_with_the_build_script_named(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(binaries.MissingBinaries, match="scripts/build-controlplane.sh"):
        binaries.require_binaries()


def test_sweep_kills_processes_of_crashed_runs_only(tmp_path, monkeypatch):
    monkeypatch.setattr(processes, "RUNS_DIR", tmp_path)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]

    crashed = processes.new_run_dir()
    dead_owner = _pid_of_exited_process()
    (crashed / "owner.pid").write_text(str(dead_owner))
    orphan = processes.ManagedProcess(crashed, "orphan", [*sleeper, str(crashed)])
    live = processes.new_run_dir()  # owned by this pytest process, like a parallel session
    neighbour = processes.ManagedProcess(live, "neighbour", [*sleeper, str(live)])
    try:
        assert processes.sweep_leftover_runs() == [crashed.name]
        assert orphan.popen.wait(5) == -9
        assert not crashed.exists()
        assert neighbour.exited() is None and live.exists()
    finally:
        neighbour.stop(grace=0)
        orphan.stop(grace=0)


def _pid_of_exited_process() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid
