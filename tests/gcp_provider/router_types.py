"""gcp:compute Router and RouterNat: Pulumi inputs to Compute API router requests.

The Compute API has no NAT resource: a NAT is an entry of its router's `nats` (compute.v1.json,
schema Router). The Terraform provider under pulumi-gcp (google_compute_router_nat) reads the
router, adds or removes its entry, and PATCHes the router with the new `nats` list; its import
id is "{{project}}/{{region}}/{{router}}/{{name}}". The double does the same through the real
google-cloud-compute client. One difference, forced by that client: an empty repeated field is
not serialized, so a PATCH cannot carry `"nats": []`; removing the last NAT therefore goes
through `routers.update` (PUT: the target resource is "created or replaced with the state
defined by the representation enclosed in the request message payload", compute.v1.json), with
the router as read minus its NATs.
"""

from __future__ import annotations

import json

from .calls import is_not_found, request, wait
from .config import ProviderConfig
from .errors import ProviderError


def _where(config: ProviderConfig, inputs: dict) -> tuple[str, str]:
    return inputs.get("project") or config.project, inputs.get("region") or config.region


class Router:
    token = "gcp:compute/router:Router"
    replace_on = ("name", "project", "region", "network")

    def create(self, config: ProviderConfig, inputs: dict) -> tuple[str, dict]:
        from google.cloud import compute_v1

        project, region = _where(config, inputs)
        client = config.compute("RoutersClient")
        body = compute_v1.Router.from_json(json.dumps(router_body(project, inputs)))
        op = request("creating", "Router", lambda: client.insert(
            project=project, region=region, router_resource=body))
        wait("Router to create", op)
        resource_id = f"projects/{project}/regions/{region}/routers/{inputs['name']}"
        got = request("reading", "Router", lambda: client.get(
            project=project, region=region, router=inputs["name"]), partial=(resource_id, inputs))
        return resource_id, {**inputs, "project": project, "region": region, "selfLink": got.self_link,
                             "creationTimestamp": got.creation_timestamp}

    def read(self, config: ProviderConfig, resource_id: str, state: dict) -> dict | None:
        client = config.compute("RoutersClient")
        where = {"project": state["project"], "region": state["region"], "router": state["name"]}
        if is_not_found(lambda: client.get(**where)):
            return None
        return {**state, "description": client.get(**where).description}

    def update(self, config: ProviderConfig, resource_id: str, olds: dict, news: dict) -> dict:
        from google.cloud import compute_v1

        client = config.compute("RoutersClient")
        body = compute_v1.Router(description=news.get("description", ""))
        op = request("updating", "Router", lambda: client.patch(
            project=olds["project"], region=olds["region"], router=olds["name"], router_resource=body))
        wait("Router to update", op)
        return {**olds, **news}

    def delete(self, config: ProviderConfig, resource_id: str, state: dict) -> None:
        client = config.compute("RoutersClient")
        op = request("deleting", "Router", lambda: client.delete(
            project=state["project"], region=state["region"], router=state["name"]))
        wait("Router to delete", op)


class RouterNat:
    token = "gcp:compute/routerNat:RouterNat"
    replace_on = ("name", "project", "region", "router")
    required = ("name", "router", "sourceSubnetworkIpRangesToNat")

    def create(self, config: ProviderConfig, inputs: dict) -> tuple[str, dict]:
        project, region = _where(config, inputs)
        router = inputs["router"]
        current = self._nats(config, project, region, router, "creating")
        if any(n.get("name") == inputs["name"] for n in current):
            raise ProviderError(f"Error creating RouterNat: NAT {inputs['name']} already exists in "
                                f"router {router}")
        self._set(config, project, region, router, current + [nat_body(inputs)], "creating")
        resource_id = f"{project}/{region}/{router}/{inputs['name']}"
        return resource_id, {**inputs, "project": project, "region": region}

    def read(self, config: ProviderConfig, resource_id: str, state: dict) -> dict | None:
        client = config.compute("RoutersClient")
        where = {"project": state["project"], "region": state["region"], "router": state["router"]}
        if is_not_found(lambda: client.get(**where)):
            return None
        names = [n.name for n in client.get(**where).nats]
        return state if state["name"] in names else None

    def update(self, config, resource_id, olds, news):
        raise ProviderError("this provider double does not update a RouterNat in place")

    def delete(self, config: ProviderConfig, resource_id: str, state: dict) -> None:
        project, region, router = state["project"], state["region"], state["router"]
        current = self._nats(config, project, region, router, "deleting")
        kept = [n for n in current if n.get("name") != state["name"]]
        if len(kept) != len(current):
            self._set(config, project, region, router, kept, "deleting")

    # -- the router's nats list, read and written as the provider does ---------------------
    @staticmethod
    def _nats(config: ProviderConfig, project: str, region: str, router: str, verb: str) -> list[dict]:
        from google.cloud import compute_v1

        client = config.compute("RoutersClient")
        got = request(verb, "RouterNat", lambda: client.get(project=project, region=region, router=router))
        return [json.loads(compute_v1.RouterNat.to_json(n)) for n in got.nats]

    @staticmethod
    def _set(config: ProviderConfig, project: str, region: str, router: str, nats: list[dict],
             verb: str) -> None:
        from google.cloud import compute_v1

        client = config.compute("RoutersClient")
        where = {"project": project, "region": region, "router": router}
        if nats:
            body = compute_v1.Router(nats=[compute_v1.RouterNat.from_json(json.dumps(n)) for n in nats])
            op = request(verb, "RouterNat", lambda: client.patch(**where, router_resource=body))
        else:  # see the module docstring: PUT the router without NATs
            current = request(verb, "RouterNat", lambda: client.get(**where))
            body = compute_v1.Router(name=current.name, network=current.network,
                                     description=current.description)
            op = request(verb, "RouterNat", lambda: client.update(**where, router_resource=body))
        wait(f"RouterNat to {'create' if verb == 'creating' else 'delete'}", op)


def router_body(project: str, inputs: dict) -> dict:
    network = inputs.get("network", "default")
    if "/" not in network:  # a bare name; a self link or partial URL goes as written
        network = f"projects/{project}/global/networks/{network}"
    return {"name": inputs["name"], "network": network, "description": inputs.get("description", "")}


def nat_body(inputs: dict) -> dict:
    body = {"name": inputs["name"],
            "natIpAllocateOption": inputs.get("natIpAllocateOption", "AUTO_ONLY"),
            "sourceSubnetworkIpRangesToNat": inputs["sourceSubnetworkIpRangesToNat"]}
    if inputs.get("natIps"):
        body["natIps"] = list(inputs["natIps"])
    return body
