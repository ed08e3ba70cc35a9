"""params.yaml → typed, validated objects, with one-line errors that name the key path.

Schema and errors only: this module imports nothing from the package. Checks that need the registries
(dataset, copy, method and table names) live in `curriculab.project`.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A user error in the settings: the message is one line naming the key and the fix."""


class RunsFailed(RuntimeError):
    """Runs of a table failed (named in one line); every other run ran to its end and kept its results."""


# --------------------------------------------------------------------------- merging and hashing


def deep_merge(base: dict, *overrides: dict) -> dict:
    """Recursively merge mappings; later ones win, lists and scalars are replaced."""
    out = copy.deepcopy(base)
    for over in overrides:
        for k, v in (over or {}).items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = deep_merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
    return out


def stable_hash(obj: Any, n: int = 12) -> str:
    """Hash of a JSON-able object, independent of key order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


# --------------------------------------------------------------------------- schema base


class Strict(BaseModel):
    """Every settings block: unknown keys are errors, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=False, allow_inf_nan=False)


PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]


def _type_name(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if origin is Annotated:
        return _type_name(typing.get_args(ann)[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(ann))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(ann) if a is not type(None))
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(ann, str(ann))


def _strip(ann: Any) -> list[Any]:
    """The concrete types behind Annotated/Optional/Union."""
    origin = typing.get_origin(ann)
    if origin is Annotated:
        return _strip(typing.get_args(ann)[0])
    if origin in (Union, types.UnionType):
        return [t for a in typing.get_args(ann) if a is not type(None) for t in _strip(a)]
    return [ann]


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The settings class that holds the last key of `loc`, for suggesting close matches."""
    current: Any = model
    for part in loc:
        found = None
        for t in _strip(current):
            if isinstance(t, type) and issubclass(t, BaseModel) and isinstance(part, str):
                if part in t.model_fields:
                    found = t.model_fields[part].annotation
                    break
            origin = typing.get_origin(t)
            if origin is dict:
                found = typing.get_args(t)[1]
                break
            if origin in (list, tuple) and isinstance(part, int):
                found = typing.get_args(t)[0]
                break
        if found is None:
            return None
        current = found
    for t in _strip(current):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    """'; did you mean X?' for a misspelt name, or the list of valid names."""
    choices = sorted(choices)
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "; valid: " + ", ".join(choices) if choices else ""


def format_error(err: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """The first pydantic error as one line: `key.path: what was expected (got ...)`."""
    e = err.errors()[0]
    loc = tuple(e["loc"])
    # pydantic may append a union member or validator name to loc; keep only real keys.
    while loc and e["type"] != "extra_forbidden":
        holder = _model_at(model, loc[:-1])
        if holder is None or not isinstance(loc[-1], str) or loc[-1] in holder.model_fields:
            break
        loc = loc[:-1]
    path = ".".join(str(p) for p in ((prefix,) if prefix else ()) + loc) or "(top level)"
    got = e.get("input")
    holder = _model_at(model, loc[:-1]) if loc else None
    if e["type"] == "extra_forbidden":
        return f"{path}: unknown key{suggest(str(loc[-1]), holder.model_fields) if holder else ''}"
    if e["type"] == "missing":
        return f"{path}: required key is missing"
    if e["type"].endswith("_type"):
        ann = holder.model_fields[loc[-1]].annotation if holder and loc[-1] in holder.model_fields else None
        expected = _type_name(ann) if ann is not None else e["msg"].lower()
        return f"{path}: expected {expected}, got {type(got).__name__} {got!r}"
    msg = e["msg"].replace("Value error, ", "")
    return f"{path}: {msg[:1].lower() + msg[1:]} (got {got!r})"


def validate(model: type[BaseModel], data: Any, prefix: str = ""):
    """Validate `data` into `model`, turning the first error into a one-line ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_error(err, model, prefix)) from None


def check_name(kind: str, name: str, registry: typing.Iterable[str], path: str) -> None:
    """An unknown registry name (method, model, dataset) is a ConfigError with close matches."""
    names = list(registry)
    if name not in names:
        raise ConfigError(f"{path}: unknown {kind} {name!r}{suggest(name, names)}")


# --------------------------------------------------------------------------- run settings


class NoiseParams(Strict):
    """Label corruption applied to the training split (DP §4.2)."""

    rate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    kind: Literal["uniform", "permute_first", "random"] = "uniform"
    oracle: bool = False  # train only on the items not chosen for corruption

    @model_validator(mode="after")
    def _consistent(self) -> NoiseParams:
        if self.kind == "random" and self.rate:
            raise ValueError("rate does not apply to kind 'random' (every label is random); remove it")
        if self.oracle and (self.kind == "random" or self.rate == 0):
            raise ValueError("oracle trains on the items that were not corrupted: it needs kind uniform or "
                             "permute_first and a rate > 0")
        return self


