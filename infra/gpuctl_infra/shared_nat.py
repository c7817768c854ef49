"""The shared Cloud NAT program: one Cloud Router and its NAT per project, network and region,
the way out (apt, pip, NVIDIA's repositories) for every `--iap` VM there.

Why one, shared: the NAT covers every range of every subnetwork (ALL_SUBNETWORKS_ALL_IP_RANGES),
and compute.v1.json, schema RouterNat, field sourceSubnetworkIpRangesToNat, says "Note that if
this field contains ALL_SUBNETWORKS_ALL_IP_RANGES then there should not be any other Router.Nat
section in any Router for this network in this region." A NAT per VM therefore allowed one
`--iap` VM per region and network; a NAT per region and network serves them all.

Resources, children of one SharedNat component, named from the network and region:
  gpuctl-nat-<region>   Cloud Router (network `default`; another network's name goes in between:
                        gpuctl-nat-<network>-<region>), gpuctl's labels in its description
                        (routers take none), gpuctl-kind=nat telling it from a VM's resources;
  its NAT, of the same name inside it: addresses allocated by Google (natIpAllocateOption
  AUTO_ONLY: "Nat IPs are allocated by Google Cloud Platform; customers can't specify any Nat
  IPs", compute.v1.json, schema RouterNat).
Each `--iap` VM's instance carries NAT_LABEL=<router name>: how `down` and `sweep` know, from
Google's own list of instances, which VMs still use the NAT.

This module is names and the spec only (no pulumi import: `down` and `sweep` read it); the
program itself is nat_program.SharedNat.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

NAME_PREFIX = "gpuctl-nat"
NAT_LABEL = "gpuctl-nat"  # on each --iap VM's instance: the shared router whose NAT it uses
KIND = "nat"  # its gpuctl-kind label
ALL_RANGES = "ALL_SUBNETWORKS_ALL_IP_RANGES"
MAX_GCE_NAME = 63  # RFC 1035 names, and label values, are at most 63 characters


def router_name(network: str, region: str) -> str:
    """gpuctl-nat-<region> on the default network, gpuctl-nat-<network>-<region> elsewhere; cut
    with a short hash when longer than a name (and a label value) may be."""
    network = network.rstrip("/").rsplit("/", 1)[-1]
    whole = f"{NAME_PREFIX}-{region}" if network == "default" else f"{NAME_PREFIX}-{network}-{region}"
    if len(whole) <= MAX_GCE_NAME:
        return whole
    digest = hashlib.sha256(whole.encode()).hexdigest()[:6]
    return f"{whole[:MAX_GCE_NAME - len(digest) - 1].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class NatSpec:
    region: str
    network: str = "default"
    project: str | None = None
    owner: str = "gpuctl"  # who made it (it serves every owner's --iap VMs in the project)

    @property
    def router(self) -> str:
        return router_name(self.network, self.region)

    @property
    def nat(self) -> str:
        return self.router  # NAT names are per router: one NAT, named as its router

    @property
    def labels(self) -> dict[str, str]:
        return {"gpuctl-managed": "true", "gpuctl-kind": KIND, "gpuctl-name": self.router,
                "gpuctl-owner": self.owner, "gpuctl-expiry": "none"}
