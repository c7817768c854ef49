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
    mocks = RecordingMocks(project=project)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False)
    pulumi.runtime.test(program)()
    return mocks.resources
