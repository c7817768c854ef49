"""A StackEngine for tests, substituted at the Automation API boundary.

It runs gpuctl's real VM program under Pulumi's mocks, and where the Pulumi engine would ask
the gcp provider to create a resource it creates it itself through the real
google-cloud-compute client, against the Compute stand-in. Stack state (what exists, in which
order) is kept per stack as the engine's would be, so a failed `up` leaves a partial stack
that `destroy` must clean, exactly the situation gpuctl's rollback has to handle.

Error texts mimic what `pulumi up` relays from the provider: the resource, then GCE's message
with its error codes, which is what gpuctl's failover classifies.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pulumi

from gpuctl.adapters.pulumi_engine import StackError



class _QuietFailedRegistrations(logging.Filter):
    """Pulumi's mock runtime leaves the futures of failed registrations unread; asyncio logs
    each at garbage collection. The failure itself is raised and asserted on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Future exception was never retrieved" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_QuietFailedRegistrations())

TYPE_FIREWALL = "gcp:compute/firewall:Firewall"
TYPE_POLICY = "gcp:compute/resourcePolicy:ResourcePolicy"
TYPE_INSTANCE = "gcp:compute/instance:Instance"


def compute_clients(standin) -> dict[str, Any]:
    from google.cloud import compute_v1

    return {"instances": standin.client(compute_v1.InstancesClient),
            "firewalls": standin.client(compute_v1.FirewallsClient),
            "policies": standin.client(compute_v1.ResourcePoliciesClient)}


