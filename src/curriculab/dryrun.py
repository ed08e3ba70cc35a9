"""`curriculab dryrun`: can a profile's tables run? Every table on small synthetic data, on this machine.

For each table of a profile (the paper profile by default) the dry run

- expands the table as `train` does and counts its runs; runs that run the same code at the same shapes (differing
  only in seed, optimiser/schedule numbers, noise rate, or a dataset of the same shape: `synthetic.config_key`) are
  one configuration, trained once and copied to the others (labels and data checksum rewritten);
- writes synthetic prepared datasets (random uint8 images in the on-disk format of `prepare`) with the real
  dataset's channels, image size and classes (`curriculab.synthetic.REAL`) but only 2 training batches and one batch of
  validation and of test images (more where SPL-ADVisE's per-class clusters need them), into a temporary project
  of its own, never into the user's data/, runs/ or
  reports/; `prepare` itself then makes the derived copies (blurred ones) from them;
- trains each configuration at its dry settings (2 epochs of 2 steps; a blur schedule's rows one epoch per copy
  plus one, a cascade's one per phase), interrupted right after epoch 1's checkpoint as a kill there
  would leave it, then resumes it from the checkpoint to its end (all epochs, or fewer where the method ends the
  run early) and checks that the resumed run kept epoch 1 as it was; runs the method's pretrain stage first
  where a run needs it;
- runs the table's evaluate step (if it has one) and renders its report with the normal commands;
- measures a training step of each architecture at the dry batch size and projects the table's cost at the
  real settings (runs × epochs × real steps per epoch), in CPU hours on this machine and in GPU hours under a
  stated speed-up factor, which is a guess, not a measurement.

A table that fails is reported with the stage and the error, and the command exits non-zero.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from curriculab.config import ConfigError, Params, table_key
from curriculab.synthetic import (
    DRY_ATTACK_STEPS,
    DRY_ATTACKED,
    DRY_CANDIDATES,
    DRY_CLUSTERS,
    DRY_NLL_SAMPLES,
    DRY_START_NETWORKS,
    DRY_TTSA_SUMS,
    GPU_SPEEDUP,
    SMALL_BATCH,
    SPEEDUP_BASIS,
    STEP_LIMIT_S,
    Arch,
    arch_key,
    candidate_need,
    cluster_need,
    config_key,
    dry_raw,
    measure_arch,
    real_shape,
    write_synthetic,
)

# --------------------------------------------------------------------------- one table


@dataclass
class TableReport:
    key: str
    runs: int = 0
    configs: int = 0
    archs: list[str] = field(default_factory=list)
    real_batch: str = ""
    batch: int = 0
    shrunk: bool = False
    cpu_hours: float = 0.0
    steps_per_s: str = ""
    reached: list[str] = field(default_factory=list)  # stages passed: train, resume, evaluate, report
    status: str = "ok"  # ok | failed | skipped
    reason: str = ""
    seconds: float = 0.0
    disk_gib: float = 0.0  # what the table's folder held on disk when it ended (hard links counted once)
    notes: list[str] = field(default_factory=list)


def _copy_run(src: Path, dst: Path, run, workdir: Path) -> None:
    """A trained configuration's folder as another run of it (labels, seed, run id, data checksum rewritten)."""
    from curriculab.data.prepared import atomic_write_bytes
    from curriculab.engine.records import write_record
    from curriculab.executor import current_checksum, read_record
    from curriculab.store import link_tree

    link_tree(src, dst)
    labels = {"table": run.table, "row": run.row, "column": run.column, "seed": run.seed, "run_id": run.run_id}
    conf = yaml.safe_load((dst / "config.yaml").read_text())
    conf.update(labels=labels, config=run.config.model_dump(mode="json"))
    atomic_write_bytes(dst / "config.yaml", yaml.safe_dump(conf, sort_keys=False).encode())
    rec = read_record(dst)
    write_record(dst / "metrics.json", {**rec, "labels": labels, "run_id": run.run_id, "dryrun_copy_of": src.name,
                                        "data_checksum": current_checksum(run, workdir)})


