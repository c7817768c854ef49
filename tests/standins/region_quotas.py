"""A stand-in for Compute Engine `regions.get` with quotas (REST, 127.0.0.1), for
`gpuctl check`'s GPU quota line. (The main Compute stand-in does not serve regions.get.)

compute.v1 discovery document: GET compute/v1/projects/{project}/regions/{region} returns a
Region whose `quotas` are [{metric, limit, usage}] (metric from the Quota.metric enum, e.g.
NVIDIA_T4_GPUS, PREEMPTIBLE_NVIDIA_T4_GPUS); an unknown region is 404.
"""

from __future__ import annotations

import re

from tests.standins.jsonhttp import JsonStandIn, Request, google_error

_GET = re.compile(r"^/compute/v1/projects/(?P<project>[^/]+)/regions/(?P<region>[^/]+)$")


class RegionQuotasStandIn(JsonStandIn):
    def __init__(self, project: str, regions: dict[str, dict[str, tuple[float, float]]]):
        super().__init__()
        self.project = project
        self.regions = {r: dict(q) for r, q in regions.items()}  # region -> metric -> (limit, usage)

    def set_quota(self, region: str, metric: str, limit: float, usage: float = 0.0) -> None:
        self.regions[region][metric] = (limit, usage)

    def answer(self, request: Request) -> tuple[int, dict]:
        match = _GET.match(request.path)
        if request.method != "GET" or not match:
            return google_error(404, f"{request.method} {request.path} is not served here.", "NOT_FOUND")
        if match["project"] != self.project:
            return google_error(403, "Required 'compute.regions.get' permission", "PERMISSION_DENIED")
        region = match["region"]
        if region not in self.regions:
            return google_error(404, f"The resource 'projects/{self.project}/regions/{region}' was not found",
                                "NOT_FOUND")
        base = f"https://www.googleapis.com/compute/v1/projects/{self.project}"
        return 200, {"kind": "compute#region", "id": "1000", "name": region, "status": "UP",
                     "selfLink": f"{base}/regions/{region}",
                     "quotas": [{"metric": m, "limit": lim, "usage": use}
                                for m, (lim, use) in sorted(self.regions[region].items())]}
