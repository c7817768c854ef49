"""The shared Cloud NAT program (see shared_nat.py for why it is shared and how it is named): a
Cloud Router of the spec's network in its region, and its one NAT for all subnet ranges."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from .shared_nat import ALL_RANGES, NatSpec

COMPONENT_TYPE = "gpuctl:nat:SharedNat"


class SharedNat(pulumi.ComponentResource):
    router: gcp.compute.Router
    nat: gcp.compute.RouterNat

    def __init__(self, spec: NatSpec, opts: pulumi.ResourceOptions | None = None):
        from .gpu_vm import labels_as_description

        super().__init__(COMPONENT_TYPE, spec.router, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        provider_args = {"project": spec.project} if spec.project else {}
        self.router = gcp.compute.Router(
            spec.router,
            name=spec.router,
            region=spec.region,
            network=spec.network,
            description=labels_as_description(spec.labels),
            opts=child,
            **provider_args,
        )
        self.nat = gcp.compute.RouterNat(
            f"{spec.router}-nat",
            name=spec.nat,
            router=self.router.name,
            region=spec.region,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat=ALL_RANGES,
            opts=child,
            **provider_args,
        )
        self.register_outputs({"router": self.router.name, "nat": self.nat.name})