def same_epoch(a: dict, b: dict) -> bool:
    """Two records of one epoch are equal, NaN metrics included (as metrics.json writes them: null)."""
    from curriculab.data.prepared import finite_json

    return finite_json(a) == finite_json(b)


class _Interrupted(Exception):
    """The dry run's stand-in for a kill right after an epoch's checkpoint and metrics.json were written."""


@contextlib.contextmanager
def _interrupt_after_first_epoch():
    """Training stops, as a kill would, once the first epoch's checkpoint, metrics.json and timing.json are on
    disk (timing.json is the loop's last write of an epoch)."""
    from curriculab.engine import loop

    write_timing = loop.write_timing

    def write_then_stop(run_dir, seconds):
        write_timing(run_dir, seconds)
        raise _Interrupted

    loop.write_timing = write_then_stop
    try:
        yield
    finally:
        loop.write_timing = write_timing


def _train_and_resume(run, workdir: Path, rep: TableReport) -> None:
    """The run's real (dry) settings through the executor, interrupted after epoch 1; then `fit` resumes it
    from the checkpoint to its end. Epoch 1 must be kept, and the run must finish: all its epochs, or fewer
    where its method ends it early (a phased method's last phase, early stopping)."""
    from curriculab.engine.loop import fit
    from curriculab.engine.records import has_ended
    from curriculab.executor import current_checksum, execute, read_record
    from curriculab.methods import preflight
    from curriculab.tables.spec import get_spec

    preflight(run.config, workdir)
    d = run.dir(workdir)
    if get_spec(run.table).runner is not None:  # its own runner: trained once, no resume through fit
        rec = execute(run, workdir)
        if rec.get("status") != "done":
            raise RuntimeError(f"runner ended with status {rec.get('status')!r}")
        if "own runner: trained once, resume not checked" not in rep.notes:
            rep.notes.append("own runner: trained once, resume not checked")
        return
    try:
        with _interrupt_after_first_epoch():
            execute(run, workdir)
    except _Interrupted:
        pass
    first = read_record(d)
    if not first or len(first["history"]) != 1:
        raise RuntimeError("the interrupted first leg did not leave epoch 1's record")
    if not (d / "checkpoint.pt").is_file():
        raise RuntimeError("no checkpoint after the first epoch")
    if has_ended(first):
        note = "a run ended after its first epoch (nothing to resume)"
        if first.get("status") != "done":
            raise RuntimeError(f"first epoch ended with status {first.get('status')!r}")
        if note not in rep.notes:
            rep.notes.append(note)
    meta = {"labels": {"table": run.table, "row": run.row, "column": run.column, "seed": run.seed,
                       "run_id": run.run_id}, "data_checksum": current_checksum(run, workdir)}
    rec = fit(run.config, d, workdir, run_id=run.run_id, meta=meta)
    if rec.get("status") != "done" or not 1 <= len(rec["history"]) <= run.config.train.epochs:
        raise RuntimeError(f"resumed run ended with status {rec.get('status')!r} after "
                           f"{len(rec['history'])} epoch(s)")
    if not same_epoch(rec["history"][0], first["history"][0]):
        raise RuntimeError("resuming changed the record of epoch 1")
    assert read_record(d)["status"] == "done"


def _cli(command: Callable[[list[str]], int], argv: list[str]) -> None:
    """A curriculab command (`command` is the CLI's main, passed in by it) in the dry project; its failure is
    an exception naming the command."""
    import io

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = command(argv)
    if code:
        raise RuntimeError(f"`curriculab {' '.join(argv[4:])}` exited {code}: {err.getvalue().strip()}")


