"""The Compute Engine adapter: the few google-cloud-compute calls the lifecycle needs.

Reads go straight to the API (status, host keys, verification after `down`, sweep); creating
and destroying go through Pulumi (adapters/pulumi_engine.py). Every list is one paged call
filtered by label, across all zones (aggregatedList), never a call per zone. 429/503 are
retried with backoff; everything else becomes a gpuctl error with a hint.
"""

from __future__ import annotations

import datetime as dt
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from ..errors import GpuctlError
from .transport import is_transport_error, network_error, per_attempt_timeout

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
ENDPOINT_ENV = "GPUCTL_COMPUTE_ENDPOINT"  # e.g. a local emulator: http://127.0.0.1:8085


class CloudAccessError(GpuctlError):
    """Credentials, project, API enablement or permissions: retrying will not help."""

    exit_code = 3


@dataclass(frozen=True)
class InstanceView:
    name: str
    zone: str
    status: str  # PROVISIONING STAGING RUNNING STOPPING SUSPENDED TERMINATED ...
    labels: dict[str, str]
    created: dt.datetime | None
    last_start: dt.datetime | None
    last_stop: dt.datetime | None
    address: str | None
    machine_type: str
    max_run_seconds: int | None
    termination_time: str | None
    termination_action: str | None
    provisioning_model: str | None
    resource_policies: tuple[str, ...] = ()


@dataclass(frozen=True)
class ManagedVm:
    """One VM of a managed instance group, as regionInstanceGroupManagers.listManagedInstances
    reports it (compute.v1.json, ManagedInstance): its name, its zone (from `instance`, the URL
    it has or will have), `instanceStatus` (empty while it does not exist) and `currentAction`
    (NONE, CREATING, RECREATING, ...)."""

    name: str
    zone: str
    status: str
    action: str


@dataclass(frozen=True)
class OperationView:
    """A zone Operation on one instance (compute.v1.json, Operation): `operationType` (e.g.
    insert, delete, compute.instances.preempted), `targetId` (the instance's unique id: a
    recreated VM has the same name and a new id) and when it ended."""

    kind: str
    target_id: str
    inserted: dt.datetime | None
    ended: dt.datetime | None
    failed: bool  # it ended with `error` set (an insert refused for lack of capacity, say)


@dataclass(frozen=True)
class ResourceView:
    kind: str  # instance | disk | firewall | resource-policy | router | instance-group | instance-template
    name: str
    location: str  # zone, region or "global"
    labels: dict[str, str] = field(default_factory=dict)
    size_gb: int = 0
    disk_type: str = ""
    status: str = ""
    machine_type: str = ""


@dataclass(frozen=True)
class RouterView:
    """A Cloud Router with its NATs (compute.v1.json, Router.nats: "A list of NAT services created
    in this router"), each as (name, sourceSubnetworkIpRangesToNat)."""

    name: str
    region: str
    network: str  # its name
    labels: dict[str, str]  # gpuctl's, from the description (routers take no labels)
    nats: tuple[tuple[str, str], ...] = ()


def last_segment(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1] if url else ""


