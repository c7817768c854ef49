"""Cloud Routers (regional) of the Compute Engine stand-in, with their Cloud NAT configurations.

A NAT is not a resource of its own in the Compute API: it is an entry of `Router.nats`
(compute.v1.json, schema Router: "A list of NAT services created in this router."), so a NAT is
added or removed by `routers.patch`, which "supportsPATCH semantics and usesJSON merge patch
format" (compute.v1.json, `routers.patch`): a `nats` in the body replaces the whole list. That is
how the Terraform provider (and so pulumi-gcp) implements google_compute_router_nat.

Routers take no labels (no `labels` in schema Router); gpuctl writes them into `description`.
Rules enforced, each from compute.v1.json (quoted in GOOGLE_RULES.md):
  * `network` is required on insert and update (annotations.required: compute.routers.insert,
    compute.routers.update);
  * a NAT with natIpAllocateOption AUTO_ONLY takes no natIps ("When choosing AUTO_ONLY, then
    nat_ip should be empty.");
  * a NAT with ALL_SUBNETWORKS_ALL_IP_RANGES is the only NAT of its network in its region
    ("if this field contains ALL_SUBNETWORKS_ALL_IP_RANGES then there should not be any other
    Router.Nat section in any Router for this network in this region.").
"""

from __future__ import annotations

from tests.standins.compute_base import NAME_RE, NAME_RULE, BaseMixin, Req, public
from tests.standins.compute_catalog import REGIONS, numeric_id
from tests.standins.compute_errors import invalid

ALL_RANGES = "ALL_SUBNETWORKS_ALL_IP_RANGES"


def network_name(value: str | None) -> str:
    """'default', 'global/networks/default', 'projects/p/global/networks/default' or a URL -> 'default'."""
    return (value or "").rstrip("/").rsplit("/", 1)[-1]


