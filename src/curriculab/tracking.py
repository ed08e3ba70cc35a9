"""MLflow: one experiment per table, a parent run per table execution that trains or logs something,
a child run per training run, logged live.

Only the stage process writes to the store (never several processes on one SQLite file): a watcher
thread (`curriculab.live`) reads each run's `config.yaml` and `metrics.json`, which the workers
write atomically every epoch, and logs what is new. A child is keyed by its run id: logging is
idempotent, a half-logged child (killed mid-logging) or a superseded one (the run was trained
again, e.g. `--rerun` or new data) is deleted (MLflow's soft delete: hidden from the default view,
restorable) before the new one is logged, and parents left RUNNING by a dead process are ended.

The store is SQLite (`mlflow.db` in the store root, see `curriculab.store`); `init_store` creates
it atomically and rebuilds a half-created one that holds no runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

from curriculab.config import ConfigError, TrackingParams


def tracking_uri(store: Path, cfg: TrackingParams) -> str:
    return cfg.uri or f"sqlite:///{Path(store).resolve() / 'mlflow.db'}"


def client(uri: str):
    """An MlflowClient for `uri`, with MLflow's and alembic's INFO lines silenced."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a "View run" line per run on a server
    from mlflow import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(uri)


def _forget(*uris: str) -> None:
    """Drop MLflow's in-process caches of a store (engines and stores are cached by URI) after its
    file was replaced, so the next client opens the new file."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    for uri in uris:
        engine = SqlAlchemyStore._engine_map.pop(uri, None)
        if engine is not None:
            engine.dispose()
    _tracking_store_registry._get_store_with_resolved_uri.cache_clear()


def _problem(uri: str) -> str | None:
    try:
        client(uri).search_experiments(max_results=1)
    except Exception as e:  # a half-migrated schema raises from SQLAlchemy or alembic
        return str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    return None


def _reachable(uri: str) -> None:
    """Fail in seconds, in one line, when the tracking server does not answer (MLflow's HTTP client
    otherwise retries for minutes before any training starts)."""
    from unittest import mock

    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    try:
        with mock.patch.dict(os.environ, quick):  # restored afterwards
            client(uri).search_experiments(max_results=1)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ConfigError(f"tracking.uri: the MLflow tracking server at {uri} does not answer ({first}); start it "
                          f"(`mlflow server --host 127.0.0.1 ...`, see README, Tracking), or fix or remove "
                          f"tracking.uri in params.yaml (or set tracking.enabled: false)") from None


def _count_runs(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return con.execute("select count(*) from runs").fetchone()[0]
    except sqlite3.Error:
        return 0


def init_store(store: Path, cfg: TrackingParams) -> None:
    """Create the SQLite store atomically (schema built in a temporary file, then renamed into place).

    A store left half-created (a kill during the first creation) is rebuilt when it holds no runs;
    one that holds runs stops with a one-line error that says what to do.
    """
    if not cfg.enabled:
        return
    uri = tracking_uri(store, cfg)
    if not uri.startswith("sqlite:///"):
        _reachable(uri)
        return
    db = Path(uri[len("sqlite:///"):])
    if db.is_file():
        _forget(uri)  # check the file as it is now
        problem = _problem(uri)
        if problem is None:
            return
        n = _count_runs(db)
        if n:
            raise ConfigError(f"{db}: the MLflow store cannot be opened ({problem}) and holds {n} runs; back it "
                              f"up, then run `mlflow db upgrade {uri}`, or move it aside to start a new one")
        print(f"{db}: half-created MLflow store without runs ({problem}); rebuilding it", file=sys.stderr)
        db.unlink()
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}.{uuid.uuid4().hex[:12]}.tmp")  # a new name: MLflow caches stores by URI
    try:
        client(f"sqlite:///{tmp}").search_experiments(max_results=1)
        _forget(f"sqlite:///{tmp}")
        os.replace(tmp, db)
    finally:
        tmp.unlink(missing_ok=True)
        _forget(uri)


def git_info(workdir: Path) -> dict[str, str]:
    """The commit of the checkout and whether its tracked files differ from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=workdir, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"git_commit": git("rev-parse", "HEAD"),
                "git_dirty": str(bool(git("status", "--porcelain", "--untracked-files=no"))).lower()}
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}


