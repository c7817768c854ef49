"""Instance templates and regional managed instance groups (MIGs) of the Compute Engine stand-in,
with spot preemption the way Google runs it and the MIG's repair of the preempted VM.

What Google documents, and this stand-in does (each rule is in GOOGLE_RULES.md):
  * an instance template's `properties.machineType` "only accepts a machine type name, for example
    `n2-standard-4`. If you use the machine type full or partial URL ... the request will result
    in an `INTERNAL_ERROR`" (compute.v1.json, InstanceProperties.machineType);
  * a regional MIG's `targetSize` is required on insert (compute.v1.json annotations.required:
    compute.regionInstanceGroupManagers.insert); its VMs are named from `baseInstanceName`: "the
    MIG appends a hyphen and a random four-character string" (InstanceGroupManager.baseInstanceName);
  * the MIG makes its VMs from the template in the zones of `distributionPolicy.zones`; with
    targetShape ANY "the group picks zones for creating VM instances to fulfill the requested
    number of VMs within present resource constraints" (DistributionPolicy.targetShape): a zone
    that is stocked out is passed over, the failure is kept in the managed instance's
    `lastAttempt.errors`, and the MIG keeps trying ("If the group fails to create this instance,
    it will try again until it is successful", ManagedInstance.currentAction CREATING);
  * "If a VM in the group stops, crashes, gets preempted (Spot VMs), or is deleted by an action
    not initiated by the MIG, the MIG automatically recreates that VM based on its original
    configuration (same VM name, same template)" (https://cloud.google.com/compute/docs/instance-groups,
    "Automatically repairing failed VMs"); the zone may change only with
    `instanceLifecyclePolicy.onRepair.allowChangingZone: YES` ("NO (default): MIG cannot change a
    VM's zone during a repair", compute.v1.json, InstanceGroupManagerInstanceLifecyclePolicyOnRepair);
  * spot preemption (https://cloud.google.com/compute/docs/instances/spot, "Preemption process"):
    the metadata value `instance/preempted` turns TRUE and the guest gets an ACPI G2 Soft Off;
    "30 seconds for Spot VMs" pass before ACPI G3 Mechanical Off (compute.v1.json,
    Scheduling.skipGuestOsShutdown); then the VM is TERMINATED (action STOP) or deleted (DELETE);
  * deleting a MIG deletes its VMs; a template in use by a MIG cannot be deleted.

The MIG's controller runs when asked (`reconcile_migs()`, also right after insert and resize):
a test sees the preempted VM's managed instance RECREATING before the replacement exists.
"""

from __future__ import annotations

import json
import random
import string

from google.cloud import compute_v1

from tests.standins import compute_base
from tests.standins.compute_base import BaseMixin, Req, public
from tests.standins.compute_catalog import ZONES, numeric_id
from tests.standins.compute_errors import ApiError, already_exists, http_error, in_use, invalid, not_found
from tests.standins.compute_instance_rules import check_labels
from tests.standins.loopback import HttpCall, LoopbackServer, TextAnswer

_R, _N = r"regions/(?P<region>[^/]+)", r"(?P<name>[^/]+)"
MIG_ROUTES = [
    ("POST", "global/instanceTemplates", "instanceTemplates.insert"),
    ("GET", "global/instanceTemplates", "instanceTemplates.list"),
    ("GET", f"global/instanceTemplates/{_N}", "instanceTemplates.get"),
    ("DELETE", f"global/instanceTemplates/{_N}", "instanceTemplates.delete"),
    ("POST", f"{_R}/instanceGroupManagers", "regionInstanceGroupManagers.insert"),
    ("GET", f"{_R}/instanceGroupManagers/{_N}", "regionInstanceGroupManagers.get"),
    ("DELETE", f"{_R}/instanceGroupManagers/{_N}", "regionInstanceGroupManagers.delete"),
    ("POST", f"{_R}/instanceGroupManagers/{_N}/resize", "regionInstanceGroupManagers.resize"),
    ("POST", f"{_R}/instanceGroupManagers/{_N}/listManagedInstances",
     "regionInstanceGroupManagers.listManagedInstances"),
    ("GET", "aggregated/instanceGroupManagers", "instanceGroupManagers.aggregatedList"),
]
SPOT_NOTICE_S = 30
# Who a group's own inserts and deletes are recorded as: the Google APIs service agent
# (https://cloud.google.com/compute/docs/access/service-accounts#google_apis_service_agent; the
# exact `user` of a MIG's operations is unverified here).
MIG_AGENT = "123456789012@cloudservices.gserviceaccount.com"
# List filters on templates and groups name these resources' own fields, as for the others.
compute_base._KNOWN_FIELDS.update({
    kind: {f.json_name for f in message.pb().DESCRIPTOR.fields}
    for kind, message in {"instanceTemplate": compute_v1.InstanceTemplate,
                          "instanceGroupManager": compute_v1.InstanceGroupManager}.items()})  # Scheduling.skipGuestOsShutdown: "30 seconds for Spot VMs" between G2 and G3


