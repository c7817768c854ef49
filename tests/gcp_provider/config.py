"""The provider's configuration, read the way pulumi-gcp reads it, and the API clients it makes.

The engine passes stack config `gcp:*` to Configure, both as `variables` ("gcp:config:project")
and as `args` ({"project": ...}). pulumi-gcp names its endpoint overrides
`computeCustomEndpoint` and `containerCustomEndpoint`: base paths ending in the API version
("https://compute.googleapis.com/compute/v1/", "https://container.googleapis.com/v1/"). The
double talks only to loopback stand-ins and refuses anything else, so a test can never reach
Google by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

COMPUTE_SUFFIX = "/compute/v1/"
CONTAINER_SUFFIX = "/v1/"
V1_SUFFIX = "/v1/"  # iamCustomEndpoint, resourceManagerCustomEndpoint
STORAGE_SUFFIX = "/storage/v1/"  # storageCustomEndpoint (the provider's default base path's end)


class ConfigError(Exception):
    pass


def read_config(variables: dict[str, str], args: dict) -> dict[str, str]:
    merged = {key.removeprefix("gcp:config:"): value for key, value in variables.items()}
    merged.update({key: value for key, value in args.items() if isinstance(value, str)})
    return merged


def api_endpoint(base_path: str, suffix: str, key: str) -> str:
    """The client library's api_endpoint for a provider base path, loopback only."""
    if not base_path:
        raise ConfigError(f"gcp:{key} is not set: this test double only talks to local stand-ins")
    if not base_path.endswith(suffix):
        raise ConfigError(f"gcp:{key} must end in {suffix!r} like the provider's default base path")
    parts = urlsplit(base_path)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(f"gcp:{key}={base_path} is not a loopback stand-in")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class ProviderConfig:
    values: dict[str, str] = field(default_factory=dict)
    _clients: dict = field(default_factory=dict)

    @property
    def project(self) -> str:
        return self.values.get("project", "")

    @property
    def zone(self) -> str:
        return self.values.get("zone", "")

    @property
    def region(self) -> str:
        return self.values.get("region", "")

    def compute(self, kind: str):
        """A google-cloud-compute client whose operation pollers poll the same stand-in."""
        if kind not in self._clients:
            from google.cloud import compute_v1

            endpoint = api_endpoint(self.values.get("computeCustomEndpoint", ""), COMPUTE_SUFFIX,
                                    "computeCustomEndpoint")
            client = getattr(compute_v1, kind)(**_kwargs(endpoint))
            services = getattr(client._transport, "_extended_operations_services", None)
            if services is not None:
                services["zone_operations"] = compute_v1.ZoneOperationsClient(**_kwargs(endpoint))
                services["region_operations"] = compute_v1.RegionOperationsClient(**_kwargs(endpoint))
                services["global_operations"] = compute_v1.GlobalOperationsClient(**_kwargs(endpoint))
            self._clients[kind] = client
        return self._clients[kind]

    def discovery(self, api: str, key: str, suffix: str = V1_SUFFIX):
        """A google-api-python-client client for `api` v1, built from the discovery document
        the library ships, against the loopback base path in gcp:`key`. The client's base is
        the endpoint plus the document's servicePath ('' for iam, 'storage/v1/' for storage)."""
        if api not in self._clients:
            import json as _json

            import httplib2
            from googleapiclient import discovery
            from googleapiclient.discovery_cache import get_static_doc

            endpoint = api_endpoint(self.values.get(key, ""), suffix, key)
            document = _json.loads(get_static_doc(api, "v1"))
            self._clients[api] = discovery.build_from_document(
                document, http=httplib2.Http(timeout=30),
                client_options={"api_endpoint": endpoint + "/" + document.get("servicePath", "")})
        return self._clients[api]

    def container(self):
        if "container" not in self._clients:
            from google.cloud import container_v1

            endpoint = api_endpoint(self.values.get("containerCustomEndpoint", ""), CONTAINER_SUFFIX,
                                    "containerCustomEndpoint")
            self._clients["container"] = container_v1.ClusterManagerClient(**_kwargs(endpoint))
        return self._clients["container"]


def _kwargs(endpoint: str) -> dict:
    from google.auth.credentials import AnonymousCredentials

    return {"credentials": AnonymousCredentials(), "transport": "rest",
            "client_options": {"api_endpoint": endpoint}}
