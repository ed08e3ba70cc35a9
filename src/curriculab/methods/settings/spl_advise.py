"""Settings of SPL-ADVisE (Thangarasa & Taylor, BMVC 2018): the student (methods/spl_advise.py, Algorithm 2)
and its pretrain stage, the Magnet-loss embedding (methods/spl_embedding.py, Algorithm 1)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from curriculab.config import (
    ConfigError,
    ModelParams,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    Strict,
    deep_merge,
    stable_hash,
    validate,
)
from curriculab.methods.settings import MethodParams, declare
from curriculab.models import check_model

# What the pretrain stage writes; part of the hash, so files of an older format are stale (2: model.pt also
# holds the Adam state, which `clusters: adaptive` students continue from).
FORMAT = 2
Variance = Literal["rippel", "squared"]  # the Magnet loss's variance estimate (methods/magnet.py)
Pace = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class EmbeddingParams(Strict):
    """The embedding CNN and its Magnet-loss training (Algorithm 1); the student carries the same block."""

    model: ModelParams = ModelParams(name="lenet")  # its output size (num_classes) is the embedding dimension
    dim: PosInt = 16  # embedding dimension (the official code: 2)
    clusters: PosInt = 8  # K clusters per class
    m: Annotated[int, Field(ge=2)] = 8  # M clusters per minibatch: the seed and M−1 impostors
    b: PosInt = 8  # B samples per cluster (minibatch M·B)
    alpha: Annotated[float, Field(allow_inf_nan=False)] = 1.0  # separation margin α
    refresh: PosInt = 100  # R: re-cluster every R iterations
    lr: PosFloat = 1e-4  # Adam
    weight_decay: NonNegFloat = 0.0
    iterations: PosInt = 1000  # E
    variance: Variance = "rippel"
    seed: NonNegInt = 0
    subset_per_class: PosInt | None = None  # examples per class in the index while training (None: all)
    per_dataset: dict[str, dict[str, Any]] = {}  # dataset → overrides of the keys above

    @field_validator("model")
    @classmethod
    def _model(cls, v: ModelParams) -> ModelParams:
        check_model(v.name, v.kwargs, "model")
        return v

    @model_validator(mode="after")
    def _overrides(self) -> EmbeddingParams:
        for ds in self.per_dataset:
            self.resolve(ds)
        return self

    def resolve(self, dataset: str) -> EmbeddingParams:
        """The settings used for `dataset`: the block with its `per_dataset` overrides applied."""
        over = self.per_dataset.get(dataset, {})
        if "per_dataset" in over:
            raise ConfigError(f"per_dataset.{dataset}.per_dataset: overrides cannot nest")
        base = self.model_dump(mode="json", exclude={"per_dataset"})
        return validate(EmbeddingParams, deep_merge(base, over), prefix=f"per_dataset.{dataset}")

    def digest(self, dataset: str, checksum: str) -> str:
        """Hash of (settings for `dataset`, the dataset, its checksum): a checkpoint is current iff equal."""
        settings = self.resolve(dataset).model_dump(mode="json")
        return stable_hash({"settings": settings, "dataset": dataset, "checksum": checksum, "format": FORMAT},
                           n=16)


class PretrainParams(Strict):
    """`pretrain.spl_advise`: which datasets get an embedding, its settings (shared with the student by a YAML
    anchor), and how the stage runs (not part of the embedding's hash, nor of the student's run id)."""

    datasets: Annotated[list[str], Field(min_length=1)]
    embedding: EmbeddingParams = EmbeddingParams()
    eval_batch_size: PosInt = 256  # forward passes of the refreshes and of the final assignment
    tsne_points: PosInt = 400  # points in each t-SNE snapshot (figure spl.f2)
    tsne_iterations: Annotated[int, Field(ge=250)] = 500
    device: Literal["auto", "cpu", "cuda"] = "auto"


class SPLAdviseParams(MethodParams):
    """The student (Algorithm 2)."""

    selection: Literal["spld", "official", "random"] = "spld"
    # adaptive: the pretrained embedding keeps training (Magnet loss, Algorithm 1) alongside the student and
    # the clusters are recomputed from it every `refresh_every` student steps (paper Algorithm 2, step 2);
    # frozen: the pretrained clusters throughout (the official code); pixels: per-class k-means on raw
    # pixels (the SPLD baseline)
    clusters: Literal["adaptive", "frozen", "pixels"] = "adaptive"
    refresh_every: PosInt = 100  # R: student steps between embedding refreshes (`clusters: adaptive`)
    embedding_steps: PosInt = 20  # Magnet-loss iterations of the embedding per refresh (`clusters: adaptive`)
    k: PosInt = 8  # clusters per class when `clusters: pixels`
    start_fraction: Annotated[float, Field(gt=0, le=1)] = 0.8  # share admitted in the first paced epoch
    gamma: NonNegFloat = 1.0  # γ/λ in the first paced epoch
    beta1: Pace = 0.1  # pace: admitted share ×(1+β1) per epoch (official: K ×(1+β1))
    beta2: Pace = 0.1  # pace: γ/λ ×(1+β2) per epoch
    official_k: PosInt = 500  # K0 of `selection: official` (samples per cluster)
    fill: Literal["repeat", "none"] = "repeat"  # repeat: each epoch has n_train samples (same updates)
    # fresh: Algorithm 2 step 10, every sample's loss under the trained θ* (an extra eval pass over the
    # training set per paced epoch); last_epoch: the per-sample losses recorded during the previous
    # epoch's training steps (train mode, before each step's update), a sample not seen keeping its older one
    losses: Literal["fresh", "last_epoch"] = "fresh"
    loss_batch_size: PosInt = 500
    embedding: EmbeddingParams | None = None  # must equal pretrain.spl_advise.embedding (YAML anchor)

    @field_validator("clusters", mode="before")
    @classmethod
    def _renamed(cls, v: Any) -> Any:
        if v == "embedding":
            raise ValueError("'embedding' was renamed: 'frozen' keeps the pretrained clusters (the official "
                             "code, what 'embedding' did), 'adaptive' refreshes the embedding and its clusters "
                             "while the student trains (paper Algorithm 2)")
        return v

    @model_validator(mode="after")
    def _needs_embedding(self) -> SPLAdviseParams:
        if self.selection != "random" and self.uses_embedding and self.embedding is None:
            raise ValueError(f"embedding: required with clusters {self.clusters!r}; give it the same block as "
                             "pretrain.spl_advise.embedding (a YAML anchor)")
        return self

    @property
    def uses_embedding(self) -> bool:
        return self.clusters in ("adaptive", "frozen")


declare("spl_advise", "curriculab.methods.spl_advise:SPLAdvise", SPLAdviseParams, PretrainParams,
        hooks=("train_batches", "loss"))
