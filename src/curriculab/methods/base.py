"""The method contract: every curriculum is a plug-in on the one training loop (DESIGN.md).

Every hook a method may define is declared on `Method` with its default; a method overrides only what
it changes. Subclasses with a `name` register themselves in `METHODS`; their settings (params schemas, the
exclusive hooks they claim) are declared torch-free in `curriculab.methods.settings`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

from curriculab.config import ConfigError
from curriculab.data.loader import Batch, RunData
from curriculab.engine.parallel import Single
from curriculab.methods.settings import EXCLUSIVE, METHOD_SETTINGS, MethodParams, declare
from curriculab.registry import Registry, ref_of

if TYPE_CHECKING:
    from curriculab.config import Params, RunConfig

__all__ = ["Batch", "METHODS", "Method", "MethodContext", "TrainState", "cross_entropy"]


@dataclass
class MethodContext:
    """What a method may know when it is built, before the model exists."""

    run: RunConfig
    data: RunData
    device: torch.device
    run_dir: Any  # pathlib.Path of the run, for method artefacts
    workdir: Any  # pathlib.Path of the project root (prepared data, pretrained models)


@dataclass
class TrainState:
    """What a hook sees during training: the model, the optimisers and the position in training."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: RunData
    epoch: int = 0  # 0-based
    step: int = 0  # global optimiser steps so far
    steps_per_epoch: int = 0
    epochs: int = 0
    extra_optimizers: list[torch.optim.Optimizer] = field(default_factory=list)
    stop_requested: bool = False
    group: Single = field(default_factory=Single)  # this process's DDP rank (engine.parallel), or the one process

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The model's optimiser, then the methods' extra ones: the order they step in."""
        return [self.optimizer, *self.extra_optimizers]

    def request_stop(self) -> None:
        """End training after this epoch is saved (status done, `final.stopped_epoch` set)."""
        self.stop_requested = True

    def restore_weights(self, weights: dict[str, torch.Tensor], reset_optimizer: bool) -> None:
        """Load kept model weights in place; optionally clear every optimiser's state (momentum, moments)."""
        self.model.load_state_dict(weights)
        if reset_optimizer:
            for o in self.optimizers:
                o.state.clear()

    def rng_states(self) -> dict[str, Any]:
        """The torch (CPU and, on CUDA, every GPU's) and data-order generator states, as bytes: a checkpoint
        loaded with any map_location gives them back unchanged."""
        out = {"torch": _to_bytes(torch.get_rng_state()), "data": _to_bytes(self.data.gen.get_state())}
        if self.data.device.type == "cuda":
            out["cuda"] = [_to_bytes(s) for s in torch.cuda.get_rng_state_all()]
        return out

    def set_rng_states(self, states: dict[str, Any]) -> None:
        """Restore what `rng_states` returned."""
        torch.set_rng_state(_from_bytes(states["torch"]))
        self.data.gen.set_state(_from_bytes(states["data"]))
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([_from_bytes(s) for s in states["cuda"]])

    @contextlib.contextmanager
    def preserved(self) -> Iterator[None]:
        """Run trial steps with the real model and optimisers: on exit, parameters, buffers, every
        optimiser's state and the RNG states are restored bit-exactly."""
        weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        opts = [_clone(o.state_dict()) for o in self.optimizers]
        rng = self.rng_states()
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in self.model.state_dict().items():
                    v.copy_(weights[k])
            for o, s in zip(self.optimizers, opts):
                o.load_state_dict(s)
            self.set_rng_states(rng)


def _to_bytes(state: torch.Tensor) -> bytes:
    return state.cpu().numpy().tobytes()


def _from_bytes(blob: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8)


