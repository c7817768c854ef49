"""Shared machinery of the Compute Engine stand-in: the clock, URLs, Operations (zonal, regional,
global, polled to DONE), list paging and aggregated lists, and the read-only catalog endpoints
(zones, machine types, accelerator types)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Callable
from zoneinfo import ZoneInfo

from google.cloud import compute_v1

from tests.standins.compute_catalog import (BASE, ZONES, accelerator_type_resource, machine_type_resource,
                                            numeric_id, zone_resource)
from tests.standins.compute_errors import ApiError, already_exists, http_error, invalid, not_found
from tests.standins.compute_filter import FilterError, compile_filter

PACIFIC = ZoneInfo("America/Los_Angeles")  # GCE writes its timestamps in Pacific time
NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
NAME_RULE = "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?|[1-9][0-9]{0,19})'"
MAX_RESULTS = 500

# JSON field names per resource kind, read from the client's own protos: a filter naming
# anything else is refused, as GCE refuses it.
_KNOWN_FIELDS = {kind: {f.json_name for f in message.pb().DESCRIPTOR.fields} for kind, message in {
    "instance": compute_v1.Instance, "disk": compute_v1.Disk, "firewall": compute_v1.Firewall,
    "resourcePolicy": compute_v1.ResourcePolicy, "router": compute_v1.Router, "operation": compute_v1.Operation,
    "machineType": compute_v1.MachineType, "acceleratorType": compute_v1.AcceleratorType,
    "zone": compute_v1.Zone}.items()}


@dataclass
class Req:
    method: str
    project: str
    params: dict
    query: dict
    body: dict | None
    rpc: str


@dataclass
class OpRecord:
    body: dict
    polls_left: int
    on_done: Callable[[], None] | None = None
    outcome: dict = field(default_factory=dict)  # error fields to set when DONE


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(PACIFIC).isoformat(timespec="milliseconds")


def parse_timestamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def fingerprint(*parts) -> str:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def public(doc: dict) -> dict:
    """A deep copy, safe to hand out or serialize while the state changes."""
    return json.loads(json.dumps(doc))


class BaseMixin:
    """State and helpers every resource mixin uses; ComputeStandIn initialises the attributes."""

    project: str
    operation_polls: int
    _ops: dict[tuple, OpRecord]
    _request_ids: dict[tuple, tuple]
    _clock_offset: dt.timedelta
    _counter: int
    catalog: dict[str, dict[str, set[str]]]
    clock: Callable[[], dt.datetime]

    # -- time and names --
    def now(self) -> dt.datetime:
        return self.clock() + self._clock_offset

    def stamp(self) -> str:
        return timestamp(self.now())

    def url(self, project: str, *parts: str) -> str:
        return BASE + "/".join(("projects", project, *parts))

    def next_serial(self) -> int:
        self._counter += 1
        return self._counter

    @staticmethod
    def check_name(name, field_name: str = "resource.name") -> None:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise invalid(field_name, name if name is not None else "", NAME_RULE)

    # -- regional resources (resource policies, routers, instance group managers), each kept
    # in a dict keyed (project, region, name) --
    def new_regional_name(self, store: dict, req: Req, collection: str) -> str:
        """The name an insert asks for: checked, and not taken in its region (Google's 409)."""
        name = (req.body or {}).get("name")
        self.check_name(name)
        if (req.project, req.params["region"], name) in store:
            raise already_exists(f"projects/{req.project}/regions/{req.params['region']}/{collection}/{name}")
        return name

    @staticmethod
    def regional(store: dict, req: Req, collection: str):
        """What the request's region and name point at in `store`, or Google's 404."""
        key = (req.project, req.params["region"], req.params["name"])
        if key not in store:
            raise not_found(f"projects/{key[0]}/regions/{key[1]}/{collection}/{key[2]}")
        return store[key]

    @staticmethod
    def in_region(store: dict, project: str, region: str) -> list[dict]:
        return [public(d) for (p, r, _), d in store.items() if p == project and r == region]

    # -- operations --
    def operation(self, project: str, scope: str, op_type: str, target: str, target_id: str, *,
                  request_id: str | None = None, on_done: Callable[[], None] | None = None,
                  outcome: dict | None = None, user: str = "tester@example.com",
                  polls: int | None = None) -> dict:
        """Record an Operation and return its first answer (DONE at once when polls=0).

        `on_done` runs when the operation turns DONE; `outcome` holds the error fields it ends with.
        """
        serial = self.next_serial()
        millis = int(self.now().timestamp() * 1000)
        name = f"operation-{millis}-{serial:013x}-{serial * 7919 % 0xFFFFFFFF:08x}-{serial * 104729 % 0xFFFFFFFF:08x}"
        body = {
            "kind": "compute#operation",
            "id": numeric_id("operation", name),
            "name": name,
            "operationType": op_type,
            "targetLink": target,
            "targetId": target_id,
            "status": "PENDING",
            "user": user,
            "progress": 0,
            "insertTime": self.stamp(),
            "selfLink": self.url(project, scope, "operations", name),
        }
        kind, _, where = scope.partition("/")
        if kind == "zones":
            body["zone"] = self.url(project, "zones", where)
        elif kind == "regions":
            body["region"] = self.url(project, "regions", where)
        record = OpRecord(body, self.operation_polls if polls is None else polls, on_done, outcome or {})
        self._ops[(project, scope, name)] = record
        if request_id:
            self._request_ids[(project, request_id)] = (project, scope, name)
        if record.polls_left <= 0:
            self._finish(record)
        return public(record.body)

    def _finish(self, record: OpRecord) -> None:
        if record.body["status"] == "DONE":
            return
        record.body.update(status="DONE", progress=100, endTime=self.stamp())
        record.body.setdefault("startTime", record.body["insertTime"])
        record.body.update(record.outcome)
        if record.on_done is not None:
            record.on_done()

    def replay_request_id(self, req: Req) -> dict | None:
        """GCE answers a repeated requestId with the first call's Operation instead of acting again."""
        key = self._request_ids.get((req.project, req.query.get("requestId")))
        return public(self._ops[key].body) if key else None

    def _poll(self, req: Req, scope: str, wait: bool) -> dict:
        record = self._ops.get((req.project, scope, req.params["operation"]))
        if record is None:
            raise not_found(f"projects/{req.project}/{scope}/operations/{req.params['operation']}")
        if record.body["status"] != "DONE":
            record.polls_left = 0 if wait else record.polls_left - 1
            if record.polls_left <= 0:
                self._finish(record)
            else:
                record.body.update(status="RUNNING", startTime=record.body["insertTime"], progress=50)
        return public(record.body)

    def _h_zoneOperations_get(self, req: Req) -> dict:
        return self._poll(req, f"zones/{req.params['zone']}", wait=False)

    def _h_zoneOperations_wait(self, req: Req) -> dict:
        return self._poll(req, f"zones/{req.params['zone']}", wait=True)

    def _h_regionOperations_get(self, req: Req) -> dict:
        return self._poll(req, f"regions/{req.params['region']}", wait=False)

    def _h_regionOperations_wait(self, req: Req) -> dict:
        return self._poll(req, f"regions/{req.params['region']}", wait=True)

    def _h_globalOperations_get(self, req: Req) -> dict:
        return self._poll(req, "global", wait=False)

    def _h_globalOperations_wait(self, req: Req) -> dict:
        return self._poll(req, "global", wait=True)

    def _h_zoneOperations_list(self, req: Req) -> dict:
        scope = f"zones/{req.params['zone']}"
        ops = [public(r.body) for (p, s, _), r in self._ops.items() if p == req.project and s == scope]
        return self.page(req, ops, "operation", "compute#operationList", scope + "/operations")

    # -- lists --
    def page(self, req: Req, items: list[dict], kind: str, list_kind: str, where: str) -> dict:
        items = self.ordered(req, self.filtered(req, items, kind))
        start, end, token = self._window(req, len(items))
        body = {"kind": list_kind, "id": f"projects/{req.project}/{where}",
                "selfLink": self.url(req.project, where)}
        if items[start:end]:
            body["items"] = items[start:end]
        if token:
            body["nextPageToken"] = token
        return body

    @staticmethod
    def ordered(req: Req, items: list, key=lambda item: item) -> list:
        """GCE sorts by name, or newest first with orderBy="creationTimestamp desc"; nothing else."""
        order = (req.query.get("orderBy") or "name").strip()
        if order not in ("name", "creationTimestamp desc"):
            raise invalid("orderBy", order, "Currently, only sorting by name or creationTimestamp desc is "
                          "supported.")
        items = sorted(items, key=lambda item: key(item).get("name", ""))
        if order == "creationTimestamp desc":  # a stable sort: same-time resources stay by name
            items.sort(key=lambda item: parse_timestamp(key(item).get("creationTimestamp") or
                                                         "1970-01-01T00:00:00+00:00"), reverse=True)
        return items

    def filtered(self, req: Req, items: list[dict], kind: str) -> list[dict]:
        text = req.query.get("filter")
        try:
            predicate = compile_filter(text, _KNOWN_FIELDS[kind])
        except FilterError as exc:
            raise http_error(400, f"Invalid value for field 'filter': '{text}'. Invalid list filter "
                                  f"expression. ({exc})", "invalid") from None
        return [item for item in items if predicate(item)]

    def _window(self, req: Req, total: int) -> tuple[int, int, str | None]:
        raw = req.query.get("maxResults")
        try:
            size = int(raw) if raw not in (None, "") else MAX_RESULTS
        except ValueError:
            raise invalid("maxResults", raw, "Must be an integer.") from None
        if size < 0 or size > MAX_RESULTS:
            raise invalid("maxResults", raw, f"Must be less than or equal to {MAX_RESULTS}")
        size = size or MAX_RESULTS
        start = 0
        if req.query.get("pageToken"):
            start = self._read_token(req)
        end = min(total, start + size)
        return start, end, self._make_token(req, end) if end < total else None

    @staticmethod
    def _token_key(req: Req) -> str:
        return fingerprint(req.rpc, req.params, req.query.get("filter"))

    def _make_token(self, req: Req, offset: int) -> str:
        raw = json.dumps({"o": offset, "k": self._token_key(req)}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _read_token(self, req: Req) -> int:
        token = req.query["pageToken"]
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if data["k"] != self._token_key(req):
                raise ValueError("token of another list")
            return int(data["o"])
        except (ValueError, KeyError, TypeError):
            raise invalid("pageToken", token, "Invalid page token.") from None

    def aggregated(self, req: Req, scoped: dict[str, list[dict]], kind: str, key: str,
                   list_kind: str, what: str, unreachable: set[str] = frozenset()) -> dict:
        """`scoped`: "zones/x" or "regions/x" -> resources. maxResults counts resources across scopes."""
        partial = req.query.get("returnPartialSuccess", "").lower() == "true"
        hidden = sorted(s for s in scoped if s in unreachable)
        flat = []
        for scope in sorted(scoped):
            if scope not in unreachable:
                flat.extend((scope, item) for item in self.filtered(req, scoped[scope], kind))
        flat = self.ordered(req, flat, key=lambda pair: pair[1])
        if (req.query.get("orderBy") or "name").strip() == "name":
            flat.sort(key=lambda pair: pair[0])  # scope by scope, by name within (a stable sort)
        start, end, token = self._window(req, len(flat))
        on_page: dict[str, list] = {}
        for scope, item in flat[start:end]:
            on_page.setdefault(scope, []).append(item)
        items = {}
        for scope in sorted(scoped):
            if scope in unreachable:
                if not partial:  # with returnPartialSuccess the scope is named in `unreachables` instead
                    items[scope] = {"warning": {
                        "code": "UNREACHABLE", "message": f"Scope '{scope}' is unreachable. (stand-in wording)",
                        "data": [{"key": "scope", "value": scope}]}}
                continue
            if scope in on_page:
                items[scope] = {key: on_page[scope]}
            else:
                items[scope] = {"warning": {
                    "code": "NO_RESULTS_ON_PAGE",
                    "message": f"There are no results for scope '{scope}' on this page.",
                    "data": [{"key": "scope", "value": scope}]}}
        body = {"kind": list_kind, "id": f"projects/{req.project}/aggregated/{what}", "items": items,
                "selfLink": self.url(req.project, "aggregated", what)}
        if token:
            body["nextPageToken"] = token
        if hidden and partial:
            body["unreachables"] = hidden
        return body

    # -- catalog endpoints --
    def _h_zones_list(self, req: Req) -> dict:
        return self.page(req, [zone_resource(req.project, z) for z in ZONES], "zone",
                         "compute#zoneList", "zones")

    def _h_zones_get(self, req: Req) -> dict:
        return zone_resource(req.project, req.params["zone"])

    def _h_machineTypes_list(self, req: Req) -> dict:
        zone = req.params["zone"]
        items = [machine_type_resource(req.project, zone, m) for m in self.catalog[zone]["machineTypes"]]
        return self.page(req, items, "machineType", "compute#machineTypeList", f"zones/{zone}/machineTypes")

    def _h_machineTypes_get(self, req: Req) -> dict:
        zone, name = req.params["zone"], req.params["name"]
        if name not in self.catalog[zone]["machineTypes"]:
            raise not_found(f"projects/{req.project}/zones/{zone}/machineTypes/{name}")
        return machine_type_resource(req.project, zone, name)

    def _h_acceleratorTypes_list(self, req: Req) -> dict:
        zone = req.params["zone"]
        items = [accelerator_type_resource(req.project, zone, a)
                 for a in self.catalog[zone]["acceleratorTypes"]]
        return self.page(req, items, "acceleratorType", "compute#acceleratorTypeList",
                         f"zones/{zone}/acceleratorTypes")

    def _h_acceleratorTypes_get(self, req: Req) -> dict:
        zone, name = req.params["zone"], req.params["name"]
        if name not in self.catalog[zone]["acceleratorTypes"]:
            raise not_found(f"projects/{req.project}/zones/{zone}/acceleratorTypes/{name}")
        return accelerator_type_resource(req.project, zone, name)


def parse_ref(value, collection: str, scope_kind: str) -> tuple[str | None, str, str] | None:
    """'zones/Z/machineTypes/N', 'projects/P/zones/Z/...' or a full URL -> (project, scope, name)."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(rf"(?:https?://[^/]+/compute/v1/)?(?:projects/(?P<project>[^/]+)/)?"
                         rf"{scope_kind}/(?P<scope>[^/]+)/{collection}/(?P<name>[^/]+)", value)
    if not match:
        return None
    return match["project"], match["scope"], match["name"]


def raise_unless(condition: bool, error: ApiError) -> None:
    if not condition:
        raise error
