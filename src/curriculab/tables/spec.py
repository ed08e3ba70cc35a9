"""Table specs: which runs make a table, what it reports, the paper's numbers and the claims it tests.

A table's params block (`tables.<key>` in params.yaml) gives seeds, the common `run` settings, and
`rows` and `columns`, each a partial run config. Each (row, column, seed) deep-merges
run ← column ← row, is validated into a RunConfig, and is hashed into the run id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from curriculab.config import (
    ConfigError,
    Params,
    RunConfig,
    Strict,
    check_name,
    deep_merge,
    identity,
    stable_hash,
    suggest,
    table_key,
    validate,
)
from curriculab.registry import Registry, module_of


@dataclass(frozen=True)
class Claim:
    """The paper's claim that row `better` beats row `worse` on the table's metric, in every column where
    the paper made it."""

    text: str
    better: str
    worse: str
    metric: str | None = None  # default: the table's first metric
    columns: tuple[str, ...] = ()  # the paper's columns where it was made (none: all); a table's column
    # counts as its `options.analogues` entry (the paper column it stands in for) where it has one


FULL_SPLIT = ("Paper profile: runs with `data.train_split: train+val` train on the whole official training split, "
              "the validation holdout included, as the paper does; their `val_*` metrics are then on items they "
              "trained on, so a number selected on them (`*_at_best_val`) is not a held-out selection there: the "
              "final epoch (`test_acc`) is the paper's number.")
QUOTED = "(quoted from the paper, not run here)"  # marks a paper row or column no run of curriculab stands for


def paper_key(metrics: list[str], column: str, metric: str) -> str:
    """Where a table's `paper` holds the number for (column, metric): the column for the headline metric,
    "<column> <metric>" for the others."""
    return column if metric == metrics[0] else f"{column} {metric}"


class Section(str):
    """A section's markdown that also carries the claims it tests ({claim, column, verdict} dicts): they join
    the table's claims in metrics.json and in the index's verdict counts."""

    claims: list[dict]

    def __new__(cls, text: str, claims: list[dict] = ()):
        self = super().__new__(cls, text)
        self.claims = list(claims)
        return self


@dataclass
class TableSpec:
    id: str  # as SPEC.md names it, e.g. "cbs.t1"
    title: str
    source: str  # paper key: cbs, dp, spl, ps, thesis, harness
    metrics: list[str]  # keys of a run's `final` record, first one is the headline
    paper: dict[str, dict[str, float]] = field(default_factory=dict)  # row → paper_key(column, metric) → value
    paper_note: str = ""  # where the paper's numbers come from, what they measure
    claims: list[Claim] = field(default_factory=list)
    higher_is_better: bool = True
    percent: bool = True  # show metrics ×100
    OptionsParams: type[BaseModel] = Strict  # validates `tables.<key>.options`
    # the evaluate stage, "module:function" of (RunSpec, run record, EvalParams, workdir) → metrics: imported when the
    # stage runs; its cached results are keyed by that module's code
    evaluate: str | None = None
    EvalParams: type[BaseModel] = Strict  # validates `evaluate.<key>`
    figures: list[Callable[..., list[Path]]] = field(default_factory=list)  # (TableResult, out_dir) → written files
    sections: list[Callable[..., str]] = field(default_factory=list)  # (TableResult) → extra markdown (e.g. a
    # claim measured on per-epoch curves rather than on the table's metric; a Section to count its verdicts)
    notes: str = ""  # shown under the table: deviations from the paper, options used
    # the paper profile's settings that the paper does not state: dotted path in a run's resolved settings
    # (or `evaluate.<...>` in the table's evaluate block) → what was chosen and why
    chosen_here: dict[str, str] = field(default_factory=dict)
    runner: str | None = None  # "module:function" that trains a run instead of `fit` (same signature and record)
    RunnerParams: type[BaseModel] | None = None  # validates `run.runner`; an optional `check_run(run, path)`

    @property
    def key(self) -> str:
        return table_key(self.id)

    @property
    def all_notes(self) -> str:
        """The notes, then the `chosen_here` list."""
        if not self.chosen_here:
            return self.notes
        chosen = "".join(f"\n- `{path}`: {why}" for path, why in self.chosen_here.items())
        return (self.notes + "\n\n" if self.notes else "") \
            + f"Chosen here (settings of the paper profile that the paper does not state):\n{chosen}"


@dataclass(frozen=True)
class RunSpec:
    """One run of a table: labels, the fully resolved settings, and its id (hash of settings and code)."""

    table: str
    row: str
    column: str
    seed: int
    config: RunConfig
    run_id: str

    def dir(self, workdir: Path) -> Path:
        return Path(workdir) / "runs" / table_key(self.table) / self.run_id


TABLES: Registry[TableSpec] = Registry("table", ("curriculab.tables",))


def register_table(spec: TableSpec) -> TableSpec:
    return TABLES.register(spec.id, spec)


def table_ids() -> list[str]:
    return TABLES.names()


def get_spec(table_id: str) -> TableSpec:
    ids = {table_key(t): t for t in TABLES.names()}
    key = table_key(table_id)
    if key not in ids:  # name what the user typed, not its params key
        raise ConfigError(f"table: unknown table {table_id!r}{suggest(table_id, TABLES.names())}")
    return TABLES.get(ids[key])


def _source_path(key: str, fragments: list[tuple[str, dict]], loc: str) -> str:
    """Which of the merged fragments wrote the offending key: the path the user should edit."""
    parts = loc.split(".")
    for name, frag in reversed(fragments):
        node: Any = frag
        ok = True
        for p in parts:
            if isinstance(node, dict) and p in node:
                node = node[p]
            else:
                ok = False
                break
        if ok:
            return f"tables.{key}.{name}.{loc}"
    return f"tables.{key}.run.{loc}"


def resolve_run(spec: TableSpec, params: Params, row: str, column: str, seed: int) -> RunSpec:
    """Merge run ← column ← row ← cell, validate, and hash. Errors name the key path to edit."""
    from pydantic import ValidationError

    from curriculab.config import format_error
    from curriculab.data.sources import SOURCES
    from curriculab.engine.task_settings import TASKS
    from curriculab.methods import check_methods, resolve_methods
    from curriculab.models import check_model

    t = params.tables[spec.key]
    frags = [("run", t.run), (f"columns.{column}", t.columns[column]), (f"rows.{row}", t.rows[row]),
             (f"cells.{column}.{row}", t.cells.get(column, {}).get(row) or {})]
    merged = deep_merge(*(f for _, f in frags), {"seed": seed})
    try:
        cfg = RunConfig.model_validate(merged)
    except ValidationError as err:
        msg = format_error(err, RunConfig)
        loc, _, rest = msg.partition(": ")
        raise ConfigError(f"{_source_path(spec.key, frags, loc)}: {rest}") from None
    check_name("dataset", cfg.data.dataset, SOURCES, _source_path(spec.key, frags, "data.dataset"))
    if cfg.data.dataset not in params.prepare.datasets:
        raise ConfigError(f"{_source_path(spec.key, frags, 'data.dataset')}: dataset {cfg.data.dataset!r} is not "
                          f"in prepare.datasets, so prepare does not write it; add it there")
    TASKS.check(cfg.task, _source_path(spec.key, frags, "task"))
    check_model(cfg.model.name, cfg.model.kwargs, _source_path(spec.key, frags, "model"))
    check_methods(cfg.methods, _source_path(spec.key, frags, "methods"), run=cfg)
    _check_runner(spec, cfg, _source_path(spec.key, frags, "runner"))
    cfg.methods = resolve_methods(cfg.methods)
    return RunSpec(spec.id, row, column, seed, cfg, run_id(cfg, spec.runner))


def run_id(cfg: RunConfig, runner: str | None = None) -> str:
    """Hash of the resolved settings and of the code the run executes (`run_code`)."""
    return stable_hash({"config": identity(cfg), "code": run_code(cfg, runner)})


def run_code(cfg: RunConfig, runner: str | None = None) -> str:
    """Fingerprint of the code a run executes (curriculab.fingerprint): its methods, its task's module (the
    VAE's is outside the engine) and, for a table with its own runner ("module:function"), the runner's."""
    from curriculab.engine.task_settings import TASKS
    from curriculab.fingerprint import code_fingerprint

    modules = (TASKS.get(cfg.task).module,) + ((module_of(runner),) if runner is not None else ())
    return code_fingerprint(cfg.methods, modules=modules)


def _check_runner(spec: TableSpec, cfg: RunConfig, path: str) -> None:
    """A table's own runner validates `run.runner` (defaults filled in, so the run id hashes them)."""
    if spec.RunnerParams is None:
        if cfg.runner:
            raise ConfigError(f"{path}: table {spec.id!r} trains with fit and reads no runner settings; remove it")
        return
    p = validate(spec.RunnerParams, cfg.runner, prefix=path)
    if hasattr(p, "check_run"):
        p.check_run(cfg, path.rpartition(".runner")[0])
    cfg.runner = p.model_dump(mode="json")


def expand_table(spec: TableSpec, params: Params) -> list[RunSpec]:
    """Every run of a table, rows × columns × seeds (the cells it has: `cells`), in that order."""
    t = params.tables[spec.key]
    validate(spec.OptionsParams, t.options, prefix=f"tables.{spec.key}.options")
    for col, rows in t.cells.items():
        if col not in t.columns:
            raise ConfigError(f"tables.{spec.key}.cells.{col}: not a column (columns: {', '.join(t.columns)})")
        for row in rows:
            if row not in t.rows:
                raise ConfigError(f"tables.{spec.key}.cells.{col}.{row}: not a row (rows: {', '.join(t.rows)})")
    return [resolve_run(spec, params, r, c, s) for r in t.rows for c in t.columns if runs_cell(t, r, c)
            for s in t.seeds]


def runs_cell(table, row: str, column: str) -> bool:
    """Whether a table (TableParams) has the cell: every row of a column that `cells` does not list."""
    return column not in table.cells or row in table.cells[column]


def options(spec: TableSpec, params: Params) -> BaseModel:
    return spec.OptionsParams.model_validate(params.tables[spec.key].options)
