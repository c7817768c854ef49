"""Run a Pulumi program under Pulumi's own mocks and record what it would create.

This is Pulumi's documented unit-test mechanism (pulumi.runtime.set_mocks). gpuctl also uses
it for the offline plan: the dry run executes the very program `up` applies, so what the plan
lists is what the engine would be asked to create. No CLI, credentials or network needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pulumi


@dataclass
class PlannedResource:
    type: str  # Pulumi type token, e.g. gcp:compute/instance:Instance
    name: str
    inputs: dict[str, Any]

    @property
    def short_type(self) -> str:
        """gcp:compute/instance:Instance -> compute.Instance"""
        if ":" not in self.type:
            return self.type
        pkg_mod, _, cls = self.type.rpartition(":")
        module = pkg_mod.split(":", 1)[-1].split("/", 1)[0]
        return f"{module}.{cls}"


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    project: str = "gpuctl-offline"
    resources: list[PlannedResource] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(PlannedResource(args.typ, args.name, dict(args.inputs)))
        outputs = dict(args.inputs)
        # Mimic the computed outputs the engine would fill in.
        outputs.setdefault(
            "selfLink",
            f"https://www.googleapis.com/compute/v1/projects/{self.project}/{args.name}")
        if args.typ == "gcp:serviceaccount/account:Account":  # IAM derives the address
            project = args.inputs.get("project") or self.project
            outputs["email"] = f"{args.inputs.get('accountId')}@{project}.iam.gserviceaccount.com"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def run_under_mocks(program: Callable[[], Any], project: str = "gpuctl-offline",
                    stack: str = "dry-run") -> list[PlannedResource]:
    """Execute `program` (which creates resources) and return every resource it registered."""
    _ensure_event_loop()
    mocks = RecordingMocks(project=project)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False)
    pulumi.runtime.test(program)()
    return mocks.resources


def _ensure_event_loop() -> None:
    """Pulumi's mock runtime schedules on the thread's current event loop. After an
    `asyncio.run()` anywhere earlier in the process (a port-forward, a test) the main thread has
    none, and `get_event_loop()` raises instead of making one: give it a fresh one."""
    import asyncio

    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
