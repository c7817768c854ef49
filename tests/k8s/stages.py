"""KWOK Stages: what the fake kubelets do to the nodes and pods they own.

KWOK has no built-in behaviour; it applies the first Stage whose selector matches an object,
after the Stage's delay, by patching the object's status from a Go template. These Stages
make a pod bound to a KWOK node start and become Ready, then end the way the test asks:

  annotation gpuctl.test/outcome   what the pod does once Running
  (none), pod owned by a Job       succeeds (exit 0), like a finished training step
  (none), any other pod            keeps running, like a Web UI server
  succeed                          succeeds (exit 0), whoever owns it
  fail                             fails like a code error: phase Failed, exit code 1
                                   (or gpuctl.test/exit-code)
  disrupt                          is preempted like a spot VM: phase Failed, condition
                                   DisruptionTarget=True (TerminationByKubelet), exit code 137
  hold                             keeps running until the annotation changes

A deleted pod ends Failed (exit code 143, as after the kubelet's SIGTERM) and is then removed
once its finalizers are gone. gpuctl.test/runtime (a Go duration such as "3s") sets how long
the pod runs before its outcome; default 1s. The outcome annotation can be set on the pod template (every attempt
does it) or patched onto one live pod (see K8sCluster.set_pod_outcome), which is how a test
preempts one attempt and lets the replacement succeed.
"""

from __future__ import annotations

from pathlib import Path

import yaml

OUTCOME_ANNOTATION = "gpuctl.test/outcome"
RUNTIME_ANNOTATION = "gpuctl.test/runtime"
EXIT_CODE_ANNOTATION = "gpuctl.test/exit-code"
OUTCOMES = ("succeed", "fail", "disrupt", "hold")

# The annotation nodes need for our kwok to manage them (its --manage-nodes-with-annotation-selector).
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")

DEFAULT_RUNTIME_MS = 1000
START_DELAY_MS = 200

# A jq expression giving a pod's effective outcome, so each ending Stage selects on one value
# and no two of them can match the same pod.
_EFFECTIVE_OUTCOME = (
    f'.metadata.annotations["{OUTCOME_ANNOTATION}"] // '
    '(if ([.metadata.ownerReferences[]? | select(.kind == "Job")] | length) > 0 '
    'then "succeed" else "run" end)'
)
_READY_STATUS = '.status.conditions[]? | select(.type == "Ready") | .status'


def _expr(key: str, operator: str, *values: str) -> dict:
    expression = {"key": key, "operator": operator}
    if values:
        expression["values"] = list(values)
    return expression


def _stage(name: str, kind: str, match: list[dict], next_status: str, *,
           delay_ms: int = 0, delay_from: str | None = None) -> dict:
    spec: dict = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": match},
        "next": {"statusTemplate": next_status},
    }
    if delay_ms or delay_from:
        spec["delay"] = {"durationMilliseconds": delay_ms}
        if delay_from:
            spec["delay"]["durationFrom"] = {"expressionFrom": delay_from}
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage",
            "metadata": {"name": name}, "spec": spec}


# --- nodes -----------------------------------------------------------------------------------

_NODE_CONDITIONS = """\
{{ $now := Now }}
conditions:
{{ range $c := list
     (list "Ready" "True" "KubeletReady" "kubelet is posting ready status")
     (list "MemoryPressure" "False" "KubeletHasSufficientMemory" "kubelet has sufficient memory available")
     (list "DiskPressure" "False" "KubeletHasNoDiskPressure" "kubelet has no disk pressure")
     (list "PIDPressure" "False" "KubeletHasSufficientPID" "kubelet has sufficient PID available")
     (list "NetworkUnavailable" "False" "RouteCreated" "RouteController created a route") }}
- type: {{ index $c 0 | Quote }}
  status: {{ index $c 1 | Quote }}
  reason: {{ index $c 2 | Quote }}
  message: {{ index $c 3 | Quote }}
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ or $.metadata.creationTimestamp $now | Quote }}
{{ end }}
"""

# Capacity and allocatable are left out: the patch keeps what the node was created with.
NODE_READY = _stage(
    "gpuctl-node-ready", "Node",
    [_expr(_READY_STATUS, "NotIn", "True")],
    _NODE_CONDITIONS + """\
addresses:
- type: InternalIP
  address: {{ NodeIP | Quote }}
- type: Hostname
  address: {{ .metadata.name | Quote }}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  osImage: Container-Optimized OS from Google
  containerRuntimeVersion: containerd://2.0.0
  kernelVersion: 6.6.0-gke
  kubeletVersion: {{ Version | printf "kwok-%s" | Quote }}
  kubeProxyVersion: ""
  bootID: ""
  machineID: ""
  systemUUID: ""
phase: Running
""")

# Kubelets also re-post node status now and then; node leases (which kwok renews) are what
# keeps the node-lifecycle controller from marking the node NotReady.
NODE_HEARTBEAT = _stage(
    "gpuctl-node-heartbeat", "Node",
    [_expr(_READY_STATUS, "In", "True")],
    _NODE_CONDITIONS, delay_ms=60_000)


# --- pods ------------------------------------------------------------------------------------

_NOT_DELETING = _expr(".metadata.deletionTimestamp", "DoesNotExist")