class StandinEngine:
    def __init__(self, standin, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.clients = compute_clients(standin)
        self.calls: list[tuple[str, str]] = []  # (operation, stack), for assertions
        # Called after an instance is created, as the VM's guest agent would act on boot:
        # (name, zone, REST body) -> None. Tests use it to publish host keys and install
        # the metadata ssh-keys on a real throwaway host.
        self.on_instance_created = None
        self.fail_destroy_once = False  # a test can make one destroy fail like a lost state

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
        project = config["gcp:project"]
        state = self._load(stack)
        mocks = _ApplyingMocks(self, project, state)
        pulumi.runtime.set_mocks(mocks, project="gpuctl-vm", stack=stack, preview=False)
        try:
            pulumi.runtime.test(program)()
        except Exception as exc:  # what `pulumi up` prints, then exits non-zero
            # Like the engine, let operations already in flight finish and record them: a
            # firewall created in parallel with a failed instance must be in the state.
            mocks.wait_idle()
            raise StackError(f"pulumi up for {stack} failed", str(exc)) from None
        finally:
            self._save(stack, state)
        instance = next((r for r in state if r["type"] == TYPE_INSTANCE), None)
        return {"instance_name": instance["name"], "zone": instance["location"]} if instance else {}

    def destroy(self, stack: str, on_output=None) -> None:
        from google.api_core import exceptions

        self.calls.append(("destroy", stack))
        if self.fail_destroy_once:
            self.fail_destroy_once = False
            raise StackError(f"pulumi destroy for {stack} failed", "error: state file is corrupt")
        state = self._load(stack)
        for resource in reversed(list(state)):
            try:
                self._delete(resource)
            except exceptions.NotFound:
                pass  # deleted behind the engine's back: pulumi treats that as done
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

    # -- the provider's half ------------------------------------------------------------
    def _delete(self, resource: dict) -> None:
        project, name, where = resource["project"], resource["name"], resource["location"]
        if resource["type"] == TYPE_INSTANCE:
            op = self.clients["instances"].delete(project=project, zone=where, instance=name)
        elif resource["type"] == TYPE_POLICY:
            op = self.clients["policies"].delete(project=project, region=where, resource_policy=name)
        else:
            op = self.clients["firewalls"].delete(project=project, firewall=name)
        op.result()

    def create(self, project: str, typ: str, inputs: dict) -> tuple[str, dict]:
        """Create one resource; returns (location, outputs) as the provider would."""
        from google.cloud import compute_v1

        if typ == TYPE_FIREWALL:
            body = firewall_body(project, inputs)
            self.clients["firewalls"].insert(
                project=project, firewall_resource=compute_v1.Firewall.from_json(json.dumps(body))).result()
            got = self.clients["firewalls"].get(project=project, firewall=inputs["name"])
            return "global", {**inputs, "selfLink": got.self_link}
        if typ == TYPE_POLICY:
            body = policy_body(inputs)
            region = inputs["region"]
            self.clients["policies"].insert(
                project=project, region=region,
                resource_policy_resource=compute_v1.ResourcePolicy.from_json(json.dumps(body))).result()
            got = self.clients["policies"].get(project=project, region=region,
                                               resource_policy=inputs["name"])
            return region, {**inputs, "selfLink": got.self_link}
        if typ == TYPE_INSTANCE:
            zone = inputs["zone"]
            body = instance_body(project, zone, inputs)
            self.clients["instances"].insert(
                project=project, zone=zone,
                instance_resource=compute_v1.Instance.from_json(json.dumps(body))).result()
            if self.on_instance_created is not None:
                self.on_instance_created(inputs["name"], zone, body)
            got = self.clients["instances"].get(project=project, zone=zone, instance=inputs["name"])
            return zone, {**inputs, "selfLink": got.self_link, "instanceId": str(got.id)}
        raise NotImplementedError(typ)


class _ApplyingMocks(pulumi.runtime.Mocks):
    def __init__(self, engine: StandinEngine, project: str, state: list[dict]):
        self.engine, self.project, self.state = engine, project, state
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.inflight = 0

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        with self.idle:
            self.idle.wait_for(lambda: self.inflight == 0, timeout=timeout_s)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if not args.typ.startswith("gcp:"):
            return f"{args.name}-id", {}
        with self.lock:
            self.inflight += 1
        try:
            return self._apply(args)
        finally:
            with self.idle:
                self.inflight -= 1
                self.idle.notify_all()

    def _apply(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        with self.lock:
            known = next((r for r in self.state if r["type"] == args.typ and r["name"] == args.name), None)
        if known and known["inputs"] == inputs:
            return known["id"], known["outputs"]  # no diff: nothing to do
        if known:  # a changed resource: replace it (delete, then create)
            self.engine._delete(known)
            with self.lock:
                self.state.remove(known)
        try:
            location, outputs = self.engine.create(self.project, args.typ, inputs)
        except Exception as exc:
            raise RuntimeError(provider_error_text(args.typ, args.name, exc)) from None
        record = {"type": args.typ, "name": inputs.get("name", args.name), "project": self.project,
                  "location": location, "id": f"{args.name}-id", "inputs": inputs,
                  "outputs": outputs}
        with self.lock:
            self.state.append(record)
        return record["id"], outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def provider_error_text(typ: str, name: str, exc: Exception) -> str:
    """Like the gcp provider's message: the resource, then GCE's message and error codes."""
    codes = []
    for err in getattr(exc, "errors", None) or []:
        code = getattr(err, "code", None) or (err.get("code") if isinstance(err, dict) else None)
        message = getattr(err, "message", None) or (err.get("message") if isinstance(err, dict) else "")
        if code:
            codes.append(f"{code}: {message}")
    detail = "; ".join(codes)
    return (f"error: {typ} resource '{name}': creating failed: {exc}"
            + (f" [{detail}]" if detail else ""))


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


def policy_body(inputs: dict) -> dict:
    return {"name": inputs["name"], "region": inputs["region"],
            "description": inputs.get("description", ""),
            "instanceSchedulePolicy": inputs.get("instanceSchedulePolicy", {})}


def instance_body(project: str, zone: str, inputs: dict) -> dict:
    boot = inputs["bootDisk"]
    params = boot.get("initializeParams", {})
    disks = [{"boot": True, "autoDelete": boot.get("autoDelete", True), "initializeParams": {
        "sourceImage": params.get("image"), "diskSizeGb": str(int(params.get("size", 10))),
        "diskType": f"zones/{zone}/diskTypes/{params.get('type', 'pd-balanced')}",
        "labels": params.get("labels", {})}}]
    for _ in inputs.get("scratchDisks", []):
        disks.append({"type": "SCRATCH", "interface": "NVME", "autoDelete": True,
                      "initializeParams": {"diskType": f"zones/{zone}/diskTypes/local-ssd"}})
    nics = []
    for nic in inputs.get("networkInterfaces", []):
        entry = {"network": f"projects/{project}/global/networks/{nic.get('network', 'default')}",
                 "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}
                                   for _ in nic.get("accessConfigs", [])]}
        if nic.get("nicType"):
            entry["nicType"] = nic["nicType"]
        nics.append(entry)
    scheduling = dict(inputs.get("scheduling", {}))
    if "maxRunDuration" in scheduling:
        scheduling["maxRunDuration"] = {"seconds": str(int(scheduling["maxRunDuration"]["seconds"]))}
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
             "acceleratorCount": g["count"]} for g in inputs.get("guestAccelerators", [])],
    }
    if policies:
        body["resourcePolicies"] = [policies] if isinstance(policies, str) else list(policies)
    return body
