"""gcp:compute InstanceTemplate and RegionInstanceGroupManager: Pulumi inputs to Compute API
requests, as the provider (google_compute_instance_template, google_compute_region_instance_group_manager)
sends them.

An instance template is immutable in GCE (compute.v1.json has no update method for
instanceTemplates: insert, get, delete, list only), so every input of InstanceTemplate is
ForceNew in the provider's schema. A regional MIG changes its size in place (resize); the rest
gpuctl sets once, and the double refuses an in-place change of it by name.
"""

from __future__ import annotations

import json

from .calls import is_not_found, request, wait
from .compute_types import _int, nic_bodies, scheduling_body
from .config import ProviderConfig
from .errors import ProviderError


def template_body(inputs: dict) -> dict:
    """pulumi-gcp InstanceTemplate inputs -> compute.v1 InstanceTemplate (names, not URLs, for
    machine, disk and accelerator types: InstanceProperties takes names)."""
    disks = []
    for disk in inputs.get("disks", []):
        entry = {"boot": bool(disk.get("boot", False)), "autoDelete": bool(disk.get("autoDelete", True)),
                 "type": disk.get("type", "PERSISTENT")}
        params = {}
        if disk.get("sourceImage"):
            params["sourceImage"] = disk["sourceImage"]
        if disk.get("diskSizeGb") is not None:
            params["diskSizeGb"] = str(_int(disk["diskSizeGb"]))
        if disk.get("diskType"):
            params["diskType"] = disk["diskType"]
        if disk.get("labels"):
            params["labels"] = disk["labels"]
        if disk.get("interface"):
            entry["interface"] = disk["interface"]
        if params:
            entry["initializeParams"] = params
        disks.append(entry)
    nics = nic_bodies(inputs, "global/networks")
    scheduling = scheduling_body(inputs)
    metadata = dict(inputs.get("metadata", {}))
    if inputs.get("metadataStartupScript"):
        metadata["startup-script"] = inputs["metadataStartupScript"]
    props = {
        "machineType": inputs["machineType"],
        "disks": disks,
        "networkInterfaces": nics,
        "scheduling": scheduling,
        "labels": inputs.get("labels", {}),
        "tags": {"items": inputs.get("tags", [])},
        "metadata": {"items": [{"key": k, "value": v} for k, v in metadata.items()]},
        "guestAccelerators": [{"acceleratorType": g["type"], "acceleratorCount": _int(g["count"])}
                              for g in inputs.get("guestAccelerators", [])],
    }
    account = inputs.get("serviceAccount")
    if account:
        props["serviceAccounts"] = [{"email": account.get("email", "default"),
                                     "scopes": list(account.get("scopes", []))}]
    return {"name": inputs["name"], "description": inputs.get("description", ""), "properties": props}


class InstanceTemplate:
    token = "gcp:compute/instanceTemplate:InstanceTemplate"
    required = ("name", "machineType", "disks")

    @property
    def replace_on(self) -> tuple[str, ...]:
        return _EVERYTHING

    def create(self, config: ProviderConfig, inputs: dict) -> tuple[str, dict]:
        from google.cloud import compute_v1

        project = inputs.get("project") or config.project
        client = config.compute("InstanceTemplatesClient")
        body = compute_v1.InstanceTemplate.from_json(json.dumps(template_body(inputs)))
        op = request("creating", "InstanceTemplate", lambda: client.insert(
            project=project, instance_template_resource=body))
        wait("InstanceTemplate to create", op)
        resource_id = f"projects/{project}/global/instanceTemplates/{inputs['name']}"
        got = request("reading", "InstanceTemplate", lambda: client.get(
            project=project, instance_template=inputs["name"]), partial=(resource_id, inputs))
        return resource_id, {**inputs, "project": project, "selfLink": got.self_link,
                             "selfLinkUnique": f"{got.self_link}?uniqueId={got.id}"}

    def read(self, config: ProviderConfig, resource_id: str, state: dict) -> dict | None:
        client = config.compute("InstanceTemplatesClient")
        gone = is_not_found(lambda: client.get(project=state["project"], instance_template=state["name"]))
        return None if gone else state

    def update(self, config, resource_id, olds, news):  # immutable in GCE
        raise ProviderError("InstanceTemplate has no updatable inputs")

    def delete(self, config: ProviderConfig, resource_id: str, state: dict) -> None:
        client = config.compute("InstanceTemplatesClient")
        op = request("deleting", "InstanceTemplate", lambda: client.delete(
            project=state["project"], instance_template=state["name"]))
        wait("InstanceTemplate to delete", op)


