"""gcp:compute Instance, Firewall and ResourcePolicy: Pulumi inputs to Compute API requests.

Input names are the pulumi-gcp schema's (camelCase, as the engine sends them); request bodies
are the Compute API's. Ids have the provider's import formats ("projects/P/zones/Z/instances/N").
`replace_on` lists the inputs whose change the provider's schema marks ForceNew.
"""

from __future__ import annotations

import json

from .calls import is_not_found, request, wait
from .config import ProviderConfig
from .errors import ProviderError


def _int(value) -> int:
    return int(value) if value is not None else 0


class Firewall:
    token = "gcp:compute/firewall:Firewall"
    replace_on = ("name", "project", "network", "direction")

    def create(self, config: ProviderConfig, inputs: dict) -> tuple[str, dict]:
        from google.cloud import compute_v1

        project = inputs.get("project") or config.project
        client = config.compute("FirewallsClient")
        body = compute_v1.Firewall.from_json(json.dumps(firewall_body(project, inputs)))
        what = "Firewall"
        op = request("creating", what, lambda: client.insert(project=project, firewall_resource=body))
        wait(f"{what} to create", op)
        resource_id = f"projects/{project}/global/firewalls/{inputs['name']}"
        got = request("reading", what, lambda: client.get(project=project, firewall=inputs["name"]),
                      partial=(resource_id, inputs))
        return resource_id, {**inputs, "project": project, "selfLink": got.self_link,
                             "creationTimestamp": got.creation_timestamp}

    def read(self, config: ProviderConfig, resource_id: str, state: dict) -> dict | None:
        project, name = state.get("project") or config.project, state["name"]
        client = config.compute("FirewallsClient")
        if is_not_found(lambda: client.get(project=project, firewall=name)):
            return None
        got = client.get(project=project, firewall=name)
        return {**state, "sourceRanges": list(got.source_ranges), "description": got.description}

    def update(self, config: ProviderConfig, resource_id: str, olds: dict, news: dict) -> dict:
        from google.cloud import compute_v1

        project = news.get("project") or config.project
        client = config.compute("FirewallsClient")
        body = compute_v1.Firewall.from_json(json.dumps(firewall_body(project, news)))
        op = request("updating", "Firewall",
                     lambda: client.patch(project=project, firewall=news["name"], firewall_resource=body))
        wait("Firewall to update", op)
        return {**olds, **news}

    def delete(self, config: ProviderConfig, resource_id: str, state: dict) -> None:
        project, name = state.get("project") or config.project, state["name"]
        client = config.compute("FirewallsClient")
        op = request("deleting", "Firewall", lambda: client.delete(project=project, firewall=name))
        wait("Firewall to delete", op)


class ResourcePolicy:
    token = "gcp:compute/resourcePolicy:ResourcePolicy"
    replace_on = ("name", "project", "region", "instanceSchedulePolicy", "description")

    def create(self, config: ProviderConfig, inputs: dict) -> tuple[str, dict]:
        from google.cloud import compute_v1

        project = inputs.get("project") or config.project
        region = inputs.get("region") or config.region
        client = config.compute("ResourcePoliciesClient")
        body = compute_v1.ResourcePolicy.from_json(json.dumps(policy_body(inputs, region)))
        op = request("creating", "ResourcePolicy", lambda: client.insert(
            project=project, region=region, resource_policy_resource=body))
        wait("ResourcePolicy to create", op)
        resource_id = f"projects/{project}/regions/{region}/resourcePolicies/{inputs['name']}"
        got = request("reading", "ResourcePolicy", lambda: client.get(
            project=project, region=region, resource_policy=inputs["name"]), partial=(resource_id, inputs))
        return resource_id, {**inputs, "project": project, "region": region, "selfLink": got.self_link}

    def read(self, config: ProviderConfig, resource_id: str, state: dict) -> dict | None:
        client = config.compute("ResourcePoliciesClient")
        gone = is_not_found(lambda: client.get(project=state["project"], region=state["region"],
                                               resource_policy=state["name"]))
        return None if gone else state

    def update(self, config, resource_id, olds, news):  # every input is ForceNew
        raise ProviderError("ResourcePolicy has no updatable inputs")

    def delete(self, config: ProviderConfig, resource_id: str, state: dict) -> None:
        client = config.compute("ResourcePoliciesClient")
        op = request("deleting", "ResourcePolicy", lambda: client.delete(
            project=state["project"], region=state["region"], resource_policy=state["name"]))
        wait("ResourcePolicy to delete", op)


