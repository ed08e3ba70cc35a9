"""The device loader: the dataset lives on the device as uint8; batches are drawn by indexing.

Augmentation (pad-and-crop, flips, rotation and translation) and normalisation act on whole batches on the device, as in
KellerJordan/airbench. Nothing here loops over samples in Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from curriculab.config import AugmentParams, ConfigError, RunConfig
from curriculab.data.derive import corrupt_labels, resize, sample, subset_per_class
from curriculab.data.prepared import Prepared, load_copy, load_prepared


@dataclass
class Batch:
    """One minibatch: inputs, hard labels (n,) or soft targets (n, classes), and dataset positions."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Pad every image by `pad` zeros and crop back at a random offset per image: two gathers, no loop."""
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(n, c, h, w + 2 * pad)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(n, c, h, w)
    return xp.gather(2, rows).gather(3, cols)


def random_flip(x: torch.Tensor, gen: torch.Generator, dim: int = 3) -> torch.Tensor:
    """Mirror a random half of the batch left-right (dim 3) or up-down (dim 2)."""
    mask = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(dim), x)


def random_affine(x: torch.Tensor, degrees: float, translate: float, gen: torch.Generator) -> torch.Tensor:
    """Turn each image by U(-degrees, degrees) and shift it by U(-translate, translate) of its size per axis,
    about its centre (bilinear, zeros outside): one affine_grid + grid_sample for the batch."""
    n = x.shape[0]
    u = torch.rand(n, 3, generator=gen, device=x.device) * 2 - 1
    a = torch.deg2rad(u[:, 0] * degrees)
    cos, sin = torch.cos(a), torch.sin(a)
    shift = u[:, 1:] * translate * 2  # grid coordinates span [-1, 1]: a shift of t × size is 2t
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_resized_crop(x: torch.Tensor, size: int, gen: torch.Generator, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), tries: int = 10) -> torch.Tensor:
    """torchvision's RandomResizedCrop for a batch: per image a box of U(scale) of the area with log-uniform aspect
    ratio (the first of `tries` draws that fits; else the whole image), at a uniform position, scaled bilinearly
    to size×size: one affine_grid + grid_sample for the batch."""
    n, _, h, w = x.shape
    dev = x.device
    area = torch.rand(n, tries, generator=gen, device=dev) * (scale[1] - scale[0]) + scale[0]
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(torch.rand(n, tries, generator=gen, device=dev) * (hi - lo) + lo)
    cw = torch.round(torch.sqrt(area * h * w * aspect))
    ch = torch.round(torch.sqrt(area * h * w / aspect))
    fits = (cw >= 1) & (cw <= w) & (ch >= 1) & (ch <= h)
    first = fits.float().argmax(1, keepdim=True)  # the first draw that fits
    found = fits.any(1)
    cw = torch.where(found, cw.gather(1, first)[:, 0], float(w))  # torchvision's fallback for a square input
    ch = torch.where(found, ch.gather(1, first)[:, 0], float(h))
    u = torch.rand(n, 2, generator=gen, device=dev)
    top, left = torch.floor(u[:, 0] * (h - ch + 1)), torch.floor(u[:, 1] * (w - cw + 1))
    zero = torch.zeros_like(cw)
    theta = torch.stack([torch.stack([cw / w, zero, (2 * left + cw) / w - 1], 1),
                         torch.stack([zero, ch / h, (2 * top + ch) / h - 1], 1)], 1)
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The centred size×size window (torchvision's CenterCrop offsets)."""
    top, left = round((x.shape[-2] - size) / 2), round((x.shape[-1] - size) / 2)
    return x[..., top:top + size, left:left + size]


def channel_stats(x: torch.Tensor, chunk: int = 1 << 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (unbiased) std of uint8 images (N, C, H, W) scaled to [0, 1], each (1, C, 1, 1) float32.

    One float32 pass when the images fit in `chunk` elements (every offline dataset); above that, each chunk's
    float32 moments are merged in float64 (Chan et al.'s pairwise update), so that the statistics of 64 px
    ImageNet never need a float copy of its 15 GiB uint8 training split.
    """
    per = max(1, chunk // max(1, x[0].numel()))
    if len(x) <= per:
        xf = x.float() / 255
        return xf.mean((0, 2, 3), keepdim=True), xf.std((0, 2, 3), keepdim=True)
    n, mean, m2 = 0, 0.0, 0.0
    for i in range(0, len(x), per):
        xf = x[i:i + per].float() / 255
        k = xf.numel() // xf.shape[1]
        mu = xf.mean((0, 2, 3), keepdim=True, dtype=torch.float64)
        d = mu - mean
        m2 = m2 + ((xf - mu.float()) ** 2).sum((0, 2, 3), keepdim=True, dtype=torch.float64) + d ** 2 * n * k / (n + k)
        mean, n = mean + d * k / (n + k), n + k
    return mean.float(), (m2 / (n - 1)).sqrt().float()


class RunData:
    """What a run's data is, wherever its images live: the training items (subset, label noise, oracle as the
    run's settings say) with their labels on the device, the splits' labels, the normalisation and the batched
    augmentation on the device. DeviceData holds the images on the device; data/stream.py's StreamData decodes
    them from files batch by batch."""

    def __init__(self, run: RunConfig, prep: Prepared, device: torch.device):
        cfg = run.data
        self.name, self.device = cfg.dataset, device
        self.checksum, self.classes = prep.checksum, prep.classes
        pos = prep.splits["train"]
        if cfg.train_split == "train+val":
            pos = np.sort(np.concatenate([pos, prep.splits["val"]]))
        if cfg.subset_per_class is not None:
            pos = pos[subset_per_class(prep.y[pos], cfg.subset_per_class, run.seed)]
        if cfg.subset is not None:
            pos = pos[sample(len(pos), cfg.subset, run.seed)]
        true_y = prep.y[pos]
        noisy_y, chosen = corrupt_labels(true_y, cfg.noise.rate, cfg.noise.kind, prep.classes, run.seed)
        if cfg.noise.oracle:  # DP Table 2's oracle: train only on the items that were not corrupted
            keep = ~chosen
            pos, true_y, noisy_y, chosen = pos[keep], true_y[keep], noisy_y[keep], chosen[keep]
        self.train_pos = pos  # positions in the prepared arrays: aligns derived copies with `index`
        self.train_y = torch.from_numpy(noisy_y).to(device)
        self.true_y = torch.from_numpy(true_y).to(device)
        self.chosen = torch.from_numpy(chosen).to(device)  # picked for corruption
        self.corrupt = self.train_y != self.true_y  # label actually differs from the truth
        self.test_pos = prep.splits["test"][: cfg.test_limit] if cfg.test_limit else prep.splits["test"]
        self.val_pos = prep.splits["val"][: cfg.val_limit] if cfg.val_limit else prep.splits["val"]
        self.split_y = {k: torch.from_numpy(prep.y[p]).to(device) for k, p in
                        (("val", self.val_pos), ("test", self.test_pos))}
        self.mean, self.std = torch.zeros(1, device=device), torch.ones(1, device=device)  # the subclass's stats
        self.augment: AugmentParams = cfg.augment
        self.gen = torch.Generator(device=device)
        self.memory_format = torch.contiguous_format  # the model's (engine.loop.build sets channels_last)
        self.gen.manual_seed(run.seed)

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    @property
    def image_size(self) -> int:
        raise NotImplementedError

    def split_items(self, split: str) -> tuple[np.ndarray, torch.Tensor]:
        """Positions in the prepared arrays and labels of 'val', 'test' or 'train' (the training items)."""
        if split == "train":
            return self.train_pos, self.train_y
        return {"val": self.val_pos, "test": self.test_pos}[split], self.split_y[split]

    # -- batches
    def to_input(self, x: torch.Tensor, augment: bool) -> torch.Tensor:
        """uint8 batch → normalised float batch of side image_size, augmented on the device when asked."""
        x = x.float().div_(255)
        if augment and self.augment.resized_crop:
            x = random_resized_crop(x, self.image_size, self.gen)
        elif x.shape[-1] != self.image_size:  # a streamed dataset's load_size squares
            x = center_crop(x, self.image_size)
        if augment and self.augment.crop_pad:
            x = random_crop(x, self.augment.crop_pad, self.gen)
        if augment and self.augment.flip:
            x = random_flip(x, self.gen)
        if augment and self.augment.vflip:
            x = random_flip(x, self.gen, dim=2)
        if augment and (self.augment.rotate or self.augment.translate):
            x = random_affine(x, self.augment.rotate, self.augment.translate, self.gen)
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def permutation(self, n: int | None = None) -> torch.Tensor:
        return torch.randperm(n or self.n_train, generator=self.gen, device=self.device)

    def order(self, indices: torch.Tensor | None, shuffle: bool) -> torch.Tensor:
        """The epoch's item order: `indices` (default: every training item), shuffled when asked."""
        if indices is None:
            return self.permutation() if shuffle else torch.arange(self.n_train, device=self.device)
        return indices[self.permutation(len(indices))] if shuffle else indices


class DeviceData(RunData):
    """One run's data on its device: train (possibly noisy or subset), val and test, plus derived copies."""

    def __init__(self, run: RunConfig, root: str | Path, device: torch.device):
        cfg = run.data
        prep = load_prepared(Path(root), cfg.dataset)
        if prep.x is None:
            raise ConfigError(f"dataset {cfg.dataset!r} is prepared as image files (prepare.{cfg.dataset}.layout); "
                              "it is read with data.stream.open_data, which streams it")
        super().__init__(run, prep, device)
        self.root = Path(root)
        self._size, self._channels = cfg.image_size, cfg.channels
        self.train_x = self._to_device(prep.x[self.train_pos])
        self.val = (self._to_device(prep.x[self.val_pos]), self.split_y["val"])
        self.test = (self._to_device(prep.x[self.test_pos]), self.split_y["test"])
        if cfg.augment.normalize:
            self.mean, std = channel_stats(self.train_x)
            self.std = std.clamp_min(1e-3)
        self._copies: dict[str, torch.Tensor] = {}

    def _to_device(self, x: np.ndarray) -> torch.Tensor:
        return resize(torch.from_numpy(np.ascontiguousarray(x)), self._size, self._channels).to(self.device)

    # -- shape
    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_x.shape[-1]

    # -- copies made by prepare, aligned with the training items
    def copy(self, name: str) -> torch.Tensor:
        """The training images of a derived copy (e.g. a blurred one): row i is the same item as train_x[i]."""
        if name not in self._copies:
            self._copies[name] = self._to_device(load_copy(self.root, self.name, name)[self.train_pos])
        return self._copies[name]

    # -- batches
    def batches(self, batch_size: int, indices: torch.Tensor | None = None, images: torch.Tensor | None = None,
                shuffle: bool = True, augment: bool = True, drop_last: bool = False) -> Iterator[Batch]:
        """Minibatches over `indices` (default: the whole training set) of `images` (default: train_x)."""
        images = self.train_x if images is None else images
        indices = self.order(indices, shuffle)
        stop = len(indices) - (len(indices) % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            idx = indices[i:i + batch_size]
            yield Batch(self.to_input(images[idx], augment), self.train_y[idx], idx)

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) over the val or test split, or the training set without augmentation ('train')."""
        x, y = {"val": self.val, "test": self.test, "train": (self.train_x, self.train_y)}[split]
        for i in range(0, len(y), batch_size):
            yield self.to_input(x[i:i + batch_size], augment=False), y[i:i + batch_size]

