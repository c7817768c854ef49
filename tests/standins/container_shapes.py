"""JSON shapes of the GKE API v1 (container.googleapis.com) and of the Compute Engine instance
group managers GKE makes for node pools, as the REST reference gives them: camelCase, int64 as
strings, enums as names. The stand-in builds its answers from these."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

CONTAINER_BASE = "https://container.googleapis.com/v1/"
COMPUTE_BASE = "https://www.googleapis.com/compute/v1/"
MASTER_VERSION = "1.33.5-gke.1080000"
# Not a usable CA: kubeconfig tests only check that these bytes travel unchanged.
TEST_CA_PEM = ("-----BEGIN CERTIFICATE-----\nMIIBdTCCARugAwIBAgIUgpuctlstandinCAcert0000000000000w\n"
               "-----END CERTIFICATE-----\n")


class ApiError(Exception):
    """An error answer: HTTP code, google.rpc status name, message, optional details."""

    def __init__(self, code: int, status: str, message: str, details: list | None = None):
        super().__init__(message)
        self.code, self.status, self.message, self.details = code, status, message, details or []

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def not_found(what: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"Not found: {what}.")


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def api_disabled(project: str) -> ApiError:
    return ApiError(403, "PERMISSION_DENIED",
                    f"Kubernetes Engine API has not been used in project {project} before or it is "
                    "disabled. Enable it by visiting https://console.developers.google.com/apis/api/"
                    f"container.googleapis.com/overview?project={project} then retry.",
                    [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
                      "domain": "googleapis.com",
                      "metadata": {"service": "container.googleapis.com",
                                   "consumer": f"projects/{project}"}}])


def canonical(kind: str, body: dict) -> dict:
    """A request's Cluster or NodePool the way GKE reads it: unknown fields refused, enums as
    names (clients may send numbers), int64 as strings. Parsed with the client's own protos."""
    from google.cloud import container_v1
    from google.protobuf.json_format import ParseError

    message_cls = getattr(container_v1, kind)
    try:
        message = message_cls.from_json(json.dumps(body))
    except ParseError as exc:
        raise invalid(f"Invalid JSON payload received. {str(exc).splitlines()[0]}") from None
    return json.loads(message_cls.to_json(message, use_integers_for_enums=False,
                                          always_print_fields_with_no_presence=False))


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def short_hash(*parts: str) -> str:
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:8]


def ca_data(pem: str = TEST_CA_PEM) -> str:
    return base64.b64encode(pem.encode()).decode()


def operation(project: str, location: str, name: str, op_type: str, target: str,
              started: dt.datetime) -> dict:
    return {
        "name": name, "zone": location, "location": location, "operationType": op_type,
        "status": "RUNNING", "selfLink": f"{CONTAINER_BASE}projects/{project}/locations/{location}/operations/{name}",
        "targetLink": target, "startTime": rfc3339(started),
    }


def cluster_link(project: str, location: str, cluster: str) -> str:
    return f"{CONTAINER_BASE}projects/{project}/locations/{location}/clusters/{cluster}"


def igm_name(cluster: str, pool: str) -> str:
    # GKE's pattern: gke-<cluster>-<pool>-<hash>-grp, the names truncated to fit 63.
    return f"gke-{cluster[:20]}-{pool[:20]}-{short_hash(cluster, pool)}-grp"


def igm(project: str, zone: str, name: str, size: int) -> dict:
    zone_url = f"{COMPUTE_BASE}projects/{project}/zones/{zone}"
    return {
        "kind": "compute#instanceGroupManager", "id": str(int(short_hash(zone, name), 16)),
        "name": name, "zone": zone_url, "targetSize": size,
        "baseInstanceName": name.removesuffix("-grp"),
        "instanceGroup": f"{zone_url}/instanceGroups/{name}",
        "instanceTemplate": f"{COMPUTE_BASE}projects/{project}/global/instanceTemplates/{name}",
        "selfLink": f"{zone_url}/instanceGroupManagers/{name}",
    }


def normalise_node_config(config: dict) -> dict:
    """What GKE stores from a request's NodeConfig: defaults filled, int64 as strings."""
    out = {"machineType": "e2-medium", "diskSizeGb": 100, "diskType": "pd-balanced",
           "imageType": "COS_CONTAINERD", "oauthScopes": [
               "https://www.googleapis.com/auth/devstorage.read_only",
               "https://www.googleapis.com/auth/logging.write",
               "https://www.googleapis.com/auth/monitoring"],
           "serviceAccount": "default", "metadata": {"disable-legacy-endpoints": "true"}}
    out.update(config)
    if "accelerators" in out:
        out["accelerators"] = [{**a, "acceleratorCount": str(int(a.get("acceleratorCount", 1)))}
                               for a in out["accelerators"]]
    return out
