"""No package imports another package's private modules: what a package offers is in its ``__init__`` (or,
for the index's repositories and the use cases, in its public modules)."""

import ast
from pathlib import Path

import dicomflow

ROOT = Path(dicomflow.__file__).parent


def _crossings(path: Path) -> list[str]:
    own = path.relative_to(ROOT).parts[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("dicomflow."):
            continue
        parts = (node.module or "").split(".")
        names = [alias.name for alias in node.names] if len(parts) == 2 else []
        private = any(p.startswith("_") for p in parts[2:]) or any(n.startswith("_") for n in names)
        if private and parts[1] != own:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import ...")
    return found


def test_no_module_imports_a_private_module_of_another_package() -> None:
    crossings = [c for path in sorted(ROOT.rglob("*.py")) if path.parent != ROOT for c in _crossings(path)]
    assert crossings == []
