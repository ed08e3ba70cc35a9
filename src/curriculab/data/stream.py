"""The streaming loader, for a dataset prepared as image files (layout "files": ImageNet at 224 px, whose uint8
array would be ~193 GB).

DataLoader worker processes decode each batch's files on the CPU, every image resized on its shorter side to
`load_size` and centre-cropped square (uint8); the device then crops, flips and normalises the whole batch, as the
device loader does (data/loader.py): torchvision's RandomResizedCrop for training (`augment.resized_crop`), a
centre crop for evaluation (Resize(load_size) + CenterCrop(image_size), the standard ImageNet test transform).

The order of the items and every random draw come from the run's one device generator, exactly as in the device
loader; the workers draw nothing. So a run is the same for any number of workers (CURRICULAB_DATA_WORKERS,
default min(8, CPUs)), and a checkpoint's generator state resumes it exactly.

Chosen here: the training crop is drawn from the centred load_size square, not from the whole decoded image
as torchvision's transform does (a batch needs one shape); it is then scaled by at most load_size/image_size
(256/224), so bilinear sampling needs no antialiasing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from curriculab.config import ConfigError, RunConfig
from curriculab.data.loader import Batch, DeviceData, RunData
from curriculab.data.prepared import Prepared, load_prepared, read_meta


def open_data(run: RunConfig, root: str | Path, device: torch.device) -> RunData:
    """A run's data: on the device (DeviceData), or streamed from files for a dataset prepared as files."""
    if read_meta(Path(root), run.data.dataset).get("layout") == "files":
        return StreamData(run, root, device, load_prepared(Path(root), run.data.dataset))
    return DeviceData(run, root, device)


def load_square(path: str | Path, size: int) -> np.ndarray:
    """One image file → uint8 (3, size, size): RGB, the centred square of its shorter side, resized bilinearly."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        s = min(im.size)
        left, top = (im.width - s) // 2, (im.height - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.BILINEAR)
        return np.asarray(im).transpose(2, 0, 1).copy()


class FileImages(torch.utils.data.Dataset):
    """Item i: the file at `files[i]` as a uint8 (3, size, size) tensor (`load_square`)."""

    def __init__(self, files: np.ndarray, size: int):
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(load_square(str(self.files[i]), self.size))


def loader_workers() -> int:
    """Decoding processes per DataLoader: CURRICULAB_DATA_WORKERS, else min(8, CPUs)."""
    env = os.environ.get("CURRICULAB_DATA_WORKERS")
    if env is not None:
        if not env.isdigit():
            raise ConfigError(f"CURRICULAB_DATA_WORKERS={env!r}: must be a whole number of processes (0: none)")
        return int(env)
    return min(8, os.cpu_count() or 1)


class StreamData(RunData):
    """One run's data for a dataset prepared as files: labels on the device, images decoded batch by batch.

    It has no image arrays (`train_x`, `val`, `test`, `copy`): a method that indexes the training images
    directly needs the device loader, and says so."""

    def __init__(self, run: RunConfig, root: str | Path, device: torch.device, prep: Prepared):
        super().__init__(run, prep, device)
        s = prep.stream
        self.files, self.load_size = prep.files, int(s["load_size"])
        self._size = run.data.image_size or int(s["image_size"])
        if run.data.channels not in (None, 3):
            raise ConfigError(f"data.channels: {run.data.dataset!r} is streamed as RGB images; leave it unset or 3")
        if self._size > self.load_size:
            raise ConfigError(f"data.image_size: {self._size} is larger than the {self.load_size} px squares that "
                              f"{run.data.dataset!r} is decoded to (prepare.{run.data.dataset}.load_size)")
        if run.data.augment.normalize:
            self.mean = torch.tensor(s["mean"], device=device).view(1, 3, 1, 1)
            self.std = torch.tensor(s["std"], device=device).view(1, 3, 1, 1).clamp_min(1e-3)
        self.workers = loader_workers()

    # -- shape
    @property
    def in_channels(self) -> int:
        return 3

    @property
    def image_size(self) -> int:
        return self._size

    def _no_arrays(self, what: str):
        return ConfigError(f"{what}: dataset {self.name!r} is streamed from image files (prepare.{self.name}.layout: "
                           "files), so its images are not held as one array; this needs the device loader "
                           "(layout: arrays, at a size that fits in memory)")

    @property
    def train_x(self):
        raise self._no_arrays("the training images as an array")

    @property
    def val(self):
        raise self._no_arrays("the validation images as an array")

    @property
    def test(self):
        raise self._no_arrays("the test images as an array")

    def copy(self, name: str) -> torch.Tensor:
        raise self._no_arrays(f"prepared copy {name!r}")

    # -- batches
    def _decoded(self, positions: np.ndarray, chunks: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """uint8 batches on the device: chunk k holds the items positions[chunks[k]], in order."""
        loader = torch.utils.data.DataLoader(
            FileImages(self.files, self.load_size), batch_sampler=[positions[c.numpy()].tolist() for c in chunks],
            num_workers=self.workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.workers else None)
        for x in loader:
            yield x.to(self.device, non_blocking=True)

    def batches(self, batch_size: int, indices: torch.Tensor | None = None, images: torch.Tensor | None = None,
                shuffle: bool = True, augment: bool = True, drop_last: bool = False) -> Iterator[Batch]:
        """Minibatches over `indices` (default: the whole training set), as the device loader draws them."""
        if images is not None:
            raise self._no_arrays("batches of other images than the training set's")
        indices = self.order(indices, shuffle)
        stop = len(indices) - (len(indices) % batch_size if drop_last else 0)
        chunks = [indices[i:i + batch_size] for i in range(0, stop, batch_size)]
        cpu = [c.cpu() for c in chunks]
        for idx, x in zip(chunks, self._decoded(self.train_pos, cpu)):
            yield Batch(self.to_input(x, augment), self.train_y[idx], idx)

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) over the val or test split, or the training set without augmentation ('train')."""
        pos, y = self.split_items(split)
        chunks = [torch.arange(i, min(i + batch_size, len(pos))) for i in range(0, len(pos), batch_size)]
        for c, x in zip(chunks, self._decoded(pos, chunks)):
            yield self.to_input(x, augment=False), y[c[0]:c[-1] + 1]