POD_START = _stage(
    "gpuctl-pod-start", "Pod",
    [_NOT_DELETING, _expr(".status.phase", "In", "Pending"), _expr(_READY_STATUS, "NotIn", "True")],
    """\
{{ $now := Now }}
conditions:
- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
{{ range .spec.readinessGates }}
- {type: {{ .conditionType | Quote }}, status: "True", lastTransitionTime: {{ $now | Quote }}}
{{ end }}
{{ with .spec.initContainers }}
initContainerStatuses:
{{ range . }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  restartCount: 0
  {{ if eq (or .restartPolicy "") "Always" }}
  ready: true
  started: true
  state: {running: {startedAt: {{ $now | Quote }}}}
  {{ else }}
  ready: true
  state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}}
  {{ end }}
{{ end }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: true
  started: true
  restartCount: 0
  state: {running: {startedAt: {{ $now | Quote }}}}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName (or .spec.hostNetwork false) (or .metadata.uid "") (or .metadata.name "") (or .metadata.namespace "") | Quote }}
phase: Running
startTime: {{ $now | Quote }}
""", delay_ms=START_DELAY_MS)


def _ending(name: str, outcome: str, status: str) -> dict:
    return _stage(
        name, "Pod",
        [_NOT_DELETING, _expr(".status.phase", "In", "Running"),
         _expr(_EFFECTIVE_OUTCOME, "In", outcome)],
        status, delay_ms=DEFAULT_RUNTIME_MS,
        delay_from=f'.metadata.annotations["{RUNTIME_ANNOTATION}"]')


def _terminated_containers(exit_code: str, reason: str) -> str:
    return """\
{{ $now := Now }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: false
  started: false
  restartCount: 0
  state: {terminated: {exitCode: %s, reason: %s, startedAt: {{ or $.status.startTime $now | Quote }}, finishedAt: {{ $now | Quote }}}}
{{ end }}
""" % (exit_code, reason)


def _not_ready(reason: str) -> str:
    return f"""\
- {{type: Ready, status: "False", reason: {reason}, lastTransitionTime: {{{{ $now | Quote }}}}}}
- {{type: ContainersReady, status: "False", reason: {reason}, lastTransitionTime: {{{{ $now | Quote }}}}}}
"""


POD_SUCCEED = _ending(
    "gpuctl-pod-succeed", "succeed",
    _terminated_containers("0", "Completed") + "conditions:\n" + _not_ready("PodCompleted")
    + "phase: Succeeded\n")

POD_FAIL = _ending(
    "gpuctl-pod-fail", "fail",
    f'{{{{ $code := index (or .metadata.annotations dict) "{EXIT_CODE_ANNOTATION}" | default "1" }}}}\n'
    + _terminated_containers("{{ $code }}", "Error") + "conditions:\n" + _not_ready("PodFailed")
    + "phase: Failed\n")

# What the kubelet's graceful node shutdown writes when GCE reclaims a spot VM.
_SHUTDOWN_MESSAGE = "Pod was terminated in response to imminent node shutdown."
POD_DISRUPT = _ending(
    "gpuctl-pod-disrupt", "disrupt",
    _terminated_containers("137", "Error") + "conditions:\n" + _not_ready("PodFailed")
    + f"""\
- type: DisruptionTarget
  status: "True"
  reason: TerminationByKubelet
  message: "{_SHUTDOWN_MESSAGE}"
  lastTransitionTime: {{{{ $now | Quote }}}}
phase: Failed
reason: Terminated
message: "{_SHUTDOWN_MESSAGE}"
""")

# Deleting a pod makes the kubelet stop its containers and report a terminal phase before
# the pod goes away. The Job controller depends on that: with a podFailurePolicy it keeps its
# tracking finalizer on a deleted pod until the pod is Failed or Succeeded.
POD_TERMINATE = _stage(
    "gpuctl-pod-terminate", "Pod",
    [_expr(".metadata.deletionTimestamp", "Exists"), _expr(".status.phase", "In", "Pending", "Running")],
    # 143: the container exited on the kubelet's SIGTERM.
    _terminated_containers("143", "Error") + "conditions:\n" + _not_ready("PodFailed") + "phase: Failed\n",
    delay_ms=100)

# Then the pod is removed, once its finalizers are gone (their owners remove them).
POD_DELETE = {
    "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage",
    "metadata": {"name": "gpuctl-pod-delete"},
    "spec": {
        "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
        "selector": {"matchExpressions": [
            _expr(".metadata.deletionTimestamp", "Exists"),
            _expr(".status.phase", "In", "Succeeded", "Failed"),
            _expr(".metadata.finalizers", "DoesNotExist")]},
        "delay": {"durationMilliseconds": 100},
        "next": {"delete": True},
    },
}

ALL_STAGES = (NODE_READY, NODE_HEARTBEAT, POD_START, POD_SUCCEED, POD_FAIL, POD_DISRUPT,
              POD_TERMINATE, POD_DELETE)


class _TemplateDumper(yaml.SafeDumper):
    """Writes the multi-line templates as `|` blocks, so the file reads like the code above
    when a test fails and someone opens the run's kwok-stages.yaml."""


_TemplateDumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def write_stages(path: Path) -> Path:
    """kwok reads Stages from its --config file, a multi-document YAML."""
    path.write_text(yaml.dump_all(ALL_STAGES, Dumper=_TemplateDumper, sort_keys=False))
    return path
