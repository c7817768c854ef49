"""Instances and disks of the Compute Engine stand-in: insert (checked by compute_instance_rules),
the status life cycle (PROVISIONING -> STAGING -> RUNNING, STOPPING -> TERMINATED), boot disks made
from initializeParams, time-limit timestamps, stop/start, labels, metadata, guest attributes."""

from __future__ import annotations

import datetime as dt

from tests.standins.compute_base import Req, fingerprint, parse_ref, parse_timestamp, public, timestamp
from tests.standins.compute_catalog import SUBNETS, ZONES, numeric_id
from tests.standins.compute_errors import already_exists, http_error, in_use, invalid, not_found, precondition
from tests.standins.compute_instance_rules import InstanceRulesMixin, Vm, check_labels


class InstancesMixin(InstanceRulesMixin):
    boot_steps: int
    unreachable_zones: set[str]
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
        """A read of the instance: a booting VM answers `boot_steps` reads in each of PROVISIONING
        and STAGING, then RUNNING."""
        seen = public(vm.doc)
        if vm.doc["status"] in ("PROVISIONING", "STAGING"):
            vm.reads += 1
            if vm.reads >= self.boot_steps:
                self.set_vm_status(vm, "STAGING" if vm.doc["status"] == "PROVISIONING" else "RUNNING")
        return seen

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
        model = scheduling["provisioningModel"]
        if model not in shape.models:
            # about-flex-start-vms: "Flex-start VMs support all accelerator-optimized machine types
            # (except A4X and G4)"; a3-highgpu-1g/2g/4g: spot or flex-start only (GOOGLE_RULES.md).
            raise invalid("resource.scheduling.provisioningModel", model, f"Machine type {shape.name} "
                          f"is not available with the {model} provisioning model. (stand-in wording)")
        labels = check_labels(body.get("labels") or {}, "resource.labels")
        self.checked_service_accounts(body.get("serviceAccounts") or [])  # refused before capacity
        policies = self._policy_urls(project, region, body.get("resourcePolicies") or [])
        disks = self._plan_disks(project, zone, name, shape, body.get("disks") or [])
        spot = scheduling["provisioningModel"] == "SPOT" or bool(scheduling.get("preemptible"))
        sync_refusal = self._quota_refusal(region, gpu, gpu_count, spot, sync=True)
        if sync_refusal:
            raise sync_refusal
        refusal = self._stockout(project, zone, shape.name, "insert") or \
            self._quota_refusal(region, gpu, gpu_count, spot, sync=False)

        new_disks = [entry.pop("_new", None) for entry in disks]  # the disks to make, kept out of the doc
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
        for entry, new in zip(disks, new_disks):
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
            "serviceAccounts": self.checked_service_accounts(body.get("serviceAccounts") or []),
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
        if vm.doc["scheduling"].get("provisioningModel") == "FLEX_START":
            # about-flex-start-vms, Limitations: a flex-start VM cannot be stopped or suspended
            # by the user; it runs until its run duration ends or it is deleted.
            raise http_error(400, f"Invalid resource usage: 'Instance {vm.name} uses the FLEX_START "
                                  "provisioning model and cannot be stopped.' (stand-in wording)",
                             "unsupportedOperation")
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
        # compute.v1.json, instances.setScheduling: "You can only call this method on a stopped
        # instance, that is, a VM instance that is in a `TERMINATED` state" (GOOGLE_RULES.md).
        if vm.doc["status"] != "TERMINATED":
            raise http_error(400, f"Invalid resource usage: 'Instance {vm.name} is {vm.doc['status']}; "
                                  "scheduling can only be set on a stopped (TERMINATED) instance.' "
                                  "(stand-in wording)", "resourceNotReady")
        has_gpu = self._gpus_of(vm) > 0
        vm.doc["scheduling"] = self.checked_scheduling(req.body or {}, has_gpu=has_gpu, field_name="scheduling")
        if vm.doc["status"] == "RUNNING":
            self._set_termination_timestamp(vm)
        return self.operation(req.project, f"zones/{vm.zone}", "setScheduling", vm.doc["selfLink"],
                              vm.doc["id"], request_id=req.query.get("requestId"))

    def _h_instances_setServiceAccount(self, req: Req) -> dict:
        vm = self.vm(req)
        # The instance must be stopped to change its service account or scopes (Compute Engine
        # docs, "Change the service account and access scopes for an instance"; pulumi-gcp's
        # Instance.serviceAccount: "allowStoppingForUpdate must be set to true or your instance
        # must have a desiredStatus of TERMINATED in order to update this field").
        if vm.doc["status"] != "TERMINATED":
            raise http_error(400, f"Invalid resource usage: 'Instance {vm.name} is {vm.doc['status']}; "
                                  "the service account can only be set on a stopped (TERMINATED) "
                                  "instance.' (stand-in wording)", "resourceNotReady")
        vm.doc["serviceAccounts"] = self.checked_service_accounts([req.body or {}], "serviceAccounts")
        return self.operation(req.project, f"zones/{vm.zone}", "setServiceAccount", vm.doc["selfLink"],
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
