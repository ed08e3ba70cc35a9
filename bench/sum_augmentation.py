"""Sum Augmentation speed, side by side in one process (issue targets: both ≤ 1.1×).

(a) A training epoch with Sum Augmentation at K (mix the batch with `sum_mix`, BCE ÷ K, top-K train
    accuracy) against a plain epoch (cross-entropy, top-1 accuracy) over the same batches of m images.
    SA forwards m/K mixed images per step, so it is expected to be cheaper; the mixing's own cost is
    also reported as its share of the SA epoch.
(b) TTSA evaluation with C mixes (one forward over C × batch, `ttsa_predict`) against C plain
    evaluations of the test set. TTSA's batch is eval-batch-size // C, so both forward the same number
    of images at a time (one forward of C × 500 images is ~1.5× slower per image on a CPU: cache).

Variants are interleaved over `--reps` repetitions; medians are reported.

    python bench/sum_augmentation.py                         # the offline WRN (10-2, width 0.5), 8×8, CPU
    python bench/sum_augmentation.py --device cuda --depth 28 --widen 10 --width 1 --image-size 32 \
        --channels 3 --n 10000 --batch-size 100
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from curriculab.methods.sum_augmentation import sum_bce, sum_mix, topk_correct, ttsa_predict
from curriculab.models import create_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_epoch(model, opt, x, y, bs: int, k: int, device, mix_time: list[float]) -> float:
    """One epoch; k = 1 is plain training. Returns seconds."""
    model.train()
    _sync(device)
    t0 = time.perf_counter()
    correct = torch.zeros((), device=device)
    for i in range(0, len(y) - len(y) % bs, bs):
        xb, yb = x[i:i + bs], y[i:i + bs]
        if k > 1:
            tm = time.perf_counter()
            xm, tm_targets = sum_mix(xb, F.one_hot(yb, 10).float(), k)
            _sync(device)
            mix_time.append(time.perf_counter() - tm)
            out = model(xm)
            loss = sum_bce(out, tm_targets, k).mean()
            correct += topk_correct(out, yb.reshape(k, -1))
        else:
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            correct += (out.argmax(1) == yb).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    float(correct)
    _sync(device)
    return time.perf_counter() - t0


@torch.no_grad()
def evaluate(model, x, bs: int, device, c: int, pool: torch.Tensor | None, gen) -> float:
    """C plain passes over x (pool None), or one TTSA pass with C mixes. Returns seconds."""
    model.eval()
    _sync(device)
    t0 = time.perf_counter()
    for i in range(0, len(x), bs):
        xb = x[i:i + bs]
        if pool is None:
            for _ in range(c):
                model(xb).softmax(1)
        else:
            idx = torch.randint(0, len(pool), (c * 3 * len(xb),), generator=gen, device=device)
            ttsa_predict(model, xb, pool[idx].reshape(c, 3, len(xb), *xb.shape[1:]))
    _sync(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--widen", type=int, default=2)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--image-size", type=int, default=8)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--n", type=int, default=2048, help="training images per epoch")
    ap.add_argument("--test", type=int, default=500, help="test images per evaluation")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--eval-batch-size", type=int, default=500)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--c", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    shape = (args.channels, args.image_size, args.image_size)
    x = torch.randn(args.n, *shape, generator=g).to(device)
    y = torch.randint(0, 10, (args.n,), generator=g).to(device)
    xt = torch.randn(args.test, *shape, generator=g).to(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)

    def make():
        torch.manual_seed(0)
        m = create_model("wrn", args.channels, 10, args.width, depth=args.depth, widen=args.widen).to(device)
        return m, torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)

    plain, sa = make(), make()
    mix: list[float] = []
    for v, k in ((plain, 1), (sa, args.k)):  # warm-up
        train_epoch(*v, x, y, args.batch_size, k, device, [])
    t = {"plain epoch": [], f"SA epoch (K={args.k})": [], f"{args.c} plain evaluations": [],
         f"TTSA evaluation (C={args.c})": []}
    for _ in range(args.reps):
        t["plain epoch"].append(train_epoch(*plain, x, y, args.batch_size, 1, device, []))
        t[f"SA epoch (K={args.k})"].append(train_epoch(*sa, x, y, args.batch_size, args.k, device, mix))
        t[f"{args.c} plain evaluations"].append(evaluate(plain[0], xt, args.eval_batch_size, device, args.c, None, gen))
        t[f"TTSA evaluation (C={args.c})"].append(evaluate(plain[0], xt, max(1, args.eval_batch_size // args.c),
                                                           device, args.c, x, gen))
    med = {n: statistics.median(v) for n, v in t.items()}
    print(f"WRN-{args.depth}-{args.widen} width {args.width:g}, {args.image_size}×{args.image_size}×{args.channels}, "
          f"{args.n} train / {args.test} test images, batch {args.batch_size}, device {device}, threads "
          f"{args.threads}; median of {args.reps} interleaved repetitions")
    names = list(med)
    for base, other in ((names[0], names[1]), (names[2], names[3])):
        print(f"  {base:24s} {med[base]:8.3f} s")
        print(f"  {other:24s} {med[other]:8.3f} s   ×{med[other] / med[base]:.2f}")
    steps = args.n // args.batch_size
    share = sum(mix) / len(mix) * steps / med[names[1]]
    print(f"  sum_mix's share of the SA epoch: {share * 100:.1f}%")


if __name__ == "__main__":
    main()