class AugmentParams(Strict):
    """Batched on-device augmentation."""

    crop_pad: NonNegInt = 0
    flip: bool = False  # left-right, half of the batch
    vflip: bool = False  # up-down, half of the batch
    rotate: Annotated[float, Field(ge=0, le=180)] = 0.0  # degrees: each image turned by U(-rotate, rotate)
    translate: Annotated[float, Field(ge=0, lt=1)] = 0.0  # each image shifted by U(-t, t) × its size, per axis
    # torchvision's RandomResizedCrop: a box of U(0.08, 1) of the area and log-uniform aspect 3/4 to 4/3, scaled
    # to data.image_size (the standard ImageNet training augmentation; a streamed dataset's test images are
    # centre-cropped instead)
    resized_crop: bool = False
    normalize: bool = True


class DataParams(Strict):
    """Which prepared dataset a run trains on, and the seeded variant derived from it."""

    dataset: str = "digits"
    subset_per_class: PosInt | None = None
    subset: PosInt | None = None  # a seeded uniform sample of N training items (after subset_per_class)
    # train+val: the whole official training split, the validation holdout included (validation then trained on)
    train_split: Literal["train", "train+val"] = "train"
    test_limit: PosInt | None = None  # the first N test items (offline profiles, for speed)
    val_limit: PosInt | None = None  # the first N validation items
    image_size: PosInt | None = None
    channels: Literal[1, 3] | None = None
    noise: NoiseParams = NoiseParams()
    augment: AugmentParams = AugmentParams()


class ModelParams(Strict):
    name: str = "small_cnn"
    width: PosFloat = 1.0
    kwargs: dict[str, Any] = {}


class OptimizerParams(Strict):
    name: Literal["sgd", "adam"] = "sgd"
    lr: PosFloat = 0.05
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    weight_decay: NonNegFloat = 0.0
    betas: Annotated[list[float], Field(min_length=2, max_length=2)] = [0.9, 0.999]


class ScheduleParams(Strict):
    """Learning-rate schedule; epochs may be fractional where stated."""

    name: Literal["constant", "multistep", "step", "plateau", "cosine"] = "constant"
    milestones: list[NonNegInt] = []
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1
    step_size: PosInt = 30
    patience: PosInt = 3
    warmup_epochs: NonNegInt = 0


class TrainParams(Strict):
    epochs: PosInt = 5
    batch_size: PosInt = 64
    eval_batch_size: PosInt = 1000
    optimizer: OptimizerParams = OptimizerParams()
    schedule: ScheduleParams = ScheduleParams()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True  # autocast on CUDA only
    channels_last: bool = True  # CUDA only
    compile: bool = False
    checkpoint: bool = True
    # processes of one DistributedDataParallel run (torchrun: NCCL, one per GPU, or gloo on the CPU);
    # null: one process. Part of the run id only when set (curriculab.distributed)
    ddp: Annotated[int, Field(ge=2)] | None = None


class RunConfig(Strict):
    """One fully resolved run: everything that decides its numbers."""

    task: str = "classification"
    task_params: dict[str, Any] = {}
    seed: NonNegInt = 0
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    methods: dict[str, dict[str, Any]] = {"baseline": {}}
    runner: dict[str, Any] = {}  # settings of a table's own runner (validated by its spec), e.g. Perfect Ordering


def identity(cfg: RunConfig) -> dict:
    """The settings that name a run (its id): all of them, less `train.ddp` when unset, so one-process runs
    keep the ids they had before DDP existed."""
    return cfg.model_dump(mode="json", exclude={"train": {"ddp"}} if cfg.train.ddp is None else None)


# --------------------------------------------------------------------------- top-level params


class FashionParams(Strict):
    root: str = "/usr/share/datasets/fashion-mnist"
    val: PosInt = 5000


class SynDigitsParams(Strict):
    train: PosInt = 6000
    val: PosInt = 1000
    test: PosInt = 2000
    size: PosInt = 28


class CelebAParams(Strict):
    image_size: PosInt = 64  # the 140 px centre crop resized to this side (CBS Table 6: 64 px)


class DigitsParams(Strict):
    val: PosInt = 180
    test: PosInt = 360