class RoutersMixin(BaseMixin):
    _routers: dict[tuple, dict]

    # -- checks shared by insert and patch --
    def _check_nats(self, project: str, region: str, router: str, network: str, nats: list) -> None:
        seen: set[str] = set()
        for i, nat in enumerate(nats):
            name = nat.get("name")
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                raise invalid(f"resource.nats[{i}].name", name or "", NAME_RULE)
            if name in seen:
                raise invalid(f"resource.nats[{i}].name", name, "Duplicate NAT name in the router. "
                              "(stand-in wording)")
            seen.add(name)
            if nat.get("natIpAllocateOption") == "AUTO_ONLY" and nat.get("natIps"):
                raise invalid(f"resource.nats[{i}].natIps", nat["natIps"][0],
                              "natIps must be empty when natIpAllocateOption is AUTO_ONLY. (stand-in wording)")
        others = [n for (p, r, name), doc in self._routers.items()
                  if p == project and r == region and name != router
                  and network_name(doc.get("network")) == network for n in doc.get("nats", [])]
        everyone = nats + others  # every NAT of this network in this region once this applies
        covering = [n for n in everyone if n.get("sourceSubnetworkIpRangesToNat") == ALL_RANGES]
        if covering and len(everyone) > 1:
            other = next(n for n in everyone if n is not covering[0])
            raise invalid("resource.nats", covering[0]["name"],
                          f"A NAT with {ALL_RANGES} must be the only NAT of network {network} in region "
                          f"{region}; NAT {other['name']} is another. (stand-in wording)")

    # -- routers --
    def _h_routers_insert(self, req: Req) -> dict:
        replay = self.replay_request_id(req)
        if replay:
            return replay
        body, project, region = req.body or {}, req.project, req.params["region"]
        name = self.new_regional_name(self._routers, req, "routers")
        if not body.get("network"):
            raise invalid("resource.network", "", "Required field not specified. (stand-in wording)")
        network = network_name(body["network"])
        nats = public(body.get("nats") or [])
        self._check_nats(project, region, name, network, nats)
        doc = {
            "kind": "compute#router", "id": numeric_id("router", project, region, name, str(self.next_serial())),
            "creationTimestamp": self.stamp(), "name": name, "description": body.get("description", ""),
            "region": self.url(project, "regions", region),
            "network": self.url(project, "global", "networks", network),
            "selfLink": self.url(project, "regions", region, "routers", name),
        }
        if nats:
            doc["nats"] = nats
        self._routers[(project, region, name)] = doc
        return self.operation(project, f"regions/{region}", "insert", doc["selfLink"], doc["id"],
                              request_id=req.query.get("requestId"))

    def _router(self, req: Req) -> dict:
        return self.regional(self._routers, req, "routers")

    def _h_routers_get(self, req: Req) -> dict:
        return public(self._router(req))

    def _routers_in(self, project: str, region: str) -> list[dict]:
        return self.in_region(self._routers, project, region)

    def _h_routers_list(self, req: Req) -> dict:
        region = req.params["region"]
        return self.page(req, self._routers_in(req.project, region), "router", "compute#routerList",
                         f"regions/{region}/routers")

    def _h_routers_aggregatedList(self, req: Req) -> dict:
        scoped = {f"regions/{r}": self._routers_in(req.project, r) for r in REGIONS}
        return self.aggregated(req, scoped, "router", "routers", "compute#routerAggregatedList", "routers")

    def _h_routers_patch(self, req: Req) -> dict:
        """JSON merge patch: each field in the body replaces the router's (a list as a whole)."""
        doc = self._router(req)
        body, region, name = req.body or {}, req.params["region"], req.params["name"]
        if body.get("name") not in (None, name):
            raise invalid("resource.name", body["name"], "The name of a router cannot be changed. "
                          "(stand-in wording)")
        if "network" in body and network_name(body["network"]) != network_name(doc["network"]):
            raise invalid("resource.network", body["network"], "The network of a router cannot be "
                          "changed. (stand-in wording)")
        nats = public(body["nats"]) if "nats" in body else doc.get("nats", [])
        self._check_nats(req.project, region, name, network_name(doc["network"]), nats or [])
        for key in ("description", "bgp", "bgpPeers", "interfaces"):
            if key in body:
                doc[key] = public(body[key])
        if "nats" in body:
            if nats:
                doc["nats"] = nats
            else:
                doc.pop("nats", None)
        return self.operation(req.project, f"regions/{region}", "patch", doc["selfLink"], doc["id"],
                              request_id=req.query.get("requestId"))

    def _h_routers_update(self, req: Req) -> dict:
        """PUT: the router is "created or replaced with the state defined by the representation
        enclosed in the request message payload" (compute.v1.json, `routers.update`): what the
        body leaves out is gone (a router without `nats` has none)."""
        doc = self._router(req)
        body, region, name = req.body or {}, req.params["region"], req.params["name"]
        if body.get("name") != name:
            raise invalid("resource.name", body.get("name") or "", "The name in the body must be the "
                          "router's name. (stand-in wording)")
        if not body.get("network"):
            raise invalid("resource.network", "", "Required field not specified. (stand-in wording)")
        if network_name(body["network"]) != network_name(doc["network"]):
            raise invalid("resource.network", body["network"], "The network of a router cannot be "
                          "changed. (stand-in wording)")
        nats = public(body.get("nats") or [])
        self._check_nats(req.project, region, name, network_name(doc["network"]), nats)
        for key in ("nats", "bgp", "bgpPeers", "interfaces"):
            doc.pop(key, None)
        doc["description"] = body.get("description", "")
        for key in ("bgp", "bgpPeers", "interfaces"):
            if body.get(key):
                doc[key] = public(body[key])
        if nats:
            doc["nats"] = nats
        return self.operation(req.project, f"regions/{region}", "update", doc["selfLink"], doc["id"],
                              request_id=req.query.get("requestId"))

    def _h_routers_delete(self, req: Req) -> dict:
        doc = self._router(req)
        key = (req.project, req.params["region"], req.params["name"])
        return self.operation(req.project, f"regions/{key[1]}", "delete", doc["selfLink"], doc["id"],
                              request_id=req.query.get("requestId"), on_done=lambda: self._routers.pop(key, None))