class Instance:
    token = "gcp:compute/instance:Instance"
    replace_on = ("name", "project", "zone", "bootDisk", "scratchDisks", "networkInterfaces",
                  "scheduling.provisioningModel", "scheduling.preemptible")

    def create(self, config: ProviderConfig, inputs: dict) -> tuple[str, dict]:
        from google.cloud import compute_v1

        project = inputs.get("project") or config.project
        zone = inputs.get("zone") or config.zone
        client = config.compute("InstancesClient")
        body = compute_v1.Instance.from_json(json.dumps(instance_body(project, zone, inputs)))
        op = request("creating", "instance", lambda: client.insert(
            project=project, zone=zone, instance_resource=body))
        # The provider stores the id before waiting and clears it when the insert fails, so a
        # refused VM leaves nothing in the state; from here on the VM exists.
        wait("instance to create", op)
        resource_id = f"projects/{project}/zones/{zone}/instances/{inputs['name']}"
        partial = (resource_id, {**inputs, "project": project, "zone": zone})
        got = request("reading", "instance", lambda: client.get(
            project=project, zone=zone, instance=inputs["name"]), partial=partial)
        return resource_id, {**inputs, "project": project, "zone": zone, "selfLink": got.self_link,
                             "instanceId": str(got.id), "currentStatus": got.status,
                             "cpuPlatform": got.cpu_platform}

    def read(self, config: ProviderConfig, resource_id: str, state: dict) -> dict | None:
        client = config.compute("InstancesClient")
        where = {"project": state["project"], "zone": state["zone"], "instance": state["name"]}
        if is_not_found(lambda: client.get(**where)):
            return None
        got = client.get(**where)
        return {**state, "currentStatus": got.status, "labels": dict(got.labels)}

    def update(self, config: ProviderConfig, resource_id: str, olds: dict, news: dict) -> dict:
        """Labels and metadata change in place (setLabels / setMetadata with the fingerprint);
        the rest of an in-place update is not needed by gpuctl and is refused by name."""
        from google.cloud import compute_v1

        client = config.compute("InstancesClient")
        where = {"project": olds["project"], "zone": olds["zone"], "instance": olds["name"]}
        changed = {k for k in set(olds) | set(news) if k in news and olds.get(k) != news.get(k)}
        unsupported = changed - {"labels", "metadata"}
        if unsupported:
            raise ProviderError(f"this provider double does not update {sorted(unsupported)} in place")
        current = request("reading", "instance", lambda: client.get(**where))
        if "labels" in changed:
            body = compute_v1.InstancesSetLabelsRequest(labels=news.get("labels") or {},
                                                         label_fingerprint=current.label_fingerprint)
            wait("labels to update", request("updating", "instance labels", lambda: client.set_labels(
                **where, instances_set_labels_request_resource=body)))
        if "metadata" in changed:
            body = compute_v1.Metadata(fingerprint=current.metadata.fingerprint, items=[
                compute_v1.Items(key=k, value=v) for k, v in (news.get("metadata") or {}).items()])
            wait("metadata to update", request("updating", "instance metadata", lambda: client.set_metadata(
                **where, metadata_resource=body)))
        return {**olds, **news}

    def delete(self, config: ProviderConfig, resource_id: str, state: dict) -> None:
        client = config.compute("InstancesClient")
        op = request("deleting", "instance", lambda: client.delete(
            project=state["project"], zone=state["zone"], instance=state["name"]))
        wait("instance to delete", op)


