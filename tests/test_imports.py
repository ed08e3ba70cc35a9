"""The package's import graph (every import statement, those inside functions included) has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_names() -> dict[str, Path]:
    out = {}
    for p in (SRC / "curriculab").rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """module → the package modules it imports (a `from pkg import sub` names the submodule)."""
    mods = module_names()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[:len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            graph[name].update(t for t in targets if t in mods and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        colour[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if colour.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in colour and (c := visit(n)):
                return c
        stack.pop()
        colour[m] = 2
        return None

    for m in sorted(graph):
        if m not in colour and (c := visit(m)):
            return c
    return None


def test_graph_sees_imports_inside_functions():
    g = import_graph()
    assert "curriculab.engine.loop" in g["curriculab.executor"]  # imported inside `execute`


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_config_imports_nothing_from_the_package():
    assert import_graph()["curriculab.config"] == set()


def test_tasks_and_evaluations_stay_apart():
    g = import_graph()
    assert not any(m.startswith("curriculab.evaluate") for m in g["curriculab.engine.tasks"])
    assert "curriculab.methods.cbs" not in g["curriculab.evaluate.vae"]


def test_no_module_is_over_400_lines():
    """Issue 14's size rule: a module that grows past 400 lines is split by what it holds."""
    long = {name: n for name, path in module_names().items() if (n := len(path.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"


def imported_after(code: str) -> set[str]:
    """The top-level packages and curriculab modules in sys.modules after `code` runs in a fresh interpreter."""
    import json
    import subprocess
    import sys

    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=SRC.parent, check=True, capture_output=True,
                         text=True, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}).stdout
    names = json.loads(out.splitlines()[-1])
    return {n for n in names if n.startswith("curriculab.")} | {n.split(".")[0] for n in names}


def test_validating_params_imports_no_plotting_or_statistics_library():
    """`curriculab validate` checks a YAML file: matplotlib, pandas and scipy load only when they are used."""
    mods = imported_after("from curriculab.project import load_params; load_params('params.yaml')")
    assert "curriculab.tables.cbs" in mods  # the table plug-ins were loaded and checked
    heavy = mods & {"matplotlib", "pandas", "scipy", "PIL"}
    assert not heavy, sorted(heavy)


def test_validating_params_imports_no_torch():
    """Issue 12: validate reads settings only. Each plug-in's settings (its params schema, what it claims, where
    its implementation lives) are torch-free; the implementation is imported when a run is built."""
    for params in ("params.yaml", "profiles/paper.yaml"):
        mods = imported_after(f"from curriculab.project import load_params; load_params({params!r})")
        assert "curriculab.tables.cbs" in mods and "curriculab.methods.settings.cbs" in mods
        heavy = mods & {"torch", "torchvision", "sklearn"}
        assert not heavy, (params, sorted(heavy))


def test_a_model_or_method_lookup_imports_no_table_module():
    """A training worker resolves models and methods; the table plug-ins (and their libraries) stay out."""
    mods = imported_after("from curriculab.models import MODELS\nfrom curriculab.methods import registry\n"
                          "MODELS.names(); registry()")
    assert "curriculab.methods.cbs" in mods and "curriculab.models.resnets" in mods
    assert not {m for m in mods if m.startswith("curriculab.tables")} | (mods & {"matplotlib", "pandas"})
