"""Watches a table's run folders while workers train them: live MLflow logging and progress.

Workers write `config.yaml` when a run starts and `metrics.json` (atomically) after every epoch.
A thread of the stage process polls those files, so metrics reach MLflow within one poll of being
written, with the runs' true start and end times (the files' times), and only this process writes
the store. Without a terminal it prints one line per finished run; on a terminal it keeps an
overall "runs" bar above the workers' per-run bars.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from curriculab.engine.records import has_ended, is_done, read_timing

POLL_S = 0.5


@dataclass
class _Run:
    spec: object
    dir: Path
    todo: bool  # to be trained by this stage (else: ended before it started: finished or diverged)
    child: str | None = None
    rows: int = 0  # epoch rows logged
    mtime: int = 0
    finished: bool = False
    record: dict = field(default_factory=dict)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class Watcher:
    """Poll `runs` (RunSpecs, with their folders under `workdir`) until stopped."""

    def __init__(self, table_id: str, runs, workdir: Path, todo: set[str], log=None, checksum=None,
                 metric: str = "test_acc", terminal: bool | None = None, out=None):
        self.table_id, self.log, self.metric = table_id, log, metric
        self.checksum = checksum or (lambda run: None)
        self.runs = [_Run(r, r.dir(workdir), r.run_id in todo) for r in runs]
        self.total, self.done = len(runs), len(runs) - len(todo)
        self.t0 = time.time()
        self.out = out or sys.stdout
        self.terminal = self.out.isatty() if terminal is None else terminal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="curriculab-live", daemon=True)
        self.error: BaseException | None = None
        self.bar = None
        if self.terminal and todo:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, desc=f"{table_id} runs", position=0, leave=False)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is None:
            self.poll()  # whatever finished since the last poll
        if self.log is not None:
            for r in self.runs:
                if r.child is not None and not r.finished:
                    self.log.kill_child(r.child)
        if self.bar is not None:
            self.bar.close()
        if self.error is not None and exc_type is None:
            raise self.error

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.poll()
            except BaseException as e:  # surfaced by __exit__; training goes on
                self.error = e
                return

    def poll(self) -> None:
        for r in self.runs:
            if not r.finished:
                self._poll_run(r)

    def _poll_run(self, r: _Run) -> None:
        cfg_file, metrics_file = r.dir / "config.yaml", r.dir / "metrics.json"
        if not metrics_file.is_file() and not (r.todo and cfg_file.is_file()):
            return
        if r.todo and (not cfg_file.is_file() or cfg_file.stat().st_mtime < self.t0 - 1):
            return  # not started by this stage yet
        mtime = metrics_file.stat().st_mtime_ns if metrics_file.is_file() else 0
        rec = _read(metrics_file) if mtime and mtime != r.mtime else r.record
        if rec is None:
            return
        r.mtime, r.record = mtime, rec
        done = has_ended(rec)  # finished, or diverged
        if not r.todo and (not done or (self.log is not None and self.log.logged(r.spec.run_id, rec.get(
                "data_checksum")))):
            r.finished = True  # ended earlier and already logged (or not ended: not ours)
            return
        if self.log is not None and r.child is None:
            start_ms = int(cfg_file.stat().st_mtime * 1000) if cfg_file.is_file() else int(self.t0 * 1000)
            r.child = self.log.start_child(r.spec, self.checksum(r.spec), start_ms, r.dir)
        hist = rec.get("history", [])
        if self.log is not None and len(hist) > r.rows:
            seconds = read_timing(r.dir, len(hist))[r.rows:]
            self.log.log_rows(r.child, hist[r.rows:], mtime // 1_000_000, seconds)
        r.rows = len(hist)
        if done:
            if self.log is not None:
                self.log.end_child(r.child, rec, r.dir, mtime // 1_000_000)
            r.finished = True
            if r.todo:
                self.done += 1
                self._report(r.spec, rec, sum(s or 0 for s in read_timing(r.dir, len(hist))))

    def _report(self, run, rec: dict, seconds: float) -> None:
        final = rec.get("final", {})
        metric = self.metric if self.metric in final else next((k for k in final if k.startswith("test_")), "")
        value = final.get(metric)
        shown = f"{metric} {value:.3f}" if isinstance(value, (int, float)) else rec.get("status", "")
        line = (f"{self.table_id} [{self.done}/{self.total}] {run.row} | {run.column} | seed {run.seed}: "
                f"{shown} ({seconds:.0f} s)")
        if self.bar is not None:
            self.bar.write(line)
            self.bar.update(1)
        else:
            print(line, file=self.out, flush=True)

    def cell_means(self) -> dict[str, float]:
        """Mean of the headline metric per (row, column) over the table's finished runs."""
        from curriculab.tracking import cell_key

        cells: dict[tuple[str, str], list[float]] = {}
        for r in self.runs:
            rec = r.record or _read(r.dir / "metrics.json") or {}
            v = rec.get("final", {}).get(self.metric) if is_done(rec) else None
            if isinstance(v, (int, float)):
                cells.setdefault((r.spec.row, r.spec.column), []).append(float(v))
        return {cell_key(self.metric, row, col): sum(v) / len(v) for (row, col), v in cells.items()}
