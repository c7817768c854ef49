"""Run a command in a network namespace of its own, with only a loopback interface.

    python netns.py COMMAND [ARG...]

Why: Chromium cancels every request in flight with net::ERR_NETWORK_CHANGED when an address
appears or goes on any of the host's interfaces, and on a shared test machine other tests add
and remove interfaces all the time (tests/hosts/ builds a netns and veth pair per throwaway
host): Open WebUI's page then fails to load its scripts and shows "500: Internal Error". In a
namespace of its own, the browser sees no interface but its own loopback. It also makes "no
downloads" a fact rather than a setting: nothing in it can reach the network at all.

As root it needs only unshare(CLONE_NEWNET); otherwise it first makes a user namespace in which
the caller is root (unprivileged user namespaces must be allowed). Standard library only.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def unshare_network() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNET if uid == 0 else CLONE_NEWNET | CLONE_NEWUSER
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        sys.exit(f"netns.py: unshare failed: {os.strerror(err)} (needs root, or unprivileged "
                 "user namespaces)")
    if uid != 0:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"0 {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"0 {gid} 1")


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: netns.py COMMAND [ARG...]")
    unshare_network()
    loopback_up()
    os.execvp(sys.argv[1], sys.argv[1:])