def _clone(obj: Any) -> Any:
    """A deep copy of an optimiser state dict whose tensors share nothing with the live ones."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_clone(v) for v in obj)
    return obj


METHODS: Registry[type[Method]] = Registry("method", ("curriculab.methods",))


class Method:
    """Base class: every hook defaults to plain training. Override only what the method changes."""

    name: ClassVar[str] = ""  # the key in a run's `methods` block; a subclass with a name registers itself
    # Both from the method's declaration in curriculab.methods.settings (see `_settle`); a class defined
    # elsewhere (a test's, a user's) without a declaration gives its own, and is declared from them.
    Params: ClassVar[type[BaseModel]] = MethodParams  # validates `methods.<name>`
    PretrainParams: ClassVar[type[BaseModel] | None] = None  # validates `pretrain.<name>`; None: no pretrain stage
    # The params block the contract tests (tests/test_contract.py) train the method with; {} is its defaults.
    # A method whose defaults need artefacts of another stage names a small self-contained block here,
    # and the `prepare.copies` it needs in `contract_copies`.
    contract_params: ClassVar[dict[str, Any]] = {}
    contract_copies: ClassVar[dict[str, dict[str, Any]]] = {}
    # Safe under DDP (train.ddp): the method keeps no state that would differ between ranks. A method left
    # False is refused, with one line, before any process starts (curriculab.distributed.check).
    ddp: ClassVar[bool] = False
    EXCLUSIVE: ClassVar[tuple[str, ...]] = EXCLUSIVE  # hooks where two methods of one run cannot both act

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.__dict__.get("name"):
            _settle(cls)
            METHODS.register(cls.name, cls)

    def __init__(self, params: BaseModel, ctx: MethodContext):
        self.params = params
        self.ctx = ctx

    # -- checks before training
    @classmethod
    def ddp_refusal(cls, params: BaseModel) -> str | None:
        """Why a run with these settings cannot run under DDP (curriculab.distributed.check); None: it can."""
        return None if cls.ddp else "cannot run under DDP"

    @classmethod
    def preflight(cls, params: BaseModel, run: RunConfig, workdir: Any) -> None:
        """Checks that need files on disk (e.g. a pretrained model), run for every unfinished run of a
        table before any of them trains, so a user error stops the stage before work is spent."""

    # -- pretrain stage (`curriculab pretrain <name>`)
    @classmethod
    def has_pretrain(cls) -> bool:
        """Whether the method has a pretrain stage (it declares `PretrainParams`)."""
        return cls.PretrainParams is not None

    @classmethod
    def pretrain(cls, pretrain_params: BaseModel, params: Params, workdir: Any) -> None:
        """The pretrain stage: writes the artefacts the method's runs load (under workdir)."""
        raise ConfigError(f"pretrain.{cls.name}: method {cls.name!r} has no pretrain stage")

    # -- model and optimisers
    def wrap_model(self, model: nn.Module) -> nn.Module:
        """The model the run trains (e.g. with a blur layer after every convolution); default unchanged."""
        return model

    def optimizers(self, model: nn.Module) -> list[torch.optim.Optimizer]:
        """Extra optimisers stepped after the model's (e.g. data parameters' sparse SGD)."""
        return []

    # -- data
    def train_batches(self, epoch: int, state: TrainState) -> Iterator[Batch] | None:
        """The minibatches of one epoch; None means the default shuffled pass over the training set."""
        return None

    # -- objective and prediction
    def loss(self, outputs: torch.Tensor, batch: Batch, state: TrainState) -> torch.Tensor | None:
        """Per-sample losses (n,); None means the task's default loss."""
        return None

    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
        """Evaluation logits; None means model(x)."""
        return None

    def train_correct(self, outputs: torch.Tensor, batch: Batch, state: TrainState) -> torch.Tensor | None:
        """Correct training predictions of a batch, out of len(batch.index); None means the task's top-1."""
        return None

    # -- schedule
    def on_train_start(self, state: TrainState) -> None:
        """Called once the model and optimisers exist (also after a resume)."""

    def on_step_end(self, state: TrainState) -> None:
        """Called after every optimiser step."""

    def on_epoch_start(self, state: TrainState) -> None:
        """Called before an epoch's first batch."""

    def on_epoch_end(self, state: TrainState) -> None:
        """Called after an epoch's last step, before its evaluation."""

    def on_eval_end(self, state: TrainState, metrics: dict[str, float]) -> None:
        """Called after the epoch's val/test evaluation with its history row; may `state.request_stop()`."""

    def state_metrics(self) -> dict[str, float]:
        """Scalars logged every epoch (σ, selected fraction, ...)."""
        return {}

    def epoch_artifacts(self) -> dict[str, Any]:
        """JSON-able per-epoch records kept in metrics.json (e.g. per-class parameters for figures)."""
        return {}

    # -- resume
    def state_dict(self) -> dict[str, Any]:
        """Everything the method needs to resume (saved in the run's checkpoint every epoch)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    @classmethod
    def overrides(cls, hook: str) -> bool:
        """Whether the class redefines `hook` (for the exclusive hooks)."""
        return getattr(cls, hook) is not getattr(Method, hook)


def _settle(cls: type[Method]) -> None:
    """Give a named Method subclass its declared settings, checking the declaration matches the class (its
    implementation reference, the exclusive hooks it overrides, any schema it sets itself); a class without
    a declaration is declared from its own attributes."""
    hooks = frozenset(h for h in EXCLUSIVE if cls.overrides(h))
    if cls.name not in METHOD_SETTINGS:
        declare(cls.name, ref_of(cls), cls.Params, cls.PretrainParams, tuple(sorted(hooks)))
        return
    s = METHOD_SETTINGS.get(cls.name)
    where = f"method {cls.name!r} (declared in curriculab.methods.settings)"
    if s.impl != ref_of(cls):
        raise ValueError(f"{where} is implemented by {s.impl}, not by {ref_of(cls)}")
    if s.hooks != hooks:
        raise ValueError(f"{where} claims the hooks {sorted(s.hooks)} but {ref_of(cls)} overrides {sorted(hooks)}")
    for attr in ("Params", "PretrainParams"):
        own = cls.__dict__.get(attr)
        if own is not None and own is not getattr(s, attr):
            raise ValueError(f"{where}: {ref_of(cls)} sets its own {attr}; it comes from the declaration")
    cls.Params, cls.PretrainParams = s.Params, s.PretrainParams


def cross_entropy(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy for hard labels or soft targets."""
    return F.cross_entropy(outputs.float(), y, reduction="none")
