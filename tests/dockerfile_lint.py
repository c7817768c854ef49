"""gpuctl's Dockerfile linter: the few rules our images must keep, checked without Docker.

Rules (each finding names the line and the fix):
  from-pinned       every FROM names a version tag (not latest) or a sha256 digest
  pip-pinned        every package pip installs is pinned with ==, in RUN lines and in the
                    requirements files they install with -r
  user-non-root     the final stage switches to a non-root USER
  add-url           no ADD from a URL (unverified downloads; use a pinned, checked RUN step)
  curl-pipe-shell   no download piped into a shell
  secret-env        no ENV/ARG that looks like it carries a secret (it stays in the image)
  apt-update        apt-get install in the same RUN as apt-get update (no stale index layer)
  service-port      a service image EXPOSEs its port or has a HEALTHCHECK

    python -m tests.dockerfile_lint images/train/Dockerfile images/webui/Dockerfile:service
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

_DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
_ARG_REF_RE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}?")
_SECRET_KEY_RE = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_?KEY|CREDENTIAL|ACCESS_?KEY)",
                            re.IGNORECASE)
_SECRET_VALUE_RE = re.compile(r"(hf_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY|"
                              r"ghp_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9]{20,})")
_PIP_FLAGS_WITH_VALUE = {"-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i",
                         "--index-url", "--extra-index-url", "-f", "--find-links", "-t", "--target",
                         "--prefix", "--root", "--trusted-host", "--platform", "--python-version",
                         "--implementation", "--abi", "--upgrade-strategy", "--progress-bar",
                         "--cache-dir", "--src", "--report", "--log", "--timeout", "--retries"}
_ROOT_USERS = {"root", "0", "0:0", "root:root"}


@dataclass(frozen=True)
class Finding:
    rule: str
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
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
    if pending.strip():
        keyword, _, args = pending.strip().partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
    return out


def _substitute(text: str, args: dict[str, str]) -> str:
    return _ARG_REF_RE.sub(lambda m: args.get(m.group(1)) or (m.group(2) or ""), text)


def _image_pinned(ref: str) -> bool:
    if _DIGEST_RE.search(ref):
        return True
    name = ref.rsplit("/", 1)[-1]
    if ":" not in name:
        return False
    tag = name.split(":", 1)[1]
    return tag != "latest" and any(ch.isdigit() for ch in tag)


def _check_from(ins: Instruction, args: dict[str, str], stages: set[str]) -> list[Finding]:
    words = [w for w in ins.args.split() if not w.startswith("--platform")]
    if not words:
        return [Finding("from-pinned", ins.line, "FROM names no image")]
    ref = _substitute(words[0], args)
    if len(words) >= 3 and words[1].upper() == "AS":
        stages.add(words[2].lower())
    if ref == "scratch" or ref.lower() in stages:
        return []
    if not ref or "$" in ref:
        return [Finding("from-pinned", ins.line, f"FROM {words[0]} does not resolve to an image; "
                        "give the ARG a pinned default")]
    if not _image_pinned(ref):
        return [Finding("from-pinned", ins.line, f"FROM {ref} is not pinned: use a version tag "
                        "(not latest) or @sha256:<digest>")]
    return []


def _requirement_pinned(line: str) -> bool:
    spec = line.split("#", 1)[0].split(";", 1)[0].strip()
    return "==" in spec and not any(op in spec for op in (">", "<", "~=", "!=", "*"))


def _pip_packages(command: str) -> list[str] | None:
    """The package arguments and -r files of a `pip install` command, or None if not one."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for i, word in enumerate(words):
        if word in ("pip", "pip3") or word.endswith(("/pip", "/pip3")) or (
                word == "-m" and i + 1 < len(words) and words[i + 1] == "pip"):
            rest = words[i + (2 if word == "-m" else 1):]
            if rest[:1] == ["install"]:
                return rest[1:]
    return None


def _check_pip(ins: Instruction, context: Path | None) -> list[Finding]:
    out: list[Finding] = []
    for command in re.split(r"&&|\|\||;|\|", ins.args):
        words = _pip_packages(command)
        if words is None:
            continue
        skip_next = False
        for i, word in enumerate(words):
            if skip_next:
                skip_next = False
                continue
            if word in ("-r", "--requirement", "-c", "--constraint"):
                skip_next = True
                if i + 1 < len(words) and word in ("-r", "--requirement"):
                    out += _check_requirements(words[i + 1], ins.line, context)
                continue
            if word in _PIP_FLAGS_WITH_VALUE:
                skip_next = True
                continue
            if word.startswith("-"):
                continue
            if word in (".", "./") or word.startswith(("/", "./")):
                continue  # a local project: its own pins apply
            if not _requirement_pinned(word):
                out.append(Finding("pip-pinned", ins.line, f"pip installs {word!r} unpinned: "
                                   "pin it with ==, e.g. transformers==4.46.3"))
    return out


