"""The one training loop: `fit(run, run_dir, workdir)` trains, evaluates every epoch, checkpoints, resumes."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from curriculab.config import RunConfig
from curriculab.data.loader import RunData
from curriculab.data.stream import open_data
from curriculab.engine.checkpoint import load_checkpoint, save_checkpoint
from curriculab.engine.devices import autocast, resolve_device, seed_everything
from curriculab.engine.optim import Schedule, build_optimizer
from curriculab.engine.parallel import group
from curriculab.engine.records import has_ended, is_done, new_record, read_timing, write_record, write_timing
from curriculab.engine.tasks import get_task
from curriculab.methods import build_methods
from curriculab.methods.base import Method, MethodContext, TrainState
from curriculab.models import create_model


def progress_enabled() -> bool:
    """tqdm bars on a terminal; quiet in CI and when output is redirected."""
    return sys.stderr.isatty() and not os.environ.get("CI")


class Hooks:
    """The run's methods seen as one: exclusive hooks go to the one method that defines them."""

    def __init__(self, methods: list[Method]):
        self.methods = methods

    def _owner(self, hook: str) -> Method | None:
        return next((m for m in self.methods if m.overrides(hook)), None)

    def wrap_model(self, model):
        for m in self.methods:
            model = m.wrap_model(model)
        return model

    def optimizers(self, model):
        return [o for m in self.methods for o in m.optimizers(model)]

    def train_batches(self, epoch, state, default):
        owner = self._owner("train_batches")
        batches = owner.train_batches(epoch, state) if owner else None
        return default() if batches is None else batches

    def loss(self, outputs, batch, state, default):
        owner = self._owner("loss")
        out = owner.loss(outputs, batch, state) if owner else None
        return default(outputs, batch) if out is None else out

    def correct(self, outputs, batch, state, default):
        owner = self._owner("train_correct")
        out = owner.train_correct(outputs, batch, state) if owner else None
        return default(outputs, batch.y) if out is None else out

    def predict(self, model, x):
        owner = self._owner("predict")
        out = owner.predict(model, x) if owner else None
        return model(x) if out is None else out

    def call(self, hook: str, state, *args) -> None:
        for m in self.methods:
            getattr(m, hook)(state, *args)

    def metrics(self) -> dict[str, float]:
        return {k: float(v) for m in self.methods for k, v in m.state_metrics().items()}

    def artifacts(self) -> dict:
        return {k: v for m in self.methods for k, v in m.epoch_artifacts().items()}


def build(run: RunConfig, run_dir: Path, workdir: Path,
          device: torch.device) -> tuple[RunData, Hooks, torch.nn.Module]:
    """The run's data on the device, its methods, and its model (wrapped by the methods)."""
    data = open_data(run, Path(workdir) / "data", device)
    ctx = MethodContext(run=run, data=data, device=device, run_dir=Path(run_dir), workdir=Path(workdir))
    hooks = Hooks(build_methods(run.methods, ctx))
    model = create_model(run.model.name, data.in_channels, data.classes, run.model.width,
                         image_size=data.image_size, **run.model.kwargs)
    model = hooks.wrap_model(model).to(device)
    if channels_last(device, run.train):
        model = model.to(memory_format=torch.channels_last)
        data.memory_format = torch.channels_last  # the batches too, or every conv converts its input again
    return data, hooks, model


def channels_last(device: torch.device, train) -> bool:
    """NHWC for the model and its batches: `train.channels_last`, on CUDA only."""
    return device.type == "cuda" and train.channels_last


def load_trained(run: RunConfig, run_dir: Path, workdir: Path, device: str = "auto"):
    """A finished run's model with its final weights (eval mode), its data and its methods (for `predict`)."""
    dev = resolve_device(device)
    data, hooks, model = build(run, run_dir, workdir, dev)
    ck = load_checkpoint(Path(run_dir) / "checkpoint.pt", dev)
    if ck is None:
        from curriculab.config import ConfigError

        raise ConfigError(f"{run_dir}: no checkpoint; train the run first (train.checkpoint must be true)")
    model.load_state_dict(ck["model"])
    for m, st in zip(hooks.methods, ck["methods"]):
        m.load_state_dict(st)
    return model.eval(), data, hooks


def _name(meta: dict | None) -> str:
    """A run as a reader names it: `row | column | seed N` (never its hash)."""
    lab = (meta or {}).get("labels")
    return f"{lab['row']} | {lab['column']} | seed {lab['seed']}" if lab else ""


