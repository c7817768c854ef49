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


def stack_state(project: str, stack: str) -> dict:
    """The engine's own record of a stack in gpuctl's file backend (written only by `pulumi`)."""
    from gpuctl.adapters.pulumi_engine import default_backend_url

    root = Path(default_backend_url().removeprefix("file://"))
    return json.loads((root / ".pulumi" / "stacks" / project / f"{stack}.json").read_text())


def state_file(project: str, stack: str) -> Path:
    from gpuctl.adapters.pulumi_engine import default_backend_url

    return Path(default_backend_url().removeprefix("file://")) / ".pulumi" / "stacks" / project / f"{stack}.json"
