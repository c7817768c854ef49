"""Fixtures for GKE tests: the GKE stand-in, the real Pulumi engine (`AutomationEngine` as
shipped, the gcp provider plugin double creating clusters and pools through the real
google-cloud-container client against the stand-in), and GkeDeps wiring both (plus the real
ContainerApi over REST) as `gpuctl gke` would use them.

To share them suite-wide, tests/conftest.py can import them:
    from tests.standins.gke_fixtures import gke_api, gke_deps_standin, gke_engine  # noqa: F401
"""

from __future__ import annotations

import pytest

from tests.standins.container import ContainerStandIn

PROJECT = "my-project-1"


def container_client(endpoint: str):
    """The real google-cloud-container client, on the stand-in, as a test reads the API."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import container_v1

    return container_v1.ClusterManagerClient(transport="rest", credentials=AnonymousCredentials(),
                                             client_options={"api_endpoint": endpoint})


@pytest.fixture
def gke_api():
    with ContainerStandIn(project=PROJECT, operation_polls=2) as standin:
        yield standin


@pytest.fixture
def gke_iam(monkeypatch):
    """IAM and Cloud Resource Manager (the nodes' service account and its role)."""
    from tests.standins.iam import IamStandIn

    with IamStandIn(PROJECT) as standin:
        monkeypatch.setenv("GPUCTL_IAM_ENDPOINT", standin.endpoint)
        monkeypatch.setenv("GPUCTL_RESOURCEMANAGER_ENDPOINT", standin.endpoint)
        yield standin


@pytest.fixture
def gke_engine(gke_api, gke_iam, real_engine_env, monkeypatch):
    from gpuctl.adapters.pulumi_engine import AutomationEngine
    from gpuctl.gke.cluster import GKE_PROJECT

    # As a user with a private or emulated endpoint: gpuctl and the engine's provider use it.
    monkeypatch.setenv("GPUCTL_CONTAINER_ENDPOINT", gke_api.endpoint)
    return AutomationEngine(GKE_PROJECT)


@pytest.fixture
def gke_deps_standin(gke_api, gke_engine):
    from gpuctl.adapters.container import ContainerApi
    from gpuctl.gke.cluster import GkeDeps

    container = ContainerApi(PROJECT, endpoint=gke_api.endpoint, compute_endpoint=gke_api.endpoint,
                             sleep=lambda s: None)
    container.retry_initial_s, container.retry_timeout_s = 0.01, 2.0
    return GkeDeps(engine=gke_engine, container=container, project=PROJECT,
                   sleep=lambda s: None, poll_s=0.01, gone_timeout_s=1.0)