def fit(run: RunConfig, run_dir: Path, workdir: Path, run_id: str = "", position: int = 0,
        meta: dict | None = None) -> dict:
    """Train one run to the end (resuming from its checkpoint) and return its metrics record.

    The shape of pycls's train_model: restore, then per epoch train_epoch → test_epoch → save.
    """
    run_dir, workdir = Path(run_dir), Path(workdir)
    par = group()  # a DDP rank (curriculab.distributed), or the one process; only rank 0 writes run_dir
    if par.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(run.train.device)
    seed_everything(run.seed)
    data, hooks, model = build(run, run_dir, workdir, device)
    task = get_task(run.task, run.task_params)
    forward = torch.compile(par.wrap(model)) if run.train.compile else par.wrap(model)
    opt = build_optimizer(model.parameters(), run.train.optimizer)
    schedule = Schedule(opt, run.train.schedule, run.train.epochs)
    steps = (math.floor if run.train.compile else math.ceil)(data.n_train / run.train.batch_size)
    state = TrainState(model=forward, optimizer=opt, data=data, epochs=run.train.epochs,
                       extra_optimizers=hooks.optimizers(model), steps_per_epoch=steps, group=par)
    ckpt_path = run_dir / "checkpoint.pt"
    record = restore(ckpt_path, model, state, schedule, hooks) if run.train.checkpoint else None
    if record is not None and par.main:  # the checkpoint's record is the truth: metrics.json may lag an epoch
        write_record(run_dir / "metrics.json", record)
    record = record or new_record(run_id, meta)
    if has_ended(record):
        if not is_done(record) or "stopped_epoch" in record["final"] or len(record["history"]) >= run.train.epochs:
            return record
        record.update(status="running", final={})  # a longer budget than the checkpoint's run
    start = len(record["history"])
    seconds = read_timing(run_dir, start)
    hooks.call("on_train_start", state)

    def predict(x):
        with autocast(device, run.train.bf16):
            return hooks.predict(forward, x)

    show = progress_enabled()
    epochs = tqdm(range(start, run.train.epochs), initial=start, total=run.train.epochs,
                  desc=_name(meta) or run_id or "run", position=position, leave=False, disable=not show)
    for epoch in epochs:
        t0 = time.perf_counter()
        state.epoch = epoch
        row = {"epoch": epoch + 1, "lr": schedule.set_epoch(epoch)}
        row.update(train_epoch(run, state, hooks, task, show))
        row["model_l2_norm"] = model_l2_norm(model)
        row.update(test_epoch(run, state, task, predict))
        row.update(hooks.metrics())
        seconds.append(time.perf_counter() - t0)
        schedule.observe(row["val_loss"])
        record["history"].append(row)
        record["artifacts"].append(hooks.artifacts())
        hooks.call("on_eval_end", state, row)
        if not math.isfinite(row["train_loss"]):  # the loss became NaN or infinite: stop, keep the record
            record.update(status="diverged", final={"diverged_epoch": epoch + 1})
        elif epoch + 1 == run.train.epochs or state.stop_requested:
            finish(record, task, model, data, predict, run, stopped=state.stop_requested)
        if par.main:
            if run.train.checkpoint:
                save(ckpt_path, model, state, schedule, hooks, record)
            write_record(run_dir / "metrics.json", record)
            write_timing(run_dir, seconds)
        epochs.set_postfix(val=f"{row.get('val_' + task.primary, float('nan')):.3f}")
        if has_ended(record):
            break
    if not has_ended(record):  # resumed after the last epoch was trained
        finish(record, task, model, data, predict, run, stopped=False)
        if par.main:
            write_record(run_dir / "metrics.json", record)
    return record


def train_batch_iter(run: RunConfig, data: RunData):
    """The default epoch: shuffled minibatches; a compiled model drops the partial last one (another graph)."""
    return data.batches(run.train.batch_size, drop_last=run.train.compile)


