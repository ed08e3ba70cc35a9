"""Methods: checking a run's `methods` and `pretrain` blocks reads only the torch-free settings
(`curriculab.methods.settings`); building a run imports the Method classes (`curriculab.methods.base`), every
subclass with a `name` being a plug-in registered when its class is defined."""

from __future__ import annotations

from typing import TYPE_CHECKING

from curriculab.config import ConfigError, validate
from curriculab.methods.settings import EXCLUSIVE, METHOD_SETTINGS

if TYPE_CHECKING:
    from curriculab.methods.base import Method, MethodContext

__all__ = ["METHOD_SETTINGS", "build_methods", "check_methods", "preflight", "registry", "resolve_methods",
           "run_pretrain", "validate_pretrain"]


def registry() -> dict[str, type[Method]]:
    """name → Method class, every module of this package imported."""
    from curriculab.methods.base import METHODS

    return dict(METHODS.items())


def check_methods(methods: dict, path: str, run=None) -> None:
    """Validate the `methods` block of a run: known names, valid params, no two on one exclusive hook.

    With `run` (the resolved RunConfig), each method's params' `check_run(run, path)` also checks settings
    that need the whole run (e.g. a schedule against train.epochs).
    """
    claimed: dict[str, str] = {}
    for name, params in methods.items():
        s = METHOD_SETTINGS.get(name, f"{path}.{name}")
        validated = validate(s.Params, params or {}, prefix=f"{path}.{name}")
        if run is not None and hasattr(validated, "check_run"):
            validated.check_run(run, f"{path}.{name}")
        for hook in EXCLUSIVE:
            if hook in s.hooks:
                if hook in claimed:
                    raise ConfigError(
                        f"{path}: methods {claimed[hook]!r} and {name!r} both define the {hook} hook; "
                        "they cannot be combined in one run"
                    )
                claimed[hook] = name


def resolve_methods(methods: dict) -> dict[str, dict]:
    """Each method's params with every default filled in, so the run id hashes what the run really uses."""
    return {name: METHOD_SETTINGS.get(name).Params.model_validate(params or {}).model_dump()
            for name, params in methods.items()}


def preflight(run, workdir) -> None:
    """Every method's `preflight` check for one resolved run (raises ConfigError)."""
    from curriculab.methods.base import METHODS

    for name, params in run.methods.items():
        cls = METHODS.get(name)
        cls.preflight(cls.Params.model_validate(params), run, workdir)


def build_methods(methods: dict, ctx: MethodContext) -> list[Method]:
    """Instantiate the run's methods in the order listed."""
    from curriculab.methods.base import METHODS

    out = []
    for name, params in methods.items():
        cls = METHODS.get(name)
        out.append(cls(cls.Params.model_validate(params or {}), ctx))
    return out


def validate_pretrain(params) -> None:
    """Each `pretrain.<method>` block is checked by that method's `PretrainParams`."""
    for name, block in params.pretrain.items():
        s = METHOD_SETTINGS.get(name, f"pretrain.{name}")
        if s.PretrainParams is None:
            raise ConfigError(f"pretrain.{name}: method {name!r} has no pretrain stage")
        validate(s.PretrainParams, block, prefix=f"pretrain.{name}")


def run_pretrain(name: str, params, workdir) -> None:
    """The `pretrain` stage of method `name` with its `pretrain.<name>` block."""
    from curriculab.methods.base import METHODS

    cls = METHODS.get(name, f"pretrain.{name}")
    if not cls.has_pretrain():
        raise ConfigError(f"pretrain.{name}: method {name!r} has no pretrain stage")
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(params.executor.threads)  # as training runs: the same bytes whatever the machine's cores
    try:
        cls.pretrain(cls.PretrainParams.model_validate(params.pretrain[name]), params, workdir)
    finally:
        torch.set_num_threads(before)
