"""A stand-in for the GCE metadata server's token endpoint, on 127.0.0.1 (GCE_METADATA_HOST).

Google's contract (https://cloud.google.com/compute/docs/access/authenticate-workloads#applications,
https://cloud.google.com/compute/docs/metadata/querying-metadata): GET
/computeMetadata/v1/instance/service-accounts/default/token with the header
`Metadata-Flavor: Google` answers {"access_token", "expires_in", "token_type": "Bearer"}; a
request without the header is refused with 403.
"""

from __future__ import annotations

from tests.standins.jsonhttp import JsonStandIn, Request

TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
TOKEN = "ya29.metadata-standin"


class MetadataStandIn(JsonStandIn):
    def __init__(self, service_account: bool = True) -> None:
        super().__init__()
        self.service_account = service_account  # False: a VM created without one

    def answer(self, request: Request) -> tuple[int, dict]:
        flavor = next((v for k, v in request.headers.items() if k.lower() == "metadata-flavor"), None)
        if flavor != "Google":
            return 403, {"error": "Missing Metadata-Flavor:Google header."}
        if request.method != "GET" or request.path != TOKEN_PATH or not self.service_account:
            return 404, {"error": "not found"}
        return 200, {"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"}

    @property
    def host(self) -> str:
        """host:port, as GCE_METADATA_HOST takes it."""
        return self.endpoint.removeprefix("http://")
