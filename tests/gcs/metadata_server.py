"""A stand-in for the GCE metadata server's token endpoint, on 127.0.0.1 (GCE_METADATA_HOST).

Google's contract (https://cloud.google.com/compute/docs/access/authenticate-workloads#applications,
https://cloud.google.com/compute/docs/metadata/querying-metadata): GET
/computeMetadata/v1/instance/service-accounts/default/token with the header
`Metadata-Flavor: Google` answers {"access_token", "expires_in", "token_type": "Bearer"};
/computeMetadata/v1/instance/id answers the instance's numeric id as plain text; a request
without the header is refused with 403.
"""

from __future__ import annotations

from tests.standins.jsonhttp import JsonStandIn, Request
from tests.standins.loopback import TextAnswer

TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
ID_PATH = "/computeMetadata/v1/instance/id"
TOKEN = "ya29.metadata-standin"
INSTANCE_ID = "4410225338611712345"


class MetadataStandIn(JsonStandIn):
    def __init__(self, service_account: bool = True, instance_id: str = INSTANCE_ID) -> None:
        super().__init__()
        self.service_account = service_account  # False: a VM created without one
        self.instance_id = instance_id  # a test plays a replacement VM by changing it

    def answer(self, request: Request) -> tuple[int, dict]:
        flavor = next((v for k, v in request.headers.items() if k.lower() == "metadata-flavor"), None)
        if flavor != "Google":
            return 403, {"error": "Missing Metadata-Flavor:Google header."}
        if request.method == "GET" and request.path == ID_PATH:
            return 200, TextAnswer("text/plain", self.instance_id, (("Metadata-Flavor", "Google"),))
        if request.method != "GET" or request.path != TOKEN_PATH or not self.service_account:
            return 404, {"error": "not found"}
        return 200, {"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"}

    @property
    def host(self) -> str:
        """host:port, as GCE_METADATA_HOST takes it."""
        return self.endpoint.removeprefix("http://")