def _check_requirements(path_in_image: str, line: int, context: Path | None) -> list[Finding]:
    local = context / Path(path_in_image).name if context else None
    if local is None or not local.exists():
        return [Finding("pip-pinned", line, f"cannot check -r {path_in_image}: no "
                        f"{Path(path_in_image).name} in the build context")]
    out = []
    for number, raw in enumerate(local.read_text().splitlines(), start=1):
        text = raw.split("#", 1)[0].strip()
        if not text or text.startswith(("-", "--")):
            continue
        if not _requirement_pinned(text):
            out.append(Finding("pip-pinned", line, f"{local.name}:{number} {text!r} is unpinned: "
                               "pin it with =="))
    return out


def _check_run(ins: Instruction, context: Path | None) -> list[Finding]:
    out = _check_pip(ins, context)
    if re.search(r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?(sh|bash|zsh|python3?)\b", ins.args):
        out.append(Finding("curl-pipe-shell", ins.line, "a download is piped into a shell: "
                           "download, check its sha256, then run it"))
    if re.search(r"apt-get\s+(-\S+\s+)*install", ins.args) and "apt-get update" not in ins.args:
        out.append(Finding("apt-update", ins.line, "apt-get install without apt-get update in the "
                           "same RUN: the cached index goes stale"))
    return out


def _check_env(ins: Instruction) -> list[Finding]:
    pairs: list[tuple[str, str]] = []
    if ins.keyword == "ARG":
        key, _, value = ins.args.partition("=")
        pairs.append((key.strip(), value.strip()))
    else:
        try:
            words = shlex.split(ins.args)
        except ValueError:
            words = ins.args.split()
        if words and "=" not in words[0]:  # legacy `ENV KEY value`
            pairs.append((words[0], " ".join(words[1:])))
        else:
            pairs += [tuple(w.split("=", 1)) for w in words if "=" in w]
    out = []
    for key, value in pairs:
        if _SECRET_KEY_RE.search(key) or _SECRET_VALUE_RE.search(value):
            out.append(Finding("secret-env", ins.line, f"{ins.keyword} {key} looks like a secret: "
                               "it stays in the image's history; pass it at run time (a "
                               "Kubernetes Secret)"))
    return out


def lint(text: str, *, context: Path | None = None, service: bool = False) -> list[Finding]:
    """Every finding for a Dockerfile's text. `context` is the build context (for -r files);
    `service` asks for an exposed port or a health check."""
    instructions = parse(text)
    findings: list[Finding] = []
    args: dict[str, str] = {}
    stages: set[str] = set()
    user: tuple[int, str] | None = None  # the last USER of the current stage
    exposed = healthcheck = False
    for ins in instructions:
        if ins.keyword == "ARG":
            key, _, value = ins.args.partition("=")
            args.setdefault(key.strip(), value.strip().strip("\"'"))
            findings += _check_env(ins)
        elif ins.keyword == "FROM":
            findings += _check_from(ins, args, stages)
            user = None  # USER does not carry over into a new stage
        elif ins.keyword == "ENV":
            findings += _check_env(ins)
        elif ins.keyword == "RUN":
            findings += _check_run(ins, context)
        elif ins.keyword == "ADD":
            sources = [w for w in ins.args.split() if not w.startswith("--")][:-1]
            if any(re.match(r"(https?|ftp)://|git@", s) for s in sources):
                findings.append(Finding("add-url", ins.line, "ADD from a URL: download in a RUN "
                                        "step that checks a sha256, or COPY from the context"))
        elif ins.keyword == "USER":
            user = (ins.line, ins.args.split()[0] if ins.args else "")
        elif ins.keyword == "EXPOSE":
            exposed = True
        elif ins.keyword == "HEALTHCHECK" and not ins.args.upper().startswith("NONE"):
            healthcheck = True
    if not any(i.keyword == "FROM" for i in instructions):
        findings.append(Finding("from-pinned", 1, "no FROM: not a Dockerfile"))
    if user is None:
        findings.append(Finding("user-non-root", len(text.splitlines()) or 1,
                                "the final stage runs as root: add USER 1000:1000 (or a named user)"))
    elif _substitute(user[1], args) in _ROOT_USERS:
        findings.append(Finding("user-non-root", user[0], f"USER {user[1]} is root: use a non-root user"))
    if service and not (exposed or healthcheck):
        findings.append(Finding("service-port", len(text.splitlines()) or 1,
                                "a service image must EXPOSE its port or have a HEALTHCHECK"))
    return findings


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
