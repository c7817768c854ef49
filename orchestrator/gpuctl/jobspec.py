"""The job spec: one YAML format for a training run on a gpuctl VM and a Job on GKE.

    name: llama-lora                 # required; becomes the run / Job name
    command: [python, train.py, --epochs, "3"]   # a list, or one string run by /bin/sh -c
    image: us-docker.pkg.dev/p/r/train:1.0       # GKE only; default: DEFAULT_IMAGE (public)
    nodes: 1                         # GKE: > 1 becomes an Indexed Job for torchrun/DeepSpeed
    gpus_per_node: 1
    accelerator: nvidia-l4           # GKE (default nvidia-l4); a VM's GPU comes from its profile
    spot: true
    env: {WANDB_MODE: offline}
    secrets: {HF_TOKEN: env:HF_TOKEN}            # by reference, never the value
    workdir: .                       # shipped: synced to a VM; packed into a ConfigMap on GKE
    requirements: requirements.txt   # pip-installed before the command, on both
    output_dir: /mnt/disks/nvme/out  # where the run writes checkpoints
    checkpoints: gs://BUCKET/PREFIX  # or `auto` (gpuctl's bucket per project): the run writes
                                     # to $GPUCTL_CHECKPOINT_DIR, kept in Cloud Storage
                                     # (see "Finished checkpoints" below)
    timeout: 12h                     # a hard limit on the run's wall time
    max_retries: 3                   # GKE: retries after spot disruptions (never code errors)
    recover: true                    # VM: `gpuctl run NAME job.yaml` runs it as with --recover
                                     # (a spot VM group Google Cloud refills after each
                                     # preemption); GKE: noted, a Job recovers by itself

Keys that do not apply to a target are rejected or reported, never silently misread:
`check_for_target` is the one place that decides which. Every problem of a spec is reported
at once, each with its key and its fix, so a spec is mended in one round.

Finished checkpoints (`checkpoints:` on a VM): each folder the run writes in
$GPUCTL_CHECKPOINT_DIR goes up to the bucket as soon as the trainer says it is finished, and
a restarted run gets the newest finished one. The Hugging Face Trainer says so by itself
(trainer_state.json, its last file in a `checkpoint-<N>` folder). Any other trainer creates an
empty file named `.gpuctl-complete` in the folder as its last step (and removes it before it
ever writes into that folder again); it finds that file back in the folder a restart fetches.
A folder with neither counts as finished only once nothing in it changed for 30 s, which a
checkpoint saved in a spot VM's 30 s preemption notice never reaches: that one goes up only
on the trainer's word.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import UsageError

Target = Literal["vm", "gke"]

# A DNS-1123 label short enough that gpuctl's suffixes ("-0-abcde", "-workers") still fit.
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Accelerators GKE node pools offer, as GKE spells them (the same names as GCE's).
GKE_ACCELERATORS = ("nvidia-tesla-t4", "nvidia-l4", "nvidia-tesla-a100", "nvidia-a100-80gb",
                    "nvidia-h100-80gb")
SECRET_SCHEMES = {
    "k8s": "k8s:SECRET/KEY (a Kubernetes Secret in the job's namespace)",
    "env": "env:NAME (taken from your shell's environment when the run starts)",
    "file": "file:PATH (the file's contents, read on your machine when the run starts)",
}
SECRET_RE = {
    "k8s": re.compile(r"^k8s:([a-z0-9]([-a-z0-9.]*[a-z0-9])?)/([-._a-zA-Z0-9]+)$"),
    "env": re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$"),
    "file": re.compile(r"^file:(.+)$"),
}
SECRET_HINT = "write a reference: " + "; ".join(SECRET_SCHEMES.values())
# Credentials with a recognisable shape (Hugging Face, GitHub, OpenAI/Anthropic, AWS, Slack,
# Google API keys, W&B's 40-hex keys, PEM blocks): refused as plain env values.
TOKEN_RE = re.compile(
    r"(?:hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|sk-[-\w]{20,}"
    r"|AKIA[0-9A-Z]{16}|xox[abposr]-[-\w]{10,}|AIza[-\w]{30,}|-----BEGIN [A-Z ]*PRIVATE KEY"
    r"|^[0-9a-f]{40}$)", re.ASCII)
# Names that say "secret": a plain value under one gets a note with the fix.
# Whole words of the name only: HF_TOKEN is one, TOKENIZERS_PARALLELISM is not.
SECRET_NAME_RE = re.compile(r"(?:^|_)(?:TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_KEY"
                            r"|CREDENTIALS?)(?:_|$)", re.IGNORECASE)
# A public, pinned PyTorch image: a spec without `image:` runs on GKE without building one.
DEFAULT_IMAGE = "docker.io/pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
# The GPU of the pool `gpuctl gke up` makes by default (--pools l4).
DEFAULT_ACCELERATOR = "nvidia-l4"
MAX_NODES = 64
# `checkpoints: auto`: gpuctl's own bucket for the project (adapters/storage.py names it).
AUTO_CHECKPOINTS = "auto"
CHECKPOINTS_HINT = ("write gs://BUCKET/PREFIX (e.g. gs://my-team-checkpoints/llama), or `auto` "
                    "for a bucket gpuctl creates in the project")
MAX_GPUS_PER_NODE = 8


def _kind_of(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, str):
        return "text (quoted?)" if value.strip().lower() in ("true", "false", "yes", "no") else "text"
    return {int: "a number", float: "a number", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__)


def looks_like_token(value: str) -> bool:
    return bool(TOKEN_RE.search(value))


class JobSpecError(UsageError):
    """A job spec that does not validate, or a key that does not apply to the target."""


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    command: list[str] | str
    image: str | None = None
    nodes: int = Field(1, ge=1, le=MAX_NODES)
    gpus_per_node: int = Field(1, ge=0, le=MAX_GPUS_PER_NODE)
    accelerator: str | None = None
    spot: bool = True
    env: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    requirements: str | None = None
    output_dir: str | None = None
    checkpoints: str | None = None  # gs://BUCKET/PREFIX, or AUTO_CHECKPOINTS
    timeout: str | None = None
    max_retries: int = Field(3, ge=0, le=100)
    recover: bool = False  # true or false only: a misspelt `recover: flase` must not start a group

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.fullmatch(value):
            raise ValueError(f"'{value}' must be 1-40 lowercase letters, digits or '-', "
                             "starting with a letter")
        return value

    @field_validator("command", mode="before")
    @classmethod
    def _command_numbers_as_text(cls, value):
        # `[python, t.py, --epochs, 3]`: YAML reads the 3 as a number; the process gets text.
        if isinstance(value, list):
            return [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                    for v in value]
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value):
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("is empty")
            return value
        if not value or not all(isinstance(part, str) for part in value) or not value[0].strip():
            raise ValueError("must be a non-empty list of strings, or one string")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value):
        if not isinstance(value, dict):
            raise ValueError("must be a mapping of NAME: value")
        out = {}
        for key, val in value.items():
            if not isinstance(key, str) or not ENV_NAME_RE.fullmatch(key):
                raise ValueError(f"'{key}' is not an environment variable name")
            if isinstance(val, (dict, list)) or val is None:
                raise ValueError(f"{key} must be a string, number or boolean")
            # YAML reads `DEBUG: true` as a bool; the process sees the text.
            out[key] = ("true" if val else "false") if isinstance(val, bool) else str(val)
            if looks_like_token(out[key]):
                # Refused, and not repeated: env values are shown in plans and manifests.
                raise ValueError(f"{key} holds what looks like a token or key; a secret in env "
                                 "would be shown in plans and stored in manifests")
        return out

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: dict[str, str]) -> dict[str, str]:
        for key, ref in value.items():
            if not ENV_NAME_RE.fullmatch(key):
                raise ValueError(f"'{key}' is not an environment variable name")
            if not any(pattern.fullmatch(ref) for pattern in SECRET_RE.values()):
                # Never repeat the value: what was written here may be the secret itself.
                raise ValueError(f"{key}: the value is not a secret reference "
                                 "(it was not shown, in case it is the secret itself)")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        from .validation import as_value_error, image_ref

        return value if value is None else as_value_error(image_ref, value)

    @field_validator("checkpoints")
    @classmethod
    def _checkpoints(cls, value: str | None) -> str | None:
        """Checked against Cloud Storage's naming rules (validation.gcs_url) and written in one
        form: gs://BUCKET or gs://BUCKET/PREFIX, no trailing '/'."""
        if value is None or value == AUTO_CHECKPOINTS:
            return value
        from .validation import as_value_error, gcs_url

        bucket, prefix = as_value_error(lambda text: gcs_url(text, what=""), value)
        return f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"

    @field_validator("recover", mode="before")
    @classmethod
    def _recover(cls, value):
        # YAML already reads true/false (and yes/no) as booleans; anything else ("true" in
        # quotes, 1, "sometimes") is refused rather than guessed: it decides what gets created.
        if not isinstance(value, bool):
            # The kind of value, never the value: whatever was pasted here is not repeated.
            raise ValueError(f"must be true or false, not {_kind_of(value)}")
        return value

    @field_validator("accelerator")
    @classmethod
    def _accelerator(cls, value: str | None) -> str | None:
        if value is not None and value not in GKE_ACCELERATORS:
            raise ValueError(f"'{value}' is not a GPU gpuctl knows; use one of "
                             + ", ".join(GKE_ACCELERATORS))
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str | None) -> str | None:
        if value is not None:
            from .units import parse_duration

            try:
                parse_duration(value)
            except UsageError as exc:
                raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _overlap(self):
        both = set(self.env) & set(self.secrets)
        if both:
            raise ValueError(f"{', '.join(sorted(both))} is set in both env and secrets")
        return self

    @property
    def argv(self) -> list[str]:
        return ["/bin/sh", "-c", self.command] if isinstance(self.command, str) else list(self.command)

    @property
    def command_line(self) -> str:
        return self.command if isinstance(self.command, str) else shlex.join(self.command)

    @property
    def timeout_seconds(self) -> int | None:
        from .units import parse_duration

        return parse_duration(self.timeout) if self.timeout else None

    def secret_refs(self) -> dict[str, tuple[str, str]]:
        """{ENV: (scheme, rest)}, e.g. {"HF_TOKEN": ("k8s", "hf-token/token")}."""
        return {key: tuple(ref.split(":", 1)) for key, ref in self.secrets.items()}