class ImageFolderParams(Strict):
    """A dataset of listed image files (`imagefolder`, `webvision`)."""

    root: str | None = None
    image_size: PosInt = 64
    limit: PosInt | None = None
    # arrays: decoded once into the prepared uint8 array (held on the device by each run); files: the list of image
    # files, decoded while training (data/stream.py); auto: files above files_above_gib (224 px ImageNet: ~193 GB)
    layout: Literal["auto", "arrays", "files"] = "auto"
    files_above_gib: PosFloat = 8.0
    load_size: PosInt | None = None  # files: the centred square decoded, which the device crops (None: size · 8/7)
    stats_images: PosInt = 10000  # files: the normalisation statistics from this many training images (seeded)


class PrepareParams(Strict):
    """The `prepare` stage: which datasets to write, where, and their derived copies."""

    root: str = "data"
    torchvision_root: str = "~/.cache/curriculab/torchvision"
    download: bool = True
    datasets: list[str] = ["digits", "syndigits", "fashion_mnist"]
    seed: NonNegInt = 0
    digits: DigitsParams = DigitsParams()
    syndigits: SynDigitsParams = SynDigitsParams()
    fashion_mnist: FashionParams = FashionParams()
    imagefolder: ImageFolderParams = ImageFolderParams()
    webvision: ImageFolderParams = ImageFolderParams()
    celeba: CelebAParams = CelebAParams()
    copies: dict[str, dict[str, Any]] = {}  # name → method-specific settings of a derived copy

    @field_validator("root")
    @classmethod
    def _root_is_data(cls, v: str) -> str:
        if v != "data":  # every stage depends on data/ and every run reads it
            raise ValueError("must be 'data': the DVC stages track data/ and training reads it; to keep the "
                             "prepared data elsewhere, make data a symlink (ln -s /big/disk/data data)")
        return v


class ExecutorParams(Strict):
    """How a stage runs its table's runs. Every run uses `threads` CPU threads whatever `workers` is,
    so parallel and sequential execution give bit-identical metrics."""

    workers: PosInt = 1
    threads: PosInt = 1
    backend: Literal["local", "ray"] = "local"


class StoreParams(Strict):
    """Where finished runs (`runs/`) and the MLflow store live, shared by every checkout of the project
    (DVC's temporary experiment copies included); see curriculab.store."""

    root: str | None = None  # null: the project root; the CURRICULAB_STORE environment variable wins


class TrackingParams(Strict):
    enabled: bool = True
    uri: str | None = None  # default: sqlite:///<store root>/mlflow.db


class TableParams(Strict):
    """A table: rows × columns × seeds, each a deep-merged override of `run`."""

    seeds: Annotated[list[NonNegInt], Field(min_length=1)]
    run: dict[str, Any] = {}
    rows: Annotated[dict[str, dict[str, Any]], Field(min_length=1)]
    columns: Annotated[dict[str, dict[str, Any]], Field(min_length=1)] = {"all": {}}
    options: dict[str, Any] = {}  # table-specific settings (evaluation, figures), validated by its spec
    # column → {row: override}: that column runs only the rows listed, each with its override merged last (a
    # paper's sparse table whose columns set some hyper-parameters of a row differently); tables/spec.py reads it
    cells: dict[str, dict[str, dict[str, Any]]] = {}


class Params(Strict):
    profile: str = "offline"
    description: str = ""
    prepare: PrepareParams = PrepareParams()
    executor: ExecutorParams = ExecutorParams()
    tracking: TrackingParams = TrackingParams()
    store: StoreParams = StoreParams()
    defaults: dict[str, Any] = {}  # named blocks that other blocks `use` (expanded by settings_file.resolve_uses)
    pretrain: dict[str, dict[str, Any]] = {}  # stage settings of methods that pretrain (validated there)
    tables: dict[str, TableParams] = {}
    evaluate: dict[str, dict[str, Any]] = {}  # evaluate-stage settings per table key (validated by its spec)


def check_dotless(key: str, table: TableParams) -> None:
    """Row and column names are segments of `dvc exp run -S tables.<key>.rows.<row>.…`: no dots."""
    for part in ("rows", "columns"):
        for name in getattr(table, part):
            if "." in name:
                raise ConfigError(f"tables.{key}.{part}.{name}: a name with a dot cannot be addressed by "
                                  f"`dvc exp run -S`; rename it without dots (e.g. {name.replace('.', 'p')!r})")


def table_key(table_id: str) -> str:
    """`cbs.t1` (the id the papers' tables go by) → `cbs_t1` (its key in params.yaml)."""
    return table_id.replace(".", "_")
