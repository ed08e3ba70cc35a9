"""POA epoch times, side by side in one process (thesis §2.4; targets from the POA issue).

(a) An MLD K = 8 epoch with batched (vmapped) trial steps against the naive loop (deepcopy, step, score,
    restore): target ≥ 3×. The naive loop's time spent copying and restoring state is measured too: what is
    left is its steps and forwards, which bounds what batching can gain at a given speed per step.
(b) An MLD K = 8 epoch against a plain epoch, beside the ratio of their floating-point work; target: the
    measured ratio within 1.5× of the work ratio.
(c) A MALO K = 8 epoch against a plain epoch, with its work ratio.

Work is counted in forward-pass units of one batch: a plain step is 3 (forward + backward ≈ 2 forwards);
an MLD candidate is a trial step (3) plus the forward that measures its new loss (1); a MALO candidate
is one forward. The variants are interleaved over the repetitions and the median epoch time is reported.

    python bench/poa.py                    # the offline setting: small_cnn width 0.25, 14×14, batch 16, CPU
    python bench/poa.py --width 1 --image-size 32 --channels 3 --n 12800 --batch-size 128 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from curriculab.methods.base import Batch
from curriculab.methods.poa import Poa, PoaParams
from curriculab.models import create_model


class Data:
    """The part of DeviceData that the POA method uses, over synthetic uint8 images."""

    def __init__(self, n: int, channels: int, size: int, device: torch.device):
        g = torch.Generator().manual_seed(0)
        self.train_x = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8).to(device)
        self.train_y = torch.randint(0, 10, (n,), generator=g).to(device)
        self.val = (self.train_x[:512], self.train_y[:512])
        self.test = self.val
        self.gen = torch.Generator(device=device).manual_seed(0)
        self.device = device

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    def permutation(self, n: int | None = None) -> torch.Tensor:
        return torch.randperm(n or self.n_train, generator=self.gen, device=self.device)

    def to_input(self, x: torch.Tensor, augment: bool) -> torch.Tensor:
        return x.float().div(255).sub(0.5)


class NaivePoa(Poa):
    """The reference: scores each candidate by a real step on the live model, then restores it from copies."""

    copying = 0.0  # seconds spent saving and restoring the model and optimiser state

    def score(self, state, x, y):
        model, opt = state.model, state.optimizer
        t = time.perf_counter()
        saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))
        self.copying += time.perf_counter() - t
        out = []
        for k in range(len(x)):
            with torch.no_grad():
                prev = F.cross_entropy(model(x[k]), y[k])
            opt.zero_grad()
            F.cross_entropy(model(x[k]), y[k]).backward()
            opt.step()
            with torch.no_grad():
                out.append(prev - F.cross_entropy(model(x[k]), y[k]))
            t = time.perf_counter()
            model.load_state_dict(saved[0])
            opt.load_state_dict(copy.deepcopy(saved[1]))
            self.copying += time.perf_counter() - t
        return torch.stack(out)


def make(name: str, args, data: Data, device: torch.device):
    torch.manual_seed(0)
    model = create_model(args.model, args.channels, 10, args.width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    method = None
    if name != "plain":
        p = {"scoring": "loss", "k": args.k} if name == "MALO" else {"scoring": "loss_delta", "order": "descending",
                                                                     "k": args.k}
        ctx = SimpleNamespace(run=SimpleNamespace(train=SimpleNamespace(batch_size=args.batch_size)), data=data)
        method = (NaivePoa if name == "MLD naive" else Poa)(PoaParams.model_validate(p), ctx)
    return SimpleNamespace(name=name, model=model, opt=opt, method=method,
                           state=SimpleNamespace(model=model, optimizer=opt))


def epoch(v, data: Data, bs: int, device: torch.device) -> tuple[float, int, int]:
    """One training epoch; returns (seconds, steps, candidates scored)."""
    v.model.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    if v.method:
        v.method.on_epoch_start(v.state)
        batches = v.method.train_batches(0, v.state)
    else:
        perm = data.permutation()
        batches = (Batch(data.to_input(data.train_x[i], True), data.train_y[i], i) for i in perm.split(bs))
    steps = 0
    for b in batches:
        loss = F.cross_entropy(v.model(b.x), b.y)
        v.opt.zero_grad()
        loss.backward()
        v.opt.step()
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, steps, v.method.scored if v.method else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--image-size", type=int, default=14)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--n", type=int, default=1100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = Data(args.n, args.channels, args.image_size, device)
    variants = [make(n, args, data, device) for n in ("plain", "MLD batched", "MLD naive", "MALO")]
    times = {v.name: [] for v in variants}
    info = {}
    for v in variants:  # warm-up
        epoch(v, data, args.batch_size, device)
    naive = next(v.method for v in variants if v.name == "MLD naive")
    copying = []  # per epoch, the naive loop's seconds of state copies and restores
    for _ in range(args.reps):
        for v in variants:
            before = naive.copying
            t, steps, scored = epoch(v, data, args.batch_size, device)
            times[v.name].append(t)
            info[v.name] = (steps, scored)
            if v.method is naive:
                copying.append(naive.copying - before)
    med = {k: statistics.median(v) for k, v in times.items()}
    steps = info["plain"][0]
    work = {"MLD batched": (3 * steps + 4 * info["MLD batched"][1]) / (3 * steps),
            "MALO": (3 * steps + info["MALO"][1]) / (3 * steps)}
    print(f"{args.model} width {args.width}, {args.image_size}px × {args.channels}, n {args.n}, "
          f"batch {args.batch_size}, "
          f"K {args.k}, {args.threads} thread(s), {args.device}; median of {args.reps} interleaved epochs")
    for k, t in med.items():
        print(f"  {k:12s} {t * 1000:9.1f} ms/epoch  (steps, candidates scored: {info[k]})")
    a = med["MLD naive"] / med["MLD batched"]
    print(f"(a) MLD K={args.k}: naive loop / batched = {a:.2f}×  (target ≥ 3×)")
    work_alone = med["MLD naive"] - statistics.median(copying)  # the loop's steps and forwards without its copies
    print(f"    the naive loop spends {1 - work_alone / med['MLD naive']:.0%} of its epoch copying and restoring "
          f"state; "
          f"its steps and forwards alone take {work_alone * 1000:.1f} ms, {work_alone / med['MLD batched']:.2f}× the "
          f"batched epoch; 3× needs the batched steps {3 * work_alone / med['MLD naive']:.2f}× faster than the same "
          f"steps taken one candidate at a time")
    b = med["MLD batched"] / med["plain"]
    print(f"(b) MLD K={args.k} / plain epoch = {b:.2f}×; work ratio {work['MLD batched']:.2f}×; measured / work = "
          f"{b / work['MLD batched']:.2f} (target ≤ 1.5)")
    c = med["MALO"] / med["plain"]
    print(f"(c) MALO K={args.k} / plain epoch = {c:.2f}×; work ratio {work['MALO']:.2f}×; measured / work = "
          f"{c / work['MALO']:.2f}")


if __name__ == "__main__":
    main()