def _name_of(value: str | None) -> str:
    return (value or "").rstrip("/").rsplit("/", 1)[-1]


class MigsMixin(BaseMixin):
    """Needs the instance mixin's `_h_instances_insert`, `find_vm`, `remove_vm` and `preempt`."""

    _templates: dict[tuple, dict]
    _migs: dict[tuple, dict]  # (project, region, name) -> {"doc": ..., "members": {vm name: state}}
    _preempted: set[tuple]  # (project, zone, vm) whose metadata `preempted` reads TRUE

    # ---------------------------------------------------------------- instance templates
    def _h_instanceTemplates_insert(self, req: Req) -> dict:
        replay = self.replay_request_id(req)
        if replay:
            return replay
        body, project = req.body or {}, req.project
        name = body.get("name")
        self.check_name(name)
        if (project, name) in self._templates:
            raise already_exists(f"projects/{project}/global/instanceTemplates/{name}")
        props = body.get("properties") or {}
        machine = props.get("machineType")
        if not machine:
            raise invalid("resource.properties.machineType", "", "Required field not specified. (stand-in wording)")
        if "/" in machine:
            # InstanceProperties.machineType: a URL "will result in an INTERNAL_ERROR".
            raise http_error(500, "Internal error. Please try again or contact Google Support. "
                                  "(stand-in: a machine type URL in an instance template)", "backendError")
        if not any(machine in self.catalog[z]["machineTypes"] for z in ZONES):
            raise invalid("resource.properties.machineType", machine, "Unknown machine type. (stand-in wording)")
        check_labels(props.get("labels") or {}, "resource.properties.labels")
        has_gpu = bool(props.get("guestAccelerators")) or machine.split("-")[0] in ("a2", "a3", "a4", "g2", "g4")
        scheduling = self.checked_scheduling(props.get("scheduling") or {}, has_gpu=has_gpu,
                                             field_name="resource.properties.scheduling")
        doc = {
            "kind": "compute#instanceTemplate",
            "id": numeric_id("instanceTemplate", project, name, str(self.next_serial())),
            "creationTimestamp": self.stamp(), "name": name, "description": body.get("description", ""),
            "properties": {**public(props), "scheduling": scheduling},
            "selfLink": self.url(project, "global", "instanceTemplates", name),
        }
        self._templates[(project, name)] = doc
        return self.operation(project, "global", "insert", doc["selfLink"], doc["id"],
                              request_id=req.query.get("requestId"))

    def _template(self, project: str, name: str) -> dict:
        if (project, name) not in self._templates:
            raise not_found(f"projects/{project}/global/instanceTemplates/{name}")
        return self._templates[(project, name)]

    def _h_instanceTemplates_get(self, req: Req) -> dict:
        return public(self._template(req.project, req.params["name"]))

    def _h_instanceTemplates_list(self, req: Req) -> dict:
        docs = [public(d) for (p, _), d in sorted(self._templates.items()) if p == req.project]
        return self.page(req, docs, "instanceTemplate", "compute#instanceTemplateList", "global/instanceTemplates")

    def _h_instanceTemplates_delete(self, req: Req) -> dict:
        doc = self._template(req.project, req.params["name"])
        for (p, region, mig), state in self._migs.items():
            if p == req.project and _name_of(state["doc"]["instanceTemplate"]) == doc["name"]:
                raise in_use("instanceTemplate", f"projects/{p}/global/instanceTemplates/{doc['name']}",
                             f"projects/{p}/regions/{region}/instanceGroupManagers/{mig}")
        key = (req.project, doc["name"])
        return self.operation(req.project, "global", "delete", doc["selfLink"], doc["id"],
                              request_id=req.query.get("requestId"), on_done=lambda: self._templates.pop(key, None))

    # ---------------------------------------------------------------- regional MIGs
    def _h_regionInstanceGroupManagers_insert(self, req: Req) -> dict:
        replay = self.replay_request_id(req)
        if replay:
            return replay
        body, project, region = req.body or {}, req.project, req.params["region"]
        name = self.new_regional_name(self._migs, req, "instanceGroupManagers")
        if "targetSize" not in body:
            raise invalid("resource.targetSize", "", "Required field not specified. (stand-in wording)")
        size = int(body["targetSize"])
        if size < 0:
            raise invalid("resource.targetSize", str(size), "Must be greater than or equal to 0.")
        template = self._template(project, _name_of(body.get("instanceTemplate")))
        base = body.get("baseInstanceName") or name
        if len(base) > 58:
            raise invalid("resource.baseInstanceName", base, "Must be at most 58 characters. (stand-in wording)")
        policy = public(body.get("distributionPolicy") or {})
        zones = [_name_of(z.get("zone")) for z in policy.get("zones") or []] or \
            sorted(z for z, r in ZONES.items() if r == region)
        for zone in zones:
            if ZONES.get(zone) != region:
                raise invalid("resource.distributionPolicy.zones", zone, f"Zone {zone} is not in region "
                              f"{region}. (stand-in wording)")
        policy["zones"] = [{"zone": self.url(project, "zones", z)} for z in zones]
        policy.setdefault("targetShape", "EVEN")
        lifecycle = public(body.get("instanceLifecyclePolicy") or {})
        lifecycle.setdefault("defaultActionOnFailure", "REPAIR")
        doc = {
            "kind": "compute#instanceGroupManager",
            "id": numeric_id("igm", project, region, name, str(self.next_serial())),
            "creationTimestamp": self.stamp(), "name": name, "description": body.get("description", ""),
            "region": self.url(project, "regions", region), "baseInstanceName": base,
            "instanceTemplate": template["selfLink"], "targetSize": size,
            "distributionPolicy": policy, "instanceLifecyclePolicy": lifecycle,
            "instanceGroup": self.url(project, "regions", region, "instanceGroups", name),
            "fingerprint": "", "status": {"isStable": True},
            "selfLink": self.url(project, "regions", region, "instanceGroupManagers", name),
        }
        state = {"doc": doc, "members": {}, "events": []}
        self._migs[(project, region, name)] = state
        self._reconcile(project, region, state)
        return self.operation(project, f"regions/{region}", "compute.regionInstanceGroupManagers.insert",
                              doc["selfLink"], doc["id"], request_id=req.query.get("requestId"))

    def _mig(self, req: Req) -> dict:
        return self.regional(self._migs, req, "instanceGroupManagers")

    def _mig_view(self, state: dict) -> dict:
        doc = public(state["doc"])
        actions = {a: 0 for a in ("abandoning", "creating", "creatingWithoutRetries", "deleting", "none",
                                  "recreating", "refreshing", "restarting", "resuming", "starting",
                                  "stopping", "suspending", "verifying")}
        for member in state["members"].values():
            key = {"CREATING_WITHOUT_RETRIES": "creatingWithoutRetries"}.get(member["action"],
                                                                             member["action"].lower())
            actions[key] += 1
        doc["currentActions"] = actions
        doc["status"] = {"isStable": actions["none"] == len(state["members"]) == doc["targetSize"]}
        return doc

    def _h_instanceGroupManagers_aggregatedList(self, req: Req) -> dict:
        """Regional groups under "regions/R" (this stand-in makes no zonal groups)."""
        regions = sorted(set(ZONES.values()))
        scoped = {f"regions/{r}": [self._mig_view(s) for (p, region, _), s in sorted(self._migs.items())
                                   if p == req.project and region == r] for r in regions}
        return self.aggregated(req, scoped, "instanceGroupManager", "instanceGroupManagers",
                               "compute#instanceGroupManagerAggregatedList", "instanceGroupManagers")

    def _h_regionInstanceGroupManagers_get(self, req: Req) -> dict:
        return self._mig_view(self._mig(req))

    def _h_regionInstanceGroupManagers_listManagedInstances(self, req: Req) -> dict:
        state = self._mig(req)
        items = []
        for vm_name, member in sorted(state["members"].items()):
            entry = {"name": vm_name, "currentAction": member["action"],
                     "instance": self.url(req.project, "zones", member["zone"], "instances", vm_name),
                     "version": {"instanceTemplate": state["doc"]["instanceTemplate"]}}
            vm = self._vms.get((req.project, member["zone"], vm_name))
            if vm is not None:
                entry.update(id=vm.doc["id"], instanceStatus=vm.doc["status"])
            if member.get("errors"):
                entry["lastAttempt"] = {"errors": {"errors": member["errors"]}}
            items.append(entry)
        return {"managedInstances": items} if items else {}

    def _h_regionInstanceGroupManagers_resize(self, req: Req) -> dict:
        state = self._mig(req)
        raw = req.query.get("size")
        try:
            size = int(raw)
        except (TypeError, ValueError):
            raise invalid("size", raw or "", "Must be an integer.") from None
        if size < 0:
            raise invalid("size", raw, "Must be greater than or equal to 0.")
        state["doc"]["targetSize"] = size
        self._reconcile(req.project, req.params["region"], state)
        return self.operation(req.project, f"regions/{req.params['region']}",
                              "compute.regionInstanceGroupManagers.resize", state["doc"]["selfLink"],
                              state["doc"]["id"], request_id=req.query.get("requestId"))

    def _h_regionInstanceGroupManagers_delete(self, req: Req) -> dict:
        state = self._mig(req)
        key = (req.project, req.params["region"], req.params["name"])

        def gone() -> None:  # the group's VMs go with it, each by a delete the group makes
            for vm_name, member in state["members"].items():
                vm = self._vms.get((key[0], member["zone"], vm_name))
                if vm is not None:
                    self.operation(vm.project, f"zones/{vm.zone}", "delete", vm.doc["selfLink"], vm.doc["id"],
                                   polls=0, user=MIG_AGENT)
                    self.remove_vm(vm)
            self._migs.pop(key, None)

        return self.operation(req.project, f"regions/{key[1]}", "compute.regionInstanceGroupManagers.delete",
                              state["doc"]["selfLink"], state["doc"]["id"],
                              request_id=req.query.get("requestId"), on_done=gone)

    # ---------------------------------------------------------------- the MIG's controller
    def _instance_body(self, project: str, template: dict, zone: str, vm_name: str, mig: dict) -> dict:
        """What the MIG sends to create one VM: the template's properties, made zonal."""
        props = public(template["properties"])
        body = {**props, "name": vm_name, "machineType": f"zones/{zone}/machineTypes/{props['machineType']}"}
        for disk in body.get("disks") or []:
            params = disk.get("initializeParams") or {}
            if params.get("diskType") and "/" not in params["diskType"]:
                params["diskType"] = f"zones/{zone}/diskTypes/{params['diskType']}"
        for gpu in body.get("guestAccelerators") or []:
            if "/" not in gpu.get("acceleratorType", "/"):
                gpu["acceleratorType"] = f"zones/{zone}/acceleratorTypes/{gpu['acceleratorType']}"
        items = list((body.get("metadata") or {}).get("items") or [])
        # GCE adds these to every VM a MIG makes (visible in the instance's metadata).
        items += [{"key": "instance-template", "value": template["selfLink"].split("/compute/v1/")[-1]},
                  {"key": "created-by", "value": mig["selfLink"].split("/compute/v1/")[-1]}]
        body["metadata"] = {"items": items}
        return body

    def _try_create(self, project: str, zone: str, body: dict) -> list[dict]:
        """Insert one VM as the MIG does; [] when it exists, else the errors it ended with."""
        req = Req("POST", project, {"zone": zone}, {}, body, "instances.insert")
        try:
            op = self._h_instances_insert(req)
        except ApiError as exc:
            error = exc.body.get("error", {})
            return [{"code": (error.get("errors") or [{}])[0].get("reason", "invalid"),
                     "message": error.get("message", "")}]
        if op.get("error"):
            return list(op["error"].get("errors") or [])
        return []

    def _reconcile(self, project: str, region: str, state: dict) -> None:
        doc = state["doc"]
        template = self._templates.get((project, _name_of(doc["instanceTemplate"])))
        members = state["members"]
        zones = [_name_of(z["zone"]) for z in doc["distributionPolicy"]["zones"]]
        # Shrink: newest first.
        while len(members) > doc["targetSize"]:
            vm_name = sorted(members, key=lambda n: members[n]["serial"])[-1]
            member = members.pop(vm_name)
            vm = self._vms.get((project, member["zone"], vm_name))
            if vm is not None:
                self.remove_vm(vm)
        while len(members) < doc["targetSize"]:
            suffix = "".join(random.Random(self.next_serial()).choices(string.ascii_lowercase + string.digits, k=4))
            members[f"{doc['baseInstanceName']}-{suffix}"] = {"zone": zones[0], "action": "CREATING",
                                                              "serial": self.next_serial(), "errors": []}
        for vm_name, member in members.items():
            if member["action"] not in ("CREATING", "RECREATING") or template is None:
                continue
            may_move = member["action"] == "CREATING" or \
                (doc["instanceLifecyclePolicy"].get("onRepair") or {}).get("allowChangingZone") == "YES"
            candidates = [member["zone"]] + ([z for z in zones if z != member["zone"]] if may_move else [])
            for zone in candidates:
                errors = self._try_create(project, zone, self._instance_body(project, template, zone, vm_name, doc))
                if not errors:
                    state["events"].append({"event": "created" if member["action"] == "CREATING" else "recreated",
                                            "vm": vm_name, "zone": zone})
                    member.update(zone=zone, action="NONE", errors=[])
                    break
                member["errors"] = errors  # kept for listManagedInstances' lastAttempt; retried later

    def reconcile_migs(self) -> list[dict]:
        """Run every MIG's controller once (create what is missing, repair what failed);
        returns the events of this pass: {"event": "created"|"recreated", "vm", "zone"}."""
        with self._lock:
            events = []
            for (project, region, _), state in list(self._migs.items()):
                before = len(state["events"])
                self._notice_failures(project, state)
                self._reconcile(project, region, state)
                events += state["events"][before:]
            return events

    def _notice_failures(self, project: str, state: dict) -> None:
        """A member whose VM is gone, or not RUNNING-bound (TERMINATED: stopped or preempted),
        is repaired by recreating it (defaultActionOnFailure REPAIR)."""
        if state["doc"]["instanceLifecyclePolicy"].get("defaultActionOnFailure") == "DO_NOTHING":
            return
        for vm_name, member in state["members"].items():
            if member["action"] != "NONE":
                continue
            vm = self._vms.get((project, member["zone"], vm_name))
            if vm is None or vm.doc["status"] == "TERMINATED":
                if vm is not None:  # recreated: the stopped VM and its disks go first
                    self.remove_vm(vm)
                member["action"] = "RECREATING"

    # ---------------------------------------------------------------- preemption, Google's way
    def begin_preemption(self, vm_name: str, zone: str | None = None) -> dict:
        """Step 1 of a spot preemption: `instance/preempted` reads TRUE on the metadata server and
        the guest gets its ACPI G2 Soft Off (the test delivers it: SIGTERM to the run, as systemd's
        shutdown does); the VM goes STOPPING. Returns {"vm", "zone", "notice_s": 30}."""
        with self._lock:
            vm = self.find_vm(vm_name, zone)
            scheduling = vm.doc["scheduling"]
            assert scheduling.get("provisioningModel") == "SPOT" or scheduling.get("preemptible"), \
                f"{vm_name} is not a spot VM; GCE does not preempt it"
            self._preempted.add((vm.project, vm.zone, vm.name))
            vm.doc["status"] = "STOPPING"
            return {"vm": vm.name, "zone": vm.zone, "notice_s": SPOT_NOTICE_S}

    def finish_preemption(self, vm_name: str, zone: str | None = None) -> None:
        """Step 2, at most 30 s later (ACPI G3 Mechanical Off): TERMINATED, or deleted with
        instanceTerminationAction DELETE; a zone Operation compute.instances.preempted records it."""
        with self._lock:
            vm = self.find_vm(vm_name, zone)
            self._preempted.discard((vm.project, vm.zone, vm.name))
            vm.doc["status"] = "RUNNING"  # preempt() reclaims a running spot VM
            self.preempt(vm_name, vm.zone)

    def is_preempted(self, project: str, zone: str, vm_name: str) -> bool:
        with self._lock:
            return (project, zone, vm_name) in self._preempted

    # ---------------------------------------------------------------- inspection
    def instance_templates(self) -> list[dict]:
        with self._lock:
            return [public(d) for d in self._templates.values()]

    def migs(self) -> list[dict]:
        with self._lock:
            return [self._mig_view(s) for s in self._migs.values()]

    def mig_members(self, name: str, region: str | None = None) -> dict[str, dict]:
        """{vm name: {"zone", "action", "errors"}} of one MIG (the test's view of its controller)."""
        with self._lock:
            found = [s for (p, r, n), s in self._migs.items() if n == name and region in (None, r)]
            assert len(found) == 1, f"{len(found)} MIGs named {name!r}"
            return {vm: {"zone": m["zone"], "action": m["action"], "errors": list(m["errors"])}
                    for vm, m in found[0]["members"].items()}

    def mig_events(self, name: str) -> list[dict]:
        with self._lock:
            return [e for (_, _, n), s in self._migs.items() if n == name for e in s["events"]]