def dry_table(key: str, raw: dict, real: Params, workdir: Path, archs: dict[str, Arch], deadline: float,
              log: Callable[[str], None], command: Callable[[list[str]], int], run: dict | None = None
              ) -> TableReport:
    """`run`: the dry runs' device settings (device, bf16, channels_last, compile), passed to `dry_raw`."""
    from curriculab.evaluate.settings.adversarial import split_evaluate
    from curriculab.project import load_params
    from curriculab.tables.spec import expand_table, get_spec

    t0 = time.perf_counter()
    rep = TableReport(key)
    spec = get_spec(key)
    stage = "expand"
    try:
        runs = expand_table(spec, real)
        rep.runs = len(runs)
        groups: dict[str, list] = {}
        for r in runs:
            groups.setdefault(config_key(r.config, real), []).append(r)
        rep.configs = len(groups)
        stage = "measure"
        real_batches, need = set(), {}
        for r in runs:
            shape = real_shape(r.config.data.dataset, real)
            k = arch_key(r.config, shape)
            if k not in archs:
                if time.perf_counter() > deadline:
                    raise TimeoutError("time cap reached before its architectures were measured")
                archs[k] = measure_arch(r.config, shape, SMALL_BATCH, (run or {}).get("device", "cpu"))
            real_batches.add(r.config.train.batch_size)
            need[k] = max(need.get(k, 0), r.config.train.batch_size)
        labels = [archs[k] for k in need]
        rep.archs = [f"{a.label}: {a.params / 1e6:.2f}M" for a in labels]
        rep.real_batch = "/".join(str(b) for b in sorted(real_batches))
        slow = any(archs[k].step_s * b / archs[k].batch > STEP_LIMIT_S for k, b in need.items())
        rep.batch = min(SMALL_BATCH, *real_batches) if slow else min(real_batches)
        rep.shrunk = rep.batch < max(real_batches)
        rep.steps_per_s = ", ".join(f"{1 / a.step_s:.1f}" for a in labels)
        seconds = 0.0
        for r in runs:  # the real schedule: epochs × ⌈train / batch⌉ steps, a step scaled linearly in batch size
            shape = real_shape(r.config.data.dataset, real)
            a = archs[arch_key(r.config, shape)]
            ntrain = shape.train + (shape.val if r.config.data.train_split == "train+val" else 0)
            if r.config.data.subset_per_class:
                ntrain = min(ntrain, r.config.data.subset_per_class * shape.classes)
            if r.config.data.subset:
                ntrain = min(ntrain, r.config.data.subset)
            steps = r.config.train.epochs * math.ceil(ntrain / r.config.train.batch_size)
            seconds += steps * a.step_s * r.config.train.batch_size / a.batch
        rep.cpu_hours = seconds / 3600

        stage = "prepare"
        wd = workdir / key
        dry = dry_raw(raw, key, rep.batch, **(run or {}))
        (wd).mkdir(parents=True, exist_ok=True)
        (wd / "params.yaml").write_text(yaml.safe_dump(dry, sort_keys=False))
        params = load_params(wd / "params.yaml")
        druns = expand_table(spec, params)
        per_class = max([cluster_need(dry)] + [int(r.config.runner.get("per_class", 0)) for r in druns])
        sizes = {}
        for name in params.prepare.datasets:
            classes = real_shape(name, params).classes
            sizes[name] = (max(2 * rep.batch, per_class * classes, candidate_need(druns)), min(rep.batch, 100),
                           min(rep.batch, 100))
        write_synthetic(params, wd, sizes)
        if any(m.get("embedding") is not None and m.get("selection") != "random"
               for r in druns for n, m in r.config.methods.items() if n == "spl_advise"):
            stage = "pretrain"
            _cli(command, ["--params", str(wd / "params.yaml"), "--workdir", str(wd), "pretrain", "spl_advise"])
            rep.notes.append("pretrain@spl_advise ran (2 iterations)")
        stage = "train"
        dgroups: dict[str, list] = {}
        for r in druns:
            dgroups.setdefault(config_key(r.config, params), []).append(r)
        rep.configs = len(dgroups)  # at dry settings (e.g. epochs, patience) more runs are alike
        for i, members in enumerate(dgroups.values()):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"time cap reached after {i} of {len(dgroups)} configurations")
            lead = members[0]
            log(f"  {key}: configuration {i + 1}/{len(dgroups)} ({lead.row} | {lead.column})")
            _train_and_resume(lead, wd, rep)
            for other in members[1:]:
                if other.run_id != lead.run_id:  # rows made identical by the dry settings share one folder
                    _copy_run(lead.dir(wd), other.dir(wd), other, wd)
        rep.reached += ["train", "resume"]
        block, adversarial = split_evaluate(params.evaluate.get(key, {}))
        if spec.evaluate is not None or adversarial is not None:
            stage = "evaluate"
            _cli(command, ["--params", str(wd / "params.yaml"), "--workdir", str(wd), "evaluate", key])
            rep.reached.append("evaluate")
        stage = "report"
        _cli(command, ["--params", str(wd / "params.yaml"), "--workdir", str(wd), "aggregate", "--reports", "reports"])
        if not (wd / "reports" / "tables" / f"{spec.id}.md").is_file():
            raise RuntimeError(f"aggregate wrote no reports/tables/{spec.id}.md")
        rep.reached.append("report")
    except TimeoutError as e:
        rep.status, rep.reason = "skipped", f"{stage}: {e}"
    except Exception as e:  # a table's failure is reported, never swallowed: it fails the command
        rep.status = "failed"
        last = traceback.extract_tb(e.__traceback__)[-1]
        rep.reason = f"{stage}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''} " \
                     f"[{Path(last.filename).name}:{last.lineno}]"
    rep.seconds = time.perf_counter() - t0
    return rep


