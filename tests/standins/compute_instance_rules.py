"""What the Compute Engine stand-in checks before an instance is made, as GCE would: machine and
accelerator types offered in the zone, spot scheduling and time limits, labels, resource policies,
disks; and whether the zone has capacity and the region GPU quota."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tests.standins.compute_base import BaseMixin, fingerprint, parse_ref, parse_timestamp, public
from tests.standins.compute_catalog import GPU_QUOTA_METRICS, MACHINE_SHAPES, ZONES, MachineShape, numeric_id
from tests.standins.compute_errors import already_exists, in_use, invalid, not_found, quota_exceeded, \
    quota_exceeded_http, stockout

LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
DISK_TYPES = {"pd-standard", "pd-balanced", "pd-ssd", "pd-extreme", "hyperdisk-balanced", "local-ssd"}
MAX_RUN_SECONDS = 120 * 86400
FLEX_START_MAX_SECONDS = 7 * 86400  # about-flex-start-vms: "run for up to seven days"

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



class InstanceRulesMixin(BaseMixin):
    _vms: dict[tuple, Vm]
    _disks: dict[tuple, dict]
    _policies: dict[tuple, dict]
    _stockouts: list[dict]
    _quotas: dict[tuple, tuple[float, bool]]

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

    @staticmethod
    def checked_service_accounts(sent: list, field_name: str = "resource.serviceAccounts") -> list[dict]:
        """compute.v1.json, Instance.serviceAccounts: "Only one service account per VM instance is
        supported."; each names its account by email and lists its scopes (schema ServiceAccount).
        An account that does not exist or a scope that is not Google's is refused by GCE too."""
        if len(sent) > 1:
            raise invalid(field_name, len(sent), "Only one service account per VM instance is supported.")
        out = []
        for i, account in enumerate(sent):
            email = account.get("email") or ""
            if email != "default" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.gserviceaccount\.com", email):
                raise invalid(f"{field_name}[{i}].email", email, "Not a service account email. (stand-in wording)")
            scopes = list(account.get("scopes") or [])
            for scope in scopes:
                if not scope.startswith("https://www.googleapis.com/auth/"):
                    raise invalid(f"{field_name}[{i}].scopes", scope, "Not an OAuth scope URL. (stand-in wording)")
            out.append({"email": email, "scopes": scopes})
        return out

    def checked_scheduling(self, sent: dict, *, has_gpu: bool, field_name: str = "resource.scheduling") -> dict:
        s = public(sent)
        model = s.setdefault("provisioningModel", "STANDARD")
        if model not in ("STANDARD", "SPOT", "FLEX_START"):
            raise invalid(f"{field_name}.provisioningModel", model, "Unsupported provisioning model.")
        spot, preemptible = model == "SPOT", bool(s.get("preemptible", False))
        flex = model == "FLEX_START"
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
        if flex:
            # about-flex-start-vms: flex-start VMs "run for up to seven days. After that time,
            # Compute Engine automatically stops or deletes the VMs based on the termination
            # action that is specified in the VM properties."
            if not duration:
                raise invalid(f"{field_name}.maxRunDuration", "", "A FLEX_START instance needs a max "
                              "run duration of at most 7 days. (stand-in wording)")
            if int(duration.get("seconds", 0)) > FLEX_START_MAX_SECONDS:
                raise invalid(f"{field_name}.maxRunDuration.seconds", duration.get("seconds"),
                              "Max run duration of a FLEX_START instance must be at most 7 days. "
                              "(stand-in wording)")
            if preemptible:
                raise invalid(f"{field_name}.preemptible", "true", "A FLEX_START instance cannot be "
                              "preemptible. (stand-in wording)")
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
        base = GPU_QUOTA_METRICS.get(gpu)
        if base is None:  # compute.v1.json names no quota metric for it
            return None
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
        if gpu is None or gpu not in GPU_QUOTA_METRICS:
            return None
        base = GPU_QUOTA_METRICS[gpu]
        spot = vm.doc["scheduling"].get("provisioningModel") == "SPOT"
        return f"PREEMPTIBLE_{base}" if spot and (ZONES[vm.zone], f"PREEMPTIBLE_{base}") in self._quotas else base
