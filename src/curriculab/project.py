"""A project's params file loaded and checked against the registries: datasets, copies, methods, tables."""

from __future__ import annotations

from pathlib import Path

from curriculab.config import (
    ConfigError,
    Params,
    check_dotless,
    check_name,
    table_key,
    validate,
)
from curriculab.data.copies import check_copies
from curriculab.data.sources import SOURCES
from curriculab.evaluate.settings.adversarial import check_adversarial, split_evaluate
from curriculab.methods import validate_pretrain
from curriculab.settings_file import check_finite, load_yaml, resolve_uses
from curriculab.tables.spec import TABLES, expand_table


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and fully validate a params file: datasets, copies, pretrain blocks, every table and every run."""
    raw = resolve_uses(load_yaml(path))
    check_finite(raw)
    params = validate(Params, raw)
    for i, name in enumerate(params.prepare.datasets):
        check_name("dataset", name, SOURCES, f"prepare.datasets.{i}")
    check_copies(params.prepare.copies)
    validate_pretrain(params)
    keys = {table_key(t): t for t in TABLES.names()}
    for key, table in params.tables.items():
        check_dotless(key, table)
        check_name("table", key, keys, f"tables.{key}")
        expand_table(TABLES.get(keys[key]), params)
    for key, block in params.evaluate.items():
        check_name("table", key, keys, f"evaluate.{key}")
        spec = TABLES.get(keys[key])
        block, adversarial = split_evaluate(block)  # an adversarial block attaches to any table
        if adversarial is not None:
            check_adversarial(adversarial, params, key)
        if spec.evaluate is None and (block or adversarial is None):
            raise ConfigError(f"evaluate.{key}: table {spec.id!r} has no evaluate step of its own; only an "
                              "`adversarial` block can be attached to it")
        if spec.evaluate is not None:
            validate(spec.EvalParams, block, prefix=f"evaluate.{key}")
    return params
