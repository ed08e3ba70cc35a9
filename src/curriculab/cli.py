"""`curriculab …` / `python -m curriculab …`: validate, prepare, pretrain, train, evaluate, aggregate."""

from __future__ import annotations

import argparse
import errno
import shutil
import sys
from pathlib import Path

from curriculab.config import ConfigError, RunsFailed
from curriculab.project import load_params


def _params(args) -> tuple:
    params = load_params(args.params)
    return params, Path(args.workdir).resolve()


def cmd_validate(args) -> int:
    args.file = args.file or args.params
    params = load_params(args.file)
    n = 0
    from curriculab.tables.spec import expand_table, get_spec

    for key in params.tables:
        n += len(expand_table(get_spec(key), params))
    print(f"{args.file}: valid (profile {params.profile!r}, {len(params.tables)} tables, {n} runs)")
    if args.stamp:  # the DVC stage's output: constant bytes, so a valid edit re-runs nothing downstream
        from curriculab.data.prepared import atomic_write_bytes

        atomic_write_bytes(Path(args.stamp), b"valid\n")
    return 0


def cmd_prepare(args) -> int:
    from curriculab.data.prepare import prepare_all
    from curriculab.engine.loop import progress_enabled
    from curriculab.store import store_root
    from curriculab.tracking import init_store

    params, workdir = _params(args)
    init_store(store_root(workdir, params.store.root), params.tracking)  # once, before any stage fans out
    written = prepare_all(params, workdir, progress=progress_enabled(), names=args.datasets or None)
    print("prepared: " + (", ".join(written) if written else "nothing to do (all up to date)"))
    for name, reason in _missing(params, workdir, args.datasets or params.prepare.datasets).items():
        print(f"not available: {reason}; the tables that use {name!r} are reported as not run")
    return 0


def _missing(params, workdir: Path, datasets) -> dict[str, str]:
    """dataset → why `prepare` could not get it, among `datasets`."""
    from curriculab.data.prepared import missing_datasets

    return missing_datasets(Path(workdir) / params.prepare.root, datasets)


def _data_missing(params, workdir: Path, runs) -> str | None:
    """Why the datasets the runs train on are not there (one line), or None when they are."""
    missing = _missing(params, workdir, {r.config.data.dataset for r in runs})
    return "; ".join(missing.values()) if missing else None


def _skipped(what: str, out: Path, reason: str) -> int:
    """A stage whose data is missing succeeds without doing anything: one line, and its (empty) output
    folder for DVC; the report shows the table as not run."""
    out.mkdir(parents=True, exist_ok=True)
    print(f"{what} not run: {reason}")
    return 0


def cmd_pretrain(args) -> int:
    from curriculab.data.prepared import DatasetMissing
    from curriculab.methods import run_pretrain

    params, workdir = _params(args)
    if args.method not in params.pretrain:
        raise ConfigError(f"pretrain.{args.method}: no such block in {args.params}")
    try:
        run_pretrain(args.method, params, workdir)
    except DatasetMissing as e:  # the tables that need this pretraining are not run either (their data is missing)
        return _skipped(f"pretrain {args.method}:", workdir / params.prepare.root / "pretrained" / args.method, str(e))
    return 0


def _table(params, key: str):
    from curriculab.tables.spec import get_spec

    spec = get_spec(key)
    if spec.key not in params.tables:
        raise ConfigError(f"tables.{spec.key}: table {spec.id!r} has no block in the params file")
    return spec


def _with_ddp(params, key: str, asked: int):
    """The params with `train.ddp` set in the table's `run` block (so the run ids are those of DDP runs)."""
    from curriculab.config import deep_merge
    from curriculab.distributed import processes

    table = params.tables[key]
    table = table.model_copy(update={"run": deep_merge(table.run, {"train": {"ddp": processes(asked)}})})
    return params.model_copy(update={"tables": {**params.tables, key: table}})


