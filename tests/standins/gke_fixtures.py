"""Fixtures for GKE tests: the GKE stand-in, a test StackEngine on it, and GkeDeps wiring both
(plus the real ContainerApi over REST) as `gpuctl gke` would use them.

To share them suite-wide, tests/conftest.py can import them:
    from tests.standins.gke_fixtures import gke_api, gke_deps_standin, gke_engine  # noqa: F401
"""

from __future__ import annotations

import pytest

from tests.standins.container import ContainerStandIn
from tests.standins.gke_engine import GkeStandinEngine

PROJECT = "my-project-1"


@pytest.fixture
def gke_api():
    with ContainerStandIn(project=PROJECT, operation_polls=2) as standin:
        yield standin


@pytest.fixture
def gke_engine(gke_api, tmp_path):
    return GkeStandinEngine(gke_api.endpoint, tmp_path / "gke-stacks")


@pytest.fixture
def gke_deps_standin(gke_api, gke_engine):
    from gpuctl.adapters.container import ContainerApi
    from gpuctl.gke.cluster import GkeDeps

    container = ContainerApi(PROJECT, endpoint=gke_api.endpoint, compute_endpoint=gke_api.endpoint,
                             sleep=lambda s: None)
    container.retry_initial_s, container.retry_timeout_s = 0.01, 2.0
    return GkeDeps(engine=gke_engine, container=container, project=PROJECT,
                   sleep=lambda s: None, poll_s=0.01, gone_timeout_s=1.0)