def parse_job_spec(data: object, source: str = "job spec") -> JobSpec:
    if not isinstance(data, dict):
        raise JobSpecError(f"{source} is not a mapping of keys",
                           "start from `name:` and `command:` at the top level")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise problems_error(source, [(_describe(err), _fix_for(err)) for err in exc.errors()]) \
            from None


def problems_error(source: str, problems: list[tuple[str, str]]) -> JobSpecError:
    """One error for every problem found: a single one reads as before (problem, then its fix
    as the hint); several are listed on the one line, each with its own fix."""
    if len(problems) == 1:
        problem, fix = problems[0]
        return JobSpecError(f"{source}: {problem}", fix)
    listed = "; ".join(f"{problem} (fix: {fix})" for problem, fix in problems)
    return JobSpecError(f"{source} has {len(problems)} problems: {listed}",
                        "fix them all, then rerun")


def load_job_spec(path: str | Path) -> JobSpec:
    from .safe_read import load_yaml

    data = load_yaml(path, "job spec", JobSpecError, "check indentation and quoting")
    return parse_job_spec(data, str(path))


def check_for_target(spec: JobSpec, target: Target) -> tuple[list[tuple[str, str]], list[str]]:
    """(problems, notes) of running `spec` on `target`: each problem is (what is wrong, naming
    its key; how to fix it); notes say how keys are applied or ignored there."""
    problems: list[tuple[str, str]] = []
    notes: list[str] = [f"env {key} is set as a plain value (shown in plans and manifests); "
                        "if it is a secret, move it to `secrets:` as a reference (env:NAME or "
                        "file:PATH on both; k8s:SECRET/KEY on GKE)"
                        for key in sorted(spec.env) if SECRET_NAME_RE.search(key)]
    schemes = {s for s, _ in spec.secret_refs().values()}
    if target == "vm":
        if spec.recover:
            # `gpuctl run NAME job.yaml` takes the --recover path before a VM backend sees the
            # spec; any other way onto an existing VM would silently drop the recovery.
            problems.append(("recover: true makes a new spot VM group; it does not run on an "
                             "existing VM or host",
                             "`gpuctl run NEW_NAME job.yaml` starts it as a --recover run, or set "
                             "recover: false to run it here"))
        if spec.nodes > 1:
            problems.append((f"nodes: {spec.nodes} needs a cluster; a VM runs one node",
                             "use `gpuctl run --gke`, or set nodes: 1"))
        if "k8s" in schemes:
            problems.append(("secrets: a k8s: secret reference only works on GKE",
                             "on a VM use env:NAME or file:PATH"))
        if spec.image:
            notes.append("image is ignored on a VM: the run uses the VM's virtualenv")
        if spec.accelerator:
            notes.append("accelerator is ignored on a VM: its GPU comes from the VM's profile")
        if not spec.spot:
            notes.append("spot is ignored on a VM: it was set when the VM was created")
        if spec.max_retries != 3:
            notes.append("max_retries is ignored on a VM: a run is not restarted by itself")
        if spec.checkpoints:
            notes.append("checkpoints: the run writes them to $GPUCTL_CHECKPOINT_DIR on the NVMe; "
                         f"its Cloud Storage folder is $GPUCTL_CHECKPOINT_URL under {spec.checkpoints}")
        return problems, notes
    if spec.recover:
        notes.append(f"recover: true is not needed on GKE: a preempted pod is replaced by the Job "
                     f"itself (up to max_retries: {spec.max_retries})")
    if not spec.image:
        notes.append(f"image: not set, so the pods run the public {DEFAULT_IMAGE}")
    if spec.workdir is not None:
        notes.append(f"workdir {spec.workdir} is packed (honouring .gitignore) into a ConfigMap "
                     "and unpacked into /workspace, where the command runs")
    if spec.requirements:
        notes.append(f"requirements {spec.requirements} are pip-installed in the pod before "
                     "the command")
    if spec.gpus_per_node and not spec.accelerator:
        notes.append(f"accelerator: not set, so the pods ask for {DEFAULT_ACCELERATOR} (the GPU "
                     "of `gpuctl gke up`'s default pool)")
    local = sorted(key for key, (scheme, _) in spec.secret_refs().items() if scheme != "k8s")
    if local:
        notes.append(f"secrets {', '.join(local)} are read here when the job is submitted and "
                     "stored in a Secret deleted with the Job")
    return problems, notes