# --- Pulumi inputs -> Compute API request bodies (what the provider sends) -----------------------


def firewall_body(project: str, inputs: dict) -> dict:
    return {
        "name": inputs["name"],
        "network": f"projects/{project}/global/networks/{inputs.get('network', 'default')}",
        "direction": inputs.get("direction", "INGRESS"),
        "allowed": [{"IPProtocol": a["protocol"], **({"ports": a["ports"]} if a.get("ports") else {})}
                    for a in inputs.get("allows", [])],
        "sourceRanges": inputs.get("sourceRanges", []),
        "targetTags": inputs.get("targetTags", []),
        "description": inputs.get("description", ""),
    }


def policy_body(inputs: dict, region: str) -> dict:
    return {"name": inputs["name"], "region": region,
            "description": inputs.get("description", ""),
            "instanceSchedulePolicy": inputs.get("instanceSchedulePolicy", {})}


def nic_bodies(inputs: dict, networks: str) -> list[dict]:
    """The provider's network_interface blocks -> the API's networkInterfaces (an instance's or
    a template's): one ONE_TO_ONE_NAT access config per block the program gave."""
    nics = []
    for nic in inputs.get("networkInterfaces", []):
        entry = {"network": f"{networks}/{nic.get('network', 'default')}",
                 "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}
                                   for _ in nic.get("accessConfigs", [])]}
        if nic.get("nicType"):
            entry["nicType"] = nic["nicType"]
        nics.append(entry)
    return nics


def scheduling_body(inputs: dict) -> dict:
    """The provider's scheduling block -> the API's Scheduling (int64 seconds as a string)."""
    scheduling = dict(inputs.get("scheduling", {}))
    if "maxRunDuration" in scheduling:
        scheduling["maxRunDuration"] = {"seconds": str(_int(scheduling["maxRunDuration"]["seconds"]))}
    if "onInstanceStopAction" in scheduling:
        scheduling["onInstanceStopAction"] = dict(scheduling["onInstanceStopAction"])
    return scheduling


def instance_body(project: str, zone: str, inputs: dict) -> dict:
    boot = inputs["bootDisk"]
    params = boot.get("initializeParams", {})
    disks = [{"boot": True, "autoDelete": boot.get("autoDelete", True), "initializeParams": {
        "sourceImage": params.get("image"), "diskSizeGb": str(_int(params.get("size", 10))),
        "diskType": f"zones/{zone}/diskTypes/{params.get('type', 'pd-balanced')}",
        "labels": params.get("labels", {})}}]
    for _ in inputs.get("scratchDisks", []):
        disks.append({"type": "SCRATCH", "interface": "NVME", "autoDelete": True,
                      "initializeParams": {"diskType": f"zones/{zone}/diskTypes/local-ssd"}})
    nics = nic_bodies(inputs, f"projects/{project}/global/networks")
    scheduling = scheduling_body(inputs)
    policies = inputs.get("resourcePolicies")
    body = {
        "name": inputs["name"],
        "machineType": f"zones/{zone}/machineTypes/{inputs['machineType']}",
        "disks": disks,
        "networkInterfaces": nics,
        "scheduling": scheduling,
        "labels": inputs.get("labels", {}),
        "tags": {"items": inputs.get("tags", [])},
        "metadata": {"items": [{"key": k, "value": v} for k, v in inputs.get("metadata", {}).items()]},
        "guestAccelerators": [
            {"acceleratorType": f"zones/{zone}/acceleratorTypes/{g['type']}",
             "acceleratorCount": _int(g["count"])} for g in inputs.get("guestAccelerators", [])],
    }
    if policies:
        body["resourcePolicies"] = [policies] if isinstance(policies, str) else list(policies)
    account = inputs.get("serviceAccount")
    if account:  # the provider's single service_account block -> the API's one-element list
        body["serviceAccounts"] = [{"email": account.get("email", ""),
                                    "scopes": list(account.get("scopes", []))}]
    return body