def cmd_train(args) -> int:
    from curriculab import store as st
    from curriculab.executor import BUSY, current_checksum, ended, run_all, run_finished
    from curriculab.live import Watcher
    from curriculab.runlock import RunLock
    from curriculab.tables.spec import expand_table
    from curriculab.tracking import TableLog, init_store

    params, workdir = _params(args)
    spec = _table(params, args.table)
    if args.ddp is not None:
        params = _with_ddp(params, spec.key, args.ddp)
    runs = expand_table(spec, params)
    if reason := _data_missing(params, workdir, runs):
        return _skipped(f"{spec.id}:", workdir / "runs" / spec.key, reason)
    store = st.store_root(workdir, params.store.root)
    if args.rerun:
        for root in {workdir, store}:
            shutil.rmtree(root / "runs" / spec.key, ignore_errors=True)
    finished = {r.run_id: run_finished(r, workdir) for r in runs}  # done, on the data prepared now
    pairs = [(r.dir(store), r.dir(workdir), finished[r.run_id]) for r in runs]
    linked = st.pull(pairs)
    cfg = params.executor.model_copy(update={"workers": args.workers} if args.workers else {})
    todo = {r.run_id for r in runs if not ended(r, workdir)}  # a diverged run is not trained again
    print(f"{spec.id}: {len(runs)} runs, {len(runs) - len(todo)} already finished"
          + (f" ({linked} from the store at {store})" if linked else "")
          + f", {len(todo)} to train (executor: " + (f"ray, one task of {cfg.threads} CPU(s) per run)"
                                                      if cfg.backend == "ray" else f"local, {cfg.workers} worker(s))"),
          flush=True)
    lock = RunLock(store / "runs" / spec.key / ".mlflow.lock")  # one MLflow logger per table at a time
    live = params.tracking.enabled and lock.acquire() is None

    def tracker():
        init_store(store, params.tracking)
        return TableLog(store, params.tracking, spec.id, params.profile, workdir)

    def watcher(log, todo):
        return Watcher(spec.id, runs, workdir, todo, log=log, metric=spec.metrics[0],
                       checksum=lambda r: current_checksum(r, workdir))

    log, killed, records = tracker() if live else None, True, []
    watch = watcher(log, todo)
    try:
        with watch:
            records = run_all(runs, workdir, cfg)
        killed = False
    finally:
        st.publish(pairs)
        if log is not None:
            log.end(watch.cell_means(), len(runs), killed)
        lock.release()
    if params.tracking.enabled and not live:  # another process was logging this table: log after it
        with RunLock(lock.path, wait=True):
            log = tracker()
            with (late := watcher(log, set())):
                pass
            log.end(late.cell_means(), len(runs), False)
    busy = sorted({r["holder"] for r in records if r.get("status") == BUSY})
    if busy:
        n = sum(r.get("status") == BUSY for r in records)
        print(f"{spec.id}: {n} run(s) skipped: another process (pid {', '.join(map(str, busy))}) is training "
              f"them; run this command again when it has finished", file=sys.stderr)
        return 3
    where = params.tracking.uri or store
    print(f"{spec.id}: done; {len(todo)} run(s) trained" + (f", logged live to MLflow at {where}" if log else ""))
    return 0