def notes_for_target(spec: JobSpec, target: Target, source: str = "job spec") -> list[str]:
    """The notes of running `spec` on `target`; raises one JobSpecError naming every problem."""
    problems, notes = check_for_target(spec, target)
    if problems:
        raise problems_error(source, problems)
    return notes


def read_local_secrets(spec: JobSpec, environ: dict | None = None) -> dict[str, str]:
    """The values of the spec's env:/file: secrets, read on this machine (k8s: ones stay in the
    cluster). Errors name the reference, never a value."""
    import os

    environ = os.environ if environ is None else environ
    values = {}
    for key, (scheme, rest) in spec.secret_refs().items():
        if scheme == "env":
            if rest not in environ:
                raise JobSpecError(f"secret {key} refers to env:{rest}, which is not set here",
                                   f"export {rest}=... in this shell, then rerun")
            values[key] = environ[rest]
        elif scheme == "file":
            from .safe_read import LIMITS, read_text

            values[key] = read_text(Path(rest).expanduser(), f"secret {key} file", JobSpecError,
                                    limit=LIMITS["secret"]).rstrip("\r\n")
    return values


def _describe(err) -> str:
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key '{where}'"
    if err["type"] == "missing":
        return f"'{where}' is required"
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _fix_for(err) -> str:
    key = err["loc"][0] if err["loc"] else None
    if err["type"] == "extra_forbidden":
        return "known keys: " + ", ".join(JobSpec.model_fields)
    if err["type"] == "missing":
        return {"name": "add `name:` (lowercase letters, digits, '-')",
                "command": "add `command:` (a list, or one string run by /bin/sh -c)"}.get(
                    key, f"add `{key}:`")
    if key == "secrets":
        return SECRET_HINT
    if key == "env" and "token" in err["msg"]:
        return "move it to `secrets:` and " + SECRET_HINT
    if key == "accelerator":
        return f"pick one of those, or remove it for {DEFAULT_ACCELERATOR}"
    if key == "checkpoints":
        return CHECKPOINTS_HINT
    if key == "name":
        return "e.g. name: llama-lora"
    if key == "command":
        return "e.g. command: [python, train.py, --epochs, \"3\"]"
    if key == "image":
        return ("write REGISTRY/PATH:TAG or REGISTRY/PATH@sha256:DIGEST, or remove image: "
                f"for {DEFAULT_IMAGE}")
    if key == "timeout":
        return "write a duration such as 30m or 12h"
    if key == "recover":
        return ("write recover: true (a spot VM group Google Cloud refills after each preemption) "
                "or recover: false, unquoted")
    if key in ("nodes", "gpus_per_node", "max_retries"):
        limits = {"nodes": f"1-{MAX_NODES}", "gpus_per_node": f"0-{MAX_GPUS_PER_NODE}",
                  "max_retries": "0-100"}
        return f"write a whole number in {limits[key]}"
    return "see the job spec format in README.md (Training runs)"
