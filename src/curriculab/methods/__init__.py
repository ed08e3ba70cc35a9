"""Method registry: every module in this package that defines a Method subclass with a name is a plug-in."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from curriculab.config import ConfigError, check_name, validate
from curriculab.methods.base import Method, MethodContext


@cache
def registry() -> dict[str, type[Method]]:
    """name → Method class, found by importing every module of this package."""
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "base":
            importlib.import_module(f"{__name__}.{mod.name}")
    found: dict[str, type[Method]] = {}

    def walk(cls: type[Method]) -> None:
        for sub in cls.__subclasses__():
            if sub.name:
                found[sub.name] = sub
            walk(sub)

    walk(Method)
    return found


def check_methods(methods: dict, path: str, run=None) -> None:
    """Validate the `methods` block of a run: known names, valid params, no two on one exclusive hook.

    With `run` (the resolved RunConfig), a method's optional classmethod `check_run(params, run, path)`
    also checks settings that need the whole run (e.g. a schedule against train.epochs).
    """
    reg = registry()
    claimed: dict[str, str] = {}
    for name, params in methods.items():
        check_name("method", name, reg, f"{path}.{name}")
        cls = reg[name]
        validated = validate(cls.Params, params or {}, prefix=f"{path}.{name}")
        if run is not None and hasattr(cls, "check_run"):
            cls.check_run(validated, run, f"{path}.{name}")
        for hook in Method.EXCLUSIVE:
            if cls.overrides(hook):
                if hook in claimed:
                    raise ConfigError(
                        f"{path}: methods {claimed[hook]!r} and {name!r} both define the {hook} hook; "
                        "they cannot be combined in one run"
                    )
                claimed[hook] = name


def resolve_methods(methods: dict) -> dict[str, dict]:
    """Each method's params with every default filled in, so the run id hashes what the run really uses."""
    reg = registry()
    return {name: reg[name].Params.model_validate(params or {}).model_dump() for name, params in methods.items()}


def preflight(run, workdir) -> None:
    """Every method's `preflight` check for one resolved run (raises ConfigError)."""
    reg = registry()
    for name, params in run.methods.items():
        reg[name].preflight(reg[name].Params.model_validate(params), run, workdir)


def build_methods(methods: dict, ctx: MethodContext) -> list[Method]:
    """Instantiate the run's methods in the order listed."""
    reg = registry()
    out = []
    for name, params in methods.items():
        cls = reg[name]
        out.append(cls(cls.Params.model_validate(params or {}), ctx))
    return out


def validate_pretrain(params) -> None:
    """Each `pretrain.<method>` block is checked by that method's `PretrainParams`."""
    reg = registry()
    for name, block in params.pretrain.items():
        check_name("method", name, reg, f"pretrain.{name}")
        model = getattr(reg[name], "PretrainParams", None)
        if model is None:
            raise ConfigError(f"pretrain.{name}: method {name!r} has no pretrain stage")
        validate(model, block, prefix=f"pretrain.{name}")
