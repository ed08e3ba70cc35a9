"""A table's runs and their records, read as data frames for the report, its claims and its figures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from curriculab.config import Params
from curriculab.engine.records import is_done
from curriculab.tables.spec import RunSpec, TableSpec, expand_table, get_spec, options

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class TableResult:
    """A table's runs and whatever records exist for them (missing runs are reported, not hidden)."""

    spec: TableSpec
    params: Params
    runs: list[RunSpec]
    records: list[dict | None]
    workdir: Path

    @property
    def options(self):
        return options(self.spec, self.params)

    def finals(self) -> pd.DataFrame:
        """One row per finished run: labels + final metrics (+ evaluate-stage metrics)."""
        import pandas as pd

        rows = []
        for run, rec in zip(self.runs, self.records):
            if not is_done(rec):
                continue
            row = {"row": run.row, "column": run.column, "seed": run.seed, "run_id": run.run_id, **rec["final"]}
            ev = self.workdir / "runs" / "eval" / self.spec.key
            for path in (ev / f"{run.run_id}.json", ev / "adversarial" / f"{run.run_id}.json"):
                if path.is_file():
                    row.update({k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")})
            rows.append(row)
        return pd.DataFrame(rows)

    def history(self) -> pd.DataFrame:
        """One row per (finished run, epoch): labels + that epoch's metrics."""
        import pandas as pd

        rows = [{"row": r.row, "column": r.column, "seed": r.seed, **h}
                for r, rec in zip(self.runs, self.records) if is_done(rec)
                for h in rec["history"]]
        return pd.DataFrame(rows)

    def selected(self) -> pd.DataFrame:
        """One row per finished run: labels + its history row at the validation-selected epoch
        (`final.best_val_epoch`); runs that record none are left out."""
        import pandas as pd

        rows = []
        for r, rec in zip(self.runs, self.records):
            best = rec["final"].get("best_val_epoch") if is_done(rec) else None
            at = [h for h in rec["history"] if h.get("epoch") == best] if best is not None else []
            if at:
                rows.append({"row": r.row, "column": r.column, "seed": r.seed, **at[0]})
        return pd.DataFrame(rows)

    def val_curves(self) -> dict[tuple[str, str], tuple[list[float], bool]]:
        """(row, column) → its validation curve (the task's primary `val_` metric per epoch, mean over the
        seeds that reached that epoch) and whether higher is better."""
        import pandas as pd

        from curriculab.engine.task_settings import TASKS

        rows = []
        for r, rec in zip(self.runs, self.records):
            if not is_done(rec):
                continue
            task = TASKS.get(r.config.task)
            key = f"val_{task.primary}"
            rows += [{"row": r.row, "column": r.column, "epoch": h["epoch"], "v": h[key],
                      "hib": task.higher_is_better} for h in rec["history"] if key in h and "epoch" in h]
        if not rows:
            return {}
        g = pd.DataFrame(rows).groupby(["row", "column", "epoch"]).agg(v=("v", "mean"), hib=("hib", "first"))
        return {(row, col): (list(d["v"]), bool(d["hib"].iloc[0]))
                for (row, col), d in g.reset_index().sort_values("epoch").groupby(["row", "column"])}

    def diverged(self) -> list[tuple[RunSpec, dict]]:
        """Runs stopped because their loss became non-finite: shown as such, never in a mean."""
        return [(r, rec) for r, rec in zip(self.runs, self.records) if rec and rec.get("status") == "diverged"]

    def artifacts(self) -> list[tuple[RunSpec, list[dict]]]:
        return [(r, rec["artifacts"]) for r, rec in zip(self.runs, self.records) if is_done(rec)]


def load_result(table_id: str, params: Params, workdir: Path) -> TableResult:
    from curriculab.executor import read_record  # it imports torch, which checking settings does not need

    spec = get_spec(table_id)
    runs = expand_table(spec, params)
    return TableResult(spec, params, runs, [read_record(r.dir(workdir)) for r in runs], Path(workdir))
