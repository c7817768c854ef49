"""Every `gpuctl ...` command line gpuctl prints as a hint or a next step names a command and
options that exist: each is parsed by the real CLI parser (nothing runs)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

from gpuctl.cli.main import COMMANDS, cli

SOURCE = Path(__file__).parent.parent / "orchestrator" / "gpuctl"
QUOTED = re.compile(r"`gpuctl ([^`]+)`")
# Next-step lines the CLI prints without backticks: `follow: gpuctl logs -f NAME   ...`.
BARE = re.compile(r"(?:^|: |\[)gpuctl ((?:[-\w.@:/=\[\]]+ ?)+)")
SAMPLE = {"VM": "a100", "NAME": "run-1", "SPEC": "job.yaml", "FILE": "log.txt", "RUN": "run-1",
          "JOB": "job-1", "PROFILE": "a100-spot"}


def _texts(node: ast.AST) -> str | None:
    """A string literal, or an f-string with each {expression} shown as x1."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "x1" for v in node.values)
    return None


def hint_command_lines() -> list[tuple[str, str]]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        if "host_scripts" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
        for node in ast.walk(tree):
            text = None if id(node) in parts else _texts(node)
            if not text or "gpuctl " not in text:
                continue
            lines = QUOTED.findall(text)
            if path.parent.name in ("cli", "backends"):  # next-step lines printed as they are
                lines += [m.strip() for m in BARE.findall(text) if m.split()[0] in COMMANDS]
            found += [(f"{path.relative_to(SOURCE)}", line) for line in lines]
    return sorted(set(found))


def argv_of(line: str) -> list[str]:
    line = re.sub(r"\{[^}]*\}", "1", line.replace("...", "").replace("x1--help", "--help"))
    words = [w for w in line.split() if w and not w.startswith("[")]
    return [SAMPLE.get(w, w) for w in words]


def parse(argv: list[str]) -> None:
    """Resolve subcommands and parse options as click would, without invoking anything."""
    command: click.Command = cli
    ctx = cli.make_context("gpuctl", list(argv), resilient_parsing=False)
    while isinstance(command, click.Group):
        name, *rest = ctx.protected_args + ctx.args
        command = command.get_command(ctx, name)
        assert command is not None, f"no command {name!r}"
        ctx = command.make_context(name, rest, parent=ctx)


def test_there_are_hints_to_check():
    lines = [line for _, line in hint_command_lines()]
    for expected in ("jobs --gke", "cancel --gke x1", "logs --gke -f x1"):
        assert expected in lines, expected


@pytest.mark.parametrize("where, line", hint_command_lines())
def test_every_hint_command_parses(where, line):
    if " | " in line:  # `gpuctl webui up | down | status`: each alternative
        first, *others = line.split(" | ")
        group = first.split()[:-1]
        lines = [first] + [" ".join(group + [o]) for o in others]
    else:
        lines = [line]
    for one in lines:
        try:
            parse(argv_of(one))
        except click.MissingParameter as exc:
            # A hint may name a command without its arguments ("see `gpuctl extend`"); a
            # missing option value or an unknown option is still an error.
            assert isinstance(exc.param, click.Argument), (one, exc)
        except (click.exceptions.Exit, click.exceptions.NoArgsIsHelpError):
            pass  # `gpuctl --help`, or a group named alone (`gpuctl gke`)


def test_a_hint_naming_a_missing_option_fails_the_check():
    with pytest.raises(click.UsageError):
        parse(argv_of("jobs --no-such-option"))
    with pytest.raises(AssertionError):
        parse(argv_of("no-such-command"))
