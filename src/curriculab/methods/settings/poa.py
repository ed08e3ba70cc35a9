"""Settings of the Perfect Ordering Approximation data loader (methods/poa.py, thesis §2.3-2.4)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator, model_validator

from curriculab.config import ConfigError
from curriculab.methods.settings import MethodParams, declare

if TYPE_CHECKING:
    from curriculab.config import RunConfig


class PoaParams(MethodParams):
    """`methods.poa`: the four parts of the framework, named as the thesis names them."""

    item: Literal["batch", "sample"] = "batch"
    scoring: Literal["loss", "loss_delta"] = "loss"
    target: Literal["same", "external"] = "same"  # loss_delta: measured on the same batch or the external one
    relative: bool = False  # loss_delta: (prev − new) / prev instead of prev − new
    strategy: Literal["ordering", "sampling"] = "ordering"
    order: Literal["ascending", "descending"] = "ascending"  # ordering: which end of the sorted scores goes first
    weighting: Literal["score", "inverse"] = "score"  # sampling: probability ∝ score or ∝ 1 / score
    k: int | Literal["all"] = 8  # candidates scored per step; all = every remaining item
    external: Literal["val", "test"] = "val"  # split the static external batch is drawn from, each epoch
    external_size: Annotated[int, Field(ge=1)] = 512
    allow_test_leak: bool = False  # external: test (the thesis) selects on the test set; say so explicitly
    score_mode: Literal["train", "eval"] = "train"  # eval = the authors' code (BN running statistics)
    candidates: Literal["split", "resample"] = "split"  # resample = the authors' MALO: each candidate batch a
    # fresh random draw from the remaining samples

    @field_validator("k")
    @classmethod
    def _k_positive(cls, k: int | str) -> int | str:
        if k != "all" and k < 1:
            raise ValueError("K must be at least 1 (or 'all')")
        return k

    @model_validator(mode="after")
    def _consistent(self) -> PoaParams:
        if self.external == "test" and not self.allow_test_leak:
            raise ValueError("external 'test' draws the scoring batch from the test set (the thesis' leak); set "
                             "allow_test_leak: true to reproduce it, or use external: val")
        if self.target == "external" and self.scoring != "loss_delta":
            raise ValueError("target 'external' applies to scoring 'loss_delta' only")
        if self.candidates == "resample" and (self.item != "batch" or self.strategy != "ordering"):
            raise ValueError("candidates 'resample' applies to item 'batch' with strategy 'ordering'")
        return self

    def items(self, n_train: int, batch_size: int) -> int:
        """The number of learning items: batches of the epoch's split, or samples."""
        return n_train // batch_size if self.item == "batch" else n_train

    def check_run(self, run: RunConfig, path: str) -> None:
        """K against the number of learning items (when the dataset is prepared, so its size is known)."""
        bs = run.train.batch_size
        if self.item == "sample" and self.strategy == "ordering" and self.k != "all" and self.k < bs:
            raise ConfigError(f"{path}.k: ordering samples takes a batch of {bs} of the K candidates; "
                              f"K = {self.k} < {bs}")
        if run.train.optimizer.name != "sgd" and self.scoring == "loss_delta":
            raise ConfigError(f"{path}.scoring: loss_delta trial steps replay SGD; set train.optimizer.name: sgd")
        n = _train_size(run)
        if n is not None and self.k != "all" and self.k > self.items(n, bs):
            raise ConfigError(f"{path}.k: K = {self.k} is more than the {self.items(n, bs)} learning items "
                              f"({self.item}es of {n} training images)" if self.item == "batch" else
                              f"{path}.k: K = {self.k} is more than the {n} training samples")


def _train_size(run: RunConfig) -> int | None:
    """Training-set size of a run when its dataset is prepared under ./data (for `curriculab validate`)."""
    from curriculab.data.prepared import read_meta

    try:
        meta = read_meta(Path("data"), run.data.dataset)
    except (ConfigError, OSError, KeyError):
        return None
    n = meta.get("sizes", {}).get("train") if isinstance(meta.get("sizes"), dict) else None
    if n is None:
        return None
    if run.data.train_split == "train+val":
        n += meta["sizes"].get("val", 0)
    if run.data.subset_per_class is not None:
        n = min(n, run.data.subset_per_class * meta.get("classes", 0))
    if run.data.subset is not None:
        n = min(n, run.data.subset)
    return n


declare("poa", "curriculab.methods.poa:Poa", PoaParams, hooks=("train_batches",))
