"""PGD-10 (ε = 8/255, step 2/255) on the harness's batched path against torchattacks called on a plain
DataLoader, on the same model and images, side by side in one process. Prints images/s, the ratio, and
whether both found the same robust accuracy.

Harness path (`evaluate.adversarial`): the test split stays on the device as uint8, batches of `--bs` are
sliced from it and scaled to [0, 1] on the device, and the model carries the normalisation as its first
layer. Plain path, as the thesis' official robustness script runs it: a `DataLoader` over a float
TensorDataset (batch 256) with `torchattacks.PGD.set_normalization_used`, each batch moved to the device.

    .venv/bin/python bench/adversarial.py [--n 2000] [--size 28] [--bs 256] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
import torchattacks
from torch.utils.data import DataLoader, TensorDataset

from curriculab.evaluate.adversarial import AttackParams, Classifier, predictions, resolve_attack, robust_accuracy
from curriculab.models import create_model


def harness(model, mean, std, x_u8, y, bs) -> float:
    p = resolve_attack("pgd", AttackParams(), "")
    acc, _ = robust_accuracy(Classifier(model, mean, std), "pgd", p, x_u8, y, bs)
    return acc[""]


def plain(model, mean, std, x_u8, y, device) -> float:
    ds = TensorDataset(x_u8.cpu().float().div(255), y.cpu())
    dl = DataLoader(ds, batch_size=256, shuffle=False)
    net = Classifier(model, torch.zeros(1, device=device), torch.ones(1, device=device))  # an unnormalised net
    atk = torchattacks.PGD(net, eps=8 / 255, alpha=2 / 255, steps=10, random_start=False)
    atk.set_normalization_used(mean.flatten().tolist(), std.flatten().tolist())
    hits = 0
    for xb, yb in dl:
        xb, yb = xb.to(device), yb.to(device)
        adv = atk(xb, yb)
        norm = Classifier(model, mean, std)
        hits += int(((predictions(norm, xb) == yb) & (predictions(norm, adv) == yb)).sum())
    return hits / len(y)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--bs", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (a.n, a.channels, a.size, a.size), dtype=torch.uint8, generator=g).to(dev)
    y = torch.randint(0, 10, (a.n,), generator=g).to(dev)
    torch.manual_seed(0)
    model = create_model(a.model, a.channels, 10, a.width).to(dev).eval().requires_grad_(False)
    mean = torch.full((1, a.channels, 1, 1), 0.45, device=dev)
    std = torch.full((1, a.channels, 1, 1), 0.25, device=dev)
    best = {"harness (device-resident, batched)": float("inf"), "torchattacks on a DataLoader": float("inf")}
    accs = {}
    for _ in range(a.repeats):  # interleaved, best of N
        for name, fn in (("harness (device-resident, batched)", lambda: harness(model, mean, std, x, y, a.bs)),
                         ("torchattacks on a DataLoader", lambda: plain(model, mean, std, x, y, dev))):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            accs[name] = fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - t)
    print(f"PGD-10 on {a.n} images {a.channels}×{a.size}×{a.size}, {a.model} (width {a.width:g}), device "
          f"{a.device}, {a.threads} thread(s), harness batch {a.bs} vs DataLoader batch 256, best of {a.repeats}")
    for k, v in best.items():
        print(f"  {k:36s} {a.n / v:10,.0f} images/s   robust accuracy {accs[k]:.4f}")
    ratio = best["torchattacks on a DataLoader"] / best["harness (device-resident, batched)"]
    print(f"  ratio (harness speed / DataLoader speed): {ratio:.2f}×")


if __name__ == "__main__":
    main()