class InstanceMetadataServer(LoopbackServer):
    """The GCE metadata server as one managed VM sees it, backed by the Compute stand-in: the
    instance's metadata `attributes/`, `preempted`, `name`, `id`, `zone`, and a service-account token
    only when the VM was made with a service account
    (https://cloud.google.com/compute/docs/metadata/querying-metadata: the header
    `Metadata-Flavor: Google` is required, else 403; values are plain text; predefined keys
    instance/preempted, instance/zone "projects/NUM/zones/ZONE", instance/name).

    It follows the VM by name: a MIG's replacement keeps the name ("same VM name, same
    template"), so one server serves the VM and each replacement, in whatever zone it runs.
    `bind`: the address to listen on, e.g. a throwaway host's runner-side veth address."""

    PREFIX = "/computeMetadata/v1/instance/"

    def __init__(self, compute, vm_name: str, bind: str = "127.0.0.1", token: str = "ya29.mig-vm-token"):
        self.compute, self.vm_name, self.bind, self.token = compute, vm_name, bind, token
        self.requests: list[str] = []

    def serve(self, call: HttpCall) -> tuple[int, TextAnswer]:
        if call.method != "GET":  # the server answers reads only
            return 501, TextAnswer("text/plain", "Unsupported method")
        status, kind, text = self.answer(call.path, call.header("Metadata-Flavor"))
        return status, TextAnswer(kind, text, (("Metadata-Flavor", "Google"),))

    def answer(self, path: str, flavor: str | None) -> tuple[int, str, str]:
        self.requests.append(path)
        if flavor != "Google":
            return 403, "text/plain", "Missing Metadata-Flavor:Google header."
        if not path.startswith(self.PREFIX):
            return 404, "text/plain", "not found"
        key = path[len(self.PREFIX):]
        with self.compute._lock:
            vms = [vm for (p, z, n), vm in self.compute._vms.items() if n == self.vm_name]
            if not vms:
                return 503, "text/plain", "no such instance now (stand-in)"
            vm = vms[0]
            doc = public(vm.doc)
            preempted = self.compute.is_preempted(vm.project, vm.zone, vm.name)
        if key == "preempted":
            return 200, "text/plain", "TRUE" if preempted else "FALSE"
        if key == "name":
            return 200, "text/plain", doc["name"]
        if key == "id":  # this incarnation's: a replacement keeps the name, not the id
            return 200, "text/plain", doc["id"]
        if key == "zone":
            return 200, "text/plain", f"projects/{numeric_id('project', vm.project)}/zones/{vm.zone}"
        if key.startswith("attributes/"):
            wanted = key[len("attributes/"):]
            for item in doc["metadata"].get("items") or []:
                if item["key"] == wanted:
                    return 200, "text/plain", item.get("value", "")
            return 404, "text/plain", "not found"
        if key == "service-accounts/default/token":
            if not doc.get("serviceAccounts"):
                return 404, "text/plain", "not found"
            return 200, "application/json", json.dumps(
                {"access_token": self.token, "expires_in": 3599, "token_type": "Bearer"})
        return 404, "text/plain", "not found"

    @property
    def host(self) -> str:
        """host:port, as GCE_METADATA_HOST takes it."""
        return self.endpoint.removeprefix("http://")


__all__ = ["MigsMixin", "InstanceMetadataServer", "SPOT_NOTICE_S"]
