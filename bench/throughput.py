"""ResNet-18 training throughput: the harness's epoch against a minimal airbench-style loop (issue 15 §5).

Both train the project's ResNet-18 (models/resnets.py) on the same synthetic CIFAR-shaped data (3×32×32,
10 classes) held on the device, at the same batch size, with SGD (Nesterov, weight decay) and the same
bf16 autocast / channels_last / torch.compile switches, in one process. The harness is the real path:
prepared data written as `prepare` writes it (curriculab.synthetic.write_synthetic), `loop.build` (DeviceData,
methods, model) and `loop.train_epoch`; the minimal loop is plain tensors, a permutation and
forward/backward/step. Epochs alternate (harness, minimal, harness, ...) after one warm-up epoch each (which
also compiles); the medians are compared: images/s of each and the ratio harness/minimal (target ≥ 0.8).

    python bench/throughput.py --device cuda          # defaults: batch 512, 40 steps an epoch, 5 repeats
    python bench/throughput.py --device cpu --batch 16 --steps 3 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from curriculab.config import Params, RunConfig
from curriculab.engine.devices import seed_everything
from curriculab.engine.loop import build, train_epoch
from curriculab.engine.optim import build_optimizer
from curriculab.engine.tasks import get_task
from curriculab.methods.base import TrainState
from curriculab.models import create_model
from curriculab.synthetic import write_synthetic

TARGET = 0.8


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def harness(run: RunConfig, workdir: Path):
    """One epoch of the harness (loop.train_epoch on loop.build's data and model), as a callable."""
    device = torch.device(run.train.device)
    data, hooks, model = build(run, workdir, workdir, device)
    forward = torch.compile(model) if run.train.compile else model
    opt = build_optimizer(model.parameters(), run.train.optimizer)
    steps = data.n_train // run.train.batch_size
    state = TrainState(model=forward, optimizer=opt, data=data, epochs=1, steps_per_epoch=steps,
                       extra_optimizers=hooks.optimizers(model))
    task = get_task(run.task, run.task_params)
    hooks.call("on_train_start", state)
    return lambda: train_epoch(run, state, hooks, task)["train_seen"]


def minimal(run: RunConfig, n: int):
    """One epoch of a minimal loop: random images in [0, 1) on the device, the same model and optimiser."""
    device, t = torch.device(run.train.device), run.train
    x = torch.rand(n, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (n,), device=device)
    model = create_model(run.model.name, 3, 10, run.model.width).to(device)
    if device.type == "cuda" and t.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if t.compile else model
    opt = torch.optim.SGD(model.parameters(), lr=t.optimizer.lr, momentum=t.optimizer.momentum,
                          nesterov=t.optimizer.nesterov, weight_decay=t.optimizer.weight_decay)
    use_bf16 = device.type == "cuda" and t.bf16

    def epoch() -> int:
        forward.train()
        perm = torch.randperm(n, device=device)
        steps = n // t.batch_size
        for i in range(steps):
            idx = perm[i * t.batch_size:(i + 1) * t.batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = F.cross_entropy(forward(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return steps * t.batch_size

    return epoch


def timed(epoch, device: torch.device) -> float:
    """Images per second of one epoch."""
    _sync(device)
    t0 = time.perf_counter()
    seen = epoch()
    _sync(device)
    return seen / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=40, help="steps an epoch")
    p.add_argument("--repeats", type=int, default=5, help="timed epochs of each, alternating")
    for flag in ("bf16", "channels-last", "compile"):
        p.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, default=None,
                       help="default: on with --device cuda, off on the CPU")
    a = p.parse_args(argv)
    gpu = a.device == "cuda"
    flags = {k: gpu if getattr(a, k) is None else getattr(a, k) for k in ("bf16", "channels_last", "compile")}
    n = a.batch * a.steps
    run = RunConfig.model_validate({
        "data": {"dataset": "cifar10"}, "model": {"name": "resnet18"},
        "train": {"batch_size": a.batch, "device": a.device, **flags, "checkpoint": False,
                  "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True,
                                "weight_decay": 5e-4}}})
    device = torch.device(a.device)
    seed_everything(0)
    with tempfile.TemporaryDirectory(prefix="curriculab-throughput-") as tmp:
        wd = Path(tmp)
        params = Params.model_validate({"prepare": {"datasets": ["cifar10"], "download": False},
                                        "tracking": {"enabled": False}})
        write_synthetic(params, wd, {"cifar10": (n, a.batch, a.batch)})
        loops = {"harness": harness(run, wd), "minimal": minimal(run, n)}
        for epoch in loops.values():  # warm-up (and compile)
            epoch()
        speeds: dict[str, list[float]] = {k: [] for k in loops}
        for _ in range(a.repeats):
            for k, epoch in loops.items():
                speeds[k].append(timed(epoch, device))
    med = {k: statistics.median(v) for k, v in speeds.items()}
    name = torch.cuda.get_device_name() if gpu else "CPU"
    print(f"ResNet-18, 3×32×32, 10 classes, batch {a.batch}, {a.steps} steps an epoch, {a.repeats} alternating "
          f"repeats after a warm-up, on {name} ({torch.get_num_threads()} CPU threads); "
          + ", ".join(f"{k}={v}" for k, v in flags.items()))
    for k, v in speeds.items():
        print(f"{k}: {med[k]:,.1f} images/s (median; runs: {', '.join(f'{s:,.1f}' for s in v)})")
    ratio = med["harness"] / med["minimal"]
    print(f"ratio harness/minimal: {ratio:.2f}x (target >= {TARGET}x): {'ok' if ratio >= TARGET else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
