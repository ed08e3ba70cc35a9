"""Executes a table's runs: skips finished ones, resumes interrupted ones; sequential, local-parallel or Ray."""

from __future__ import annotations

import os
import shutil
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch
import yaml

from curriculab.config import ConfigError, ExecutorParams, RunsFailed
from curriculab.data.prepared import atomic_write_bytes, read_json, read_meta
from curriculab.engine.records import has_ended, is_done, write_record
from curriculab.runlock import RunLock, die_with_parent
from curriculab.store import link_tree
from curriculab.tables.spec import RunSpec


def read_record(run_dir: Path) -> dict | None:
    p = Path(run_dir) / "metrics.json"
    return read_json(p, "delete it: the run then resumes from its checkpoint") if p.is_file() else None


def current_checksum(run: RunSpec, workdir: Path) -> str:
    return read_meta(Path(workdir) / "data", run.config.data.dataset)["checksum"]


def _is_done(rec: dict | None, checksum: str) -> bool:
    return is_done(rec) and rec.get("data_checksum") == checksum


def is_finished(run: RunSpec, workdir: Path) -> bool:
    """Done, and trained on the data that is prepared now (same checksum)."""
    return _is_done(read_record(run.dir(workdir)), current_checksum(run, workdir))


def ended(run: RunSpec, workdir: Path) -> bool:
    """Nothing more to train on the data prepared now: finished, or diverged (engine.records.has_ended)."""
    rec = read_record(run.dir(workdir))
    return has_ended(rec) and rec.get("data_checksum") == current_checksum(run, workdir)


def run_finished(run: RunSpec, workdir: Path):
    """A test `finished(run_dir)`: done, on the data prepared now in `workdir` (for other folders of the run)."""
    checksum = current_checksum(run, workdir)
    return lambda run_dir: _is_done(read_record(run_dir), checksum)


BUSY = "busy"  # status of a run that another live process is training (its record is not returned)


def execute(run: RunSpec, workdir: Path, position: int = 0) -> dict:
    """Train one run unless it is finished or another process is training it; return its metrics record
    (`{"status": "busy", "holder": pid}` for a run held by another live process)."""
    d = run.dir(Path(workdir))
    with RunLock(d.parent / f"{d.name}.lock") as holder:
        if holder is not None:
            return {"run_id": run.run_id, "status": BUSY, "holder": holder}
        return _execute(run, Path(workdir), position)


def _execute(run: RunSpec, workdir: Path, position: int) -> dict:
    from curriculab.engine.loop import fit

    d = run.dir(workdir)
    checksum = current_checksum(run, workdir)
    rec = read_record(d)
    if _is_done(rec, checksum):
        return rec
    if rec and rec.get("data_checksum") != checksum:  # trained on other data: start again
        shutil.rmtree(d)
    if reuse_identical(run, workdir, checksum):
        return read_record(d)
    d.mkdir(parents=True, exist_ok=True)
    labels = {"table": run.table, "row": run.row, "column": run.column, "seed": run.seed, "run_id": run.run_id}
    atomic_write_bytes(d / "config.yaml", yaml.safe_dump(
        {"labels": labels, "data_checksum": checksum, "config": run.config.model_dump(mode="json")},
        sort_keys=False).encode())
    from curriculab.registry import load_object
    from curriculab.tables.spec import get_spec

    if run.config.train.ddp:  # torchrun's processes train it; rank 0 writes the record
        from curriculab.distributed import launch

        launch(run, d, workdir)
        return read_record(d)
    runner = get_spec(run.table).runner
    train = load_object(runner) if runner is not None else fit
    record = train(run.config, d, workdir, run_id=run.run_id, position=position, meta={"labels": labels,
                 "data_checksum": checksum})
    return record


def reuse_identical(run: RunSpec, workdir: Path, checksum: str) -> bool:
    """A run with the same id (the same resolved settings) finished in another table: copy it, labels
    rewritten, instead of training it again (e.g. thesis.t33 attacks the runs of thesis.t31)."""
    d = run.dir(workdir)
    if (d / "metrics.json").exists():
        return False
    for other in sorted(Path(workdir, "runs").glob(f"*/{run.run_id}")):
        rec = read_record(other)
        if other == d or not _is_done(rec, checksum) or not (other / "checkpoint.pt").is_file():
            continue
        labels = {"table": run.table, "row": run.row, "column": run.column, "seed": run.seed,
                  "run_id": run.run_id}
        tmp = d.with_name(d.name + ".copy")
        link_tree(other, tmp)  # hard links: a checkpoint is shared, not duplicated
        conf = yaml.safe_load((tmp / "config.yaml").read_text())
        atomic_write_bytes(tmp / "config.yaml", yaml.safe_dump({**conf, "labels": labels}, sort_keys=False).encode())
        write_record(tmp / "metrics.json", {**rec, "labels": labels, "reused_from": other.parent.name})
        shutil.rmtree(d, ignore_errors=True)
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(d)
        return True
    return False