# --------------------------------------------------------------------------- the command


def dryrun(path: Path, command: Callable[[list[str]], int], tables: list[str] | None = None,
           budget_s: float = 1800.0, speedup: float = GPU_SPEEDUP, keep: Path | None = None,
           log: Callable[[str], None] = print, run: dict | None = None) -> list[TableReport]:
    """Dry-run the tables of the profile at `path`; `command` runs a curriculab command (the CLI's main);
    `run`: train settings of every dry run (device, bf16, channels_last, compile; default: CPU, all off)."""
    import torch

    from curriculab.project import load_params
    from curriculab.settings_file import load_yaml, resolve_uses
    from curriculab.store import disk_bytes
    from curriculab.tables.spec import get_spec

    real = load_params(path)
    raw = resolve_uses(load_yaml(path))
    keys = list(real.tables)
    if tables:
        wanted = [table_key(get_spec(t).id) for t in tables]
        missing = [t for t in wanted if t not in real.tables]
        if missing:
            raise ConfigError(f"dryrun --tables: {', '.join(missing)} not in {path}")
        keys = [k for k in keys if k in wanted]
    workdir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="curriculab-dryrun-"))
    workdir.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + budget_s
    archs: dict[str, Arch] = {}
    before = torch.get_num_threads()
    log(f"dry run of {path} ({real.profile!r}): {len(keys)} table(s) in {workdir} "
        f"({shutil.disk_usage(workdir).free / 2**30:.1f} GiB free), time cap {budget_s:.0f} s, "
        f"{torch.get_num_threads()} CPU thread(s)")
    reports = []
    try:
        for key in keys:
            log(f"{key}: ...")
            rep = dry_table(key, raw, real, workdir, archs, deadline, log, command, run)
            if (workdir / key).exists():
                rep.disk_gib = disk_bytes(workdir / key) / 2**30
            if not keep:  # a table's checkpoints can be GBs (WRN-50-2: 0.18 GB a run): free them as it ends
                shutil.rmtree(workdir / key, ignore_errors=True)
            log(f"{key}: {rep.status} in {rep.seconds:.0f} s" + (f" ({rep.reason})" if rep.reason else ""))
            reports.append(rep)
    finally:
        torch.set_num_threads(before)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    log(render(reports, speedup, (run or {}).get("device", "cpu")))
    return reports


