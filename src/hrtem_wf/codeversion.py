"""Code versions per workflow stage, for Snakemake's params rerun trigger.

A stage's code version is a short hash of everything that makes its outputs, derived by following
imports, never listed by hand:
- its entry point: one function of a module (`hrtem_wf.images.stage:run`), with the
  module-level names that function uses, or a whole script;
- every `hrtem_wf` module that entry imports, transitively (imports at the top of a module and
  inside its functions alike; a package import brings its `__init__`), but this one;
- the installed version of every third-party distribution those modules import (abTEM, czone,
  numpy, numba, torch, smp, ...).
Sources are hashed as abstract syntax trees without docstrings: editing a comment or a docstring
changes nothing; any change to code (a constant, an expression, a new function) gives a new
version, and Snakemake reruns that stage and everything downstream of it.

The same derivation is what every output records of the code that made it: `provenance(entry)`
is the stage's code version and the installed versions of the libraries its code imports.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
import sys
from importlib.metadata import PackageNotFoundError, distributions, version
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT_MODULE = PACKAGE.name  # "hrtem_wf"
# Not followed: this module only records which code made an output (every stage imports it for
# that); it makes no output, and editing it must not rerun the whole workflow.
NOT_FOLLOWED = {__name__}


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _dump(node: ast.AST) -> str:
    return ast.dump(node, include_attributes=False)


class _Package:
    """The `hrtem_wf` sources under `root` (the installed package, or a copy in a test)."""

    def __init__(self, root: Path):
        self.root = root

    def path_of(self, module: str) -> Path | None:
        """The file of a dotted `hrtem_wf...` module, or None when there is none."""
        parts = module.split(".")
        if parts[0] != ROOT_MODULE:
            return None
        base = self.root.joinpath(*parts[1:])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def module_of(self, path: Path) -> str:
        relative = path.relative_to(self.root).with_suffix("")
        parts = [ROOT_MODULE, *relative.parts]
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def tree(self, path: Path) -> ast.Module:
        return self.parsed(path)[0]

    def dump(self, path: Path) -> str:
        return self.parsed(path)[1]

    def imports(self, path: Path, module: str) -> tuple[set[str], set[str]]:
        """_imports of the whole module `module` at `path` (cached alike)."""
        status = path.stat()
        return _module_imports(str(path), status.st_mtime_ns, status.st_size, module)

    def parsed(self, path: Path) -> tuple[ast.Module, str]:
        """(docstring-free tree, its dump) of a source file, parsed once per process for each
        version of the file (its path, size and modification time): a Snakefile asks for the
        code version of every rule, and the rules share most of their modules."""
        status = path.stat()
        return _parse(str(path), status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=1024)
def _parse(path: str, mtime_ns: int, size: int) -> tuple[ast.Module, str]:
    tree = _strip_docstrings(ast.parse(Path(path).read_text(), filename=path))
    return tree, _dump(tree)


@functools.lru_cache(maxsize=1024)
def _module_imports(path: str, mtime_ns: int, size: int, module: str) -> tuple[set, set]:
    tree = _parse(path, mtime_ns, size)[0]
    ours, theirs = _imports(tree, module, Path(path).name == "__init__.py")
    return frozenset(ours), frozenset(theirs)


def _imports(node: ast.AST, importer: str, is_package: bool) -> tuple[set[str], set[str]]:
    """(hrtem_wf modules, third-party top-level names) imported anywhere in `node`."""
    ours, theirs = set(), set()
    for child in ast.walk(node):
        if isinstance(child, ast.Import):
            names = [alias.name for alias in child.names]
        elif isinstance(child, ast.ImportFrom):
            if child.level:  # relative: resolve against the importing module's package
                package = importer.split(".")
                package = package if is_package else package[:-1]
                base = ".".join(package[: len(package) - child.level + 1])
                module = f"{base}.{child.module}" if child.module else base
            else:
                module = child.module
            # `from pkg import name`: name may be a submodule; path_of decides later
            names = [module] + [f"{module}.{alias.name}" for alias in child.names]
        else:
            continue
        for name in names:
            root = name.split(".")[0]
            if root == ROOT_MODULE:
                ours.add(name)
            elif root not in sys.stdlib_module_names and root != "__future__":
                theirs.add(root)
    return ours, theirs


def _entry_nodes(tree: ast.Module, function: str) -> list[ast.AST]:
    """The function and the module-level statements (imports, helpers, constants) it uses,
    transitively within its module."""
    defined: dict[str, ast.AST] = {}
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined[statement.name] = statement
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            for alias in statement.names:
                defined[(alias.asname or alias.name).split(".")[0]] = statement
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        defined[name.id] = statement
    if function not in defined:
        raise KeyError(f"no function {function!r}")
    kept, todo = [], [defined[function]]
    while todo:
        node = todo.pop()
        if any(node is k for k in kept):
            continue
        kept.append(node)
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        todo += [defined[name] for name in sorted(used) if name in defined]
    return sorted(kept, key=lambda n: n.lineno)


def source_closure(entry: str, package: Path = PACKAGE) -> tuple[dict[str, str], set[str]]:
    """What `entry` runs: {source name: AST dump} of the entry and the hrtem_wf modules it
    imports (transitively), and the top-level names of the third-party modules they import.

    `entry`: "hrtem_wf.module:function", "hrtem_wf.module" or the path of a script."""
    sources = _Package(package)
    module, _, function = entry.partition(":")
    if module.endswith(".py"):
        path, name = Path(module), Path(module).name
    else:
        path, name = sources.path_of(module), module
        if path is None:
            raise KeyError(f"{module!r} is not a module of {package}")
    tree = (
        sources.tree(path)
        if path.is_relative_to(package)
        else _strip_docstrings(ast.parse(path.read_text(), filename=str(path)))
    )
    nodes = _entry_nodes(tree, function) if function else [tree]
    dumps = {name + (f":{function}" if function else ""): "\n".join(map(_dump, nodes))}
    importer = sources.module_of(path) if path.is_relative_to(package) else "__main__"
    is_package = path.name == "__init__.py"
    third_party: set[str] = set()
    pending: set[str] = set()
    for node in nodes:
        ours, theirs = _imports(node, importer, is_package)
        pending |= ours
        third_party |= theirs
    seen: set[Path] = set()
    while pending:
        imported = pending.pop()
        module_path = None if imported in NOT_FOLLOWED else sources.path_of(imported)
        if module_path is None or module_path in seen:
            continue
        seen.add(module_path)
        module_name = sources.module_of(module_path)
        dumps[module_name] = sources.dump(module_path)
        ours, theirs = sources.imports(module_path, module_name)
        # importing hrtem_wf.a.b runs hrtem_wf.a's __init__ first
        parents = {".".join(m.split(".")[:i]) for m in ours for i in range(2, m.count(".") + 1)}
        pending |= ours | parents
        third_party |= theirs
    return dumps, third_party


@functools.cache
def _distributions() -> dict[str, list[str]]:
    """{top-level import name: [distribution names]}, what importlib.metadata's
    packages_distributions() gives, read from the files as text: it parses every distribution's
    metadata as e-mail (0.2 to 0.6 s), and every stage job records its libraries."""
    found: dict[str, list[str]] = {}
    for dist in distributions():
        names = (dist.read_text("top_level.txt") or "").split()
        if not names:  # no top_level.txt: the top level of the .py files it installed
            for line in (dist.read_text("RECORD") or "").splitlines():
                path = line.split(",")[0]
                if path.endswith(".py"):
                    names.append(path.split("/")[0] if "/" in path else path[:-3])
        metadata = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        name = re.search(r"^Name:[ \t]*(.*?)[ \t]*$", metadata, re.M)
        for top in dict.fromkeys(names):
            found.setdefault(top, []).append(name.group(1) if name else None)
    return found


def library_versions(top_level_names: set[str]) -> dict[str, str]:
    """{distribution: installed version} of the distributions providing these import names
    (numpy -> numpy, segmentation_models_pytorch -> segmentation-models-pytorch)."""
    found = {}
    for name in sorted(top_level_names):
        for distribution in _distributions().get(name, [name]):
            try:
                found[distribution] = version(distribution)
            except PackageNotFoundError:
                pass  # an optional import (cupy on a CPU node): the stage runs without it
    return found


def _provenance(entry: str, package: Path) -> dict:
    dumps, third_party = source_closure(entry, package)
    libraries = library_versions(third_party)
    digest = hashlib.sha256()
    for name in sorted(dumps):
        digest.update(name.encode())
        digest.update(dumps[name].encode())
    for distribution, installed in libraries.items():
        digest.update(f"{distribution}=={installed}".encode())
    return {"code_version": digest.hexdigest()[:12], "libraries": libraries}


@functools.cache
def code_version(entry: str, package: Path = PACKAGE) -> str:
    """12 hex digits that change exactly when the code `entry` runs (not its comments or
    docstrings), or the version of a library it imports, changes."""
    return _provenance(entry, package)["code_version"]


@functools.cache
def _cached_provenance(entry: str, package: Path) -> dict:
    return _provenance(entry, package)


def provenance(entry: str, package: Path = PACKAGE) -> dict:
    """What an output of the stage `entry` records of the code that made it, in place of a hand
    list of versions: {"code_version": code_version(entry), "libraries": {distribution: installed
    version} of the third-party distributions its code imports}. Derived once per process."""
    record = _cached_provenance(entry, package)
    return {"code_version": record["code_version"], "libraries": dict(record["libraries"])}
