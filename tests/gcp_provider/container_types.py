"""gcp:container Cluster and NodePool: Pulumi inputs to GKE API requests, as the provider does.

Creating a cluster: GKE insists on a default node pool, so with removeDefaultNodePool the
provider creates the cluster and then deletes "default-pool"; node pools of one cluster are
created one at a time (the provider holds a per-cluster mutex). Every step waits for its
operation. A cluster that exists when a later step fails is reported as partial state.
"""

from __future__ import annotations

import json
import threading
import time

from .calls import is_not_found, request
from .config import ProviderConfig
from .errors import ProviderError

_cluster_lock = threading.Lock()  # the provider's per-cluster mutex, made one for the process


def _int(value) -> int:
    return int(value) if value is not None else 0


def _wait(config: ProviderConfig, project: str, location: str, operation, what: str, partial=None) -> None:
    from google.cloud import container_v1

    name = f"projects/{project}/locations/{location}/operations/{operation.name}"
    client = config.container()
    for _ in range(3000):
        got = request("waiting for", what, lambda: client.get_operation(name=name), partial)
        if got.status == container_v1.Operation.Status.DONE:
            if got.error and got.error.message:
                raise ProviderError(f"Error waiting for {what}: {got.error.message}", partial)
            return
        time.sleep(0.01)
    raise ProviderError(f"Error waiting for {what}: timeout while waiting for state to become 'DONE'",
                        partial)


class Cluster:
    token = "gcp:container/cluster:Cluster"
    replace_on = ("name", "project", "location", "network", "networkingMode", "initialNodeCount",
                  "workloadIdentityConfig", "enableShieldedNodes", "datapathProvider")

    def create(self, config: ProviderConfig, inputs: dict) -> tuple[str, dict]:
        from google.cloud import container_v1

        project = inputs.get("project") or config.project
        location = inputs.get("location") or config.zone
        parent = f"projects/{project}/locations/{location}"
        path = f"{parent}/clusters/{inputs['name']}"
        client = config.container()
        body = container_v1.Cluster.from_json(json.dumps(cluster_body(inputs)))
        with _cluster_lock:
            op = request("creating", "GKE cluster", lambda: client.create_cluster(parent=parent, cluster=body))
            _wait(config, project, location, op, "creating GKE cluster")
            state = {**inputs, "project": project, "location": location}
            partial = (path, state)
            if inputs.get("removeDefaultNodePool"):
                op = request("deleting", "default node pool", lambda: client.delete_node_pool(
                    name=f"{path}/nodePools/default-pool"), partial)
                _wait(config, project, location, op, "removing default node pool", partial)
            got = request("reading", "GKE cluster", lambda: client.get_cluster(name=path), partial)
        return path, {**state, "endpoint": got.endpoint, "selfLink": got.self_link,
                      "masterAuth": {"clusterCaCertificate": got.master_auth.cluster_ca_certificate}}

    def read(self, config: ProviderConfig, resource_id: str, state: dict) -> dict | None:
        client = config.container()
        return None if is_not_found(lambda: client.get_cluster(name=resource_id)) else state

    def update(self, config, resource_id, olds, news):
        raise ProviderError("this provider double does not update GKE clusters in place")

    def delete(self, config: ProviderConfig, resource_id: str, state: dict) -> None:
        client = config.container()
        with _cluster_lock:
            op = request("deleting", "GKE cluster", lambda: client.delete_cluster(name=resource_id))
            _wait(config, state["project"], state["location"], op, "deleting GKE cluster")


class NodePool:
    token = "gcp:container/nodePool:NodePool"
    replace_on = ("name", "project", "location", "cluster", "nodeConfig", "initialNodeCount")

    def create(self, config: ProviderConfig, inputs: dict) -> tuple[str, dict]:
        from google.cloud import container_v1

        project = inputs.get("project") or config.project
        location = inputs.get("location") or config.zone
        cluster_path = f"projects/{project}/locations/{location}/clusters/{inputs['cluster']}"
        path = f"{cluster_path}/nodePools/{inputs['name']}"
        client = config.container()
        body = container_v1.NodePool.from_json(json.dumps(pool_body(inputs)))
        with _cluster_lock:
            op = request("creating", "NodePool", lambda: client.create_node_pool(
                parent=cluster_path, node_pool=body))
            _wait(config, project, location, op, "creating GKE NodePool")
            state = {**inputs, "project": project, "location": location}
            got = request("reading", "NodePool", lambda: client.get_node_pool(name=path), (path, state))
        return path, {**state, "instanceGroupUrls": list(got.instance_group_urls)}

    def read(self, config: ProviderConfig, resource_id: str, state: dict) -> dict | None:
        client = config.container()
        return None if is_not_found(lambda: client.get_node_pool(name=resource_id)) else state

    def update(self, config: ProviderConfig, resource_id: str, olds: dict, news: dict) -> dict:
        """Autoscaling changes in place (nodePools.setAutoscaling), as the provider does; the
        rest of a node pool's inputs force a replacement (see replace_on)."""
        from google.cloud import container_v1

        changed = {k for k in news if not k.startswith("__") and olds.get(k) != news.get(k)}
        if changed - {"autoscaling"}:
            raise ProviderError(f"this provider double does not update {sorted(changed)} in place")
        scaling = pool_body(news).get("autoscaling") or {"enabled": False}
        request_body = container_v1.SetNodePoolAutoscalingRequest(
            name=resource_id, autoscaling=container_v1.NodePoolAutoscaling.from_json(json.dumps(scaling)))
        client = config.container()
        with _cluster_lock:
            op = request("updating", "NodePool", lambda: client.set_node_pool_autoscaling(request=request_body))
            _wait(config, olds["project"], olds["location"], op, "updating GKE NodePool")
        return {**olds, **news}

    def delete(self, config: ProviderConfig, resource_id: str, state: dict) -> None:
        client = config.container()
        with _cluster_lock:
            op = request("deleting", "NodePool", lambda: client.delete_node_pool(name=resource_id))
            _wait(config, state["project"], state["location"], op, "deleting GKE NodePool")


# --- Pulumi inputs -> GKE API request bodies (what the provider sends) -------------------------


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
    networks = inputs.get("masterAuthorizedNetworksConfig")
    if networks is not None:
        body["masterAuthorizedNetworksConfig"] = {
            "enabled": True, "cidrBlocks": [{"cidrBlock": b["cidrBlock"], "displayName": b.get("displayName", "")}
                                            for b in networks.get("cidrBlocks", [])]}
    if inputs.get("datapathProvider"):
        body["networkConfig"] = {"datapathProvider": inputs["datapathProvider"]}
    gcs_fuse = (inputs.get("addonsConfig") or {}).get("gcsFuseCsiDriverConfig")
    if gcs_fuse is not None:
        body["addonsConfig"] = {"gcsFuseCsiDriverConfig": {"enabled": bool(gcs_fuse.get("enabled"))}}
    return body


def node_config_body(config: dict) -> dict:
    body = {k: v for k, v in config.items() if k in (
        "machineType", "diskType", "imageType", "oauthScopes", "labels", "resourceLabels",
        "metadata", "spot", "taints", "workloadMetadataConfig", "shieldedInstanceConfig", "gvnic",
        "serviceAccount")}
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
