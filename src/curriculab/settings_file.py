"""Reading a settings file: YAML 1.2 numbers, finite values only, and `use:` blocks expanded.

Part of settings parsing (with `config` and `project`): it yields the raw mapping that `project`
validates against the schema in `config`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from curriculab.config import ConfigError, deep_merge, suggest


class _Loader(yaml.SafeLoader):
    """PyYAML with YAML 1.2 floats, so `5e-4` is a number as it is for DVC."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing or malformed file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such settings file; pass an existing params.yaml or a file from profiles/")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; restore the embedded default (`git checkout {path.name}`) "
                          "or copy a profile over it (`curriculab use-profile paper`)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def check_finite(data: Any, path: str = "") -> None:
    """No setting may be NaN or infinite (`.inf`, `.nan` in YAML): the first one found is a ConfigError."""
    if isinstance(data, float) and not math.isfinite(data):
        raise ConfigError(f"{path or '(top level)'}: expected a finite number, got {data!r}")
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        check_finite(v, f"{path}.{k}" if path else str(k))


USE = "use"


def resolve_uses(data: dict) -> dict:
    """Expand every `use: <name>` (or a list of names) outside `defaults:` into that named block of
    `defaults:`, deep-merged under the mapping's own keys (its keys win). Blocks may `use` others.

    This replaces YAML anchors: every key stays addressable by `dvc exp run -S`, and DVC tracks
    `defaults` as a param of the stages that read it.
    """
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError("defaults: expected a mapping of named blocks")
    done: dict[str, dict] = {}

    def block(name: Any, path: str, stack: tuple[str, ...]) -> dict:
        if not isinstance(name, str):
            raise ConfigError(f"{path}: expected the name of a block under defaults, got {name!r}")
        if name not in defaults:
            raise ConfigError(f"{path}: no block {name!r} under defaults{suggest(name, defaults)}")
        if name in stack:
            raise ConfigError(f"defaults.{name}: `use` cycle " + " → ".join((*stack, name)))
        if not isinstance(defaults[name], dict):
            raise ConfigError(f"defaults.{name}: a block that tables `use` must be a mapping")
        if name not in done:
            done[name] = walk(defaults[name], f"defaults.{name}", (*stack, name))
        return done[name]

    def walk(node: Any, path: str, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(v, f"{path}.{i}", stack) for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        own = {k: walk(v, f"{path}.{k}", stack) for k, v in node.items() if k != USE}
        if USE not in node:
            return own
        names = node[USE] if isinstance(node[USE], list) else [node[USE]]
        base: dict = {}
        for name in names:
            base = deep_merge(base, block(name, f"{path}.{USE}", stack))
        return deep_merge(base, own)

    return {k: v if k == "defaults" else walk(v, str(k), ()) for k, v in data.items()}
