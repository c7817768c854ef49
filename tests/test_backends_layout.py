"""One way to reach a host: nothing outside adapters/ imports paramiko or Fabric, or reaches
into a RemoteHost's private connection."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).parent.parent / "orchestrator" / "gpuctl"


def offenders(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if "adapters" in path.relative_to(root).parts or "host_scripts" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] in ("paramiko", "fabric") for n in names):
                found.append(f"{path.relative_to(root)}: imports {names}")
            if isinstance(node, ast.Attribute) and node.attr in ("_conn", "get_transport"):
                found.append(f"{path.relative_to(root)}:{node.lineno}: .{node.attr}")
    return found


def test_nothing_outside_adapters_touches_paramiko():
    assert offenders(SOURCE) == []


def test_the_check_can_fail(tmp_path):
    (tmp_path / "bad.py").write_text("import paramiko\nhost._conn.client.get_transport()\n")
    assert len(offenders(tmp_path)) == 3
