"""Images/s of the device loader (batched on-device crop + flip + normalise) against a torchvision
DataLoader applying the same augmentation per sample through transforms, on the same uint8 data,
side by side in one process. Prints the ratio.

    .venv/bin/python bench/loader.py [--n 20000] [--size 32] [--workers 0]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T

from curriculab.config import AugmentParams
from curriculab.data.loader import random_crop, random_flip


class UInt8Set(Dataset):
    def __init__(self, x, y, tf):
        self.x, self.y, self.tf = x, y, tf

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.tf(self.x[i]), self.y[i]


def device_epoch(x, y, bs, mean, std, gen, aug: AugmentParams) -> int:
    n = 0
    perm = torch.randperm(len(x), generator=gen)
    for i in range(0, len(x), bs):
        idx = perm[i:i + bs]
        xb = x[idx].float().div_(255)
        xb = random_flip(random_crop(xb, aug.crop_pad, gen), gen)
        xb = (xb - mean) / std
        n += len(xb) + 0 * int(y[idx][0])
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--bs", type=int, default=128)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (a.n, 3, a.size, a.size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (a.n,), generator=g)
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)
    tf = T.Compose([T.RandomCrop(a.size, padding=4), T.RandomHorizontalFlip(), T.ToDtype(torch.float32, scale=True),
                    T.Normalize([0.5] * 3, [0.25] * 3)])
    dl = DataLoader(UInt8Set(x, y, tf), batch_size=a.bs, shuffle=True, num_workers=a.workers)
    aug = AugmentParams(crop_pad=4, flip=True)
    best = {"device loader": float("inf"), "torchvision DataLoader": float("inf")}
    for _ in range(a.repeats):  # interleaved, best of N
        t = time.perf_counter()
        device_epoch(x, y, a.bs, mean, std, g, aug)
        best["device loader"] = min(best["device loader"], time.perf_counter() - t)
        t = time.perf_counter()
        for _xb, _yb in dl:
            pass
        best["torchvision DataLoader"] = min(best["torchvision DataLoader"], time.perf_counter() - t)
    print(f"{a.n} images {a.size}×{a.size}×3, batch {a.bs}, 1 thread, "
          f"DataLoader workers {a.workers}, best of {a.repeats}")
    for k, v in best.items():
        print(f"  {k:24s} {a.n / v:12,.0f} images/s")
    print(f"  ratio (device / DataLoader): {best['torchvision DataLoader'] / best['device loader']:.1f}×")


if __name__ == "__main__":
    main()
