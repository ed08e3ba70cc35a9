"""MLflow: one experiment per table, a parent run per table execution, a child run per training run.

The store is SQLite (`mlflow.db` at the project root, absolute URI). `init_store` creates it once,
in the prepare stage, before anything fans out: concurrent first creation corrupts it. Runs are
logged by the stage process after training, so parallel workers never write to the database.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

from curriculab.config import TrackingParams
from curriculab.engine.records import is_done


def tracking_uri(workdir: Path, cfg: TrackingParams) -> str:
    return cfg.uri or f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def _mlflow(workdir: Path, cfg: TrackingParams):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(workdir, cfg))
    return mlflow


def init_store(workdir: Path, cfg: TrackingParams) -> None:
    """Create the database and its tables (idempotent). Call once before parallel work."""
    if cfg.enabled:
        _mlflow(workdir, cfg).search_experiments(max_results=1)


def git_commit(workdir: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=workdir, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return out


def log_table(workdir: Path, cfg: TrackingParams, table_id: str, profile: str, runs, records: list[dict],
              figures: list[Path] = ()) -> int:
    """Log a table execution; runs already in the experiment (same run id) are not logged twice."""
    if not cfg.enabled:
        return 0
    mlflow = _mlflow(workdir, cfg)
    from mlflow.entities import Metric, Param, RunTag

    exp = mlflow.set_experiment(table_id)
    client = mlflow.MlflowClient()
    logged = {r.data.tags.get("run_id") for r in client.search_runs([exp.experiment_id], max_results=50000)}
    todo = [(r, rec) for r, rec in zip(runs, records) if r.run_id not in logged and is_done(rec)]
    commit = git_commit(workdir)
    with mlflow.start_run(run_name=f"{table_id} ({profile})", tags={"table": table_id, "profile": profile,
                                                                     "git_commit": commit, "kind": "table"}):
        mlflow.log_param("runs", len(runs))
        for fig in figures:
            mlflow.log_artifact(str(fig), "figures")
        for run, rec in todo:
            cfg_ = run.config
            tags = {"table": table_id, "row": run.row, "column": run.column, "seed": str(run.seed),
                    "methods": ",".join(cfg_.methods), "dataset": cfg_.data.dataset, "arch": cfg_.model.name,
                    "run_id": run.run_id, "git_commit": commit, "profile": profile}
            with mlflow.start_run(run_name=f"{run.row} | {run.column} | seed {run.seed}", nested=True) as child:
                params = flatten(cfg_.model_dump(mode="json"))
                metrics = [Metric(k, float(v), 0, h["epoch"]) for h in rec["history"] for k, v in h.items()
                           if isinstance(v, (int, float)) and k != "epoch"]
                metrics += [Metric(f"final.{k}", float(v), 0, 0) for k, v in rec["final"].items()
                            if isinstance(v, (int, float))]
                for i in range(0, len(metrics), 1000):
                    client.log_batch(child.info.run_id, metrics=metrics[i:i + 1000],
                                     params=[Param(k, v[:6000]) for k, v in params.items()] if i == 0 else [],
                                     tags=[RunTag(k, v) for k, v in tags.items()] if i == 0 else [])
                mlflow.log_artifact(str(run.dir(workdir) / "metrics.json"))
                for name in rec.get("files", []):  # a runner's own outputs (e.g. the per-network table)
                    mlflow.log_artifact(str(run.dir(workdir) / name))
    return len(todo)


def log_evaluation(workdir: Path, cfg: TrackingParams, table_id: str, run_id: str, metrics: dict[str, float]) -> bool:
    """Add evaluate-stage metrics to a run's MLflow record (the child run tagged with its run id).

    False when tracking is off or the run has not been logged yet (the train stage logs it first)."""
    if not cfg.enabled or not metrics:
        return False
    mlflow = _mlflow(workdir, cfg)
    from mlflow.entities import Metric

    exp = mlflow.get_experiment_by_name(table_id)
    if exp is None:
        return False
    client = mlflow.MlflowClient()
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.run_id = '{run_id}'", max_results=1)
    if not found:
        return False
    client.log_batch(found[0].info.run_id, metrics=[Metric(f"evaluate.{k}", float(v), 0, 0)
                                                    for k, v in metrics.items()])
    return True
