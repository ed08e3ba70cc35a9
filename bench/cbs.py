"""Epoch time of the same model with and without CBS, side by side in one process (CBS issue: ≤ 1.3×).

Trains one epoch (forward, backward, SGD step, and CBS's per-step σ hook) over the same synthetic batches
for each variant, interleaving the variants over several repetitions and reporting the median epoch time
and its ratio to the plain network. `cbs σ=1` keeps every blur active (the slow case: the first part of
training); `cbs annealed` runs the offline schedule (σ0 = 1, ×0.9 every 0.1 epoch, continued over the
measured epochs with period reps/40, i.e. the paper's curve compressed to them; its mean epoch time is
reported), where the blur is skipped once σ is so small that the float32 kernel is the identity.

    python bench/cbs.py                       # ResNet-18 at the offline width (0.125), 12×12, CPU
    python bench/cbs.py --device cuda --width 1 --image-size 32 --channels 3 --n 10000
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from curriculab.methods.cbs import CBS
from curriculab.models import create_model


def make_variant(name: str, args, device: torch.device):
    torch.manual_seed(0)
    model = create_model(args.model, args.channels, 10, args.width)
    method = None
    if name != "plain":
        params = {"sigma": 1.0, "decay": 0.9, "period": args.reps / 40, "placement": args.placement,
                  "constant": name == "cbs σ=1"}
        method = CBS(CBS.Params.model_validate(params), SimpleNamespace(data=SimpleNamespace(
            in_channels=args.channels)))
        model = method.wrap_model(model)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = -(-args.n // args.batch_size)
    return SimpleNamespace(model=model, opt=opt, method=method,
                           state=SimpleNamespace(epoch=0, step=0, steps_per_epoch=steps))


def epoch(v, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """One training epoch; returns seconds (synchronised on CUDA)."""
    v.model.train()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    if v.method:
        v.method.on_epoch_start(v.state)
    for i in range(0, len(y), batch_size):
        if amp:
            with amp:
                out = v.model(x[i:i + batch_size])
        else:
            out = v.model(x[i:i + batch_size])
        loss = F.cross_entropy(out.float(), y[i:i + batch_size])
        v.opt.zero_grad(set_to_none=True)
        loss.backward()
        v.opt.step()
        v.state.step += 1
        if v.method:
            v.method.on_step_end(v.state)
    if device.type == "cuda":
        torch.cuda.synchronize()
    v.state.epoch += 1
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--image-size", type=int, default=12)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--n", type=int, default=1000, help="training images per epoch")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--placement", default="no_shortcut")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, args.channels, args.image_size, args.image_size, generator=g).to(device)
    y = torch.randint(0, 10, (args.n,), generator=g).to(device)
    names = ["plain", "cbs σ=1", "cbs annealed"]
    variants = {n: make_variant(n, args, device) for n in names}
    for v in variants.values():  # warm-up epoch (allocator, kernels); then the schedule starts again
        epoch(v, x, y, args.batch_size, device)
        v.state.epoch = v.state.step = 0
        if v.method:
            v.method.set_sigma(1.0)
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.reps):
        for n in names:
            times[n].append(epoch(variants[n], x, y, args.batch_size, device))
    base = statistics.median(times["plain"])
    print(f"{args.model} width {args.width:g}, {args.image_size}×{args.image_size}×{args.channels}, "
          f"{args.n} images/epoch, batch {args.batch_size}, device {device}, threads {args.threads}, "
          f"CBS placement {args.placement}; median of {args.reps} epochs (annealed: mean over its schedule)")
    for n in names:
        med = statistics.mean(times[n]) if n == "cbs annealed" else statistics.median(times[n])
        extra = ""
        if variants[n].method:
            m = variants[n].method
            extra = f"  (σ at the end {m.sigma:.3g}, {len(m.layers)} blur layers)"
        print(f"  {n:13s} {med:8.3f} s/epoch   ×{med / base:.2f}{extra}")


if __name__ == "__main__":
    main()
