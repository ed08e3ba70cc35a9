"""A project's params file loaded and checked against the registries: datasets, copies, methods, tables."""

from __future__ import annotations

from pathlib import Path

from curriculab.config import (
    ConfigError,
    Params,
    check_dotless,
    check_name,
    load_yaml,
    resolve_uses,
    table_key,
    validate,
)
from curriculab.data.copies import check_copies
from curriculab.data.sources import SOURCES
from curriculab.methods import validate_pretrain
from curriculab.tables.spec import TABLES, expand_table


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and fully validate a params file: datasets, copies, pretrain blocks, every table and every run."""
    params = validate(Params, resolve_uses(load_yaml(path)))
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
        if spec.evaluate is None:
            raise ConfigError(f"evaluate.{key}: table {spec.id!r} has no evaluate step")
        validate(spec.EvalParams, block, prefix=f"evaluate.{key}")
    return params
