"""The size limits of the layout (README, "Development"): no module of `batchcert` over 600 lines and no class over
250 — a concern that outgrows them is two concerns."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "batchcert"
MAX_MODULE_LINES, MAX_CLASS_LINES = 600, 250


def test_no_module_or_class_outgrows_the_layout() -> None:
    too_long: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(PACKAGE.parent)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    too_long.append(f"{path.relative_to(PACKAGE.parent)}: class {node.name}, {lines} lines")
    assert not too_long, too_long