def train_epoch(run: RunConfig, state: TrainState, hooks: Hooks, task, show: bool = False) -> dict:
    """One pass over the epoch's batches: forward, the methods' loss, one step of every optimiser."""
    data, forward, device = state.data, state.model, state.data.device
    forward.train()
    hooks.call("on_epoch_start", state)
    sums = torch.zeros(2, device=device)  # loss·n, correct: summed on the device, read once per epoch
    seen = 0
    par = state.group
    batches = par.shard(hooks.train_batches(state.epoch, state, lambda: train_batch_iter(run, data)))
    for batch in tqdm(batches, total=state.steps_per_epoch, leave=False, disable=not show,
                      desc=f"epoch {state.epoch + 1}"):
        with autocast(device, run.train.bf16):
            outputs = forward(batch.x)
        per = hooks.loss(outputs, batch, state, task.loss)
        loss = par.mean(per)
        for o in state.optimizers:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in state.optimizers:
            o.step()
        state.step += 1
        n = len(batch.index)
        correct = hooks.correct(outputs, batch, state, task.correct)  # SA: top-K against the K labels
        sums += torch.stack([loss.detach().float() * par.count(n), correct.float()])
        seen += n
        hooks.call("on_step_end", state)
    hooks.call("on_epoch_end", state)
    sums, seen = par.total(sums, seen)
    tl, tc = sums.tolist()
    return {"train_loss": tl / max(seen, 1), "train_acc": tc / max(seen, 1), "train_seen": int(seen),
            "step": state.step}


def model_l2_norm(model: torch.nn.Module) -> float:
    """sqrt(Σ θ²) over every parameter, in float64 (one host sync per epoch)."""
    with torch.no_grad():
        return float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.parameters())))


def test_epoch(run: RunConfig, state: TrainState, task, predict) -> dict:
    """The task's metrics on the validation and test splits (eval mode)."""
    state.model.eval()
    data, out = state.data, {}
    for split in ("val", "test"):
        out.update({f"{split}_{k}": v for k, v in
                    task.evaluate(predict, data.eval_batches(split, run.train.eval_batch_size)).items()})
    return out


test_epoch.__test__ = False  # not a pytest test


def finish(record: dict, task, model, data, predict, run: RunConfig, stopped: bool) -> None:
    """Mark the record done with its final metrics; an early stop records the epoch it stopped after."""
    record["final"] = summarize(record["history"], task)
    record["final"].update(task.final_metrics(model, data, predict, run))
    if stopped:
        record["final"]["stopped_epoch"] = len(record["history"])
    record["status"] = "done"


def save(path: Path, model, state: TrainState, schedule: Schedule, hooks: Hooks, record: dict) -> None:
    """The one checkpoint layout: weights, every optimiser, schedule, methods, RNG states, position, record."""
    save_checkpoint(path, {
        "model": model.state_dict(), "optimizers": [o.state_dict() for o in state.optimizers],
        "schedule": schedule.state_dict(), "methods": [m.state_dict() for m in hooks.methods],
        "rng": state.rng_states(), "step": state.step, "record": record,
    })


def restore(path: Path, model, state: TrainState, schedule: Schedule, hooks: Hooks) -> dict | None:
    """Load the checkpoint written by `save` into the run's objects; its record, or None without one."""
    ck = load_checkpoint(path, state.data.device)
    if ck is None:
        return None
    model.load_state_dict(ck["model"])
    for o, s in zip(state.optimizers, ck["optimizers"], strict=True):
        o.load_state_dict(s)
    schedule.load_state_dict(ck["schedule"])
    for m, s in zip(hooks.methods, ck["methods"], strict=True):
        m.load_state_dict(s)
    state.set_rng_states(ck["rng"])
    state.step = ck["step"]
    return ck["record"]


def summarize(history: list[dict], task) -> dict:
    """Final-epoch test metrics, and test metrics at the epoch with the best validation score.

    The CBS official code reports the best *test* accuracy over epochs; that is a test-set selection,
    kept here only as `test_<metric>_best_epoch_oracle` and never used by a table's claim.
    """
    p = task.primary
    key = f"val_{p}"
    sign = 1 if task.higher_is_better else -1
    best = max(range(len(history)), key=lambda i: (sign * history[i][key], -i))
    last = history[-1]
    out = {f"test_{p}": last[f"test_{p}"], f"val_{p}": last[key], "best_val_epoch": history[best]["epoch"],
           f"test_{p}_at_best_val": history[best][f"test_{p}"], "train_acc": last["train_acc"],
           f"test_{p}_best_epoch_oracle": (max if task.higher_is_better else min)(h[f"test_{p}"] for h in history),
           "epochs": len(history)}
    if "test_top5" in last:
        out["test_top5"] = last["test_top5"]
        out["test_top5_at_best_val"] = history[best]["test_top5"]
    return out
