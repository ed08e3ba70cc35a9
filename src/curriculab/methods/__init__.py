"""Method registry: every Method subclass with a `name` is a plug-in (registered when its class is defined)."""

from __future__ import annotations

from curriculab.config import ConfigError, validate
from curriculab.methods.base import METHODS, Method, MethodContext


def registry() -> dict[str, type[Method]]:
    """name → Method class, every module of this package imported."""
    return dict(METHODS.items())


def check_methods(methods: dict, path: str, run=None) -> None:
    """Validate the `methods` block of a run: known names, valid params, no two on one exclusive hook.

    With `run` (the resolved RunConfig), each method's `check_run(params, run, path)` also checks settings
    that need the whole run (e.g. a schedule against train.epochs).
    """
    claimed: dict[str, str] = {}
    for name, params in methods.items():
        cls = METHODS.get(name, f"{path}.{name}")
        validated = validate(cls.Params, params or {}, prefix=f"{path}.{name}")
        if run is not None:
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
    return {name: METHODS.get(name).Params.model_validate(params or {}).model_dump()
            for name, params in methods.items()}


def preflight(run, workdir) -> None:
    """Every method's `preflight` check for one resolved run (raises ConfigError)."""
    for name, params in run.methods.items():
        cls = METHODS.get(name)
        cls.preflight(cls.Params.model_validate(params), run, workdir)


def build_methods(methods: dict, ctx: MethodContext) -> list[Method]:
    """Instantiate the run's methods in the order listed."""
    out = []
    for name, params in methods.items():
        cls = METHODS.get(name)
        out.append(cls(cls.Params.model_validate(params or {}), ctx))
    return out


def validate_pretrain(params) -> None:
    """Each `pretrain.<method>` block is checked by that method's `PretrainParams`."""
    for name, block in params.pretrain.items():
        cls = METHODS.get(name, f"pretrain.{name}")
        if not cls.has_pretrain():
            raise ConfigError(f"pretrain.{name}: method {name!r} has no pretrain stage")
        validate(cls.PretrainParams, block, prefix=f"pretrain.{name}")


def run_pretrain(name: str, params, workdir) -> None:
    """The `pretrain` stage of method `name` with its `pretrain.<name>` block."""
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
