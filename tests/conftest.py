"""Shared fixtures: every test runs with its own gpuctl home and config, never the user's."""

from __future__ import annotations

import datetime as dt

import pytest

# A fixed clock: guards that fire at a clock time are computed from it.
FIXED_NOW = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.timezone.utc)  # 12:00 in Tokyo


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "gpuctl-home"
    monkeypatch.setenv("GPUCTL_HOME", str(home))
    monkeypatch.setenv("GPUCTL_CONFIG", str(tmp_path / "config.toml"))
    for key in ("OWNER", "PROJECT", "REGION", "CURRENCY", "TTL", "DAILY_STOP", "TIME_ZONE",
                "SSH_FROM", "DEBUG", "BILLING_ENDPOINT"):
        monkeypatch.delenv(f"GPUCTL_{key}", raising=False)
    for var in ("GPUCTL_CONTAINER_ENDPOINT", "GPUCTL_COMPUTE_ENDPOINT", "GPUCTL_KUBECONFIG",
                "GPUCTL_KUBE_CONTEXT", "GPUCTL_SCHEDULER_ENDPOINT", "GPUCTL_SERVICEUSAGE_ENDPOINT",
                "GPUCTL_RESOURCEMANAGER_ENDPOINT", "GPUCTL_STORAGE_ENDPOINT", "GPUCTL_IAM_ENDPOINT",
                "GPUCTL_CHECKPOINTS", "GPUCTL_HTTP_TIMEOUT", "GPUCTL_DEADLINE_SERVICE_ACCOUNT",
                "GPUCTL_CAP"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GPUCTL_OWNER", "alice")
    return home


@pytest.fixture
def config_file(tmp_path):
    """Write the test's config.toml and return its path."""
    path = tmp_path / "config.toml"

    def write(text: str):
        path.write_text(text)
        return path

    return write


@pytest.fixture
def ctx():
    from gpuctl.context import load_context

    return load_context(now=FIXED_NOW)


# Real throwaway SSH hosts (netns + Debian rootfs + sshd + loop-device NVMe) for provisioning.
from tests.hosts.fixtures import host_rootfs, throwaway_host, throwaway_host_two_disks  # noqa: E402,F401

# A real Kubernetes control plane (etcd, apiserver, controller-manager, scheduler) with KWOK GKE nodes.
from tests.k8s.fixtures import k8s_cluster, k8s_namespace  # noqa: E402,F401

# The real Pulumi CLI (built from Go modules) with the gcp provider plugin double.
from tests.gcp_provider.fixtures import real_engine_env  # noqa: E402,F401

# A real Cloud Storage emulator (fake-gcs-server built from Go modules) on loopback.
from tests.gcs.fixtures import gcs_emulator  # noqa: E402,F401