def cmd_evaluate(args) -> int:
    from curriculab.data.prepared import DatasetMissing
    from curriculab.engine.records import is_done
    from curriculab.evaluate.adversarial import evaluate_table
    from curriculab.evaluate.settings.adversarial import split_evaluate
    from curriculab.executor import read_record
    from curriculab.fingerprint import evaluation_key, is_cached, write_cached
    from curriculab.registry import load_object, module_of
    from curriculab.tables.spec import expand_table

    params, workdir = _params(args)
    spec = _table(params, args.table)
    block, adversarial = split_evaluate(params.evaluate.get(spec.key, {}))
    if spec.evaluate is None and adversarial is None:
        raise ConfigError(f"table {spec.id!r} has no evaluate step")
    runs = expand_table(spec, params)
    out = workdir / "runs" / "eval" / spec.key
    if reason := _data_missing(params, workdir, runs):
        return _skipped(f"{spec.id}:", out, reason)
    for run in runs:
        rec = read_record(run.dir(workdir))
        if not is_done(rec):
            raise ConfigError(f"{spec.id}: run {run.run_id} ({run.row}, {run.column}, seed {run.seed}) has not "
                              f"finished training; run `dvc repro train@{spec.key}` first")
    if adversarial is not None:
        n = evaluate_table(spec, params, runs, adversarial, workdir)
        print(f"{spec.id}: adversarial evaluation of {n} run(s)")
    if spec.evaluate is None:
        return 0
    opts = spec.EvalParams.model_validate(block)
    evaluate, module = load_object(spec.evaluate), module_of(spec.evaluate)
    for run in runs:
        rec = read_record(run.dir(workdir))
        target = out / f"{run.run_id}.json"
        key = evaluation_key(opts.model_dump(mode="json"), rec.get("data_checksum"), module)
        if is_cached(target, key):
            continue
        try:
            metrics = evaluate(run, rec, opts, workdir)
        except DatasetMissing as e:  # e.g. a transfer target: the report shows what was not evaluated
            return _skipped(f"{spec.id}: evaluation", out, str(e))
        write_cached(target, key, metrics)
    print(f"{spec.id}: evaluated")
    return 0


def cmd_aggregate(args) -> int:
    from curriculab.store import store_root
    from curriculab.tables.report import aggregate
    from curriculab.tracking import log_figures

    params, workdir = _params(args)
    reports = workdir / args.reports
    entries = aggregate(params, workdir, reports)
    for e in entries:
        print(f"{e['id']}: {e['done']}/{e['runs']} runs → {args.reports}/tables/{e['id']}.md")
        log_figures(store_root(workdir, params.store.root), params.tracking, e["id"],
                    [reports / "figures" / f for f in e["figures"]])
    return 0


def cmd_status(args) -> int:
    from curriculab.engine.records import is_done
    from curriculab.executor import read_record
    from curriculab.tables.spec import expand_table, get_spec

    params, workdir = _params(args)
    for key in params.tables:
        runs = expand_table(get_spec(key), params)
        recs = [read_record(r.dir(workdir)) for r in runs]
        done = sum(1 for r in recs if is_done(r))
        partial = sum(1 for r in recs if r and r.get("status") == "running")
        diverged = sum(1 for r in recs if r and r.get("status") == "diverged")
        print(f"{key}: {done} finished, {diverged} diverged, {partial} interrupted, "
              f"{len(runs) - done - diverged - partial} not started")
    return 0


def cmd_use_profile(args) -> int:
    src = Path("profiles") / f"{args.name}.yaml"
    if not src.is_file():
        from curriculab.config import suggest

        names = sorted(p.stem for p in Path("profiles").glob("*.yaml"))
        raise ConfigError(f"{src}: no such profile{suggest(args.name, names) or '; profiles/ holds none'}")
    load_params(src)
    shutil.copyfile(src, args.params)
    print(f"{args.params} now holds {src}; `git checkout {args.params}` restores the embedded default")
    return 0


