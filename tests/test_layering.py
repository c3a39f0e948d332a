"""The layering of DESIGN §3/§6, read from the imports themselves (with `ast`, so a
function-local import counts too): stage packages share `nlakit.store` and the core
modules instead of importing each other."""

from __future__ import annotations

import ast
from pathlib import Path

import nlakit

PACKAGE = Path(nlakit.__file__).parent


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, at module level) of every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.lineno, node.module, id(node) in top))
    return out


def offending(folder: str, forbidden: tuple[str, ...], allowed_files=(), top_only=False):
    found = []
    for path in sorted((PACKAGE / folder).glob("*.py")):
        if path.name in allowed_files:
            continue
        for line, module, at_top in imports(path):
            if module.startswith(forbidden) and (at_top or not top_only):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return found


def test_train_does_not_import_eval():
    assert offending("train", ("nlakit.eval",)) == []


def test_viewer_does_not_import_eval_or_train():
    assert offending("viewer", ("nlakit.eval", "nlakit.train")) == []


def test_eval_imports_train_only_to_run_the_sweeps():
    # sweep.py runs the sweeps' RL (the ordering sweep's too), audit.py adapts the AV to
    # each fine-tuned model (train.adapt); nothing else in eval trains
    allowed = ("sweep.py", "audit.py")
    assert offending("eval", ("nlakit.train",), allowed_files=allowed) == []


def test_data_imports_neither_eval_train_nor_viewer_and_the_toy_world_only_lazily():
    assert offending("data", ("nlakit.eval", "nlakit.train", "nlakit.viewer")) == []
    assert offending("data", ("nlakit.toyworld",), top_only=True) == []


def test_the_store_sits_below_every_stage_package():
    stages = ("nlakit.data", "nlakit.train", "nlakit.eval", "nlakit.viewer", "nlakit.toyworld")
    assert offending("store", stages) == []
