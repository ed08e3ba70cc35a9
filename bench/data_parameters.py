"""Training-epoch time with and without data parameters, side by side in one process (DP §3: "no overhead").

For each offline configuration (digits; Fashion-MNIST 200/class at 14×14; small_cnn width 0.5, batch 64;
plus Fashion-MNIST at 28×28, a larger step, to show that the overhead is a fixed cost per step)
the baseline and the class / instance / joint curricula each train one epoch per round, interleaved, with
the engine's step order (forward, hook loss, zero_grad, backward, model step, data-parameter steps, clamp).
Evaluation is left out: it is identical for both (logits are not scaled at test time). Prints the median
and the fastest epoch time with their ratios to the baseline (target ≤ 1.05×). Times are CPU time of this
process (`time.process_time`), so other jobs on a shared machine disturb them less than wall time; the fastest
round is the cleaner estimate. Also printed: the per-step cost of the data-parameter hooks alone on fixed
logits, and the bookkeeping cost of the instance vector (SparseSGD step + clamp) as N grows to ImageNet size.

    .venv/bin/python bench/data_parameters.py [--workdir .] [--rounds 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from curriculab.config import RunConfig
from curriculab.engine.devices import seed_everything
from curriculab.engine.loop import build
from curriculab.engine.optim import build_optimizer
from curriculab.engine.tasks import get_task
from curriculab.methods.base import TrainState
from curriculab.methods.data_parameters import SparseSGD

CONFIGS = {
    "digits": {"dataset": "digits"},
    "fashion_mnist 14px": {"dataset": "fashion_mnist", "subset_per_class": 200, "test_limit": 2000,
                           "image_size": 14},
    # not an offline-default size: the same model at 28×28, to show the overhead is a fixed cost per step
    "fashion_mnist 28px": {"dataset": "fashion_mnist", "subset_per_class": 100, "test_limit": 2000},
}
VARIANTS = {
    "baseline": {"baseline": {}},
    "class": {"data_parameters": {"curriculum": "class"}},
    "instance": {"data_parameters": {"curriculum": "instance", "inst_lr": 10.0}},
    "joint": {"data_parameters": {"curriculum": "joint", "inst_lr": 0.8}},
}


class Trainer:
    """One variant's model, optimisers and hooks; `epoch()` trains one epoch as engine/loop.py does."""

    def __init__(self, data_cfg: dict, methods: dict, workdir: Path):
        run = RunConfig.model_validate({"data": data_cfg, "model": {"name": "small_cnn", "width": 0.5},
                                        "train": {"batch_size": 64, "device": "cpu"}, "methods": methods})
        seed_everything(0)
        self.run = run
        self.data, self.hooks, self.model = build(run, Path(tempfile.mkdtemp()), workdir, torch.device("cpu"))
        self.task = get_task(run.task, run.task_params)
        self.opt = build_optimizer(self.model.parameters(), run.train.optimizer)
        self.extra = self.hooks.optimizers(self.model)
        self.state = TrainState(model=self.model, optimizer=self.opt, data=self.data,
                                extra_optimizers=self.extra)

    def epoch(self) -> float:
        t0 = time.process_time()
        self.model.train()
        default = lambda: self.data.batches(self.run.train.batch_size)  # noqa: E731
        for batch in self.hooks.train_batches(0, self.state, default):
            outputs = self.model(batch.x)
            per = self.hooks.loss(outputs, batch, self.state, self.task.loss)
            loss = per.mean() if per.ndim else per
            self.opt.zero_grad(set_to_none=True)
            for o in self.extra:
                o.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            for o in self.extra:
                o.step()
            self.state.step += 1
            self.hooks.call("on_step_end", self.state)
        self.hooks.call("on_epoch_end", self.state)
        return time.process_time() - t0


