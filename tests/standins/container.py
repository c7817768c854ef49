"""A stand-in for the GKE API v1 (REST), served on 127.0.0.1, for the real google-cloud-container
client (`transport="rest"`, `client_options={"api_endpoint": standin.endpoint}`, anonymous
credentials).

It serves projects.locations.clusters create/get/list/delete (list with location "-" for all
locations), clusters.nodePools create/get/list/delete, operations get, and, for the same
project, Compute Engine's instanceGroupManagers aggregatedList: GKE keeps a node pool's size in
the managed instance groups it makes, so that is where a client reads it. Operations run for
`operation_polls` GETs before they are DONE; one cluster runs one operation at a time, as GKE
(and the provider's per-cluster lock) requires.

Faults on demand: the API disabled (403 SERVICE_DISABLED), any error on the next N matching
requests (404, 503...), Compute Engine refusing the instance group list. `set_pool_size`
plays the cluster autoscaler. Every request is recorded.

    with ContainerStandIn(project="my-project-1") as gke:
        client = container_v1.ClusterManagerClient(
            transport="rest", client_options={"api_endpoint": gke.endpoint},
            credentials=AnonymousCredentials())
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Callable

from gpuctl_infra.catalog import GPUS, REGIONS
from tests.standins import container_shapes as shapes
from tests.standins import discovery
from tests.standins.loopback import HttpCall, LoopbackServer
from tests.standins.container_shapes import ApiError, invalid, not_found

NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?$")
# Zones of the regions gpuctl knows, whether or not a GPU is there (GKE runs in all of them).
ZONES = {f"{region}-{suffix}" for region in REGIONS for suffix in "abcf"} - {"asia-northeast1-f"}
_L = r"/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)"
_CL = "container.projects.locations"
# (verb, path, handler, the method of the discovery document it is: tests/test_api_conformance.py)
_ROUTES = [
    ("GET", _L + r"/clusters", "list_clusters", _CL + ".clusters.list"),
    ("POST", _L + r"/clusters", "create_cluster", _CL + ".clusters.create"),
    ("GET", _L + r"/clusters/(?P<c>[^/:]+)", "get_cluster", _CL + ".clusters.get"),
    ("DELETE", _L + r"/clusters/(?P<c>[^/:]+)", "delete_cluster", _CL + ".clusters.delete"),
    ("GET", _L + r"/clusters/(?P<c>[^/]+)/nodePools", "list_pools", _CL + ".clusters.nodePools.list"),
    ("POST", _L + r"/clusters/(?P<c>[^/]+)/nodePools", "create_pool", _CL + ".clusters.nodePools.create"),
    ("GET", _L + r"/clusters/(?P<c>[^/]+)/nodePools/(?P<n>[^/:]+)", "get_pool", _CL + ".clusters.nodePools.get"),
    ("DELETE", _L + r"/clusters/(?P<c>[^/]+)/nodePools/(?P<n>[^/:]+)", "delete_pool",
     _CL + ".clusters.nodePools.delete"),
    ("POST", _L + r"/clusters/(?P<c>[^/]+)/nodePools/(?P<n>[^/:]+):setAutoscaling", "set_pool_autoscaling",
     _CL + ".clusters.nodePools.setAutoscaling"),
    ("GET", _L + r"/operations/(?P<o>[^/:]+)", "get_operation", _CL + ".operations.get"),
    ("GET", r"/compute/v1/projects/(?P<p>[^/]+)/aggregated/instanceGroupManagers", "list_igms",
     "compute.instanceGroupManagers.aggregatedList"),
]


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    body: dict | None
    authorization: str | None


@dataclass
class Fault:
    error: ApiError
    times: int
    method: str | None = None
    path_contains: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method == method)
                and (self.path_contains is None or self.path_contains in path))


@dataclass
class _Op:
    body: dict
    polls_left: int
    on_done: Callable[[], None] | None = None
    cluster_key: tuple | None = None


@dataclass
class ContainerStandIn(LoopbackServer):
    project: str = "my-project-1"
    operation_polls: int = 1
    endpoint_ip: str = "203.0.113.10"  # what clusters report as their endpoint
    ca_pem: str = shapes.TEST_CA_PEM
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.timezone.utc))
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self):
        self.clusters: dict[tuple[str, str, str], dict] = {}
        self.igms: dict[tuple[str, str, str], dict] = {}
        self._ops: dict[tuple[str, str, str], _Op] = {}
        self._busy: dict[tuple, str] = {}  # cluster key -> its running operation
        self._faults: list[Fault] = []
        self._disabled = False
        self._serial = 0
        self._lock = threading.RLock()
        self.contract_violations: list[str] = []  # what the discovery documents refused

    # -- faults and the autoscaler's part ---------------------------------------------------
    def disable_api(self, disabled: bool = True) -> None:
        """Every GKE request gets 403 SERVICE_DISABLED, as with the API not enabled."""
        self._disabled = disabled

    def fail_next(self, code: int, status: str, message: str, *, times: int = 1,
                  method: str | None = None, path_contains: str | None = None) -> None:
        self._faults.append(Fault(ApiError(code, status, message), times, method, path_contains))

    def deny_compute(self) -> None:
        self.fail_next(403, "PERMISSION_DENIED", "Required 'compute.instanceGroupManagers.list' "
                       "permission for 'projects/" + self.project + "'", times=10**6,
                       path_contains="/compute/v1/")

    def set_pool_size(self, cluster: str, pool: str, size: int) -> None:
        """What the cluster autoscaler does: resize the pool's instance group."""
        with self._lock:
            found = self._pool(self._cluster_key_by_name(cluster), pool)
            for url in found["instanceGroupUrls"]:
                zone, name = url.split("/zones/")[1].split("/instanceGroupManagers/")
                self.igms[(self.project, zone, name)]["targetSize"] = size
            self._cluster_node_count(self._cluster_key_by_name(cluster))

    def cluster_names(self) -> list[str]:
        return sorted(key[2] for key in self.clusters)

    # -- server ------------------------------------------------------------------------------
    def serve(self, call: HttpCall) -> tuple[int, dict]:
        try:
            body = call.json()
        except ValueError:
            return 400, invalid("Invalid JSON payload received.").body()
        return self.answer(call.method, call.path, call.query, body, call.authorization)

    # -- dispatch ----------------------------------------------------------------------------
    def answer(self, method: str, path: str, query: dict, body: dict | None,
               authorization: str | None) -> tuple[int, dict]:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, body, authorization))
            api = "compute.v1" if path.startswith("/compute/") else "container.v1"
            documented, problems = discovery.request_problems(api, method, path, body)
            if documented is not None and problems:  # Google's JSON front end refuses it first
                self.contract_violations.extend(f"request {documented.id}: {p}" for p in problems)
                return 400, invalid(f"Invalid JSON payload received. {'; '.join(problems)} "
                                    f"(checked against {api}.json)").body()
            try:
                answer = self._route(method, path, body or {})
            except ApiError as err:
                return err.code, err.body()
            problems = discovery.response_problems(api, documented, answer) if documented else []
            if problems:  # a stand-in defect: fail loudly so the test that reached it sees it
                self.contract_violations.extend(f"response {documented.id}: {p}" for p in problems)
                return 500, ApiError(500, "INTERNAL", f"stand-in defect: its answer to {documented.id} "
                                     f"violates {api}.json: {'; '.join(problems)}").body()
            return 200, answer

    def _route(self, method: str, path: str, body: dict) -> dict:
        for fault in self._faults:
            if fault.times > 0 and fault.matches(method, path):
                fault.times -= 1
                raise fault.error
        if self._disabled and path.startswith("/v1/"):
            raise shapes.api_disabled(self.project)
        for verb, pattern, handler, _documented in _ROUTES:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                args = match.groupdict()
                if args["p"] != self.project:
                    raise ApiError(403, "PERMISSION_DENIED", f"Permission denied on resource project {args['p']}.")
                return getattr(self, f"_{handler}")(args, body)
        raise ApiError(404, "NOT_FOUND", f"{method} {path} is not served here.")

    # -- helpers -----------------------------------------------------------------------------
    def _key(self, args: dict) -> tuple[str, str, str]:
        return (args["p"], args["l"], args["c"])

    def _cluster(self, key: tuple[str, str, str]) -> dict:
        if key not in self.clusters:
            raise not_found(f"projects/{key[0]}/locations/{key[1]}/clusters/{key[2]}")
        return self.clusters[key]

    def _cluster_key_by_name(self, name: str) -> tuple[str, str, str]:
        return next(key for key in self.clusters if key[2] == name)

    def _pool(self, key: tuple, name: str) -> dict:
        for pool in self._cluster(key)["nodePools"]:
            if pool["name"] == name:
                return pool
        raise not_found(f"projects/{key[0]}/zones/{key[1]}/clusters/{key[2]}/nodePools/{name}")

    def _start_op(self, key: tuple, op_type: str, target: str, on_done: Callable[[], None]) -> dict:
        if key in self._busy:
            raise ApiError(400, "FAILED_PRECONDITION",
                           f"Cluster is running incompatible operation {self._busy[key]}.")
        self._serial += 1
        millis = int(self.clock().timestamp() * 1000)
        name = f"operation-{millis}-{self._serial:08x}"
        body = shapes.operation(key[0], key[1], name, op_type, target, self.clock())
        record = _Op(body, self.operation_polls, on_done, key)
        self._ops[(key[0], key[1], name)] = record
        self._busy[key] = name
        if record.polls_left <= 0:
            self._finish(record)
        return dict(body)

    def _finish(self, record: _Op) -> None:
        record.body.update(status="DONE", endTime=shapes.rfc3339(self.clock()))
        self._busy.pop(record.cluster_key, None)
        if record.on_done:
            record.on_done()

    def _cluster_node_count(self, key: tuple) -> None:
        cluster = self.clusters.get(key)
        if cluster is not None:
            cluster["currentNodeCount"] = sum(
                self.igms.get((key[0], url.split("/zones/")[1].split("/")[0], url.rsplit("/", 1)[1]),
                              {}).get("targetSize", 0)
                for pool in cluster["nodePools"] for url in pool["instanceGroupUrls"])

    # -- clusters ------------------------------------------------------------------------------
    def _list_clusters(self, args: dict, body: dict) -> dict:
        found = [c for (p, loc, _), c in sorted(self.clusters.items())
                 if p == args["p"] and args["l"] in ("-", loc)]
        return {"clusters": found} if found else {}

    def _get_cluster(self, args: dict, body: dict) -> dict:
        return self._cluster(self._key(args))

    def _create_cluster(self, args: dict, body: dict) -> dict:
        spec = shapes.canonical("Cluster", body.get("cluster") or {})
        name, location = spec.get("name", ""), args["l"]
        if location not in ZONES:
            raise invalid(f"Location \"{location}\" is not a zone gpuctl's stand-in serves.")
        if not NAME_RE.fullmatch(name):
            raise invalid("Invalid value for field \"cluster.name\": must be 1-40 characters, "
                          "lowercase letters, numbers and hyphens, starting with a letter.")
        key = (args["p"], location, name)
        if key in self.clusters:
            raise ApiError(409, "ALREADY_EXISTS", f"Already exists: projects/{key[0]}/locations/{location}/clusters/{name}.")
        pools = spec.pop("nodePools", None) or []
        initial = int(spec.get("initialNodeCount") or 0)
        if not pools and initial <= 0:
            raise invalid("Cluster.initial_node_count must be greater than zero.")
        pool_wanted = (spec.get("workloadIdentityConfig") or {}).get("workloadPool")
        if pool_wanted is not None and pool_wanted != f"{args['p']}.svc.id.goog":
            raise invalid(f"Workload Identity pool {pool_wanted!r} must be \"{args['p']}.svc.id.goog\".")
        if not pools:
            pools = [{"name": "default-pool", "initialNodeCount": initial,
                      "config": spec.get("nodeConfig") or {}}]
        now = self.clock()
        cluster = {
            **spec, "name": name, "location": location, "zone": location, "locations": [location],
            "network": spec.get("network", "default"), "status": "PROVISIONING",
            "selfLink": shapes.cluster_link(args["p"], location, name),
            "createTime": shapes.rfc3339(now), "initialClusterVersion": shapes.MASTER_VERSION,
            "currentMasterVersion": shapes.MASTER_VERSION, "currentNodeVersion": shapes.MASTER_VERSION,
            "id": shapes.short_hash(name, location) * 4, "labelFingerprint": shapes.short_hash(
                json.dumps(spec.get("resourceLabels") or {}, sort_keys=True)),
            "masterAuth": {"clusterCaCertificate": shapes.ca_data(self.ca_pem)},
            "nodePools": [self._new_pool(key, p) for p in pools],
        }
        self.clusters[key] = cluster

        def done() -> None:
            cluster.update(status="RUNNING", endpoint=self.endpoint_ip)
            for pool in cluster["nodePools"]:
                self._pool_ready(key, pool)

        return self._start_op(key, "CREATE_CLUSTER", cluster["selfLink"], done)

    def _delete_cluster(self, args: dict, body: dict) -> dict:
        key = self._key(args)
        cluster = self._cluster(key)
        cluster["status"] = "STOPPING"

        def done() -> None:
            for pool in cluster["nodePools"]:
                self._drop_igms(key, pool)
            self.clusters.pop(key, None)

        return self._start_op(key, "DELETE_CLUSTER", cluster["selfLink"], done)

    # -- node pools ----------------------------------------------------------------------------
    def _new_pool(self, key: tuple, spec: dict) -> dict:
        name = spec.get("name", "")
        if not NAME_RE.fullmatch(name):
            raise invalid(f"Invalid node pool name {name!r}.")
        config = shapes.normalise_node_config(spec.get("config") or {})
        for accel in config.get("accelerators", []):
            gpu = accel.get("acceleratorType")
            if gpu not in GPUS or key[1] not in GPUS[gpu].zones_in(key[1].rsplit("-", 1)[0]):
                raise invalid(f"Accelerator type \"{gpu}\" does not exist in zone {key[1]}.")
        for taint in config.get("taints", []):
            if taint.get("effect") not in ("NO_SCHEDULE", "PREFER_NO_SCHEDULE", "NO_EXECUTE"):
                raise invalid(f"Invalid taint effect {taint.get('effect')!r}.")
        group = shapes.igm_name(key[2], name)
        pool = {**spec, "name": name, "config": config, "locations": [key[1]],
                "initialNodeCount": int(spec.get("initialNodeCount") or 0),
                "status": "PROVISIONING", "version": shapes.MASTER_VERSION,
                "selfLink": f"{shapes.cluster_link(*key)}/nodePools/{name}",
                "instanceGroupUrls": [f"{shapes.COMPUTE_BASE}projects/{key[0]}/zones/{key[1]}/"
                                      f"instanceGroupManagers/{group}"],
                "podIpv4CidrSize": 24, "etag": shapes.short_hash(name, json.dumps(config, sort_keys=True))}
        if "autoscaling" in pool:
            pool["autoscaling"] = {"enabled": True, **pool["autoscaling"]}
        return pool

    def _pool_ready(self, key: tuple, pool: dict) -> None:
        pool["status"] = "RUNNING"
        for url in pool["instanceGroupUrls"]:
            zone, name = url.split("/zones/")[1].split("/instanceGroupManagers/")
            self.igms[(key[0], zone, name)] = shapes.igm(key[0], zone, name, pool["initialNodeCount"])
        self._cluster_node_count(key)

    def _drop_igms(self, key: tuple, pool: dict) -> None:
        for url in pool["instanceGroupUrls"]:
            zone, name = url.split("/zones/")[1].split("/instanceGroupManagers/")
            self.igms.pop((key[0], zone, name), None)

    def _list_pools(self, args: dict, body: dict) -> dict:
        return {"nodePools": self._cluster(self._key(args))["nodePools"]}

    def _get_pool(self, args: dict, body: dict) -> dict:
        return self._pool(self._key(args), args["n"])

    def _create_pool(self, args: dict, body: dict) -> dict:
        key = self._key(args)
        cluster = self._cluster(key)
        if cluster["status"] != "RUNNING":
            raise ApiError(400, "FAILED_PRECONDITION", f"Cluster is {cluster['status']}; node pools "
                           "can be added to a RUNNING cluster only.")
        spec = shapes.canonical("NodePool", body.get("nodePool") or {})
        if any(p["name"] == spec.get("name") for p in cluster["nodePools"]):
            raise ApiError(409, "ALREADY_EXISTS", f"Already exists: node pool {spec.get('name')}.")
        pool = self._new_pool(key, spec)
        operation = self._start_op(key, "CREATE_NODE_POOL", pool["selfLink"],
                                   lambda: self._pool_ready(key, pool))
        cluster["nodePools"].append(pool)
        return operation

    def _set_pool_autoscaling(self, args: dict, body: dict) -> dict:
        """nodePools.setAutoscaling: "Sets the autoscaling settings for the specified node pool"
        (container.v1), in place; the pool and its nodes stay."""
        key = self._key(args)
        pool = self._pool(key, args["n"])
        wanted = shapes.canonical("NodePoolAutoscaling", body.get("autoscaling") or {})

        def done() -> None:
            pool["autoscaling"] = {"enabled": True, **wanted} if wanted.get("enabled", True) else wanted

        # The operation type GKE reports for setAutoscaling is unverified: UPDATE_CLUSTER is one
        # of the document's Operation.operationType values, and the client reads only the status.
        return self._start_op(key, "UPDATE_CLUSTER", pool["selfLink"], done)

    def _delete_pool(self, args: dict, body: dict) -> dict:
        key = self._key(args)
        pool = self._pool(key, args["n"])
        cluster = self.clusters[key]
        pool["status"] = "STOPPING"

        def done() -> None:
            self._drop_igms(key, pool)
            cluster["nodePools"] = [p for p in cluster["nodePools"] if p is not pool]
            self._cluster_node_count(key)

        return self._start_op(key, "DELETE_NODE_POOL", pool["selfLink"], done)

    # -- operations and instance groups ---------------------------------------------------------
    def _get_operation(self, args: dict, body: dict) -> dict:
        record = self._ops.get((args["p"], args["l"], args["o"]))
        if record is None:
            raise not_found(f"projects/{args['p']}/locations/{args['l']}/operations/{args['o']}")
        if record.body["status"] != "DONE":
            record.polls_left -= 1
            if record.polls_left <= 0:
                self._finish(record)
        return dict(record.body)

    def _list_igms(self, args: dict, body: dict) -> dict:
        items: dict[str, dict] = {}
        for (project, zone, _), group in sorted(self.igms.items()):
            if project == args["p"]:
                items.setdefault(f"zones/{zone}", {"instanceGroupManagers": []})[
                    "instanceGroupManagers"].append(group)
        return {"kind": "compute#instanceGroupManagerAggregatedList",
                "id": f"projects/{args['p']}/aggregated/instanceGroupManagers", "items": items,
                "selfLink": f"{shapes.COMPUTE_BASE}projects/{args['p']}/aggregated/instanceGroupManagers"}


