"""Every ``__all__`` in the package is sorted: constants, then classes, then functions, each alphabetically
(ruff's isort-style order, RUF022). Read from the source, so no module is imported for it."""

from __future__ import annotations

import ast
from pathlib import Path

import dicomflow

ROOT = Path(dicomflow.__file__).parent


def _order(name: str) -> tuple[int, str]:
    """SCREAMING_CASE first, then CamelCase, then anything else."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


def _dunder_all(path: Path) -> list[str] | None:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if isinstance(node, ast.Assign | ast.AnnAssign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in targets
        ):
            assert node.value is not None
            return list(ast.literal_eval(node.value))
    return None


def test_every_dunder_all_is_sorted() -> None:
    found = {path.relative_to(ROOT).as_posix(): _dunder_all(path) for path in sorted(ROOT.rglob("*.py"))}
    names = {module: names for module, names in found.items() if names is not None}

    unsorted = {module: names for module, names in names.items() if names != sorted(names, key=_order)}

    assert len(names) > 10, f"only {len(names)} modules with __all__ found under {ROOT}"
    expected = {module: sorted(names, key=_order) for module, names in unsorted.items()}
    assert not unsorted, f"unsorted __all__, expected: {expected}"
