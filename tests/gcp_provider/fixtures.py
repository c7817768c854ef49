"""pytest fixtures: the real Pulumi engine with the gcp provider double, per test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .plugin import engine_environment


@pytest.fixture
def real_engine_env(tmp_path, monkeypatch):
    """The Pulumi CLI built from Go modules first on PATH, the double as pulumi-resource-gcp,
    and a PULUMI_HOME of the test's own."""
    for key, value in engine_environment(tmp_path / "engine").items():
        monkeypatch.setenv(key, value)
    return tmp_path / "engine"


def state_file(project: str, stack: str) -> Path:
    """A stack's state file in gpuctl's default file backend."""
    from gpuctl.adapters.pulumi_engine import default_backend_url

    return Path(default_backend_url().removeprefix("file://")) / ".pulumi" / "stacks" / project / f"{stack}.json"


def stack_state(project: str, stack: str) -> dict:
    """The engine's own record of a stack (written only by `pulumi`)."""
    return json.loads(state_file(project, stack).read_text())