def context_tags(workdir: Path) -> dict[str, str]:
    """Tags every run carries: git state, and the DVC experiment when run by `dvc exp run`."""
    tags = git_info(workdir)
    for env, tag in (("DVC_EXP_NAME", "dvc_exp_name"), ("DVC_EXP_BASELINE_REV", "dvc_exp_baseline_rev")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return out


def _pid_alive(pid: str, host: str) -> bool:
    if host != socket.gethostname():
        return True  # cannot tell: leave it
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _relocate(uri: str, exp, location: str) -> None:
    """Point a moved or copied project's experiment, and its runs' artifact URIs, at the store's new
    place. MLflow keeps the absolute artifact path from creation and has no API to change it, so this
    edits our own SQLite store; a store elsewhere (a server) manages its artifacts itself."""
    old = exp.artifact_location
    if not uri.startswith("sqlite:///") or not old.startswith("file://") or not old.endswith("/mlruns/" + exp.name):
        return
    with contextlib.closing(sqlite3.connect(uri.removeprefix("sqlite:///"))) as db, db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                   (location, exp.experiment_id))
        db.execute("UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
                   "WHERE experiment_id = ? AND substr(artifact_uri, 1, ?) = ?",
                   (location, len(old) + 1, exp.experiment_id, len(old), old))