def parse_time(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def labels_from_description(description: str) -> dict[str, str]:
    """Firewall rules and resource policies carry gpuctl's labels as 'gpuctl k=v k=v'."""
    if not description.startswith("gpuctl "):
        return {}
    pairs = (part.split("=", 1) for part in description.split()[1:] if "=" in part)
    return {key: value for key, value in pairs}


def label_filter(labels: dict[str, str]) -> str:
    return " AND ".join(f'(labels.{key} = "{value}")' for key, value in sorted(labels.items()))


class ComputeApi:
    """One project's Compute Engine, through the real client library over REST."""

    retry_initial_s = 1.0
    retry_timeout_s = 120.0

    def __init__(self, project: str, endpoint: str | None = None, credentials=None):
        self.project = project
        self.endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
        self._credentials = credentials
        self._clients: dict[str, object] = {}

    # -- plumbing -----------------------------------------------------------------------
    def _client(self, kind: str):
        if kind not in self._clients:
            from google.cloud import compute_v1

            self._clients[kind] = self._wired(self._make(getattr(compute_v1, kind)))
        return self._clients[kind]

    def _make(self, cls):
        options = {"api_endpoint": self.endpoint} if self.endpoint else None
        return cls(credentials=self._resolved_credentials(), client_options=options, transport="rest")

    def _wired(self, client):
        """A client's operation pollers are built without client_options, so with a custom
        endpoint `.result()` would poll compute.googleapis.com: point them at ours too."""
        from google.cloud import compute_v1

        services = getattr(client._transport, "_extended_operations_services", None)
        if self.endpoint and services is not None:
            services["zone_operations"] = self._make(compute_v1.ZoneOperationsClient)
            services["region_operations"] = self._make(compute_v1.RegionOperationsClient)
            services["global_operations"] = self._make(compute_v1.GlobalOperationsClient)
        return client

    def _resolved_credentials(self):
        if self._credentials is None and self.endpoint and self.endpoint.startswith("http://127."):
            # A local emulator on loopback takes no credentials (and must never get real ones).
            from google.auth.credentials import AnonymousCredentials

            self._credentials = AnonymousCredentials()
        return self._credentials

    def _retry(self):
        from google.api_core import exceptions, retry

        return retry.Retry(
            predicate=retry.if_exception_type(exceptions.TooManyRequests,
                                              exceptions.ServiceUnavailable,
                                              exceptions.InternalServerError,
                                              exceptions.BadGateway, exceptions.GatewayTimeout),
            initial=self.retry_initial_s, maximum=max(self.retry_initial_s, 16.0), multiplier=2.0,
            timeout=self.retry_timeout_s)

    def _opts(self) -> dict:
        """Per call: the retry above, and a bound on each attempt so a network that accepts
        and never answers fails in GPUCTL_HTTP_TIMEOUT seconds instead of hanging."""
        return {"retry": self._retry(), "timeout": per_attempt_timeout()}

    # -- instances ----------------------------------------------------------------------
    def labelled_instances(self, labels: dict[str, str]) -> list[InstanceView]:
        """Every instance carrying `labels`, in every zone: one aggregatedList, paged."""
        from google.cloud import compute_v1

        request = compute_v1.AggregatedListInstancesRequest(
            project=self.project, filter=label_filter(labels), max_results=500)
        with translated(self.project, self.endpoint):
            pager = self._client("InstancesClient").aggregated_list(request=request,
                                                                    **self._opts())
            return [_instance_view(item) for _, scoped in pager for item in scoped.instances]

    def instance(self, zone: str, name: str) -> InstanceView | None:
        from google.api_core import exceptions

        with translated(self.project, self.endpoint):
            try:
                item = self._client("InstancesClient").get(project=self.project, zone=zone,
                                                           instance=name, **self._opts())
            except exceptions.NotFound:
                return None
        return _instance_view(item)

    def host_keys(self, zone: str, name: str) -> list[tuple[str, str]]:
        """(key type, base64) pairs the guest agent published; [] until it has."""
        from google.api_core import exceptions

        with translated(self.project, self.endpoint):
            try:
                attrs = self._client("InstancesClient").get_guest_attributes(
                    request={"project": self.project, "zone": zone, "instance": name,
                             "query_path": "hostkeys/"}, **self._opts())
            except exceptions.NotFound:
                return []
        return [(entry.key, entry.value) for entry in attrs.query_value.items
                if entry.namespace == "hostkeys"]

    def set_run_limit(self, view: InstanceView, *, max_run_seconds: int | None = None,
                      termination_time: str | None = None) -> None:
        """Move the server-side guard in place, keeping every other scheduling field."""
        from google.cloud import compute_v1

        with translated(self.project, self.endpoint):
            current = self._client("InstancesClient").get(project=self.project, zone=view.zone,
                                                          instance=view.name, **self._opts())
            scheduling = compute_v1.Scheduling(current.scheduling)
            # GCE takes one of the two limits, never both.
            if max_run_seconds is not None:
                scheduling.max_run_duration = compute_v1.Duration(seconds=max_run_seconds)
                if "termination_time" in scheduling:
                    del scheduling.termination_time
            if termination_time is not None:
                scheduling.termination_time = termination_time
                if "max_run_duration" in scheduling:
                    del scheduling.max_run_duration
            operation = self._client("InstancesClient").set_scheduling(
                project=self.project, zone=view.zone, instance=view.name,
                scheduling_resource=scheduling, **self._opts())
            operation.result()

    # -- managed instance groups ---------------------------------------------------------
    def managed_vms(self, region: str, group: str) -> list[ManagedVm] | None:
        """The group's VMs now; None when the group does not exist (deleted: cancelled, or its
        deadline fired)."""
        from google.api_core import exceptions

        with translated(self.project, self.endpoint):
            try:
                pager = self._client("RegionInstanceGroupManagersClient").list_managed_instances(
                    project=self.project, region=region, instance_group_manager=group, **self._opts())
                found = list(pager)
            except exceptions.NotFound:
                return None
        return [ManagedVm(m.name or last_segment(m.instance), _zone_of(m.instance), m.instance_status,
                          m.current_action) for m in found]

    def instance_operations(self, zone: str, vm_name: str) -> list[OperationView]:
        """Every zone Operation Compute Engine kept on instance `vm_name` in `zone`, oldest
        first: one zoneOperations.list filtered by targetLink, paged."""
        from google.cloud import compute_v1

        link = f"https://www.googleapis.com/compute/v1/projects/{self.project}/zones/{zone}/instances/{vm_name}"
        request = compute_v1.ListZoneOperationsRequest(project=self.project, zone=zone,
                                                       filter=f'targetLink = "{link}"', max_results=500)
        with translated(self.project, self.endpoint):
            pager = self._client("ZoneOperationsClient").list(request=request, **self._opts())
            found = [OperationView(o.operation_type, str(o.target_id), parse_time(o.insert_time),
                                   parse_time(o.end_time), bool(o.error.errors)) for o in pager]
        return sorted(found, key=lambda o: o.inserted or dt.datetime.min.replace(tzinfo=dt.timezone.utc))

    def _templates(self) -> list[ResourceView]:
        from google.cloud import compute_v1

        request = compute_v1.ListInstanceTemplatesRequest(project=self.project, max_results=500)
        with translated(self.project, self.endpoint):
            pager = self._client("InstanceTemplatesClient").list(request=request, **self._opts())
            return [ResourceView("instance-template", t.name, "global",
                                 dict(t.properties.labels) or labels_from_description(t.description))
                    for t in pager]

    # -- quotas -------------------------------------------------------------------------
    def region_quotas(self, region: str) -> dict[str, tuple[float, float]] | None:
        """metric -> (limit, usage) from regions.get; None when the region does not exist.
        compute.v1 discovery document, Region.quotas / Quota {metric, limit, usage}."""
        from google.api_core import exceptions

        with translated(self.project, self.endpoint):
            try:
                found = self._client("RegionsClient").get(project=self.project, region=region,
                                                          **self._opts())
            except exceptions.NotFound:
                return None
        return {q.metric: (float(q.limit), float(q.usage)) for q in found.quotas}

    # -- everything labelled, for verification and sweep ---------------------------------
    def labelled_resources(self, labels: dict[str, str]) -> list[ResourceView]:
        """Instances, disks, firewall rules, resource policies, Cloud Routers (with their NAT,
        from `--iap`), managed instance groups and instance templates (`run --recover`) carrying
        `labels`."""
        found = [ResourceView("instance", i.name, i.zone, i.labels, status=i.status,
                              machine_type=i.machine_type)
                 for i in self.labelled_instances(labels)]
        found += self._labelled_disks(labels)
        found += [r for r in self._firewalls() if _has(r.labels, labels)]
        found += [r for r in self._resource_policies() if _has(r.labels, labels)]
        found += [r for r in self._routers() if _has(r.labels, labels)]
        found += [r for r in self._groups() + self._templates() if _has(r.labels, labels)]
        return found

    def _labelled_disks(self, labels: dict[str, str]) -> list[ResourceView]:
        from google.cloud import compute_v1

        request = compute_v1.AggregatedListDisksRequest(
            project=self.project, filter=label_filter(labels), max_results=500)
        with translated(self.project, self.endpoint):
            pager = self._client("DisksClient").aggregated_list(request=request, **self._opts())
            return [ResourceView("disk", d.name, last_segment(d.zone), dict(d.labels),
                                 size_gb=int(d.size_gb or 0), disk_type=last_segment(d.type_),
                                 status=d.status)
                    for _, scoped in pager for d in scoped.disks]

    def _firewalls(self) -> list[ResourceView]:
        # Firewall rules take no labels; gpuctl's are named <vm>-ssh and described "gpuctl ...".
        from google.cloud import compute_v1

        request = compute_v1.ListFirewallsRequest(project=self.project, max_results=500)
        with translated(self.project, self.endpoint):
            pager = self._client("FirewallsClient").list(request=request, **self._opts())
            return [ResourceView("firewall", f.name, "global", labels_from_description(f.description))
                    for f in pager]

    def _resource_policies(self) -> list[ResourceView]:
        from google.cloud import compute_v1

        return self._described("ResourcePoliciesClient", "resource_policies", "resource-policy",
                               compute_v1.AggregatedListResourcePoliciesRequest(project=self.project, max_results=500))

    def _routers(self) -> list[ResourceView]:
        # Routers take no labels either (compute.v1 Router has no `labels` field); gpuctl writes
        # them into the description, like firewall rules. A router's NATs live inside it.
        from google.cloud import compute_v1

        return self._described("RoutersClient", "routers", "router",
                               compute_v1.AggregatedListRoutersRequest(project=self.project, max_results=500))

    def region_routers(self, region: str) -> list[RouterView]:
        """Every Cloud Router of the project in `region`, gpuctl's or not, with its NATs: what
        decides whether a shared NAT exists, and what else already covers the region."""
        from google.cloud import compute_v1

        request = compute_v1.ListRoutersRequest(project=self.project, region=region, max_results=500)
        with translated(self.project, self.endpoint):
            pager = self._client("RoutersClient").list(request=request, **self._opts())
            return [RouterView(r.name, region, last_segment(r.network), labels_from_description(r.description),
                               tuple((n.name, n.source_subnetwork_ip_ranges_to_nat) for n in r.nats))
                    for r in pager]

    def _groups(self) -> list[ResourceView]:
        # Groups take no labels (compute.v1 InstanceGroupManager has none): gpuctl writes them
        # into the description. One aggregatedList covers every region and zone.
        from google.cloud import compute_v1

        return self._described("InstanceGroupManagersClient", "instance_group_managers", "instance-group",
                               compute_v1.AggregatedListInstanceGroupManagersRequest(project=self.project,
                                                                                     max_results=500))

    def _described(self, client_name: str, field_name: str, kind: str, request) -> list[ResourceView]:
        """One paged aggregatedList of a kind that takes no labels: gpuctl's are read back from
        each one's description ("gpuctl k=v ..."); its location is its region (or zone)."""
        with translated(self.project, self.endpoint):
            pager = self._client(client_name).aggregated_list(request=request, **self._opts())
            return [ResourceView(kind, r.name, last_segment(getattr(r, "region", "") or getattr(r, "zone", "")),
                                 labels_from_description(r.description))
                    for _, scoped in pager for r in getattr(scoped, field_name)]

    def delete(self, resource: ResourceView) -> None:
        """Delete one resource found by a sweep and wait for it; gone already is fine."""
        from google.api_core import exceptions

        calls = {
            "instance": ("InstancesClient", {"zone": resource.location, "instance": resource.name}),
            "disk": ("DisksClient", {"zone": resource.location, "disk": resource.name}),
            "firewall": ("FirewallsClient", {"firewall": resource.name}),
            "resource-policy": ("ResourcePoliciesClient",
                                {"region": resource.location, "resource_policy": resource.name}),
            "router": ("RoutersClient", {"region": resource.location, "router": resource.name}),
            # Deleting a group deletes its VMs too (regionInstanceGroupManagers.delete: "Deletes
            # the specified managed instance group and all of the instances in that group").
            "instance-group": ("RegionInstanceGroupManagersClient",
                               {"region": resource.location, "instance_group_manager": resource.name}),
            "instance-template": ("InstanceTemplatesClient", {"instance_template": resource.name}),
        }
        client_name, args = calls[resource.kind]
        with translated(self.project, self.endpoint):
            try:
                operation = self._client(client_name).delete(project=self.project, **args,
                                                              **self._opts())
                operation.result()
            except exceptions.NotFound:
                return


def _zone_of(instance_url: str) -> str:
    parts = instance_url.split("/")
    return parts[parts.index("zones") + 1] if "zones" in parts[:-1] else ""


def _has(have: dict[str, str], want: dict[str, str]) -> bool:
    return all(have.get(key) == value for key, value in want.items())


def _instance_view(item) -> InstanceView:
    nat = None
    for nic in item.network_interfaces:
        for access in nic.access_configs:
            nat = nat or access.nat_i_p or None
    scheduling = item.scheduling
    max_run = scheduling.max_run_duration.seconds if "max_run_duration" in scheduling else None
    return InstanceView(
        name=item.name, zone=last_segment(item.zone), status=item.status, labels=dict(item.labels),
        created=parse_time(item.creation_timestamp), last_start=parse_time(item.last_start_timestamp),
        last_stop=parse_time(item.last_stop_timestamp), address=nat,
        machine_type=last_segment(item.machine_type), max_run_seconds=int(max_run) if max_run else None,
        termination_time=scheduling.termination_time or None,
        termination_action=scheduling.instance_termination_action or None,
        provisioning_model=scheduling.provisioning_model or None,
        resource_policies=tuple(item.resource_policies))


@contextmanager
def translated(project: str, endpoint: str | None = None) -> Iterator[None]:
    """google.api_core / google.auth errors -> gpuctl errors a user can act on."""
    from google.api_core import exceptions
    from google.auth import exceptions as auth_exceptions

    try:
        yield
    except auth_exceptions.DefaultCredentialsError:
        raise CloudAccessError("no Google Cloud credentials found (Application Default Credentials)",
                               "run `gcloud auth application-default login`") from None
    except auth_exceptions.RefreshError as exc:
        raise CloudAccessError(f"Google Cloud credentials were refused: {exc}",
                               "run `gcloud auth application-default login` again") from None
    except exceptions.Forbidden as exc:
        raise forbidden_error(str(exc), project) from None
    except exceptions.Unauthorized as exc:
        raise CloudAccessError(f"Google Cloud rejected the credentials: {exc.message}",
                               "run `gcloud auth application-default login`") from None
    except (exceptions.TooManyRequests, exceptions.ServiceUnavailable) as exc:
        raise GpuctlError(f"Compute Engine kept answering {exc.code} after retries",
                          "wait a minute and rerun; nothing was changed by this call") from None
    except exceptions.RetryError as exc:
        raise GpuctlError(f"Compute Engine did not answer in time: {exc}",
                          "wait a minute and rerun") from None
    except exceptions.GoogleAPICallError as exc:
        raise GpuctlError(f"Compute Engine failed ({exc.code}): {exc.message}",
                          "rerun; report it if it persists") from None
    except Exception as exc:
        # DNS, refused, timeout, TLS: raised by requests/urllib3 or google-auth's token refresh
        # below api_core, which does not map them to GoogleAPICallError over REST.
        if is_transport_error(exc):
            raise network_error(exc, f"Compute Engine ({endpoint or endpoint_name()})", ENDPOINT_ENV,
                                endpoint_set=bool(endpoint or os.environ.get(ENDPOINT_ENV))) from None
        raise


def endpoint_name() -> str:
    return os.environ.get(ENDPOINT_ENV) or "compute.googleapis.com"


def forbidden_error(text: str, project: str) -> GpuctlError:
    if "QUOTA_EXCEEDED" in text or "Quota '" in text:
        return GpuctlError(f"a Compute Engine quota is exhausted: {text[:200]}",
                           "request more quota (IAM & Admin > Quotas) or use another region")
    if any(word in text for word in ("SERVICE_DISABLED", "accessNotConfigured",
                                     "has not been used in project", "is disabled")):
        return CloudAccessError(f"the Compute Engine API is not enabled in project {project}",
                                f"run `gcloud services enable compute.googleapis.com --project {project}`")
    return CloudAccessError(f"permission denied in project {project}: {text[:200]}",
                            "grant your account roles/compute.instanceAdmin.v1 and "
                            "roles/compute.securityAdmin (see README: Live VMs)")
