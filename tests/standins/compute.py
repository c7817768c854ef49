"""A stand-in for the Compute Engine API v1 (REST), served on 127.0.0.1, for tests that drive the
real google-cloud-compute client (REST transport, anonymous credentials).

It speaks the JSON shapes of the API reference for instances, disks, firewalls, resource policies,
zone/region/global operations and the machine/accelerator catalog (compute_catalog.py); validates
requests where GCE would refuse them; and injects faults on demand: stockouts, quota, 429/503
bursts, 403s, preemption, deletion behind gpuctl's back, time-limit guards firing. Every request is
recorded with its RPC name (e.g. "instances.aggregatedList") for assertions.

    def test_up(compute_standin):
        instances = compute_standin.client(compute_v1.InstancesClient)
        instances.insert(project=compute_standin.project, zone="us-central1-a",
                         instance_resource=...).result()

Always build clients with `client()` (or pass `client_kwargs()` and call `wire_operations()`): the
generated clients poll an Operation through a second client built without client_options, which
would go to compute.googleapis.com.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from tests.standins import discovery
from tests.standins.loopback import HttpCall, LoopbackServer
from tests.standins.compute_base import Req, public
from tests.standins.compute_catalog import MACHINE_SHAPES, REGIONS, ZONES, default_catalog
from tests.standins.compute_errors import ApiError, http_error, invalid, permission_denied, service_disabled, transient
from tests.standins.compute_faults import FaultsMixin
from tests.standins.compute_firewalls_policies import FirewallsPoliciesMixin, description_labels
from tests.standins.compute_instances import InstancesMixin, Vm
from tests.standins.compute_routers import RoutersMixin
from tests.standins.compute_migs import MIG_ROUTES, MigsMixin

_Z, _R, _N = r"zones/(?P<zone>[^/]+)", r"regions/(?P<region>[^/]+)", r"(?P<name>[^/]+)"
_OP = r"(?P<operation>[^/]+)"
ROUTES = [(method, re.compile(pattern), rpc) for method, pattern, rpc in [
    ("GET", "zones", "zones.list"),
    ("GET", _Z, "zones.get"),
    ("POST", f"{_Z}/instances", "instances.insert"),
    ("GET", f"{_Z}/instances", "instances.list"),
    ("GET", f"{_Z}/instances/{_N}", "instances.get"),
    ("DELETE", f"{_Z}/instances/{_N}", "instances.delete"),
    ("POST", f"{_Z}/instances/{_N}/(?P<verb>stop|start|setScheduling|setLabels|setMetadata|setServiceAccount)", "instances.{verb}"),
    ("GET", f"{_Z}/instances/{_N}/getGuestAttributes", "instances.getGuestAttributes"),
    ("GET", "aggregated/instances", "instances.aggregatedList"),
    ("GET", f"{_Z}/disks", "disks.list"),
    ("GET", f"{_Z}/disks/{_N}", "disks.get"),
    ("DELETE", f"{_Z}/disks/{_N}", "disks.delete"),
    ("GET", "aggregated/disks", "disks.aggregatedList"),
    ("GET", f"{_Z}/machineTypes", "machineTypes.list"),
    ("GET", f"{_Z}/machineTypes/{_N}", "machineTypes.get"),
    ("GET", f"{_Z}/acceleratorTypes", "acceleratorTypes.list"),
    ("GET", f"{_Z}/acceleratorTypes/{_N}", "acceleratorTypes.get"),
    ("GET", f"{_Z}/operations", "zoneOperations.list"),
    ("GET", f"{_Z}/operations/{_OP}", "zoneOperations.get"),
    ("POST", f"{_Z}/operations/{_OP}/wait", "zoneOperations.wait"),
    ("GET", f"{_R}/operations/{_OP}", "regionOperations.get"),
    ("POST", f"{_R}/operations/{_OP}/wait", "regionOperations.wait"),
    ("GET", f"global/operations/{_OP}", "globalOperations.get"),
    ("POST", f"global/operations/{_OP}/wait", "globalOperations.wait"),
    ("POST", "global/firewalls", "firewalls.insert"),
    ("GET", "global/firewalls", "firewalls.list"),
    ("GET", f"global/firewalls/{_N}", "firewalls.get"),
    ("DELETE", f"global/firewalls/{_N}", "firewalls.delete"),
    ("POST", f"{_R}/resourcePolicies", "resourcePolicies.insert"),
    ("GET", f"{_R}/resourcePolicies", "resourcePolicies.list"),
    ("GET", f"{_R}/resourcePolicies/{_N}", "resourcePolicies.get"),
    ("DELETE", f"{_R}/resourcePolicies/{_N}", "resourcePolicies.delete"),
    ("GET", "aggregated/resourcePolicies", "resourcePolicies.aggregatedList"),
    ("POST", f"{_R}/routers", "routers.insert"),
    ("GET", f"{_R}/routers", "routers.list"),
    ("GET", f"{_R}/routers/{_N}", "routers.get"),
    ("PATCH", f"{_R}/routers/{_N}", "routers.patch"),
    ("PUT", f"{_R}/routers/{_N}", "routers.update"),
    ("DELETE", f"{_R}/routers/{_N}", "routers.delete"),
    ("GET", "aggregated/routers", "routers.aggregatedList"),
    *MIG_ROUTES,
]]
_PREFIX = re.compile(r"/compute/v1/projects/(?P<project>[^/]+)/(?P<rest>.+)")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: dict | None
    rpc: str | None  # "instances.insert", ...; None for a path the stand-in does not serve
    status: int = 0  # the HTTP status answered


def permission_for(rpc: str) -> str:
    resource, verb = rpc.split(".")
    return f"compute.{resource}.{ {'insert': 'create', 'aggregatedList': 'list', 'wait': 'get'}.get(verb, verb)}"


class ComputeStandIn(LoopbackServer, FaultsMixin, InstancesMixin, FirewallsPoliciesMixin, RoutersMixin,
                     MigsMixin):
    """The stand-in server; a context manager, started on a free port of 127.0.0.1.

    operation_polls: how many polls (zoneOperations.get and friends) an Operation answers
        PENDING/RUNNING before DONE; 0 answers DONE at once (and `.result()` never polls).
    boot_steps: how many reads (get, list, aggregatedList) an instance stays in PROVISIONING and
        then in STAGING; 0 makes it RUNNING at once.
    clock: returns "now" (an aware datetime); advance_clock() moves it on and fires due guards.
    """

    def __init__(self, project: str = "gpuctl-test", *, operation_polls: int = 0, boot_steps: int = 0,
                 clock=None):
        self.project = project
        self.operation_polls = operation_polls
        self.boot_steps = boot_steps
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.catalog = default_catalog()
        self.requests: list[RecordedRequest] = []
        self.contract_violations: list[str] = []  # what compute.v1.json refused, requests and answers
        self.nat_ips: dict[str, str] = {}  # instance name -> natIP it gets (e.g. a netns address for SSH)
        self.unreachable_zones: set[str] = set()
        self._lock = threading.RLock()
        self._clock_offset = dt.timedelta()
        self._counter = 0
        self._nat_serial = 0
        self._net_serial: dict[str, int] = {}
        self._ops: dict = {}
        self._request_ids: dict = {}
        self._vms: dict[tuple, Vm] = {}
        self._disks: dict[tuple, dict] = {}
        self._firewalls: dict[tuple, dict] = {}
        self._policies: dict[tuple, dict] = {}
        self._routers: dict[tuple, dict] = {}  # (project, region, name) -> Router, NATs inside
        self._templates: dict[tuple, dict] = {}  # (project, name) -> InstanceTemplate
        self._migs: dict[tuple, dict] = {}  # (project, region, name) -> MIG and its members
        self._preempted: set[tuple] = set()
        self.clear_faults()

    # ---------------------------------------------------------------- lifecycle and clients
    def serve(self, call: HttpCall) -> tuple[int, dict]:
        try:
            body = call.json()
        except ValueError as exc:
            return 400, http_error(400, f"Invalid JSON payload received. {exc}", "parseError").body
        return self.answer(call.method, call.path, call.query, body)

    def client_kwargs(self) -> dict:
        return {"credentials": AnonymousCredentials(), "transport": "rest",
                "client_options": {"api_endpoint": self.endpoint}}

    def wire_operations(self, client):
        """Point the client's own Operation pollers (built without client_options) at the stand-in."""
        services = getattr(client._transport, "_extended_operations_services", None)
        if services is None:  # operation and read-only clients poll nothing
            return client
        services["zone_operations"] = compute_v1.ZoneOperationsClient(**self.client_kwargs())
        services["region_operations"] = compute_v1.RegionOperationsClient(**self.client_kwargs())
        services["global_operations"] = compute_v1.GlobalOperationsClient(**self.client_kwargs())
        return client

    def client(self, client_class):
        """e.g. client(compute_v1.InstancesClient), ready for insert(...).result()."""
        return self.wire_operations(client_class(**self.client_kwargs()))

    def clients(self) -> SimpleNamespace:
        c = compute_v1
        return SimpleNamespace(
            instances=self.client(c.InstancesClient), disks=self.client(c.DisksClient),
            firewalls=self.client(c.FirewallsClient), resource_policies=self.client(c.ResourcePoliciesClient),
            routers=self.client(c.RoutersClient),
            zone_operations=self.client(c.ZoneOperationsClient), region_operations=self.client(c.RegionOperationsClient),
            global_operations=self.client(c.GlobalOperationsClient), machine_types=self.client(c.MachineTypesClient),
            accelerator_types=self.client(c.AcceleratorTypesClient), zones=self.client(c.ZonesClient))

    # ---------------------------------------------------------------- inspection
    def calls(self, rpc: str | None = None, *, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if rpc in (None, r.rpc) and method in (None, r.method)]

    @property
    def rpcs(self) -> list[str | None]:
        with self._lock:
            return [r.rpc for r in self.requests]

    def instance(self, name: str, zone: str | None = None) -> dict:
        with self._lock:
            return public(self.find_vm(name, zone).doc)

    def instances(self) -> list[dict]:
        with self._lock:
            return [public(vm.doc) for vm in self._vms.values()]

    def disks(self) -> list[dict]:
        with self._lock:
            return [public(d) for d in self._disks.values()]

    def firewalls(self) -> list[dict]:
        with self._lock:
            return [public(d) for d in self._firewalls.values()]

    def resource_policies(self) -> list[dict]:
        with self._lock:
            return [public(d) for d in self._policies.values()]

    def routers(self) -> list[dict]:
        with self._lock:
            return [public(d) for d in self._routers.values()]

    def operations(self, op_type: str | None = None) -> list[dict]:
        with self._lock:
            return [public(r.body) for r in self._ops.values() if op_type in (None, r.body["operationType"])]

    def labelled_resources(self, label_key: str, value: str | None = None) -> dict[str, list[str]]:
        """What is left carrying label_key (=value): {"instances": ["zone/name"], "disks": [...],
        "firewalls": [...], "resourcePolicies": ["region/name"], "routers": ["region/name"]}; kinds
        with nothing are left out, so "nothing left" is `== {}`. Firewalls, policies and routers
        (their NATs live inside them) are read from "gpuctl k=v" descriptions."""
        def has(labels: dict) -> bool:
            return label_key in labels and value in (None, labels[label_key])

        with self._lock:
            found = {
                "instances": [f"{z}/{n}" for (_, z, n), vm in self._vms.items() if has(vm.doc.get("labels", {}))],
                "disks": [f"{z}/{n}" for (_, z, n), d in self._disks.items() if has(d.get("labels", {}))],
                "firewalls": [n for (_, n), d in self._firewalls.items() if has(description_labels(d["description"]))],
                "resourcePolicies": [f"{r}/{n}" for (_, r, n), d in self._policies.items()
                                     if has(description_labels(d["description"]))],
                "routers": [f"{r}/{n}" for (_, r, n), d in self._routers.items()
                            if has(description_labels(d["description"]))],
            }
        return {kind: sorted(names) for kind, names in found.items() if names}

    # ---------------------------------------------------------------- answering
    def answer(self, method: str, path: str, query: dict[str, str], body: dict | None) -> tuple[int, dict]:
        with self._lock:
            record = RecordedRequest(method, path, query, body, None)
            self.requests.append(record)
            record.status, payload = self._answer(record)
            return record.status, payload

    def _route(self, method: str, path: str) -> tuple[str, str, dict] | None:
        prefix = _PREFIX.fullmatch(path)
        if not prefix:
            return None
        for route_method, pattern, rpc in ROUTES:
            match = pattern.fullmatch(prefix["rest"])
            if match and route_method == method:
                params = match.groupdict()
                return prefix["project"], rpc.format(verb=params.pop("verb", "")), params
        return None

    def _answer(self, record: RecordedRequest) -> tuple[int, dict]:
        routed = self._route(record.method, record.path)
        if routed is None:
            return 404, http_error(404, f"{record.method} {record.path} is not served by the Compute stand-in",
                                   "notFound").body
        project, record.rpc, params = routed
        refusal = self._contract_refusal(record)
        if refusal is not None:
            return refusal
        req = Req(record.method, project, params, record.query, record.body, record.rpc)
        burst = self._take_burst(record)
        try:
            if burst and not burst["apply"]:
                raise transient(burst["status"])
            if self._disabled:
                raise service_disabled(project)
            permission = permission_for(record.rpc)
            if self._denied is not None and (not self._denied or permission in self._denied):
                raise permission_denied(permission, self._resource_path(req))
            if "zone" in params and params["zone"] not in ZONES:
                raise invalid("zone", params["zone"], "Unknown zone.")
            if "region" in params and params["region"] not in REGIONS:
                raise invalid("region", params["region"], "Unknown region.")
            result = getattr(self, "_h_" + record.rpc.replace(".", "_"))(req)
            if burst:
                raise transient(burst["status"])
            return self._checked_answer(record, result)
        except ApiError as exc:
            return exc.code, exc.body

    def _contract_refusal(self, record: RecordedRequest) -> tuple[int, dict] | None:
        """Google's JSON front end refuses a body its schema does not allow (unknown field, wrong
        type, bad enum) with 400 before any handler runs; the stand-in does the same, from
        compute.v1.json, and says which field."""
        method, problems = discovery.request_problems("compute.v1", record.method, record.path, record.body)
        if method is not None and method.id != f"compute.{record.rpc}":
            problems = [f"the stand-in routes {record.method} {record.path} to {record.rpc}, "
                        f"compute.v1.json to {method.id}"]
        if not problems:
            return None
        self.contract_violations.extend(f"request {record.rpc}: {p}" for p in problems)
        return 400, http_error(400, f"Invalid JSON payload received. {'; '.join(problems)} "
                                    "(checked against compute.v1.json)", "invalid").body

    def _checked_answer(self, record: RecordedRequest, result: dict) -> tuple[int, dict]:
        """A stand-in answer Google's document does not allow is a stand-in defect: it fails the
        call loudly (500, naming the field) so every test that reaches it sees it."""
        problems = discovery.response_problems("compute.v1", discovery.match("compute.v1", record.method,
                                                                            record.path), result)
        if not problems:
            return 200, result
        self.contract_violations.extend(f"response {record.rpc}: {p}" for p in problems)
        return 500, http_error(500, f"stand-in defect: its answer to {record.rpc} violates compute.v1.json: "
                                    f"{'; '.join(problems)}", "backendError").body

    def _take_burst(self, record: RecordedRequest) -> dict | None:
        for burst in self._bursts:
            if burst["times"] > 0 and burst["method"] in (None, record.method) and burst["rpc"] in (None, record.rpc) \
                    and (burst["path"] is None or burst["path"].search(record.path)):
                burst["times"] -= 1
                return burst
        return None

    @staticmethod
    def _resource_path(req: Req) -> str:
        _, verb = req.rpc.split(".")
        if verb in ("list", "aggregatedList"):
            return f"projects/{req.project}"
        parts = [f"projects/{req.project}"]
        if "zone" in req.params:
            parts.append(f"zones/{req.params['zone']}")
        if "region" in req.params:
            parts.append(f"regions/{req.params['region']}")
        collection = req.rpc.split(".")[0]
        if "operation" in req.params:
            parts.append(f"operations/{req.params['operation']}")
        elif verb == "insert":
            parts.append(f"{collection}/{(req.body or {}).get('name', '')}")
        elif "name" in req.params:
            parts.append(f"{collection}/{req.params['name']}")
        if collection == "firewalls":
            parts.insert(1, "global")
        return "/".join(parts)



@pytest.fixture
def compute_standin():
    """A started ComputeStandIn (project "gpuctl-test", operations DONE at once, VMs RUNNING at once)."""
    with ComputeStandIn() as standin:
        yield standin


__all__ = ["ComputeStandIn", "RecordedRequest", "compute_standin", "MACHINE_SHAPES", "ZONES", "REGIONS"]
