"""pytest fixtures for throwaway SSH hosts.

A missing component fails the test with what to install; it never skips, because a skipped
provisioning test would read as a passing one (see DESIGN.md, Testing).
"""

from __future__ import annotations

import pytest

from .host import ThrowawayHost, missing_prerequisites, sweep_leftovers
from .rootfs import ensure_rootfs

INSTALL_HINT = "run scripts/install-test-host-deps.sh as root, then pytest as root"


@pytest.fixture(scope="session")
def host_rootfs():
    """The cached Debian 12 rootfs, built on first use (about a minute), after removing the
    leftovers of earlier runs that crashed."""
    missing = missing_prerequisites()
    if missing:
        pytest.fail(f"throwaway SSH hosts need {', '.join(missing)}; {INSTALL_HINT}",
                    pytrace=False)
    sweep_leftovers()
    try:
        return ensure_rootfs()
    except Exception as exc:
        pytest.fail(f"could not build the Debian rootfs for throwaway hosts: {exc}",
                    pytrace=False)


@pytest.fixture
def throwaway_host(host_rootfs):
    """A running host with one fake local NVMe SSD."""
    with ThrowawayHost(disks=1, rootfs=host_rootfs) as host:
        yield host


@pytest.fixture
def throwaway_host_two_disks(host_rootfs):
    """A running host with two fake local NVMe SSDs."""
    with ThrowawayHost(disks=2, rootfs=host_rootfs) as host:
        yield host


@pytest.fixture(scope="session")
def venv_debs(host_rootfs):
    """The .debs a stock Debian 12 host lacks for `python3.11 -m venv`, with an apt index
    (fetched from Debian once, cached by their versions)."""
    from .debs import ensure_debs

    try:
        return ensure_debs(host_rootfs)
    except Exception as exc:
        pytest.fail(f"could not fetch the test hosts' local package source: {exc}", pytrace=False)


@pytest.fixture
def stock_host(throwaway_host, venv_debs):
    """A throwaway host whose apt mirror is the local package source: a stock cloud image
    that can reach its distribution's packages."""
    from .debs import PackageSource

    with PackageSource(throwaway_host, venv_debs) as source:
        source.make_only_apt_source()
        yield throwaway_host


def no_mirror(host) -> None:
    """The host's apt mirror is unreachable (it has no route out). apt would retry each file
    with back-off for ~20 s before giving the same answer; tests take the answer at once."""
    host.run_local("echo 'Acquire::Retries \"0\";' > /etc/apt/apt.conf.d/99gpuctl-test-no-retries")
