"""'Is this step done?' asked of the thing itself, and many such questions in one round trip.

A check is a shell snippet plus a pure judge of its output (a fact whose parser returns a
verdict). It tests function, not presence: the venv's pip imports, the NVMe mount is writable
and its fstab line names the mounted disk's UUID, a cron file has the intended bytes and mode.
Snippets run as the login user (what the user will do on the host); one needing root says
$SUDO, which is empty when the login user is root.

The runner asks every step's check in a single SSH command before it changes anything; a
verdict stays valid only until some step changes the host (DESIGN.md 5: a fact read before
an earlier step changed the host is stale), after which each step asks again when it runs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Callable

DONE, TODO, SKIP = "done", "todo", "skip"

# Shell helpers every snippet may use. gpuctl_file prints "file PATH MODE:OWNER SHA256" so a
# judge can compare a managed file with its intended bytes without shipping them back.
PRELUDE = r"""SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
gpuctl_file() { if [ -f "$1" ] && [ -r "$1" ]; then echo "file $1 $(stat -c %a:%U "$1") $(sha256sum < "$1" | cut -c1-64)"; else echo "file $1 missing"; fi; }"""


@dataclass(frozen=True)
class Verdict:
    state: str  # DONE, TODO or SKIP
    reason: str
    data: dict = field(default_factory=dict, compare=False)  # what the judge parsed, for apply

    @property
    def done(self) -> bool:
        return self.state == DONE


@dataclass(frozen=True)
class Check:
    command: str | None  # None: the verdict does not depend on the host (a disabled step)
    judge: Callable[[str], Verdict]


def decided(state: str, reason: str) -> Check:
    """A check answered without asking the host."""
    verdict = Verdict(state, reason)
    return Check(None, lambda _text: verdict)


def script(command: str) -> str:
    return f"{PRELUDE}\n{command}"


def run_check(host, check: Check) -> Verdict:
    if check.command is None:
        return check.judge("")
    return check.judge(host.run(script(check.command), check=False).stdout)


def batch_script(checks: dict[str, Check], nonce: str) -> str:
    """One shell script asking every check; each answer follows a marker line with the nonce,
    so no output of a snippet can pose as another step's answer."""
    parts = [PRELUDE]
    for step_id, check in checks.items():
        if check.command is not None:
            # A subshell: an `exit` or `set -e` in one snippet cannot cut off the others.
            # The bare echo ends output that lacks a final newline, so the next marker
            # always starts a line; split_answers takes that one line back off.
            parts.append(f"echo '@@{nonce} {step_id}'\n( {check.command}\n) 2>&1 </dev/null\necho")
    parts.append(f"echo '@@{nonce} @end'")
    return "\n".join(parts)


def split_answers(text: str, nonce: str) -> dict[str, str]:
    """The output of batch_script, split per step id. A section cut off before the end marker
    is dropped: a half answer must never read as a verdict."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    complete = False
    marker = f"@@{nonce} "
    for line in text.split("\n"):  # only newline: a snippet's \f or \x85 is not a line break
        if line.startswith(marker):
            if current is not None and sections[current] and sections[current][-1] == "":
                sections[current].pop()  # the separator batch_script adds
            current = line[len(marker):].strip()
            if current == "@end":
                complete = True
                break
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    if not complete and current is not None:
        sections.pop(current, None)
    return {k: "".join(line + "\n" for line in v) for k, v in sections.items()}


def run_batch(host, checks: dict[str, Check]) -> dict[str, Verdict]:
    """Every check's verdict from one round trip (host-independent ones cost none)."""
    verdicts = {k: c.judge("") for k, c in checks.items() if c.command is None}
    asked = {k: c for k, c in checks.items() if c.command is not None}
    if asked:
        nonce = secrets.token_hex(6)
        out = host.run(batch_script(asked, nonce), check=False).stdout
        answers = split_answers(out, nonce)
        verdicts.update({k: asked[k].judge(answers[k]) for k in asked if k in answers})
    return verdicts


def keyed(text: str) -> dict[str, list[str]]:
    """'key rest of line' lines -> {key: [rest, ...]} (a key may repeat, e.g. fstab entries)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, rest = line.strip().partition(" ")
        if key:
            out.setdefault(key, []).append(rest.strip())
    return out


def file_line(path: str, content: str, mode: str, owner: str = "root") -> str:
    """The gpuctl_file line a managed file prints when it holds exactly `content`."""
    import hashlib

    digest = hashlib.sha256(content.encode()).hexdigest()
    return f"{path} {int(mode, 8):o}:{owner} {digest}"


def stale_files(answers: dict[str, list[str]], wanted: dict[str, str]) -> list[str]:
    """Paths whose gpuctl_file line differs from the wanted one ({path: file_line(...)})."""
    seen = {line.split(" ", 1)[0]: line for line in answers.get("file", [])}
    return [path for path, line in wanted.items() if seen.get(path) != line]