class _Everything(tuple):
    def __contains__(self, item) -> bool:  # every input path forces a new template
        return True


_EVERYTHING = _Everything()


def mig_body(project: str, region: str, inputs: dict) -> dict:
    versions = inputs.get("versions") or []
    if len(versions) != 1:
        raise ProviderError("this provider double handles exactly one version (one instance template)")
    body = {
        "name": inputs["name"],
        "description": inputs.get("description", ""),
        "baseInstanceName": inputs["baseInstanceName"],
        "instanceTemplate": versions[0]["instanceTemplate"],
        "versions": [{"instanceTemplate": versions[0]["instanceTemplate"],
                      **({"name": versions[0]["name"]} if versions[0].get("name") else {})}],
        "targetSize": _int(inputs.get("targetSize")),
        "distributionPolicy": {
            "zones": [{"zone": f"projects/{project}/zones/{z.rsplit('/', 1)[-1]}"}
                      for z in inputs.get("distributionPolicyZones", [])],
        },
    }
    if inputs.get("distributionPolicyTargetShape"):
        body["distributionPolicy"]["targetShape"] = inputs["distributionPolicyTargetShape"]
    lifecycle = inputs.get("instanceLifecyclePolicy")
    if lifecycle:
        policy = {k: lifecycle[k] for k in ("defaultActionOnFailure", "forceUpdateOnRepair")
                  if lifecycle.get(k)}
        if lifecycle.get("onRepair"):
            policy["onRepair"] = dict(lifecycle["onRepair"])
        body["instanceLifecyclePolicy"] = policy
    return body


class RegionInstanceGroupManager:
    token = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
    required = ("name", "baseInstanceName", "versions")
    replace_on = ("name", "project", "region", "baseInstanceName", "distributionPolicyZones")

    def create(self, config: ProviderConfig, inputs: dict) -> tuple[str, dict]:
        from google.cloud import compute_v1

        project = inputs.get("project") or config.project
        region = inputs.get("region") or config.region
        client = config.compute("RegionInstanceGroupManagersClient")
        body = compute_v1.InstanceGroupManager.from_json(json.dumps(mig_body(project, region, inputs)))
        op = request("creating", "RegionInstanceGroupManager", lambda: client.insert(
            project=project, region=region, instance_group_manager_resource=body))
        wait("RegionInstanceGroupManager to create", op)
        resource_id = f"projects/{project}/regions/{region}/instanceGroupManagers/{inputs['name']}"
        got = request("reading", "RegionInstanceGroupManager", lambda: client.get(
            project=project, region=region, instance_group_manager=inputs["name"]),
            partial=(resource_id, inputs))
        return resource_id, {**inputs, "project": project, "region": region, "selfLink": got.self_link,
                             "instanceGroup": got.instance_group}

    def read(self, config: ProviderConfig, resource_id: str, state: dict) -> dict | None:
        client = config.compute("RegionInstanceGroupManagersClient")
        where = {"project": state["project"], "region": state["region"], "instance_group_manager": state["name"]}
        if is_not_found(lambda: client.get(**where)):
            return None
        got = client.get(**where)
        return {**state, "targetSize": got.target_size}

    def update(self, config: ProviderConfig, resource_id: str, olds: dict, news: dict) -> dict:
        changed = {k for k in set(olds) | set(news) if k in news and olds.get(k) != news.get(k)}
        unsupported = changed - {"targetSize"}
        if unsupported:
            raise ProviderError(f"this provider double does not update {sorted(unsupported)} in place")
        client = config.compute("RegionInstanceGroupManagersClient")
        op = request("updating", "RegionInstanceGroupManager", lambda: client.resize(
            project=olds["project"], region=olds["region"], instance_group_manager=olds["name"],
            size=_int(news.get("targetSize"))))
        wait("RegionInstanceGroupManager to resize", op)
        return {**olds, **news}

    def delete(self, config: ProviderConfig, resource_id: str, state: dict) -> None:
        client = config.compute("RegionInstanceGroupManagersClient")
        op = request("deleting", "RegionInstanceGroupManager", lambda: client.delete(
            project=state["project"], region=state["region"], instance_group_manager=state["name"]))
        wait("RegionInstanceGroupManager to delete", op)
