"""Progressive sharpening costs, as ratios measured side by side in one process.

(a) preparing the blurred copies (blur + write with checksum) vs one training epoch on the same data;
(b) one training epoch drawn from a blurred copy vs from the original (the same device loader).

    .venv/bin/python bench/progressive_sharpening.py [--dataset fashion_mnist] [--sizes 2 3 4] [--reps 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from curriculab.config import RunConfig  # noqa: E402
from curriculab.data.loader import DeviceData  # noqa: E402
from curriculab.data.prepared import load_prepared, write_copy, write_prepared  # noqa: E402
from curriculab.engine.devices import resolve_device  # noqa: E402
from curriculab.methods.progressive_sharpening import BoxCopies, make_box_copies  # noqa: E402
from curriculab.models import create_model  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def epoch(data: DeviceData, model: torch.nn.Module, opt: torch.optim.Optimizer, bs: int,
          images: torch.Tensor | None, device: torch.device) -> float:
    """One training epoch (forward, cross-entropy, backward, step) over the device loader; seconds."""
    sync(device)
    t0 = time.perf_counter()
    model.train()
    for b in data.batches(bs, images=images):
        loss = F.cross_entropy(model(b.x), b.y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data"), help="the project's data dir (read only)")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--width", type=float, default=0.25, help="small_cnn width (ps.t1 offline: 0.25)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    device = resolve_device(a.device)
    prep = load_prepared(Path(a.data), a.dataset)
    print(f"{a.dataset}: {len(prep.x)} images {tuple(prep.x.shape[1:])} "
          f"(train split {len(prep.splits['train'])}); box sizes {a.sizes}; small_cnn width {a.width}; "
          f"device {device}; torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as tmp:
        # a private copy of the prepared dataset, so the project's data dir is never written
        write_prepared(Path(tmp), a.dataset, prep.x, prep.y, prep.splits, prep.classes)
        params = BoxCopies(sizes=a.sizes)
        make_box_copies(prep.x[:8], params)  # warm-up (thread pool start), as the epochs get one
        t0 = time.perf_counter()
        copies = make_box_copies(prep.x, params)
        t_blur = time.perf_counter() - t0
        for name, x in copies.items():
            write_copy(Path(tmp), a.dataset, name, x)
        t_prepare = time.perf_counter() - t0

        run = RunConfig.model_validate({"data": {"dataset": a.dataset},
                                        "train": {"batch_size": a.batch_size}})
        data = DeviceData(run, tmp, device)
        name = next(iter(copies))  # the sharpest: every copy has the same shape and loader path
        blurred = data.copy(name)
        torch.manual_seed(0)
        model = create_model("small_cnn", data.in_channels, data.classes, a.width).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        epoch(data, model, opt, a.batch_size, None, device)  # warm-up
        orig, copy = [], []
        for _ in range(a.reps):  # interleaved, so drifts in machine load hit both alike
            orig.append(epoch(data, model, opt, a.batch_size, None, device))
            copy.append(epoch(data, model, opt, a.batch_size, blurred, device))
    t_orig, t_copy = statistics.median(orig), statistics.median(copy)
    print()
    print("| measurement | seconds | ratio |")
    print("|---|---|---|")
    print(f"| one training epoch on the original ({data.n_train} items, median of {a.reps}) | "
          f"{t_orig:.2f} | 1.00 |")
    print(f"| (a) blur {len(a.sizes)} copies of all {len(prep.x)} images | {t_blur:.2f} | "
          f"{t_blur / t_orig:.3f} |")
    print(f"| (a) prepare {len(a.sizes)} copies (blur + write npz + sha256) | {t_prepare:.2f} | "
          f"{t_prepare / t_orig:.3f} |")
    print(f"| (b) one training epoch from copy {name} (median of {a.reps}) | {t_copy:.2f} | "
          f"{t_copy / t_orig:.3f} |")
    print()
    print(f"(a) preparing the copies costs {t_prepare / t_orig:.2f} training epochs (target ≤ 1); "
          f"(b) an epoch from a copy takes {t_copy / t_orig:.2f}× an epoch from the original (target ≈ 1).")


if __name__ == "__main__":
    main()
