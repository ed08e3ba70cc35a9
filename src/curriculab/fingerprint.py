"""Code fingerprints: a digest of the source a run executes, hashed into its run id.

A run executes the engine, data and model packages, its methods' modules and, for a table with its own
runner, the runner's module (plus whatever `curriculab` modules those import, transitively). Each file is
parsed and dumped without comments and docstrings, so editing those retrains nothing, while any change to
code a run executes gives it a new run id. Settings parsing (config, project, the registries) is
excluded: what it produces is hashed as the resolved settings.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import sys
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent  # src/curriculab, where the modules are imported from
PACKAGE = HERE  # where the fingerprinted source is read (a copy, in tests)
SHARED = ("engine", "data", "models")  # packages every run executes
EXCLUDED = {"config", "settings_file", "project", "registry", "methods/__init__", "__init__", "__main__"}
# where results are stored and logged, not how they are computed: outside an evaluate step's fingerprint
BOOKKEEPING = {"executor", "tracking", "live", "store", "runlock", "fingerprint"}


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def _parsed(path: Path) -> tuple[str, frozenset[str]]:
    """(digest of the comment- and docstring-free AST, curriculab modules it imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    imports = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imports.add(node.module)
            imports |= {f"{node.module}.{a.name}" for a in node.names}
    dump = ast.dump(_strip_docstrings(tree), annotate_fields=False, include_attributes=False)
    return hashlib.sha256(dump.encode()).hexdigest(), frozenset(i for i in imports if i.startswith("curriculab."))


def _file(module: str, root: Path) -> Path | None:
    """curriculab.a.b → root/a/b.py (or its package's __init__.py); None for names that are not modules."""
    rel = module.split(".")[1:]
    for cand in (root.joinpath(*rel).with_suffix(".py"), root.joinpath(*rel, "__init__.py")):
        if rel and cand.is_file():
            return cand
    return None


def _rel(path: Path, root: Path) -> str:
    """The file's name in the fingerprint: relative to the package, absolute for a method defined elsewhere."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _closure(seeds: list[Path], root: Path, excluded: set[str] = EXCLUDED) -> list[Path]:
    seen: set[Path] = set()
    todo = list(seeds)
    while todo:
        path = todo.pop()
        if path in seen or _rel(path, root).removesuffix(".py") in excluded:
            continue
        seen.add(path)
        todo += [f for m in _parsed(path)[1] if (f := _file(m, root)) is not None]
    return sorted(seen)


def method_modules(method_names, root: Path) -> list[Path]:
    """The source files of the methods' classes (their modules in `root`), found from the methods' settings
    without importing the classes."""
    from curriculab.methods import METHOD_SETTINGS

    out = []
    for name in method_names:
        module = METHOD_SETTINGS.get(name).module
        loaded = sys.modules.get(module)
        path = Path(loaded.__file__ if loaded is not None else importlib.util.find_spec(module).origin).resolve()
        out.append(root / path.relative_to(HERE) if path.is_relative_to(HERE) else path)
    return out


def _digest(paths: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{_rel(path, root)}:{_parsed(path)[0]}\n".encode())
    return digest.hexdigest()[:16]


def _seeds(methods, modules, root: Path) -> list[Path]:
    """The shared packages' files, the methods' modules and the extra `modules` (e.g. a table's runner)."""
    return [f for pkg in SHARED for f in sorted((root / pkg).glob("*.py"))] + method_modules(methods, root) \
        + [f for m in modules if (f := _file(m, root)) is not None]


@cache
def _fingerprint(methods: tuple[str, ...], modules: tuple[str, ...], root: Path) -> str:
    return _digest(_closure(_seeds(methods, modules, root), root), root)


def code_fingerprint(methods, root: Path | None = None, modules=()) -> str:
    """Digest of the code a run with these methods executes, plus `modules` (a table's runner; order of
    either does not matter)."""
    return _fingerprint(tuple(sorted(methods)), tuple(sorted(modules)), Path(root or PACKAGE).resolve())


def _module_closure(module: str, root: Path) -> list[Path]:
    return _closure([_file(module, root)], root, EXCLUDED | BOOKKEEPING)


@cache
def _module_fingerprint(module: str, root: Path) -> str:
    return _digest(_module_closure(module, root), root)


def module_fingerprint(module: str, root: Path | None = None) -> str:
    """Digest of one module and the curriculab modules it imports, transitively (an evaluate step's code:
    its cached results are keyed by it, so a change to that code evaluates again)."""
    return _module_fingerprint(module, Path(root or PACKAGE).resolve())


def module_files(module: str, root: Path | None = None) -> list[str]:
    """The files behind module_fingerprint, relative to the package."""
    root = Path(root or PACKAGE).resolve()
    return [_rel(p, root) for p in _module_closure(module, root)]


def code_files(methods=None, root: Path | None = None, modules=()) -> list[str]:
    """The files behind a fingerprint, relative to the package (all methods when None)."""
    from curriculab.methods import METHOD_SETTINGS

    root = Path(root or PACKAGE).resolve()
    names = METHOD_SETTINGS.names() if methods is None else sorted(methods)
    return [_rel(p, root) for p in _closure(_seeds(names, modules, root), root) if p.is_relative_to(root)]


def is_cached(target: Path, key: dict) -> bool:
    """Whether the result file `target` was computed from `key` (an `evaluation_key`)."""
    return target.is_file() and json.loads(target.read_text()).get("_key") == key


def write_cached(target: Path, key: dict, metrics: dict) -> None:
    """Write an evaluate step's result with the key it was computed from (read back by `is_cached`)."""
    from curriculab.data.prepared import atomic_write_json

    atomic_write_json(target, {**metrics, "_key": key})


def evaluation_key(options: dict, checksum: str | None, module: str, **extra) -> dict:
    """What a cached evaluate result was computed from: its options, the data, anything in `extra`, and the
    code of the evaluate step's module (so a change to that code evaluates again)."""
    return {"options": options, "checksum": checksum, **extra, "code": module_fingerprint(module)}
