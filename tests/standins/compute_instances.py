"""Instances and disks of the Compute Engine stand-in: insert with GCE's validation, the status
life cycle (PROVISIONING -> STAGING -> RUNNING, STOPPING -> TERMINATED), boot disks made from
initializeParams, time-limit guards, preemption, guest attributes."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from tests.standins.compute_base import BaseMixin, Req, fingerprint, parse_ref, parse_timestamp, public, timestamp
from tests.standins.compute_catalog import GPU_QUOTA_METRICS, MACHINE_SHAPES, SUBNETS, ZONES, MachineShape, numeric_id
from tests.standins.compute_errors import (already_exists, http_error, in_use, invalid, not_found, precondition,
                                           quota_exceeded, quota_exceeded_http, stockout)

LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
DISK_TYPES = {"pd-standard", "pd-balanced", "pd-ssd", "pd-extreme", "hyperdisk-balanced", "local-ssd"}
MAX_RUN_SECONDS = 120 * 86400


@dataclass
class Vm:
    project: str
    zone: str
    doc: dict
    reads: int = 0  # reads since the last status change (see boot_steps)
    guest_attributes: dict = field(default_factory=dict)  # (namespace, key) -> value

    @property
    def name(self) -> str:
        return self.doc["name"]

    @property
    def path(self) -> str:
        return f"projects/{self.project}/zones/{self.zone}/instances/{self.name}"


def check_labels(labels: dict, field_name: str) -> dict:
    if not isinstance(labels, dict) or len(labels) > 64:
        raise invalid(field_name, "", "Too many labels: at most 64 are allowed.")
    for key, value in labels.items():
        if not LABEL_KEY.fullmatch(key):
            raise invalid(field_name, "", f"Label key '{key}' violates format constraints. The key must "
                          "start with a lowercase character, can only contain lowercase letters, numeric "
                          "characters, underscores and dashes. The key can be at most 63 characters long. "
                          "International characters are allowed.")
        if not isinstance(value, str) or not LABEL_VALUE.fullmatch(value):
            raise invalid(field_name, "", f"Label value '{value}' violates format constraints. The value "
                          "can only contain lowercase letters, numeric characters, underscores and dashes. "
                          "The value can be at most 63 characters long. International characters are "
                          "allowed.")
    return dict(labels)


class InstancesMixin(BaseMixin):
    boot_steps: int
    _vms: dict[tuple, Vm]
    _disks: dict[tuple, dict]
    _policies: dict[tuple, dict]
    _stockouts: list[dict]
    _quotas: dict[tuple, tuple[float, bool]]
    nat_ips: dict[str, str]
    _nat_serial: int
    _net_serial: dict[str, int]

    # -- lookups --
    def vm(self, req: Req) -> Vm:
        key = (req.project, req.params["zone"], req.params["name"])
        if key not in self._vms:
            raise not_found(f"projects/{key[0]}/zones/{key[1]}/instances/{key[2]}")
        return self._vms[key]

    def observed(self, vm: Vm) -> dict:
        """A read of the instance: each one moves a booting VM along (see `boot_steps`)."""
        if vm.doc["status"] in ("PROVISIONING", "STAGING"):
            vm.reads += 1
            if vm.reads >= self.boot_steps:
                self.set_vm_status(vm, "STAGING" if vm.doc["status"] == "PROVISIONING" else "RUNNING")
        return public(vm.doc)

    def set_vm_status(self, vm: Vm, status: str) -> None:
        doc = vm.doc
        doc["status"], vm.reads = status, 0
        access = doc["networkInterfaces"][0].get("accessConfigs") or []
        if status in ("PROVISIONING", "STAGING", "RUNNING"):
            for config in access:
                config.setdefault("natIP", self.nat_ips.get(vm.name) or self._fresh_nat_ip())
        if status == "RUNNING":
            doc["lastStartTimestamp"] = self.stamp()
            self._set_termination_timestamp(vm)
        if status == "TERMINATED":
            doc["lastStopTimestamp"] = self.stamp()
            doc.pop("resourceStatus", None)
            for config in access:  # an ephemeral external address goes when the VM stops
                config.pop("natIP", None)

    def _set_termination_timestamp(self, vm: Vm) -> None:
        scheduling = vm.doc["scheduling"]
        end = None
        if "maxRunDuration" in scheduling:
            end = self.now() + dt.timedelta(seconds=int(scheduling["maxRunDuration"]["seconds"]))
        elif "terminationTime" in scheduling:
            end = parse_timestamp(scheduling["terminationTime"])
        if end is None:
            vm.doc.pop("resourceStatus", None)
        else:
            vm.doc["resourceStatus"] = {"scheduling": {"terminationTimestamp": timestamp(end)}}

    def _fresh_nat_ip(self) -> str:
        self._nat_serial += 1
        n = self._nat_serial
        return f"203.0.113.{n}" if n < 255 else f"198.51.100.{n - 254}"

    def remove_vm(self, vm: Vm) -> None:
        """The instance goes; boot and data disks with autoDelete go with it, the others stay, detached."""
        self._vms.pop((vm.project, vm.zone, vm.name), None)
        for attached in vm.doc["disks"]:
            if attached.get("type") == "SCRATCH":
                continue
            _, _, disk_name = parse_ref(attached["source"], "disks", "zones")
            key = (vm.project, vm.zone, disk_name)
            if key not in self._disks:
                continue
            if attached.get("autoDelete"):
                del self._disks[key]
            else:
                disk = self._disks[key]
                disk["users"] = [u for u in disk.get("users", []) if not u.endswith("/" + vm.path)]
                if not disk["users"]:
                    disk.pop("users")
                disk["lastDetachTimestamp"] = self.stamp()

    # -- validation of an insert --
    def _machine_shape(self, project: str, zone: str, value) -> MachineShape:
        ref = parse_ref(value, "machineTypes", "zones")
        if ref is None:
            raise invalid("resource.machineType", value or "", "Must be a URL to a valid Compute resource "
                          "of the correct type. (stand-in wording)")
        _, mt_zone, name = ref
        if mt_zone != zone or name not in self.catalog[zone]["machineTypes"]:
            raise invalid("resource.machineType", value,
                          f"Machine type with name '{name}' does not exist in zone '{zone}'.")
        return MACHINE_SHAPES[name]

    def _accelerators(self, project: str, zone: str, shape: MachineShape, configs: list) -> tuple:
        gpu, count, out = shape.gpu, shape.gpu_count, []
        for i, config in enumerate(configs):
            ref = parse_ref(config.get("acceleratorType"), "acceleratorTypes", "zones")
            if ref is None:
                raise invalid(f"resource.guestAccelerators[{i}].acceleratorType",
                              config.get("acceleratorType", ""), "Must be a URL to a valid Compute "
                              "resource of the correct type. (stand-in wording)")
            _, acc_zone, name = ref
            if acc_zone != zone or name not in self.catalog[zone]["acceleratorTypes"]:
                raise not_found(f"projects/{project}/zones/{acc_zone}/acceleratorTypes/{name}")
            if shape.gpu is None:
                gpu, count = name, count + int(config.get("acceleratorCount", 0))
            out.append({"acceleratorType": self.url(project, "zones", zone, "acceleratorTypes", name),
                        "acceleratorCount": int(config.get("acceleratorCount", 0))})
        return gpu, count, out

    def checked_scheduling(self, sent: dict, *, has_gpu: bool, field_name: str = "resource.scheduling") -> dict:
        s = public(sent)
        model = s.setdefault("provisioningModel", "STANDARD")
        if model not in ("STANDARD", "SPOT"):
            raise invalid(f"{field_name}.provisioningModel", model, "Unsupported provisioning model.")
        spot, preemptible = model == "SPOT", bool(s.get("preemptible", False))
        s["automaticRestart"] = s.get("automaticRestart", True)  # GCE's default when unset
        if preemptible and s["automaticRestart"]:
            raise invalid(f"{field_name}.preemptible", "true",
                          "Scheduling must have preemptible be false when AutomaticRestart is true.")
        if spot and s["automaticRestart"]:
            raise invalid(f"{field_name}.provisioningModel", "SPOT", "Scheduling must have provisioning "
                          "model be STANDARD when AutomaticRestart is true. (stand-in wording, after the "
                          "preemptible message)")
        s.setdefault("onHostMaintenance", "TERMINATE" if spot or preemptible else "MIGRATE")
        if has_gpu and s["onHostMaintenance"] != "TERMINATE":
            raise invalid(f"{field_name}.onHostMaintenance", s["onHostMaintenance"],
                          "Instances with guest accelerators do not support live migration.")
        if spot:
            s.setdefault("instanceTerminationAction", "STOP")
        action = s.get("instanceTerminationAction")
        if action is not None and action not in ("STOP", "DELETE"):
            raise invalid(f"{field_name}.instanceTerminationAction", action, "Must be STOP or DELETE.")
        duration, until = s.get("maxRunDuration"), s.get("terminationTime")
        if duration and until:
            raise invalid(f"{field_name}.terminationTime", until, "Only one of maxRunDuration and "
                          "terminationTime may be set. (stand-in wording)")
        if duration:
            seconds = int(duration.get("seconds", 0))
            if not 30 <= seconds <= MAX_RUN_SECONDS:
                raise invalid(f"{field_name}.maxRunDuration.seconds", seconds, "Max run duration must be "
                              "between 30 seconds and 120 days. (stand-in wording)")
            s["maxRunDuration"] = {**duration, "seconds": str(seconds)}
        if until:
            try:
                when = parse_timestamp(until)
            except ValueError:
                raise invalid(f"{field_name}.terminationTime", until, "Must be an RFC 3339 timestamp.") from None
            if when.tzinfo is None or when <= self.now():
                raise invalid(f"{field_name}.terminationTime", until, "Termination time must be in the "
                              "future. (stand-in wording)")
        if (duration or until) and action is None:
            raise invalid(f"{field_name}.instanceTerminationAction", "", "Instance termination action must "
                          "be specified when a time limit is set. (stand-in wording)")
        return s

    def _policy_urls(self, project: str, region: str, refs: list) -> list[str]:
        urls = []
        for i, ref in enumerate(refs):
            parsed = parse_ref(ref, "resourcePolicies", "regions")
            if parsed is None:
                raise invalid(f"resource.resourcePolicies[{i}]", ref, "Must be a URL to a valid Compute "
                              "resource of the correct type. (stand-in wording)")
            owner, policy_region, name = parsed
            if (owner or project, policy_region, name) not in self._policies:
                raise not_found(f"projects/{owner or project}/regions/{policy_region}/resourcePolicies/{name}")
            if policy_region != region:
                raise invalid(f"resource.resourcePolicies[{i}]", ref, "Resource policy must be in the same "
                              "region as the instance. (stand-in wording)")
            urls.append(self.url(owner or project, "regions", policy_region, "resourcePolicies", name))
        return urls

    def _disk_type(self, project: str, zone: str, value, field_name: str, default: str) -> str:
        if value is None:
            return self.url(project, "zones", zone, "diskTypes", default)
        ref = parse_ref(value, "diskTypes", "zones")
        if ref is None or ref[1] != zone or ref[2] not in DISK_TYPES:
            raise invalid(field_name, value, "Must be a URL to a valid Compute resource of the correct "
                          "type. (stand-in wording)")
        return self.url(project, "zones", zone, "diskTypes", ref[2])

    def _plan_disks(self, project: str, zone: str, name: str, shape: MachineShape, sent: list) -> list[dict]:
        """Attached-disk entries for the instance; new disks carry a "_new" disk resource."""
        plans, boots = [], [d for d in sent if d.get("boot")]
        if len(boots) != 1:
            raise invalid("resource.disks", "", "Exactly one boot disk must be specified. (stand-in wording)")
        scratch = [d for d in sent if d.get("type") == "SCRATCH"]
        if scratch and shape.bundled_ssds:
            raise invalid("resource.disks", "", f"Machine type {shape.name} comes with {shape.bundled_ssds} "
                          "local SSD(s); none may be added. (stand-in wording)")
        ordered = boots + [d for d in sent if not d.get("boot")]
        ordered += [{"type": "SCRATCH", "interface": "NVME", "_bundled": True}] * shape.bundled_ssds
        new_names: set[str] = set()
        for index, disk in enumerate(ordered):
            field_name = f"resource.disks[{index}]"
            entry = {"kind": "compute#attachedDisk", "type": disk.get("type", "PERSISTENT"),
                     "mode": disk.get("mode", "READ_WRITE"), "index": index, "boot": index == 0,
                     "autoDelete": bool(disk.get("autoDelete", False)), "interface": disk.get("interface", "SCSI")}
            if entry["type"] == "SCRATCH":
                params = disk.get("initializeParams") or {}
                self._disk_type(project, zone, params.get("diskType"), f"{field_name}.initializeParams.diskType",
                                "local-ssd")
                entry.update(autoDelete=True, diskSizeGb="375",
                             deviceName=disk.get("deviceName") or f"local-ssd-{len([p for p in plans if p['type'] == 'SCRATCH'])}")
                plans.append(entry)
                continue
            params = disk.get("initializeParams")
            if params is not None:
                disk_name = params.get("diskName") or (name if index == 0 else f"{name}-{index}")
                self.check_name(disk_name, f"{field_name}.initializeParams.diskName")
                if (project, zone, disk_name) in self._disks or disk_name in new_names:
                    raise already_exists(f"projects/{project}/zones/{zone}/disks/{disk_name}")
                if index == 0 and not (params.get("sourceImage") or params.get("sourceSnapshot")):
                    raise invalid(f"{field_name}.initializeParams.sourceImage", "", "A boot disk needs a "
                                  "source image or snapshot. (stand-in wording)")
                new_names.add(disk_name)
                size = str(int(params.get("diskSizeGb") or 10))
                entry["_new"] = {
                    "kind": "compute#disk", "id": numeric_id("disk", project, zone, disk_name),
                    "creationTimestamp": self.stamp(), "name": disk_name,
                    "description": params.get("description", ""), "sizeGb": size,
                    "zone": self.url(project, "zones", zone), "status": "READY",
                    "selfLink": self.url(project, "zones", zone, "disks", disk_name),
                    "type": self._disk_type(project, zone, params.get("diskType"),
                                            f"{field_name}.initializeParams.diskType", "pd-standard"),
                    "labels": check_labels(params.get("labels") or {}, f"{field_name}.initializeParams.labels"),
                    "physicalBlockSizeBytes": "4096",
                }
                entry["_new"]["labelFingerprint"] = fingerprint(entry["_new"]["labels"])
                if params.get("sourceImage"):
                    entry["_new"]["sourceImage"] = params["sourceImage"]
                entry.update(source=entry["_new"]["selfLink"], deviceName=disk.get("deviceName") or disk_name,
                             diskSizeGb=size)
            else:
                ref = parse_ref(disk.get("source"), "disks", "zones")
                if ref is None or (ref[0] or project, ref[1], ref[2]) not in self._disks:
                    raise not_found(f"projects/{project}/zones/{zone}/disks/{ref[2] if ref else disk.get('source')}")
                existing = self._disks[(ref[0] or project, ref[1], ref[2])]
                if existing.get("users") and entry["mode"] == "READ_WRITE":
                    raise in_use("disk", f"projects/{project}/zones/{zone}/disks/{ref[2]}",
                                 existing["users"][0].split("/compute/v1/")[-1])
                entry.update(source=existing["selfLink"], deviceName=disk.get("deviceName") or ref[2],
                             diskSizeGb=existing["sizeGb"])
            plans.append(entry)
        return plans

    # -- capacity and quota --
    def _stockout(self, project: str, zone: str, machine_type: str, action: str) -> dict | None:
        for rule in self._stockouts:
            if zone in rule["zones"] and action in rule["on"] and \
                    (rule["machine_types"] is None or machine_type in rule["machine_types"]) and rule["times"] != 0:
                if rule["times"] is not None:
                    rule["times"] -= 1
                return stockout(project, zone, with_details=rule["with_details"])
        return None

    def _quota_refusal(self, region: str, gpu: str | None, count: int, spot: bool, sync: bool):
        if not gpu or not count:
            return None
        base = GPU_QUOTA_METRICS[gpu]
        metric = f"PREEMPTIBLE_{base}" if spot and (region, f"PREEMPTIBLE_{base}") in self._quotas else base
        for scope, name in ((region, metric), ("global", "GPUS_ALL_REGIONS")):
            if (scope, name) not in self._quotas:
                continue
            limit, as_http = self._quotas[(scope, name)]
            if as_http != sync:
                continue
            used = sum(self._gpus_of(vm) for vm in self._vms.values()
                       if vm.doc["status"] != "TERMINATED" and (scope == "global" or ZONES[vm.zone] == region)
                       and (name == "GPUS_ALL_REGIONS" or self._metric_of(vm) == name))
            if used + count > limit:
                where = None if scope == "global" else region
                return quota_exceeded_http(name, limit, where) if sync else quota_exceeded(name, limit, where)
        return None

    @staticmethod
    def _gpus_of(vm: Vm) -> int:
        shape = MACHINE_SHAPES[vm.doc["machineType"].rsplit("/", 1)[-1]]
        return shape.gpu_count + sum(a["acceleratorCount"] for a in vm.doc.get("guestAccelerators", []))

    def _metric_of(self, vm: Vm) -> str | None:
        shape = MACHINE_SHAPES[vm.doc["machineType"].rsplit("/", 1)[-1]]
        gpu = shape.gpu or next((a["acceleratorType"].rsplit("/", 1)[-1]
                                 for a in vm.doc.get("guestAccelerators", [])), None)
        if gpu is None:
            return None
        base = GPU_QUOTA_METRICS[gpu]
        spot = vm.doc["scheduling"].get("provisioningModel") == "SPOT"
        return f"PREEMPTIBLE_{base}" if spot and (ZONES[vm.zone], f"PREEMPTIBLE_{base}") in self._quotas else base

    # -- handlers --
    def _h_instances_insert(self, req: Req) -> dict:
        replay = self.replay_request_id(req)
        if replay:
            return replay
        project, zone = req.project, req.params["zone"]
        region, body = ZONES[zone], req.body or {}
        name = body.get("name")
        self.check_name(name)
        path = f"projects/{project}/zones/{zone}/instances/{name}"
        if (project, zone, name) in self._vms:
            raise already_exists(path)
        shape = self._machine_shape(project, zone, body.get("machineType"))
        gpu, gpu_count, accelerators = self._accelerators(project, zone, shape, body.get("guestAccelerators") or [])
        scheduling = self.checked_scheduling(body.get("scheduling") or {}, has_gpu=bool(gpu))
        labels = check_labels(body.get("labels") or {}, "resource.labels")
        policies = self._policy_urls(project, region, body.get("resourcePolicies") or [])
        disks = self._plan_disks(project, zone, name, shape, body.get("disks") or [])
        spot = scheduling["provisioningModel"] == "SPOT" or bool(scheduling.get("preemptible"))
        sync_refusal = self._quota_refusal(region, gpu, gpu_count, spot, sync=True)
        if sync_refusal:
            raise sync_refusal
        refusal = self._stockout(project, zone, shape.name, "insert") or \
            self._quota_refusal(region, gpu, gpu_count, spot, sync=False)

        vm = Vm(project, zone, self._instance_doc(project, zone, body, shape, accelerators, scheduling,
                                                 labels, policies, disks))
        target = self.url(project, "zones", zone, "instances", name)
        self._vms[(project, zone, name)] = vm
        if refusal:  # a refused VM may be seen PROVISIONING while its operation runs, then it is gone
            if self.operation_polls <= 0:
                del self._vms[(project, zone, name)]
            return self.operation(project, f"zones/{zone}", "insert", target, vm.doc["id"],
                                  request_id=req.query.get("requestId"), outcome=refusal,
                                  on_done=lambda: self._vms.pop((project, zone, name), None))
        for entry in disks:
            new = entry.pop("_new", None)
            if new is not None:
                self._disks[(project, zone, new["name"])] = {**new, "users": [target],
                                                             "lastAttachTimestamp": self.stamp()}
            elif entry["type"] != "SCRATCH":
                existing = self._disks[(project, zone, entry["source"].rsplit("/", 1)[-1])]
                existing["users"] = [*existing.get("users", []), target]
        self.set_vm_status(vm, "PROVISIONING" if self.boot_steps > 0 else "RUNNING")
        return self.operation(project, f"zones/{zone}", "insert", target, vm.doc["id"],
                              request_id=req.query.get("requestId"))

    def _instance_doc(self, project, zone, body, shape, accelerators, scheduling, labels, policies, disks) -> dict:
        name, region = body["name"], ZONES[zone]
        self._net_serial[region] = self._net_serial.get(region, 1) + 1
        nics = []
        for i, nic in enumerate(body.get("networkInterfaces") or [{}]):
            network = nic.get("network") or "global/networks/default"
            nics.append({
                "kind": "compute#networkInterface", "name": f"nic{i}",
                "network": network if network.startswith("http") else self.url(project, *network.split("/")[-3:]),
                "subnetwork": self.url(project, "regions", region, "subnetworks", "default"),
                "networkIP": f"{SUBNETS[region]}{self._net_serial[region]}",
                "fingerprint": fingerprint(name, i), "stackType": "IPV4_ONLY",
                "accessConfigs": [{"kind": "compute#accessConfig", "type": c.get("type", "ONE_TO_ONE_NAT"),
                                   "name": c.get("name", "External NAT"),
                                   "networkTier": c.get("networkTier", "PREMIUM")}
                                  for c in nic.get("accessConfigs", [])],
            })
        metadata = body.get("metadata") or {}
        doc = {
            "kind": "compute#instance", "id": numeric_id("instance", project, zone, name, str(self.next_serial())),
            "creationTimestamp": self.stamp(), "name": name, "description": body.get("description", ""),
            "tags": {**(body.get("tags") or {}), "fingerprint": fingerprint((body.get("tags") or {}).get("items"))},
            "machineType": self.url(project, "zones", zone, "machineTypes", shape.name),
            "status": "PROVISIONING", "zone": self.url(project, "zones", zone), "canIpForward": False,
            "networkInterfaces": nics, "disks": disks,
            "metadata": {"kind": "compute#metadata", "items": list(metadata.get("items") or []),
                         "fingerprint": fingerprint(metadata.get("items"))},
            "serviceAccounts": list(body.get("serviceAccounts") or []),
            "selfLink": self.url(project, "zones", zone, "instances", name),
            "scheduling": scheduling, "cpuPlatform": "Intel Cascade Lake",
            "labels": labels, "labelFingerprint": fingerprint(labels),
            "startRestricted": False, "deletionProtection": bool(body.get("deletionProtection", False)),
            "fingerprint": fingerprint(name, "instance"),
        }
        if accelerators:
            doc["guestAccelerators"] = accelerators
        if policies:
            doc["resourcePolicies"] = policies
        return doc

    def _h_instances_get(self, req: Req) -> dict:
        return self.observed(self.vm(req))

    def _vms_in(self, project: str, zone: str) -> list[Vm]:
        return [vm for (p, z, _), vm in self._vms.items() if p == project and z == zone]

    def _observed_matching(self, req: Req, vms: list[Vm]) -> list[dict]:
        docs = {vm.name: vm for vm in vms}
        matching = self.filtered(req, [public(vm.doc) for vm in vms], "instance")
        return [self.observed(docs[d["name"]]) for d in matching]

    def _h_instances_list(self, req: Req) -> dict:
        zone = req.params["zone"]
        items = self._observed_matching(req, self._vms_in(req.project, zone))
        return self.page(req, items, "instance", "compute#instanceList", f"zones/{zone}/instances")

    def _h_instances_aggregatedList(self, req: Req) -> dict:
        scoped = {f"zones/{z}": self._observed_matching(req, self._vms_in(req.project, z))
                  for z in ZONES if z not in self.unreachable_zones}
        scoped.update({f"zones/{z}": [] for z in self.unreachable_zones})
        return self.aggregated(req, scoped, "instance", "instances", "compute#instanceAggregatedList",
                               "instances", {f"zones/{z}" for z in self.unreachable_zones})

    def _h_instances_delete(self, req: Req) -> dict:
        vm = self.vm(req)
        if vm.doc["deletionProtection"]:
            raise http_error(400, "Invalid resource usage: 'Resource cannot be deleted if it's protected "
                                  "against deletion.'.", "resourceInUseByAnotherResource")
        if self.operation_polls > 0:
            vm.doc["status"] = "STOPPING"
        return self.operation(req.project, f"zones/{vm.zone}", "delete", vm.doc["selfLink"], vm.doc["id"],
                              request_id=req.query.get("requestId"), on_done=lambda: self.remove_vm(vm))

    def _h_instances_stop(self, req: Req) -> dict:
        vm = self.vm(req)
        on_done = None
        if vm.doc["status"] not in ("TERMINATED", "STOPPING"):
            vm.doc["status"] = "STOPPING"
            on_done = lambda: self.set_vm_status(vm, "TERMINATED")  # noqa: E731
        return self.operation(req.project, f"zones/{vm.zone}", "stop", vm.doc["selfLink"], vm.doc["id"],
                              request_id=req.query.get("requestId"), on_done=on_done)

    def _h_instances_start(self, req: Req) -> dict:
        vm = self.vm(req)
        outcome = None
        if vm.doc["status"] == "TERMINATED":
            outcome = self._stockout(vm.project, vm.zone, vm.doc["machineType"].rsplit("/", 1)[-1], "start")
            if outcome is None:
                self.set_vm_status(vm, "STAGING" if self.boot_steps > 0 else "RUNNING")
        return self.operation(req.project, f"zones/{vm.zone}", "start", vm.doc["selfLink"], vm.doc["id"],
                              request_id=req.query.get("requestId"), outcome=outcome)

    def _h_instances_setScheduling(self, req: Req) -> dict:
        vm = self.vm(req)
        has_gpu = self._gpus_of(vm) > 0
        vm.doc["scheduling"] = self.checked_scheduling(req.body or {}, has_gpu=has_gpu, field_name="scheduling")
        if vm.doc["status"] == "RUNNING":
            self._set_termination_timestamp(vm)
        return self.operation(req.project, f"zones/{vm.zone}", "setScheduling", vm.doc["selfLink"],
                              vm.doc["id"], request_id=req.query.get("requestId"))

    def _h_instances_setLabels(self, req: Req) -> dict:
        vm, body = self.vm(req), req.body or {}
        if body.get("labelFingerprint") != vm.doc["labelFingerprint"]:
            raise precondition("Labels fingerprint either invalid or resource labels have changed")
        vm.doc["labels"] = check_labels(body.get("labels") or {}, "labels")
        vm.doc["labelFingerprint"] = fingerprint(vm.doc["labels"], self.next_serial())
        return self.operation(req.project, f"zones/{vm.zone}", "setLabels", vm.doc["selfLink"], vm.doc["id"],
                              request_id=req.query.get("requestId"))

    def _h_instances_setMetadata(self, req: Req) -> dict:
        vm, body = self.vm(req), req.body or {}
        if body.get("fingerprint") != vm.doc["metadata"]["fingerprint"]:
            raise precondition("Supplied fingerprint does not match current metadata fingerprint.")
        vm.doc["metadata"] = {"kind": "compute#metadata", "items": list(body.get("items") or []),
                              "fingerprint": fingerprint(body.get("items"), self.next_serial())}
        return self.operation(req.project, f"zones/{vm.zone}", "setMetadata", vm.doc["selfLink"], vm.doc["id"],
                              request_id=req.query.get("requestId"))

    def _h_instances_getGuestAttributes(self, req: Req) -> dict:
        vm = self.vm(req)
        query_path, variable = req.query.get("queryPath"), req.query.get("variableKey")
        enabled = any(item.get("key") == "enable-guest-attributes" and str(item.get("value")).upper() == "TRUE"
                      for item in vm.doc["metadata"]["items"])
        attributes = vm.guest_attributes if enabled and vm.doc["status"] == "RUNNING" else {}
        base = {"kind": "compute#guestAttributes",
                "selfLink": vm.doc["selfLink"] + "/guestAttributes/" + (query_path or variable or "")}
        if variable:
            namespace, _, key = variable.partition("/")
            if (namespace, key) not in attributes:
                raise not_found(f"{vm.path}/guestAttributes/{variable}")
            return {**base, "variableKey": variable, "variableValue": attributes[(namespace, key)]}
        namespace = (query_path or "").rstrip("/").split("/")[0]
        items = [{"namespace": ns, "key": key, "value": value}
                 for (ns, key), value in sorted(attributes.items()) if not namespace or ns == namespace]
        if not items:
            raise not_found(f"{vm.path}/guestAttributes/{query_path or ''}")
        return {**base, "queryPath": query_path or "", "queryValue": {"items": items}}

    # -- disks --
    def _h_disks_get(self, req: Req) -> dict:
        key = (req.project, req.params["zone"], req.params["name"])
        if key not in self._disks:
            raise not_found(f"projects/{key[0]}/zones/{key[1]}/disks/{key[2]}")
        return public(self._disks[key])

    def _disks_in(self, project: str, zone: str) -> list[dict]:
        return [public(d) for (p, z, _), d in self._disks.items() if p == project and z == zone]

    def _h_disks_list(self, req: Req) -> dict:
        zone = req.params["zone"]
        return self.page(req, self._disks_in(req.project, zone), "disk", "compute#diskList", f"zones/{zone}/disks")

    def _h_disks_aggregatedList(self, req: Req) -> dict:
        scoped = {f"zones/{z}": self._disks_in(req.project, z) for z in ZONES}
        return self.aggregated(req, scoped, "disk", "disks", "compute#diskAggregatedList", "disks",
                               {f"zones/{z}" for z in self.unreachable_zones})

    def _h_disks_delete(self, req: Req) -> dict:
        key = (req.project, req.params["zone"], req.params["name"])
        path = f"projects/{key[0]}/zones/{key[1]}/disks/{key[2]}"
        if key not in self._disks:
            raise not_found(path)
        disk = self._disks[key]
        if disk.get("users"):
            raise in_use("disk", path, disk["users"][0].split("/compute/v1/")[-1])
        return self.operation(req.project, f"zones/{key[1]}", "delete", disk["selfLink"], disk["id"],
                              request_id=req.query.get("requestId"), on_done=lambda: self._disks.pop(key, None))