class TableLog:
    """The MLflow side of one table execution (used from one thread of the stage process)."""

    def __init__(self, store: Path, cfg: TrackingParams, table_id: str, profile: str, workdir: Path):
        from mlflow.entities import ViewType

        uri = tracking_uri(store, cfg)
        self.c = client(uri)
        self.table_id, self.profile, self.workdir = table_id, profile, Path(workdir)
        exp = self.c.get_experiment_by_name(table_id)
        # our SQLite store keeps artifacts beside it; a server (http://, a database) places them itself
        # (proxied with --serve-artifacts, so a worker on another machine can upload them)
        location = (Path(store).resolve() / "mlruns" / table_id).as_uri() if uri.startswith("sqlite:///") else None
        self.exp_id = exp.experiment_id if exp else self.c.create_experiment(table_id, artifact_location=location)
        if exp and location and exp.artifact_location != location:
            _relocate(uri, exp, location)
        self.tags = {"table": table_id, "profile": profile, **context_tags(self.workdir)}
        self.parent: str | None = None
        runs = self.c.search_runs([self.exp_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=50000)
        self.children: dict[str, list] = {}  # run id → its active children
        self.by_settings: dict[str, list] = {}  # settings hash → active children (any code version)
        for r in runs:
            if r.data.tags.get("kind") == "table":
                if r.info.status == "RUNNING" and not _pid_alive(r.data.tags.get("pid", ""),
                                                                  r.data.tags.get("host", "")):
                    self.c.set_terminated(r.info.run_id, "KILLED")  # left by a killed stage
            elif r.data.tags.get("run_id"):
                self.children.setdefault(r.data.tags["run_id"], []).append(r)
                self.by_settings.setdefault(r.data.tags.get("settings_hash", ""), []).append(r)

    def logged(self, run_id: str, checksum: str | None) -> bool:
        """A complete child of this run, trained on this data, is already in the store (FAILED: diverged)."""
        return any(r.info.status in ("FINISHED", "FAILED") and r.data.tags.get("data_checksum") == checksum
                   for r in self.children.get(run_id, []))

    def drop(self, run_id: str, settings_hash: str = "") -> None:
        """Delete the run's existing children: half-logged ones, ones it supersedes (trained again:
        `--rerun`, new data), and those of the same settings under older code (a new code fingerprint)."""
        old = self.children.pop(run_id, []) + (self.by_settings.pop(settings_hash, []) if settings_hash else [])
        for r in {r.info.run_id: r for r in old}.values():
            if r.info.lifecycle_stage == "active":
                self.c.delete_run(r.info.run_id)

    def _parent(self) -> str:
        if self.parent is None:  # created on the first child: a stage that logs nothing leaves no parent
            tags = {**self.tags, "kind": "table", "pid": str(os.getpid()), "host": socket.gethostname()}
            self.parent = self.c.create_run(self.exp_id, run_name=f"{self.table_id} ({self.profile})",
                                            tags=tags).info.run_id
        return self.parent

    def start_child(self, run, checksum: str | None, start_ms: int, run_dir: Path) -> str:
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag, Param

        from curriculab.config import stable_hash
        from curriculab.tables.spec import get_spec, run_code

        cfg = run.config
        settings = stable_hash(cfg.model_dump(mode="json"))
        self.drop(run.run_id, settings)
        tags = {**self.tags, "mlflow.parentRunId": self._parent(), "kind": "run", "row": run.row,
                "column": run.column, "seed": str(run.seed), "methods": ",".join(cfg.methods),
                "dataset": cfg.data.dataset, "arch": cfg.model.name, "run_id": run.run_id,
                "data_checksum": str(checksum), "settings_hash": settings,
                "code_fingerprint": run_code(cfg, get_spec(run.table).runner)}
        child = self.c.create_run(self.exp_id, start_time=start_ms, tags=tags,
                                  run_name=f"{run.row} | {run.column} | seed {run.seed}").info.run_id
        params = [Param(k, v[:6000]) for k, v in flatten(cfg.model_dump(mode="json")).items()]
        for i in range(0, len(params), 100):
            self.c.log_batch(child, params=params[i:i + 100])
        prepared = self.workdir / "data" / "prepared" / cfg.data.dataset
        with warnings.catch_warnings():  # "can be interpreted in multiple ways": a local folder either way
            warnings.simplefilter("ignore")
            source = resolve_dataset_source(str(prepared.resolve()))
        ds = MetaDataset(source, name=cfg.data.dataset, digest=str(checksum)[:36])  # MLflow keeps 36 chars
        self.c.log_inputs(child, [DatasetInput(ds._to_mlflow_entity(), [InputTag("mlflow.data.context", "train")])])
        if (run_dir / "config.yaml").is_file():
            self.c.log_artifact(child, str(run_dir / "config.yaml"))
        return child

    def log_rows(self, child: str, rows: list[dict], end_ms: int, seconds: list) -> None:
        """Epoch rows as metrics at step = epoch; each stamped back from `end_ms` by the durations of the
        epochs after it (`seconds`, from timing.json, one per row; None where unknown)."""
        from mlflow.entities import Metric

        metrics, t = [], end_ms
        for row, sec in zip(reversed(rows), reversed(seconds), strict=True):
            metrics += [Metric(k, float(v), t, int(row["epoch"])) for k, v in row.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"]
            t -= int(1000 * (sec or 0))
        for i in range(0, len(metrics), 1000):
            self.c.log_batch(child, metrics=metrics[i:i + 1000])

    def end_child(self, child: str, record: dict, run_dir: Path, end_ms: int) -> None:
        from mlflow.entities import Metric

        final = [Metric(f"final.{k}", float(v), end_ms, 0) for k, v in record.get("final", {}).items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if final:
            self.c.log_batch(child, metrics=final)
        self.c.log_artifact(child, str(run_dir / "metrics.json"))
        for name in record.get("files", []):  # a runner's own outputs (e.g. the per-network table)
            self.c.log_artifact(child, str(run_dir / name))
        status = "FINISHED" if record.get("status") == "done" else "FAILED"  # diverged
        self.c.set_terminated(child, status, end_time=end_ms)

    def kill_child(self, child: str) -> None:
        self.c.set_terminated(child, "KILLED")

    def end(self, cell_means: dict[str, float], n_runs: int, killed: bool) -> None:
        """End the parent (if one was created) with the table's headline cell means."""
        from mlflow.entities import Metric, Param

        if self.parent is None:
            return
        metrics = [Metric(k, float(v), 0, 0) for k, v in cell_means.items()]
        self.c.log_batch(self.parent, metrics=metrics, params=[Param("runs", str(n_runs))])
        self.c.set_terminated(self.parent, "KILLED" if killed else "FINISHED")


def cell_key(metric: str, row: str, column: str) -> str:
    """Parent metric name of a cell mean (MLflow names allow / but not every character)."""
    def clean(name: str) -> str:
        return "".join(ch if ch.isalnum() or ch in "_-. " else "_" for ch in name)

    return f"{metric}/{clean(row)}/{clean(column)}"


def log_figures(store: Path, cfg: TrackingParams, table_id: str, figures: list[Path]) -> bool:
    """Attach a table's figures to its latest parent run (none exists: nothing is created)."""
    if not cfg.enabled or not figures:
        return False
    uri = tracking_uri(store, cfg)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return False
    c = client(uri)
    exp = c.get_experiment_by_name(table_id)
    if exp is None:
        return False
    parents = c.search_runs([exp.experiment_id], filter_string="tags.kind = 'table'",
                            order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        return False
    for fig in figures:
        c.log_artifact(parents[0].info.run_id, str(fig), "figures")
    return True


def log_evaluation(store: Path, cfg: TrackingParams, table_id: str, run_id: str, metrics: dict[str, float]) -> bool:
    """Add evaluate-stage metrics to a run's MLflow record (its active child, tagged with its run id).

    False when tracking is off or the run has not been logged yet (the train stage logs it first)."""
    if not cfg.enabled or not metrics:
        return False
    uri = tracking_uri(store, cfg)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return False
    from mlflow.entities import Metric

    c = client(uri)
    exp = c.get_experiment_by_name(table_id)
    if exp is None:
        return False
    found = c.search_runs([exp.experiment_id], filter_string=f"tags.run_id = '{run_id}'", max_results=1,
                          order_by=["attributes.start_time DESC"])
    if not found:
        return False
    c.log_batch(found[0].info.run_id, metrics=[Metric(f"evaluate.{k}", float(v), 0, 0) for k, v in metrics.items()])
    return True
