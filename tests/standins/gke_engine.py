"""A StackEngine for GKE tests, substituted at the Automation API boundary.

It runs gpuctl's real GKE program under Pulumi's mocks, and where the Pulumi engine would ask
the gcp provider to create a cluster or node pool it does what the provider does, through the
real google-cloud-container client against the GKE stand-in: create the cluster (with the
default pool GKE insists on), delete that pool when remove_default_node_pool is set, create
each node pool, waiting for every operation, one at a time per cluster (the provider holds a
per-cluster lock). Stack state is kept per stack, so `destroy` deletes what `up` made, in
reverse, and a failed `up` leaves a partial stack as the real engine would.

    engine = GkeStandinEngine(gke.endpoint, tmp_path / "stacks")
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pulumi

from gpuctl.adapters.pulumi_engine import StackError

TYPE_CLUSTER = "gcp:container/cluster:Cluster"
TYPE_POOL = "gcp:container/nodePool:NodePool"


def container_client(endpoint: str):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import container_v1

    return container_v1.ClusterManagerClient(transport="rest", credentials=AnonymousCredentials(),
                                             client_options={"api_endpoint": endpoint})


class GkeStandinEngine:
    def __init__(self, endpoint: str, state_dir: Path):
        self.client = container_client(endpoint)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.calls: list[tuple[str, str]] = []  # (operation, stack), for assertions
        self.fail_create: dict[str, str] = {}  # Pulumi resource name -> provider error text
        self.fail_destroy_once = False  # a destroy that fails like a lost state file

    # -- state ----------------------------------------------------------------------------
    def _path(self, stack: str) -> Path:
        return self.state_dir / f"{stack}.json"

    def _load(self, stack: str) -> list[dict]:
        path = self._path(stack)
        return json.loads(path.read_text()) if path.exists() else []

    def _save(self, stack: str, resources: list[dict]) -> None:
        self._path(stack).write_text(json.dumps(resources, indent=1))

    # -- StackEngine ----------------------------------------------------------------------
    def up(self, stack: str, program, config: dict[str, str], on_output=None) -> dict[str, Any]:
        self.calls.append(("up", stack))
        state = self._load(stack)
        mocks = _ApplyingMocks(self, state)
        pulumi.runtime.set_mocks(mocks, project="gpuctl-gke", stack=stack, preview=False)
        try:
            pulumi.runtime.test(program)()
        except Exception as exc:  # what `pulumi up` prints, then exits non-zero
            raise StackError(f"pulumi up for {stack} failed", str(exc)) from None
        finally:
            self._save(stack, state)
        if on_output:
            on_output(f"Resources: {len(state)} in stack {stack}\n")
        cluster = next((r for r in state if r["type"] == TYPE_CLUSTER), None)
        return ({"cluster_name": cluster["name"], "location": cluster["location"],
                 "endpoint": cluster["outputs"].get("endpoint")} if cluster else {})

    def destroy(self, stack: str, on_output=None) -> None:
        from google.api_core import exceptions

        self.calls.append(("destroy", stack))
        if self.fail_destroy_once:
            self.fail_destroy_once = False
            raise StackError(f"pulumi destroy for {stack} failed", "error: state file is corrupt")
        state = self._load(stack)
        for resource in reversed(list(state)):
            try:
                self.delete(resource)
            except exceptions.NotFound:
                pass  # gone behind the engine's back: pulumi treats that as deleted
            except exceptions.GoogleAPICallError as exc:
                self._save(stack, state)
                raise StackError(f"pulumi destroy for {stack} failed", str(exc)) from None
            state.remove(resource)
            self._save(stack, state)

    def remove(self, stack: str) -> None:
        self.calls.append(("remove", stack))
        self._path(stack).unlink(missing_ok=True)

    def list_stacks(self) -> list[str]:
        return sorted(p.stem for p in self.state_dir.glob("*.json"))

    def resource_count(self, stack: str) -> int:
        return len(self._load(stack))

    # -- the provider's half --------------------------------------------------------------
    def _wait(self, project: str, location: str, operation) -> None:
        from google.cloud import container_v1

        name = f"projects/{project}/locations/{location}/operations/{operation.name}"
        for _ in range(1000):
            got = self.client.get_operation(name=name)
            if got.status == container_v1.Operation.Status.DONE:
                return
        raise RuntimeError(f"operation {operation.name} never finished")

    def create(self, typ: str, name: str, inputs: dict) -> dict:
        """Create one resource as the provider would; returns its outputs."""
        from google.cloud import container_v1

        if name in self.fail_create:
            raise RuntimeError(self.fail_create[name])
        project, location = inputs["project"], inputs["location"]
        parent = f"projects/{project}/locations/{location}"
        if typ == TYPE_CLUSTER:
            cluster = container_v1.Cluster.from_json(json.dumps(cluster_body(inputs)))
            self._wait(project, location, self.client.create_cluster(parent=parent, cluster=cluster))
            path = f"{parent}/clusters/{inputs['name']}"
            if inputs.get("removeDefaultNodePool"):
                self._wait(project, location,
                           self.client.delete_node_pool(name=f"{path}/nodePools/default-pool"))
            got = self.client.get_cluster(name=path)
            return {**inputs, "endpoint": got.endpoint, "selfLink": got.self_link,
                    "masterAuth": {"clusterCaCertificate": got.master_auth.cluster_ca_certificate}}
        if typ == TYPE_POOL:
            pool = container_v1.NodePool.from_json(json.dumps(pool_body(inputs)))
            cluster_path = f"{parent}/clusters/{inputs['cluster']}"
            self._wait(project, location, self.client.create_node_pool(parent=cluster_path, node_pool=pool))
            got = self.client.get_node_pool(name=f"{cluster_path}/nodePools/{inputs['name']}")
            return {**inputs, "instanceGroupUrls": list(got.instance_group_urls)}
        raise NotImplementedError(typ)

    def delete(self, resource: dict) -> None:
        inputs = resource["inputs"]
        project, location = inputs["project"], inputs["location"]
        path = f"projects/{project}/locations/{location}/clusters"
        if resource["type"] == TYPE_CLUSTER:
            operation = self.client.delete_cluster(name=f"{path}/{inputs['name']}")
        else:
            operation = self.client.delete_node_pool(
                name=f"{path}/{inputs['cluster']}/nodePools/{inputs['name']}")
        self._wait(project, location, operation)


class _ApplyingMocks(pulumi.runtime.Mocks):
    def __init__(self, engine: GkeStandinEngine, state: list[dict]):
        self.engine, self.state = engine, state
        self.lock = threading.Lock()  # the provider's per-cluster lock, made global

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if not args.typ.startswith("gcp:"):
            return f"{args.name}-id", {}
        inputs = dict(args.inputs)
        with self.lock:
            known = next((r for r in self.state if r["type"] == args.typ and r["pulumi_name"] == args.name), None)
            if known and known["inputs"] == inputs:
                return known["id"], known["outputs"]  # no diff: nothing to do
            if known:  # changed: replace it, as the provider does for these fields
                self.engine.delete(known)
                self.state.remove(known)
            try:
                outputs = self.engine.create(args.typ, args.name, inputs)
            except Exception as exc:
                raise RuntimeError(f"error: {args.typ} resource '{args.name}': creating failed: "
                                   f"{exc}") from None
            record = {"type": args.typ, "pulumi_name": args.name, "name": inputs["name"],
                      "location": inputs["location"], "id": f"{args.name}-id", "inputs": inputs,
                      "outputs": outputs}
            self.state.append(record)
        return record["id"], outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


# --- Pulumi inputs -> GKE API request bodies (what the provider sends) -------------------------


def _int(value) -> int:
    return int(value) if value is not None else 0


def cluster_body(inputs: dict) -> dict:
    body = {
        "name": inputs["name"],
        "initialNodeCount": _int(inputs.get("initialNodeCount")),
        "network": inputs.get("network", "default"),
        "resourceLabels": inputs.get("resourceLabels", {}),
        "releaseChannel": inputs.get("releaseChannel", {}),
        "workloadIdentityConfig": inputs.get("workloadIdentityConfig", {}),
        "shieldedNodes": {"enabled": bool(inputs.get("enableShieldedNodes"))},
        "ipAllocationPolicy": {"useIpAliases": inputs.get("networkingMode") == "VPC_NATIVE"},
    }
    profile = (inputs.get("clusterAutoscaling") or {}).get("autoscalingProfile")
    if profile:
        body["autoscaling"] = {"autoscalingProfile": profile}
    return body


def node_config_body(config: dict) -> dict:
    body = {k: v for k, v in config.items() if k in (
        "machineType", "diskType", "imageType", "oauthScopes", "labels", "resourceLabels",
        "metadata", "spot", "taints", "workloadMetadataConfig", "shieldedInstanceConfig", "gvnic")}
    if "diskSizeGb" in config:
        body["diskSizeGb"] = _int(config["diskSizeGb"])
    if "ephemeralStorageLocalSsdConfig" in config:
        body["ephemeralStorageLocalSsdConfig"] = {
            "localSsdCount": _int(config["ephemeralStorageLocalSsdConfig"].get("localSsdCount"))}
    if "guestAccelerators" in config:
        body["accelerators"] = [{
            "acceleratorType": g["type"], "acceleratorCount": str(_int(g.get("count"))),
            **({"gpuDriverInstallationConfig": g["gpuDriverInstallationConfig"]}
               if g.get("gpuDriverInstallationConfig") else {})} for g in config["guestAccelerators"]]
    return body


def pool_body(inputs: dict) -> dict:
    scaling = inputs.get("autoscaling") or {}
    body = {"name": inputs["name"], "initialNodeCount": _int(inputs.get("initialNodeCount")),
            "config": node_config_body(inputs.get("nodeConfig") or {}),
            "management": inputs.get("management", {})}
    if scaling:
        body["autoscaling"] = {"enabled": True, **{k: (_int(v) if k.endswith("Count") else v)
                                                   for k, v in scaling.items()}}
    return body
