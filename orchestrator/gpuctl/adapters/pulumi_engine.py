"""The apply adapter: Pulumi's Automation API behind a narrow interface.

Everything above this module talks to a `StackEngine`: bring a stack up from a program,
destroy it, remove it, list stacks. `AutomationEngine` is the real one (the Pulumi CLI with
an inline Python program); tests substitute an engine at exactly this boundary that applies
the same program through the real google-cloud-compute client against a local stand-in.

State lives in a Pulumi backend: by default a local file backend under the gpuctl home, or
any backend URL from config (`pulumi_backend = "gs://my-bucket/gpuctl"`). Stack secrets are
encrypted with a passphrase that gpuctl generates once and keeps in a 0600 file, so no run
ever stops at an interactive prompt.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from ..errors import GpuctlError
from ..paths import gpuctl_home

Program = Callable[[], None]
OnOutput = Callable[[str], None]


class StackError(GpuctlError):
    """An engine operation failed; `detail` keeps the engine's own text for classification."""

    def __init__(self, message: str, detail: str, hint: str | None = None):
        super().__init__(message, hint)
        self.detail = detail


class PulumiMissing(GpuctlError):
    exit_code = 3


class StackEngine(Protocol):
    def up(self, stack: str, program: Program, config: dict[str, str],
           on_output: OnOutput | None = None) -> dict[str, Any]: ...

    def destroy(self, stack: str, on_output: OnOutput | None = None) -> None: ...

    def remove(self, stack: str) -> None: ...

    def list_stacks(self) -> list[str]: ...

    def resource_count(self, stack: str) -> int: ...


def default_backend_url() -> str:
    return (gpuctl_home() / "pulumi" / "state").as_uri()


def passphrase_file() -> Path:
    return gpuctl_home() / "pulumi" / "passphrase"


def stack_secrets_env(environ: dict[str, str] | os._Environ = os.environ) -> dict[str, str]:
    """The passphrase the engine reads instead of prompting: the user's own if set, else
    gpuctl's, created on first use (0600, never printed or logged)."""
    if environ.get("PULUMI_CONFIG_PASSPHRASE") is not None:
        return {"PULUMI_CONFIG_PASSPHRASE": environ["PULUMI_CONFIG_PASSPHRASE"]}
    if environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        return {"PULUMI_CONFIG_PASSPHRASE_FILE": environ["PULUMI_CONFIG_PASSPHRASE_FILE"]}
    path = passphrase_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return {"PULUMI_CONFIG_PASSPHRASE_FILE": str(path)}


def find_pulumi_cli() -> str:
    found = shutil.which("pulumi") or _in_pulumi_home()
    if not found:
        raise PulumiMissing("the Pulumi CLI is not installed (gpuctl applies VMs through it)",
                            "install it: https://www.pulumi.com/docs/install/ "
                            "(e.g. `curl -fsSL https://get.pulumi.com | sh`), then rerun")
    return found


def _in_pulumi_home() -> str | None:
    candidate = Path(os.environ.get("PULUMI_HOME", Path.home() / ".pulumi")) / "bin" / "pulumi"
    return str(candidate) if candidate.exists() else None


@dataclass
class AutomationEngine:
    """Pulumi Automation API with an inline program: one stack per VM or cluster."""

    project: str  # Pulumi project name, e.g. gpuctl-vm
    backend_url: str | None = None

    def _workspace_options(self):
        from pulumi import automation as auto

        url = self.backend_url or default_backend_url()
        if url.startswith("file://"):
            Path(url.removeprefix("file://")).mkdir(parents=True, exist_ok=True, mode=0o700)
        cli = find_pulumi_cli()
        env = {"PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_BACKEND_URL": url,
               **stack_secrets_env()}
        return auto.LocalWorkspaceOptions(
            pulumi_command=auto.PulumiCommand(root=str(Path(cli).parent.parent), skip_version_check=True),
            project_settings=auto.ProjectSettings(name=self.project, runtime="python",
                                                  backend=auto.ProjectBackend(url)),
            secrets_provider="passphrase",
            env_vars=env,
        )

    def _stack(self, stack: str, program: Program):
        from pulumi import automation as auto

        return auto.create_or_select_stack(stack_name=stack, project_name=self.project,
                                           program=program, opts=self._workspace_options())

    def up(self, stack: str, program: Program, config: dict[str, str],
           on_output: OnOutput | None = None) -> dict[str, Any]:
        from pulumi import automation as auto

        handle = self._stack(stack, program)
        handle.set_all_config({k: auto.ConfigValue(v) for k, v in config.items()})
        try:
            result = handle.up(on_output=on_output, color="never")
        except auto.errors.CommandError as exc:
            raise StackError(f"pulumi up for {stack} failed", str(exc),
                             "see the lines above; `gpuctl down` removes anything it made") from None
        return {key: out.value for key, out in result.outputs.items()}

    def destroy(self, stack: str, on_output: OnOutput | None = None) -> None:
        from pulumi import automation as auto

        handle = self._stack(stack, lambda: None)
        try:
            handle.destroy(on_output=on_output, color="never")
        except auto.errors.CommandError as exc:
            raise StackError(f"pulumi destroy for {stack} failed", str(exc),
                             "rerun `gpuctl down`; `gpuctl sweep` lists what is left") from None

    def remove(self, stack: str) -> None:
        from pulumi import automation as auto

        workspace = auto.LocalWorkspace(**_options_kwargs(self._workspace_options()))
        if stack in self.list_stacks():
            workspace.remove_stack(stack)

    def list_stacks(self) -> list[str]:
        from pulumi import automation as auto

        workspace = auto.LocalWorkspace(**_options_kwargs(self._workspace_options()))
        return [s.name for s in workspace.list_stacks()]

    def resource_count(self, stack: str) -> int:
        from pulumi import automation as auto

        workspace = auto.LocalWorkspace(**_options_kwargs(self._workspace_options()))
        for summary in workspace.list_stacks():
            if summary.name == stack:
                return summary.resource_count or 0
        return 0


def _options_kwargs(opts) -> dict:
    return {"pulumi_command": opts.pulumi_command, "project_settings": opts.project_settings,
            "secrets_provider": opts.secrets_provider, "env_vars": opts.env_vars}
