"""A network namespace per host, reached from the runner over a veth pair on a private /30.

Names: the netns and the runner-side veth are both `gpuctl-t-<6 hex>` (15 characters, the
kernel's limit for interface names), so a sweep can find every leftover by prefix. The
host side of the pair is `eth0` inside the namespace, like a VM's NIC.

Addresses come from 10.213.0.0/16, which is only ever routed onto our own veth pairs:
the runner side is .1 of the /30 and the host .2. The host gets no default route, so
anything on it that tries the internet fails at once instead of hanging.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import random
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PREFIX = "gpuctl-t-"
POOL = ipaddress.ip_network("10.213.0.0/16")
# One lock for every harness on this machine, whatever its base dir: held while a host's
# name, /30 and netns are chosen and made, and while a sweep decides what is orphaned.
LOCK_PATH = Path(tempfile.gettempdir()) / "gpuctl-hosts.lock"
OWNER_TAG = "gpuctl-test-owner="


@contextlib.contextmanager
def machine_lock():
    with open(LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@dataclass(frozen=True)
class Link:
    name: str  # netns name == runner-side veth name
    harness_ip: str  # the runner's end
    host_ip: str  # the host's eth0


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _subnets_in_use() -> set[ipaddress.IPv4Network]:
    used = set()
    for link in json.loads(ip("-j", "-4", "addr", "show").stdout or "[]"):
        for addr in link.get("addr_info", []):
            net = ipaddress.ip_interface(f"{addr['local']}/{addr['prefixlen']}").network
            if net.overlaps(POOL):
                used.add(net)
    return used


def pick_subnet(rng: random.Random | None = None) -> ipaddress.IPv4Network:
    rng = rng or random.SystemRandom()
    used = _subnets_in_use()
    subnets = POOL.num_addresses // 4
    for _ in range(100):
        net = ipaddress.ip_network(f"{POOL.network_address + 4 * rng.randrange(1, subnets)}/30")
        if net not in used:
            return net
    raise RuntimeError("no free /30 in 10.213.0.0/16; sweep leftover gpuctl-t-* links")


def create(name: str, subnet: ipaddress.IPv4Network) -> Link:
    harness_ip, host_ip = (str(a) for a in list(subnet.hosts())[:2])
    ip("netns", "add", name)
    ip("link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", name)
    ip("addr", "add", f"{harness_ip}/30", "dev", name)
    ip("link", "set", name, "up")
    # The owner's pid on the link itself, so a sweep can tell a live host from a crashed one
    # without knowing where that host keeps its files.
    ip("link", "set", name, "alias", f"{OWNER_TAG}{os.getpid()}")
    ip("-n", name, "link", "set", "lo", "up")
    ip("-n", name, "addr", "add", f"{host_ip}/30", "dev", "eth0")
    ip("-n", name, "link", "set", "eth0", "up")
    return Link(name, harness_ip, host_ip)


def delete(name: str) -> None:
    """Delete the pair and the namespace; missing pieces are fine (that is the goal)."""
    # Deleting the netns destroys the veth's peer and so the pair; delete the runner side
    # first anyway, in case a crash left it without its namespace.
    ip("link", "del", name, check=False)
    ip("netns", "del", name, check=False)
    if name in namespaces() or name in links():
        raise RuntimeError(f"could not delete netns/veth {name}")


def namespaces() -> list[str]:
    out = ip("-j", "netns", "list").stdout
    return [ns["name"] for ns in json.loads(out or "[]") if ns["name"].startswith(PREFIX)]


def links() -> list[str]:
    out = ip("-j", "link", "show").stdout
    return [link["ifname"] for link in json.loads(out or "[]")
            if link["ifname"].startswith(PREFIX)]


def owner_alive(name: str) -> bool:
    """Whether the process that made this netns/veth still runs (False when unknown)."""
    out = ip("-j", "link", "show", name, check=False).stdout
    alias = next((link.get("ifalias", "") for link in json.loads(out or "[]")), "")
    if not alias.startswith(OWNER_TAG):
        return False
    try:
        os.kill(int(alias[len(OWNER_TAG):]), 0)
    except (OSError, ValueError):
        return False
    return True


def pids_in(name: str) -> list[int]:
    return [int(p) for p in ip("netns", "pids", name, check=False).stdout.split()]