def render(reports: list[TableReport], speedup: float, device: str = "cpu") -> str:
    head = ["table", "runs", "configs", "architectures (parameters)", "batch real→dry",
            f"steps/s ({device.upper()}, batch {SMALL_BATCH})",
            f"{device.upper()} h", "GPU h (projected)", "disk (GiB)", "reached", "status"]
    rows = []
    for r in reports:
        batch = f"{r.real_batch}→{r.batch}" + (" (shrunk)" if r.shrunk else "") if r.batch else ""
        rows.append([r.key, str(r.runs), str(r.configs), "; ".join(r.archs), batch, r.steps_per_s,
                     f"{r.cpu_hours:,.0f}" if r.archs else "", f"{r.cpu_hours / speedup:,.2f}" if r.archs else "",
                     f"{r.disk_gib:.1f}", "+".join(r.reached) or "-", r.status])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    total = sum(r.cpu_hours for r in reports)
    out = ["", *lines, "",
           f"total: {sum(r.runs for r in reports)} runs, {sum(r.configs for r in reports)} distinct configurations "
           f"(runs that run the same code at the same shapes are one), projected {total:,.0f} "
           f"{device.upper()} hours on this machine, "
           f"{total / speedup:,.2f} GPU hours; the largest table held "
           f"{max((r.disk_gib for r in reports), default=0):.1f} GiB on disk (each table's folder is removed as it "
           f"ends, unless --keep).",
           f"How the projection is made: steps/s is MEASURED here (one SGD step of each architecture at batch "
           f"{SMALL_BATCH}, random input, median of 2 after a warm-up); a step at the real batch size is assumed to "
           f"take batch/{SMALL_BATCH} times as long; each run takes epochs × ⌈real train split / batch⌉ steps; "
           f"evaluation, pretrain stages, evaluate steps and the methods' extra passes (e.g. POA's K scored batches, "
           f"SPL loss passes) are not counted. GPU hours = CPU hours / {speedup:g}: assumes a GPU runs these "
           f"{speedup:g}× faster than this CPU, {SPEEDUP_BASIS}.",
           "Dry steps: 2 epochs of 2 training batches, interrupted after epoch 1 and resumed (a blur schedule "
           f"scaled to one epoch per copy, plus one; a cascade one epoch per phase; "
           f"SPL-ADVisE: {DRY_CLUSTERS} clusters per class and that many items per class) on synthetic data with "
           f"the real channels, image size and classes; the real batch size is kept unless a step at it would "
           f"take over {STEP_LIMIT_S} s here, then "
           f"the dry batch is {SMALL_BATCH} (marked 'shrunk'); evaluate steps shrunk (1 probe epoch, "
           f"{DRY_ATTACKED} attacked images, {DRY_ATTACK_STEPS} steps of an iterative attack, {DRY_TTSA_SUMS} "
           f"test-time sums and EOT samples), a VAE's test NLL with {DRY_NLL_SAMPLES} "
           f"importance samples, Perfect Ordering from {DRY_START_NETWORKS} start networks after epoch 1, POA "
           f"scoring at most {DRY_CANDIDATES} candidates a step (and the train split holding that many batches)."]
    for r in reports:
        for note in r.notes:
            out.append(f"note {r.key}: {note}")
    bad = [r for r in reports if r.status != "ok"]
    if bad:
        out.append(f"{len(bad)} table(s) did not pass:")
        out += [f"  {r.key}: {r.status}: {r.reason}" for r in bad]
    else:
        out.append(f"all {len(reports)} table(s) passed train + resume + evaluate (where defined) + report")
    return "\n".join(out)
