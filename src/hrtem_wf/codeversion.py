"""Code versions per workflow stage, for Snakemake's params rerun trigger.

A stage's code version is a short hash of the abstract syntax trees of the library code that
makes its outputs: its subpackage, the shared modules it uses, and its subcommand in cli.py.
Comments are not in the tree and docstrings are removed from it, so editing either changes
nothing; any change to code (a constant, an expression, a new function) gives a new version,
and Snakemake reruns that stage and everything downstream of it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent

# The sources of each stage: package-relative paths, or "cli.py:<function>" for one function.
STAGE_SOURCES = {
    "structures": ["structures", "sampling.py", "io.py", "cli.py:_structure"],
    "simulate": ["simulation", "io.py", "cli.py:_simulate"],
    "images": ["imaging", "sampling.py", "io.py", "cli.py:_images"],
    "datasets": ["datasets", "sampling.py", "io.py"],
    "train": ["training", "io.py", "cli.py:_train"],
    "evaluate": ["evaluation", "training", "io.py", "cli.py:_evaluate", "cli.py:_report"],
}


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def source_fingerprint(source: str, function: str | None = None) -> str:
    """The AST of `source` (or of one top-level function in it) without docstrings, as text."""
    tree = _strip_docstrings(ast.parse(source))
    if function is not None:
        matches = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
        if not matches:
            raise KeyError(f"no function {function!r}")
        tree = matches[0]
    return ast.dump(tree, include_attributes=False)


@functools.cache
def code_version(stage: str, package: Path = PACKAGE) -> str:
    """12 hex digits that change exactly when the stage's code (not its comments) changes."""
    digest = hashlib.sha256()
    for entry in STAGE_SOURCES[stage]:
        name, _, function = entry.partition(":")
        path = package / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(package)).encode())
            digest.update(source_fingerprint(file.read_text(), function or None).encode())
    return digest.hexdigest()[:12]
