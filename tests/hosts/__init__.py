"""Throwaway SSH hosts for provisioning tests.

A host is a cached Debian 12 rootfs (debootstrap) seen through an overlay mount, a network
namespace reached over a veth pair, a real sshd chrooted into the rootfs, and loop-device
files that pose as GCE local NVMe SSDs. See host.py for the moving parts.
"""