def bookkeeping_ms(n: int, batch: int = 128, steps: int = 20) -> float:
    """Milliseconds per step for the instance vector alone: gather+exp, backward into a dense (n,) grad,
    SparseSGD step and clamp, with a minibatch of `batch` items."""
    p = torch.zeros(n, requires_grad=True)
    opt = SparseSGD([p], lr=0.2, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    times = []
    for _ in range(steps + 3):
        idx = torch.randint(0, n, (batch,), generator=g)
        t0 = time.process_time()
        opt.zero_grad(set_to_none=True)
        p[idx].exp().sum().backward()
        opt.present(p, idx)
        opt.step()
        with torch.no_grad():
            p.clamp_(-3.0, 3.0)
        times.append(time.process_time() - t0)
    return 1000 * statistics.median(times[3:])


def hook_overhead_us(dp: Trainer, base: Trainer, reps: int = 7, steps: int = 200) -> float:
    """µs per step that the DP loss, its backward, the SparseSGD steps and the clamp add to plain CE."""
    batch = next(dp.data.batches(dp.run.train.batch_size))
    with torch.no_grad():
        z0 = dp.model(batch.x)

    def plain() -> None:
        z = z0.clone().requires_grad_()
        base.hooks.loss(z, batch, base.state, base.task.loss).mean().backward()

    def with_dp() -> None:
        z = z0.clone().requires_grad_()
        loss = dp.hooks.loss(z, batch, dp.state, dp.task.loss).mean()
        for o in dp.extra:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in dp.extra:
            o.step()
        dp.hooks.call("on_step_end", dp.state)

    best = {}
    for name, f in (("plain", plain), ("dp", with_dp)):
        for _ in range(20):
            f()
        runs = []
        for _ in range(reps):
            t0 = time.process_time()
            for _ in range(steps):
                f()
            runs.append((time.process_time() - t0) / steps)
        best[name] = min(runs)
    return 1e6 * (best["dp"] - best["plain"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, CPU, {a.threads} thread(s), small_cnn width 0.5, batch 64, "
          f"{a.rounds} interleaved rounds; process CPU time")
    for name, cfg in CONFIGS.items():
        trainers = {v: Trainer(cfg, m, Path(a.workdir)) for v, m in VARIANTS.items()}
        for t in trainers.values():  # warm-up epoch
            t.epoch()
        times: dict[str, list[float]] = {v: [] for v in trainers}
        for r in range(a.rounds):
            order = list(trainers) if r % 2 == 0 else list(trainers)[::-1]
            for v in order:
                times[v].append(trainers[v].epoch())
        base, fastest = statistics.median(times["baseline"]), min(times["baseline"])
        tr = trainers["baseline"]
        steps = -(-tr.data.n_train // tr.run.train.batch_size)
        print(f"\n{name}: {tr.data.n_train} training items, {steps} steps, train epoch only")
        head = ("variant", "median s", "ratio", "min s", "ratio", "ms/step over")
        print("  {:10s} {:>9s} {:>6s} {:>8s} {:>6s} {:>13s}".format(*head))
        for v, ts in times.items():
            med, low = statistics.median(ts), min(ts)
            extra = 1000 * (low - fastest) / steps
            print(f"  {v:10s} {med:9.4f} {med / base:6.3f} {low:8.4f} {low / fastest:6.3f} {extra:13.3f}")
        print("  per-step cost of the data-parameter hooks alone (fixed logits, min of 7 × 200 steps):")
        for v in ("class", "instance", "joint"):
            us = hook_overhead_us(trainers[v], tr)
            print(f"    {v:8s} {us:7.1f} µs/step = {us / (1e6 * fastest / steps):.1%} of a baseline step")
    print("\ninstance-vector bookkeeping per step (batch 128), 1 CPU thread:")
    for n in (10_000, 50_000, 1_281_167):
        print(f"  N = {n:>9,d}: {bookkeeping_ms(n):7.3f} ms/step")


if __name__ == "__main__":
    main()