def cmd_dryrun(args) -> int:
    from curriculab.dryrun import dryrun

    path = Path("profiles") / f"{args.profile}.yaml" if args.profile else Path(args.file)
    tables = [t for part in args.tables or [] for t in part.split(",") if t]
    gpu = args.device == "cuda"  # --bf16/--channels-last/--compile default to on with CUDA, off on the CPU
    run = {"device": args.device, **{k: gpu if getattr(args, k) is None else getattr(args, k)
                                     for k in ("bf16", "channels_last", "compile")}}
    speedup = args.gpu_speedup or (1.0 if gpu else 1000.0)
    reports = dryrun(path, main, tables=tables, budget_s=args.time_budget, speedup=speedup,
                     keep=Path(args.keep) if args.keep else None, run=run)
    bad = [r.key for r in reports if r.status != "ok"]
    if bad:
        print(f"error: dry run failed for {len(bad)} table(s): {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="curriculab", description=__doc__)
    p.add_argument("--params", default="params.yaml", help="settings file (default: params.yaml)")
    p.add_argument("--workdir", default=".", help="project root holding data/, runs/ and mlflow.db")
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="check a params file; exit non-zero with a one-line message if invalid")
    v.add_argument("file", nargs="?", default=None, help="the settings file (default: --params)")
    v.add_argument("--stamp", help="write this file when the params are valid (the `validate` DVC stage)")
    pr = sub.add_parser("prepare", help="write the prepared datasets and their copies; create the MLflow store")
    pr.add_argument("datasets", nargs="*", help="these only (the prepare@<dataset> stages); default: all")
    pt = sub.add_parser("pretrain", help="a method's pretraining stage (e.g. spl_advise)")
    pt.add_argument("method")
    t = sub.add_parser("train", help="train every unfinished run of a table")
    t.add_argument("table")
    t.add_argument("--workers", type=int, default=None, help="override executor.workers")
    t.add_argument("--rerun", action="store_true", help="delete the table's runs and train them again")
    t.add_argument("--ddp", type=int, nargs="?", const=0, metavar="N",
                   help="train each run with torchrun over N processes (default: one per visible GPU); sets "
                        "train.ddp, so the runs are distinct from one-process ones")
    e = sub.add_parser("evaluate", help="the evaluate step of a table, on its trained checkpoints")
    e.add_argument("table")
    a = sub.add_parser("aggregate", help="write reports/ from the runs")
    a.add_argument("--reports", default="reports")
    sub.add_parser("status", help="finished / interrupted / missing runs per table")
    u = sub.add_parser("use-profile", help="copy profiles/NAME.yaml over params.yaml (e.g. paper)")
    u.add_argument("name")
    d = sub.add_parser("dryrun", help="train every table of a profile 2 steps on synthetic data (CPU), resume, "
                                      "evaluate, report; project its GPU hours")
    d.add_argument("file", nargs="?", default="profiles/paper.yaml", help="default: profiles/paper.yaml")
    d.add_argument("--profile", help="profiles/NAME.yaml instead of FILE (e.g. paper)")
    d.add_argument("--tables", action="append", help="only these tables (comma-separated; repeatable)")
    d.add_argument("--time-budget", type=float, default=1800.0, help="seconds; tables not reached are skipped")
    d.add_argument("--gpu-speedup", type=float, default=None,
                   help="assumed GPU speed-up over this CPU for the GPU-hour projection (a guess; default 1000, "
                        "1 with --device cuda, where the steps are measured on the GPU)")
    d.add_argument("--keep", help="build the dry project in this folder and keep it (default: a temporary one)")
    d.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="train.device of the dry runs")
    for flag in ("bf16", "channels-last", "compile"):
        d.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, default=None,
                       help=f"train.{flag.replace('-', '_')} of the dry runs (default: on with --device cuda)")
    return p


COMMANDS = {"validate": cmd_validate, "prepare": cmd_prepare, "pretrain": cmd_pretrain, "train": cmd_train,
            "evaluate": cmd_evaluate, "aggregate": cmd_aggregate, "status": cmd_status,
            "use-profile": cmd_use_profile, "dryrun": cmd_dryrun}


def os_error_message(e: OSError) -> str | None:
    """One line naming the file and the fix for a disk that is full or not writable; None for other errors."""
    where = e.filename or "a file"
    again = "run the command again (finished runs are kept; an interrupted run resumes from its last checkpoint)"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}: no space left on the device; free some space, then {again}"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        folder = Path(e.filename).parent if e.filename else "the project folder"
        return (f"{where}: cannot write ({e.strerror}); make {folder} writable (e.g. `chmod -R u+w {folder}`) "
                f"or pass --workdir a writable copy of the project, then {again}")
    return None


def main(argv: list[str] | None = None, stage: bool = False) -> int:
    """The CLI; `stage=True` for DVC stage processes, which die with the process that started them."""
    if stage:
        from curriculab.runlock import die_with_parent

        die_with_parent()
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.cmd](args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunsFailed as e:  # each failed run's traceback was printed above
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        msg = os_error_message(e)
        if msg is None:
            raise
        print(f"error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; the interrupted one resumes from its last checkpoint",
              file=sys.stderr)
        return 130