_SLOT = 0  # this worker process's slot: its GPU (slot % devices) and its progress-bar line


def _worker_init(threads: int, slots) -> None:
    global _SLOT
    die_with_parent()  # a killed stage takes its workers with it
    torch.set_num_threads(threads)
    _SLOT = slots.get()


def worker_slot() -> int:
    """The slot of the worker process running this (0 in the stage process)."""
    return _SLOT


def worker_pool(workers: int, threads: int) -> ProcessPoolExecutor:
    """Spawned worker processes, each holding one slot 0..workers-1 for its whole life."""
    ctx = get_context("spawn")
    slots = ctx.Queue()
    for i in range(workers):
        slots.put(i)
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(threads, slots))


def _outcome(run: RunSpec, get) -> dict | BaseException:
    """get()'s record, or the exception it raised, whose traceback goes to stderr as it happens."""
    try:
        return get()
    except (ConfigError, OSError):  # settings or machine (a full disk): every run would fail; one line each
        raise
    except Exception as e:
        print(f"{_name(run)} failed:", file=sys.stderr)
        traceback.print_exception(e, file=sys.stderr)
        return e


def _records(runs: list[RunSpec], outcomes: list) -> list[dict]:
    """The records, or one line naming the first failed run (and how many more failed)."""
    failed = [(r, e) for r, e in zip(runs, outcomes, strict=True) if isinstance(e, BaseException)]
    if failed:
        (run, e), more = failed[0], f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        first = (str(e).strip().splitlines() or [""])[0]
        raise RunsFailed(f"{_name(run)}: {type(e).__name__}: {first}{more}; the other runs kept their results")
    return outcomes


def _sequential(runs: list[RunSpec], workdir: Path, threads: int) -> list[dict]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:  # each below the stage's overall bar
        return _records(runs, [_outcome(r, lambda r=r: execute(r, workdir, position=1)) for r in runs])
    finally:
        torch.set_num_threads(before)


def _execute_on(run: RunSpec, workdir: str, devices: int) -> dict:
    if devices:
        torch.cuda.set_device(_SLOT % devices)
    return execute(run, Path(workdir), position=_SLOT + 1)  # below the stage's overall bar


def run_all(runs: list[RunSpec], workdir: Path, cfg: ExecutorParams) -> list[dict]:
    """Execute runs in order (workers = 1), over local worker processes, or on a Ray cluster.

    Results come back in the order of `runs` whatever the mode. Every unfinished run passes its
    methods' preflight checks before any run starts. Tables with DDP runs train one run at a time.
    """
    from curriculab.distributed import check
    from curriculab.methods import preflight

    for r in runs:
        if not is_finished(r, workdir):
            if r.config.train.ddp:
                check(r)
            preflight(r.config, workdir)
    ddp = any(r.config.train.ddp for r in runs)  # one DDP run at a time: each takes every device it sees
    if cfg.backend == "ray":
        if ddp:
            raise ConfigError("train.ddp: DDP runs need executor.backend: local (torchrun on this machine)")
        return _run_ray(runs, workdir, cfg.threads)
    if cfg.workers == 1 or len(runs) <= 1 or ddp:
        return _sequential(runs, workdir, cfg.threads)
    workers = min(cfg.workers, len(runs))
    devices = torch.cuda.device_count()
    with worker_pool(workers, cfg.threads) as pool:
        futures = [pool.submit(_execute_on, r, str(workdir), devices) for r in runs]
        return _records(runs, [_outcome(r, f.result) for r, f in zip(runs, futures)])


def _execute_ray(run: RunSpec, workdir: str, threads: int) -> dict:
    torch.set_num_threads(threads)  # as the local executor runs it: bit-identical metrics
    return execute(run, Path(workdir), position=1)  # below the stage's overall bar


def _name(run: RunSpec) -> str:
    return f"{run.table} run {run.run_id} ({run.row}, {run.column}, seed {run.seed})"


def _run_ray(runs: list[RunSpec], workdir: Path, threads: int) -> list[dict]:
    """One Ray task per run (one GPU each when the cluster has them); RAY_ADDRESS picks the cluster, else a
    local runtime. Every task runs to its end; then a failed one fails the stage, named with its error.
    A table with nothing left to train reads its records here and starts no runtime."""
    if all(is_finished(r, workdir) for r in runs):
        return _sequential(runs, workdir, threads)
    try:
        import ray
    except ImportError:
        raise ConfigError("executor.backend: 'ray' needs the ray package: pip install -e '.[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"))
    gpus = 1 if ray.cluster_resources().get("GPU", 0) else 0
    remote = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(_execute_ray)  # threads CPUs each
    refs = [remote.remote(r, str(Path(workdir).resolve()), threads) for r in runs]
    outcomes = []
    for ref in refs:
        try:
            outcomes.append(ray.get(ref))
        except ray.exceptions.RayTaskError as e:  # Ray logs the task's traceback itself
            outcomes.append(e.cause if isinstance(e.cause, BaseException) else e)
    return _records(runs, outcomes)
