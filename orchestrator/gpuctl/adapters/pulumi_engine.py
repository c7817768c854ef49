"""The apply adapter: Pulumi's Automation API behind a narrow interface.

Everything above this module talks to a `StackEngine`: bring a stack up from a program,
destroy it, remove it, list stacks. `AutomationEngine` is the real one (the Pulumi CLI with
an inline Python program); tests substitute an engine at exactly this boundary that applies
the same program through the real google-cloud-compute client against a local stand-in.

State lives in a Pulumi backend: by default a local file backend under the gpuctl home, or
any backend URL from config (`pulumi_backend = "gs://my-bucket/gpuctl"`). Stack secrets are
encrypted with a passphrase that gpuctl generates once and keeps in a 0600 file, so no run
ever stops at an interactive prompt.

An interrupted or killed engine must not strand the user: Ctrl-C is passed on to the
`pulumi` process as one SIGINT (its graceful cancel: operations in flight finish and are
recorded) and gpuctl waits for it before rolling back; a lock left by a `pulumi` that died
(kill -9, a closed laptop) is recognised by its dead pid on this host and removed, so the next
`up` or `down` works without a manual `pulumi cancel`.
"""

from __future__ import annotations

import json
import re
import os
import secrets
import shutil
import signal
import socket
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, TypeVar

from ..errors import GpuctlError
from ..paths import gpuctl_home

Program = Callable[[], None]
OnOutput = Callable[[str], None]
T = TypeVar("T")

# How long a cancelled engine may take to finish what is in flight: a GCE insert accepted
# before Ctrl-C runs to completion (it cannot be taken back) and must reach the state.
CANCEL_GRACE_S = 600.0

# Where gpuctl's own API endpoint overrides (for private or emulated endpoints) go in the
# provider's config, as pulumi-gcp names them; values are base paths with the API version.
ENDPOINT_CONFIG = (
    ("GPUCTL_COMPUTE_ENDPOINT", "gcp:computeCustomEndpoint", "/compute/v1/"),
    ("GPUCTL_CONTAINER_ENDPOINT", "gcp:containerCustomEndpoint", "/v1/"),
    ("GPUCTL_IAM_ENDPOINT", "gcp:iamCustomEndpoint", "/v1/"),
    ("GPUCTL_RESOURCEMANAGER_ENDPOINT", "gcp:resourceManagerCustomEndpoint", "/v1/"),
    # The bucket grant of a checkpointed VM lands where gpuctl reads the bucket.
    ("GPUCTL_STORAGE_ENDPOINT", "gcp:storageCustomEndpoint", "/storage/v1/"),
)


class StackError(GpuctlError):
    """An engine operation failed; `detail` keeps the engine's own text for classification."""

    def __init__(self, message: str, detail: str, hint: str | None = None):
        super().__init__(message, hint)
        self.detail = detail


# The engine's own summary lines, which say that something failed but not what.
_ENGINE_SUMMARY = re.compile(r"^(update failed|preview failed|destroy failed|"
                             r"Resource monitor has terminated, shutting down|\d+ errors? occurred:)$")


def engine_errors(text: str) -> list[str]:
    """The error messages in the Diagnostics section of `pulumi up` output, in order: the
    bridge's '* ...' items and 'error: ...' lines, without the engine's summary lines."""
    _, marker, diagnostics = text.partition("\nDiagnostics:\n")
    if not marker:
        return []
    found: list[str] = []
    for line in diagnostics.splitlines():
        if line and not line.startswith(" "):  # the next section (Resources:, Outputs:, ...)
            break
        item = line.strip()
        if item.startswith("* "):
            found.append(item[2:])
        elif item.startswith("error: "):
            message = item.removeprefix("error: ").strip()
            if not _ENGINE_SUMMARY.match(message):
                found.append(message)
    return found


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


