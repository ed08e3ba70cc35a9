"""MLflow as a user reads it: live children with true times, artifacts, dataset input and git tags; one
child per run id (restarts and reruns replace, a no-op stage logs nothing); a store created atomically."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from curriculab.cli import main
from curriculab.config import ConfigError, TrackingParams

TABLE = {"seeds": [0, 1], "run": {"model": {"name": "small_cnn", "width": 0.25}, "data": {"dataset": "digits",
         "subset_per_class": 20}, "train": {"epochs": 2, "batch_size": 32}},
         "columns": {"digits": {}}, "rows": {"baseline": {"methods": {"baseline": {}}}}}


def _project(workdir: Path, table=TABLE, workers: int = 1) -> Path:
    p = workdir / "params.yaml"
    p.write_text(yaml.safe_dump({"profile": "test", "prepare": {"datasets": ["digits", "syndigits"]},
                                 "executor": {"workers": workers}, "tables": {"baseline": table}}))
    return p


def _train(workdir: Path, *extra: str) -> int:
    return main(["--params", str(workdir / "params.yaml"), "--workdir", str(workdir), "train", "baseline", *extra])


def _client(workdir: Path):
    from curriculab.tracking import client

    return client(f"sqlite:///{workdir / 'mlflow.db'}")


def _runs(c, kind: str, deleted: bool = False):
    from mlflow.entities import ViewType

    exp = c.get_experiment_by_name("baseline")
    view = ViewType.ALL if deleted else ViewType.ACTIVE_ONLY
    return [r for r in c.search_runs([exp.experiment_id], run_view_type=view) if r.data.tags.get("kind") == kind]


def test_children_are_complete_and_logged_once_no_op_logs_nothing_rerun_replaces(workdir, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "my-exp")
    _project(workdir)
    t0 = time.time() * 1000
    assert _train(workdir) == 0
    c = _client(workdir)
    parents, children = _runs(c, "table"), _runs(c, "run")
    assert len(parents) == 1 and len(children) == 2
    assert any(k.startswith("test_acc/baseline/digits") for k in parents[0].data.metrics)  # headline cell mean
    child = children[0]
    assert child.info.status == "FINISHED" and t0 - 1000 <= child.info.start_time < child.info.end_time
    tags = child.data.tags
    assert tags["mlflow.parentRunId"] == parents[0].info.run_id and tags["dvc_exp_name"] == "my-exp"
    assert tags["git_commit"] and tags["git_dirty"] in ("true", "false", "unknown")
    assert {a.path for a in c.list_artifacts(child.info.run_id)} >= {"config.yaml", "metrics.json"}
    ds = child.inputs.dataset_inputs[0].dataset
    assert ds.name == "digits" and ds.digest == tags["data_checksum"][:36]
    hist = c.get_metric_history(child.info.run_id, "val_acc")
    assert [m.step for m in hist] == [1, 2] and all(m.timestamp > t0 - 1000 for m in hist)

    assert _train(workdir) == 0  # nothing to train: no new parent, no new child
    assert len(_runs(c, "table")) == 1 and len(_runs(c, "run")) == 2

    assert _train(workdir, "--rerun") == 0  # trained again: the new children replace the old ones
    now = _runs(c, "run")
    assert len(now) == 2 and not {r.info.run_id for r in now} & {r.info.run_id for r in children}
    assert len(_runs(c, "run", deleted=True)) == 4 and len(_runs(c, "table")) == 2

    from curriculab import fingerprint  # new code: new run ids; the old code's children are deleted

    monkeypatch.setattr(fingerprint, "code_fingerprint", lambda methods, root=None, modules=(): "new code")
    assert _train(workdir) == 0
    newest = _runs(c, "run")
    assert len(newest) == 2 and {r.data.tags["code_fingerprint"] for r in newest} == {"new code"}
    assert len(_runs(c, "run", deleted=True)) == 6


def test_a_restart_replaces_half_logged_children_and_ends_dead_parents(workdir, monkeypatch):
    from curriculab.tracking import TableLog

    _project(workdir)
    calls = []

    def dies(self, child, record, run_dir, end_ms):  # killed while logging the first run's end
        calls.append(child)
        raise KeyboardInterrupt

    monkeypatch.setattr(TableLog, "end_child", dies)
    assert _train(workdir) == 130
    monkeypatch.undo()
    c = _client(workdir)
    dead = c.create_run(_runs(c, "table")[0].info.experiment_id, tags={"kind": "table", "pid": "999999999",
                                                                        "host": os.uname().nodename})
    assert _train(workdir) == 0  # both runs finished training; their children are logged afresh
    children = _runs(c, "run")
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert calls[0] not in {r.info.run_id for r in children}
    assert c.get_run(dead.info.run_id).info.status == "KILLED"


def test_store_created_atomically_and_a_half_created_one_rebuilt(tmp_path, monkeypatch, capsys):
    from curriculab import tracking

    cfg = TrackingParams()
    real = tracking.client

    def killed(uri):
        real(uri).search_experiments(max_results=1)  # the schema is half written when the kill comes
        raise KeyboardInterrupt

    monkeypatch.setattr(tracking, "client", killed)
    with pytest.raises(KeyboardInterrupt):
        tracking.init_store(tmp_path, cfg)
    monkeypatch.undo()
    assert not (tmp_path / "mlflow.db").exists() and not list(tmp_path.iterdir())

    tracking.init_store(tmp_path, cfg)
    with sqlite3.connect(tmp_path / "mlflow.db") as con:  # as a kill between two migrations leaves it
        con.execute("drop table alembic_version")
    tracking.init_store(tmp_path, cfg)
    assert "rebuilding" in capsys.readouterr().err
    tracking.client(tracking.tracking_uri(tmp_path, cfg)).create_experiment("x")

    tracking.client(tracking.tracking_uri(tmp_path, cfg)).create_run("1")
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        con.execute("drop table alembic_version")
    with pytest.raises(ConfigError, match=r"holds 1 runs; back it up"):
        tracking.init_store(tmp_path, cfg)


def test_metrics_are_live_while_two_workers_train(workdir):
    table = {**TABLE, "run": {**TABLE["run"], "data": {"dataset": "digits"},
                              "train": {"epochs": 6, "batch_size": 8}}}
    _project(workdir, table, workers=2)
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "curriculab", "--params", str(workdir / "params.yaml"),
                             "--workdir", str(workdir), "train", "baseline"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    partial = None
    try:
        deadline = time.time() + 240
        while partial is None and proc.poll() is None and time.time() < deadline:
            time.sleep(0.3)
            if not (workdir / "mlflow.db").is_file():
                continue
            try:
                c = _client(workdir)
                for r in _runs(c, "run"):
                    n = len(c.get_metric_history(r.info.run_id, "val_acc"))
                    if r.info.status == "RUNNING" and 1 <= n < 6:
                        partial = n
            except Exception:  # the store or the experiment is not there yet
                continue
    finally:
        out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-2000:]
    assert partial is not None, out[-2000:]
    lines = [ln for ln in out.splitlines() if ln.startswith("baseline [")]
    assert len(lines) == 2 and "baseline | digits | seed" in lines[0] and "test_acc" in lines[0]
    assert "INFO" not in out


def test_a_moved_project_logs_artifacts_where_it_now_is(workdir, tmp_path_factory):
    import shutil

    _project(workdir)
    assert _train(workdir) == 0
    moved = tmp_path_factory.mktemp("elsewhere") / "project"
    shutil.move(str(workdir), moved)  # the whole project, its store included
    assert _train(moved, "--rerun") == 0
    c = _client(moved)
    exp = c.get_experiment_by_name("baseline")
    assert exp.artifact_location == (moved / "mlruns" / "baseline").as_uri()
    every = _runs(c, "run", deleted=True) + _runs(c, "table")
    assert every and all(r.info.artifact_uri.startswith(exp.artifact_location) for r in every)
    assert not workdir.exists()
    child = _runs(c, "run")[0]
    assert {a.path for a in c.list_artifacts(child.info.run_id)} >= {"config.yaml", "metrics.json"}


def test_an_unreachable_tracking_uri_is_one_clear_line_before_any_training(workdir, capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    p = _project(workdir)
    p.write_text(p.read_text() + f"tracking: {{uri: '{uri}'}}\n")
    t0 = time.time()
    assert _train(workdir) == 2
    err = capsys.readouterr().err
    assert time.time() - t0 < 60
    assert uri in err and "tracking.uri" in err and "mlflow server" in err
    assert not [d for d in workdir.glob("runs/*/*") if d.is_dir()]  # no run folder (only the logger's lock)


@pytest.fixture
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with a SQLite backend and proxied artifacts (as a remote worker needs)."""
    import socket
    import urllib.request

    root = tmp_path_factory.mktemp("server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}",
                             "--serve-artifacts", "--artifacts-destination", str(root / "artifacts")],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        yield uri, root / "artifacts"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_tracking_server_gets_every_run_and_artifact_once_through_its_proxy(workdir, mlflow_server, capsys):
    from curriculab.tracking import client

    uri, artifacts = mlflow_server
    p = _project(workdir, workers=2)
    p.write_text(p.read_text() + f"tracking: {{uri: '{uri}'}}\n")
    assert _train(workdir) == 0
    out = capsys.readouterr().out
    assert "View run" not in out and "View experiment" not in out  # MLflow's per-run URL lines stay quiet
    assert f"logged live to MLflow at {uri}" in out  # the server, not the project folder
    assert not (workdir / "mlflow.db").exists() and not (workdir / "mlruns").exists()
    c = client(uri)
    parents, children = _runs(c, "table"), _runs(c, "run")
    assert len(parents) == 1 and len(children) == 2
    assert len({r.data.tags["run_id"] for r in children}) == 2 and len(_runs(c, "run", deleted=True)) == 2
    for child in children:
        assert child.info.status == "FINISHED" and child.info.artifact_uri.startswith("mlflow-artifacts:")
        assert sorted(a.path for a in c.list_artifacts(child.info.run_id)) == ["config.yaml", "metrics.json"]
        assert [m.step for m in c.get_metric_history(child.info.run_id, "val_acc")] == [1, 2]
        assert "final.test_acc" in child.data.metrics and child.inputs.dataset_inputs
        assert len(list(artifacts.rglob(f"{child.info.run_id}/artifacts/*"))) == 2  # in the server's store, once
    assert _train(workdir) == 0 and len(_runs(c, "run", deleted=True)) == 2  # nothing new: nothing logged
