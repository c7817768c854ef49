"""Firewalls (global) and resource policies (regional) of the Compute Engine stand-in. Neither
takes labels in GCE, so gpuctl writes its labels into `description` as "gpuctl k=v k2=v2"."""

from __future__ import annotations

import ipaddress

from tests.standins.compute_base import BaseMixin, Req, public
from tests.standins.compute_catalog import REGIONS, numeric_id
from tests.standins.compute_errors import already_exists, in_use, invalid, not_found


def description_labels(description: str | None) -> dict[str, str]:
    """'gpuctl k=v k2=v2' -> {k: v, k2: v2}; anything else -> {}."""
    words = (description or "").split()
    if not words or words[0] != "gpuctl":
        return {}
    return dict(word.split("=", 1) for word in words[1:] if "=" in word)


class FirewallsPoliciesMixin(BaseMixin):
    _firewalls: dict[tuple, dict]
    _policies: dict[tuple, dict]
    _vms: dict

    # -- firewalls --
    def _h_firewalls_insert(self, req: Req) -> dict:
        replay = self.replay_request_id(req)
        if replay:
            return replay
        body, project = req.body or {}, req.project
        name = body.get("name")
        self.check_name(name)
        if (project, name) in self._firewalls:
            raise already_exists(f"projects/{project}/global/firewalls/{name}")
        direction = body.get("direction", "INGRESS")
        if direction not in ("INGRESS", "EGRESS"):
            raise invalid("resource.direction", direction, "Must be INGRESS or EGRESS.")
        for i, cidr in enumerate(body.get("sourceRanges") or []):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise invalid(f"resource.sourceRanges[{i}]", cidr, "Must be a CIDR address range that is "
                              "contained in the network.") from None
        rules = body.get("allowed") or body.get("denied")
        if not rules:
            raise invalid("resource", "", "Exactly one of allowed or denied must be specified. (stand-in wording)")
        for i, rule in enumerate(rules):
            if not rule.get("IPProtocol"):
                raise invalid(f"resource.allowed[{i}].IPProtocol", "", "Required field not specified.")
        network = body.get("network") or "global/networks/default"
        doc = {
            "kind": "compute#firewall", "id": numeric_id("firewall", project, name, str(self.next_serial())),
            "creationTimestamp": self.stamp(), "name": name, "description": body.get("description", ""),
            "network": network if network.startswith("http") else self.url(project, *network.split("/")[-3:]),
            "priority": int(body.get("priority", 1000)), "direction": direction,
            "logConfig": {"enable": False}, "disabled": bool(body.get("disabled", False)),
            "selfLink": self.url(project, "global", "firewalls", name),
        }
        for key in ("sourceRanges", "destinationRanges", "allowed", "denied", "targetTags", "sourceTags",
                    "targetServiceAccounts"):
            if body.get(key):
                doc[key] = public(body[key])
        self._firewalls[(project, name)] = doc
        return self.operation(project, "global", "insert", doc["selfLink"], doc["id"],
                              request_id=req.query.get("requestId"))

    def _firewall(self, req: Req) -> dict:
        key = (req.project, req.params["name"])
        if key not in self._firewalls:
            raise not_found(f"projects/{key[0]}/global/firewalls/{key[1]}")
        return self._firewalls[key]

    def _h_firewalls_get(self, req: Req) -> dict:
        return public(self._firewall(req))

    def _h_firewalls_list(self, req: Req) -> dict:
        items = [public(d) for (p, _), d in self._firewalls.items() if p == req.project]
        return self.page(req, items, "firewall", "compute#firewallList", "global/firewalls")

    def _h_firewalls_delete(self, req: Req) -> dict:
        doc, key = self._firewall(req), (req.project, req.params["name"])
        return self.operation(req.project, "global", "delete", doc["selfLink"], doc["id"],
                              request_id=req.query.get("requestId"), on_done=lambda: self._firewalls.pop(key, None))

    # -- resource policies --
    def _h_resourcePolicies_insert(self, req: Req) -> dict:
        replay = self.replay_request_id(req)
        if replay:
            return replay
        body, project, region = req.body or {}, req.project, req.params["region"]
        name = self.new_regional_name(self._policies, req, "resourcePolicies")
        schedule = body.get("instanceSchedulePolicy")
        kinds = [k for k in ("instanceSchedulePolicy", "snapshotSchedulePolicy", "groupPlacementPolicy",
                             "diskConsistencyGroupPolicy", "workloadPolicy") if body.get(k)]
        if len(kinds) != 1:
            raise invalid("resource", "", "Exactly one policy type must be specified. (stand-in wording)")
        if schedule is not None:
            if not schedule.get("timeZone"):
                raise invalid("resource.instanceSchedulePolicy.timeZone", "", "Time zone must be specified. "
                              "(stand-in wording)")
            crons = [schedule.get(k, {}).get("schedule") for k in ("vmStartSchedule", "vmStopSchedule")]
            if not any(crons):
                raise invalid("resource.instanceSchedulePolicy", "", "At least one of vmStartSchedule and "
                              "vmStopSchedule must be specified. (stand-in wording)")
            for which, cron in zip(("vmStartSchedule", "vmStopSchedule"), crons):
                if cron is not None and len(cron.split()) != 5:
                    raise invalid(f"resource.instanceSchedulePolicy.{which}.schedule", cron,
                                  "Invalid cron expression. (stand-in wording)")
        doc = {
            "kind": "compute#resourcePolicy", "id": numeric_id("policy", project, region, name, str(self.next_serial())),
            "creationTimestamp": self.stamp(), "name": name, "description": body.get("description", ""),
            "region": self.url(project, "regions", region), "status": "READY",
            "selfLink": self.url(project, "regions", region, "resourcePolicies", name),
            kinds[0]: public(body[kinds[0]]),
        }
        self._policies[(project, region, name)] = doc
        return self.operation(project, f"regions/{region}", "insert", doc["selfLink"], doc["id"],
                              request_id=req.query.get("requestId"))

    def _policy(self, req: Req) -> dict:
        return self.regional(self._policies, req, "resourcePolicies")

    def _h_resourcePolicies_get(self, req: Req) -> dict:
        return public(self._policy(req))

    def _policies_in(self, project: str, region: str) -> list[dict]:
        return self.in_region(self._policies, project, region)

    def _h_resourcePolicies_list(self, req: Req) -> dict:
        region = req.params["region"]
        return self.page(req, self._policies_in(req.project, region), "resourcePolicy",
                         "compute#resourcePolicyList", f"regions/{region}/resourcePolicies")

    def _h_resourcePolicies_aggregatedList(self, req: Req) -> dict:
        scoped = {f"regions/{r}": self._policies_in(req.project, r) for r in REGIONS}
        return self.aggregated(req, scoped, "resourcePolicy", "resourcePolicies",
                               "compute#resourcePolicyAggregatedList", "resourcePolicies")

    def _h_resourcePolicies_delete(self, req: Req) -> dict:
        doc = self._policy(req)
        key = (req.project, req.params["region"], req.params["name"])
        users = [vm for vm in self._vms.values() if doc["selfLink"] in vm.doc.get("resourcePolicies", [])]
        if users:
            raise in_use("resource_policy", f"projects/{key[0]}/regions/{key[1]}/resourcePolicies/{key[2]}",
                         users[0].path)
        return self.operation(req.project, f"regions/{key[1]}", "delete", doc["selfLink"], doc["id"],
                              request_id=req.query.get("requestId"), on_done=lambda: self._policies.pop(key, None))
