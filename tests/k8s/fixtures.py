"""pytest fixtures for the test Kubernetes control plane.

A missing binary or a control plane that does not come up fails the tests with what to do;
it never skips, because a skipped GKE test would read as a passing one (DESIGN.md, Testing).
"""

from __future__ import annotations

import contextlib

import pytest

from .binaries import MissingBinaries, require_binaries
from .cluster import K8sCluster
from .controlplane import ControlPlane, ControlPlaneError
from .nodes import DEFAULT_NODES


@pytest.fixture(scope="session")
def k8s_cluster():
    """One real control plane per test session, with GKE-shaped KWOK nodes: a CPU node
    (pool `system`), two spot L4 nodes (pool `l4-spot`) and one spot A100 node (`a100-spot`)."""
    try:
        bin_dir, missing = require_binaries(), None
    except MissingBinaries as exc:
        missing = str(exc)
    if missing:
        pytest.fail(missing, pytrace=False)
    with contextlib.ExitStack() as stack:
        try:
            cluster = K8sCluster(stack.enter_context(ControlPlane(bin_dir)))
            for shape in DEFAULT_NODES:
                cluster.add_node_shape(shape, wait_ready=False)
            cluster.wait_nodes_ready([shape.name for shape in DEFAULT_NODES])
            failure = None
        except (ControlPlaneError, TimeoutError) as exc:
            failure = str(exc)
        if failure:  # outside the except block, so the report is this line, not a traceback
            pytest.fail(f"the test control plane did not start: {failure}", pytrace=False)
        yield cluster


@pytest.fixture
def k8s_namespace(k8s_cluster, request) -> str:
    """A namespace of its own for one test. Afterwards it is deleted and its pods are waited
    for, so the next test finds every node's GPUs free."""
    name = k8s_cluster.create_namespace(request.node.name)
    yield name
    k8s_cluster.delete_namespace(name)