def provider_endpoint_config(environ=os.environ) -> dict[str, str]:
    """The gcp provider's custom endpoints, so the engine writes where gpuctl reads."""
    config = {}
    for env, key, suffix in ENDPOINT_CONFIG:
        if environ.get(env):
            config[key] = environ[env].rstrip("/") + suffix
    return config


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
            # The SDK checks the CLI's version (its minimum) and fails by name when it is too old.
            pulumi_command=auto.PulumiCommand(root=str(Path(cli).parent.parent)),
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

        self._clear_stale_lock(stack)
        settings = {**config, **provider_endpoint_config()}
        with engine_failures(f"pulumi up for {stack} failed",
                             "see the lines above; `gpuctl down` removes anything it made"):
            handle = self._stack(stack, program)
            handle.set_all_config({k: auto.ConfigValue(v) for k, v in settings.items()})
            result = run_interruptible(lambda: handle.up(on_output=on_output, color="never"))
        return {key: out.value for key, out in result.outputs.items()}

    def destroy(self, stack: str, on_output: OnOutput | None = None) -> None:
        self._clear_stale_lock(stack)
        with engine_failures(f"pulumi destroy for {stack} failed",
                             "rerun `gpuctl down`; `gpuctl sweep` lists what is left"):
            handle = self._stack(stack, lambda: None)
            run_interruptible(lambda: handle.destroy(on_output=on_output, color="never"))

    def _file_backend_dir(self) -> Path | None:
        """The bookkeeping folder of a file backend (None for any other backend)."""
        url = self.backend_url or default_backend_url()
        return Path(url.removeprefix("file://")) / ".pulumi" if url.startswith("file://") else None

    def _stack_files(self, stack: str = "*") -> list[Path]:
        """A file backend's state files of this project's stacks (`stack` may be a glob)."""
        local = self._file_backend_dir()
        if local is None:
            return []
        return [p for p in (local / "stacks" / self.project).glob(f"{stack}.json*")
                if p.name.endswith((".json", ".json.gz"))]

    def _clear_stale_lock(self, stack: str) -> None:
        """Remove the lock of a `pulumi` that died on this host; refuse while one is alive."""
        local = self._file_backend_dir()
        if local is None:
            return  # a shared backend's lock may belong to another machine: the engine says so
        lock_dir = local / "locks" / "organization" / self.project / stack
        stale = []
        for path in sorted(lock_dir.glob("*.json")):
            owner = read_lock(path)
            if owner is None or owner_alive(owner):
                pid = owner.get("pid") if owner else "?"
                raise StackError(f"another pulumi (pid {pid}) is working on {stack}", str(path),
                                 "wait for it to finish, then rerun")
            stale.append(path)
        for path in stale:
            path.unlink(missing_ok=True)
            Path(f"{path}.attrs").unlink(missing_ok=True)

    def remove(self, stack: str) -> None:
        """Forget a stack. Callers remove only after verifying through the API that nothing it
        made is left, so a state that still lists resources (a destroy that failed, a corrupt
        file) is removed by force: it no longer describes anything that exists."""
        from pulumi import automation as auto

        if stack not in self.list_stacks():
            return
        self._clear_stale_lock(stack)
        workspace = auto.LocalWorkspace(**_options_kwargs(self._workspace_options()))
        try:
            with engine_failures(f"pulumi stack rm {stack} failed", "rerun the command"):
                workspace.remove_stack(stack, force=True)
        except StackError:
            if self._file_backend_dir() is None:
                raise
            # The engine cannot read this stack's file (corrupt or truncated), so it cannot
            # remove it either; the file describes nothing that exists any more.
            for path in self._stack_files(stack):
                path.unlink(missing_ok=True)

    def list_stacks(self) -> list[str]:
        from pulumi import automation as auto

        if self._file_backend_dir() is not None:
            # Read the file backend's directory: no CLI start per call, and one unreadable
            # stack file cannot hide every other stack from `down` and `sweep`.
            return sorted({p.name.removesuffix(".gz").removesuffix(".json") for p in self._stack_files()})
        workspace = auto.LocalWorkspace(**_options_kwargs(self._workspace_options()))
        with engine_failures("pulumi stack ls failed", "check the Pulumi backend named in the config"):
            return [s.name for s in workspace.list_stacks()]


    def resource_count(self, stack: str) -> int:
        from pulumi import automation as auto

        workspace = auto.LocalWorkspace(**_options_kwargs(self._workspace_options()))
        for summary in workspace.list_stacks():
            if summary.name == stack:
                return summary.resource_count or 0
        return 0


@contextmanager
def engine_failures(message: str, hint: str) -> Iterator[None]:
    """Any failing `pulumi` command (a bad state file, a lock, the update itself) becomes a
    StackError that keeps the engine's full text for classification."""
    from pulumi import automation as auto

    try:
        yield
    except auto.errors.CommandError as exc:
        raise StackError(message, str(exc), hint) from None


def read_lock(path: Path) -> dict | None:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def owner_alive(owner: dict) -> bool:
    """A lock's owner is dead only when it ran on this host and its pid is gone; a lock from
    another host is treated as alive (its process cannot be checked from here)."""
    if owner.get("hostname") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _is_running(pid)


def _is_running(pid: int) -> bool:
    """A zombie (killed, not yet reaped by its parent) holds no lock any more."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def run_interruptible(operation: Callable[[], T]) -> T:
    """Run an engine command so that Ctrl-C cancels it cleanly instead of orphaning it.

    The command runs in a worker thread; the main thread waits. On KeyboardInterrupt the
    `pulumi` process gets exactly one SIGINT (its graceful cancel), unless the terminal
    already sent it one (we are the terminal's foreground group: a second ^C would make
    pulumi stop at once), and gpuctl waits for it to record what finished before raising.
    """
    box: dict[str, Any] = {}
    # An Event, not Thread.join: a join interrupted by KeyboardInterrupt can leave the thread
    # marked as stopped while it still runs, and the second join would return at once.
    done = threading.Event()

    def work() -> None:
        try:
            box["value"] = operation()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="pulumi-engine", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        if not _terminal_sent_sigint():
            for pid in _child_pulumi_pids():
                os.kill(pid, signal.SIGINT)
        done.wait(CANCEL_GRACE_S)
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def _terminal_sent_sigint() -> bool:
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def _child_pulumi_pids() -> list[int]:
    """Our direct children named pulumi (the Automation API's CLI processes)."""
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1:text.rfind(")")]
        fields = text[text.rfind(")") + 2:].split()
        if name == "pulumi" and fields and int(fields[1]) == me:
            found.append(int(stat.parent.name))
    return found


def _options_kwargs(opts) -> dict:
    return {"pulumi_command": opts.pulumi_command, "project_settings": opts.project_settings,
            "secrets_provider": opts.secrets_provider, "env_vars": opts.env_vars}
