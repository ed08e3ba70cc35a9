"""Settings of the adversarial evaluation (evaluate/adversarial.py): the attacks and an `adversarial` block,
checked against its table; and where the step writes its results, which the tables read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from curriculab.config import ConfigError, Strict, check_name, validate

Eps = Annotated[float, Field(ge=0, le=1)]

# name → torchattacks class; the names are the thesis' (Table 3.3): FGSM, BIM, MIM, PGD.
ATTACKS = {"fgsm": "FGSM", "bim": "BIM", "mim": "MIFGSM", "pgd": "PGD"}
ITERATIVE = ("bim", "mim", "pgd")


class AttackParams(Strict):
    """One L∞ attack. Defaults: the thesis' official robustness script (the thesis itself gives none)."""

    eps: Eps = 8 / 255
    steps: Annotated[int, Field(ge=1)] | None = None  # None: 10 (FGSM: its single step)
    step: Annotated[float, Field(gt=0, le=1)] | None = None  # None: PGD 2/255; BIM, MIM ε / steps
    random_start: bool = False  # PGD only (the official script starts at the clean image)
    decay: Annotated[float, Field(ge=0)] = 1.0  # MIM's momentum μ (Dong et al. 2018)


def resolve_attack(name: str, p: AttackParams, path: str) -> AttackParams:
    """Fill the attack's defaults; settings that do not apply to it are errors naming the key."""
    if name == "fgsm":
        for key, bad in (("steps", p.steps not in (None, 1)), ("step", p.step is not None),
                         ("random_start", p.random_start)):
            if bad:
                raise ConfigError(f"{path}.{key}: FGSM is a single step of size ε; remove `{key}`")
        return p.model_copy(update={"steps": 1, "step": p.eps})
    if p.random_start and name != "pgd":
        raise ConfigError(f"{path}.random_start: only PGD has a random start; remove it")
    steps = p.steps or 10
    step = p.step if p.step is not None else (2 / 255 if name == "pgd" else p.eps / steps)
    return p.model_copy(update={"steps": steps, "step": step})


class AdversarialParams(Strict):
    """`evaluate.<table>.adversarial`: which attacks, on which runs of the table, through which defences."""

    attacks: Annotated[dict[str, AttackParams], Field(min_length=1)] = {"fgsm": AttackParams(),
                                                                       "pgd": AttackParams()}
    rows: list[str] | None = None  # None: every row of the table
    columns: list[str] | None = None  # None: every column
    limit: Annotated[int, Field(ge=1)] | None = None  # attack the first N test images (offline speed)
    batch_size: Annotated[int, Field(ge=1)] = 256  # on CPU, larger batches were slower per image
    defences: dict[str, dict[str, Any]] = {}  # method → params: its `predict` applied to the trained model
    eot_samples: Annotated[int, Field(ge=1)] = 4  # draws of a randomised predict averaged per gradient
    sweep: Annotated[list[Eps], Field(min_length=2)] = [0.0, 2 / 255, 4 / 255, 8 / 255]  # sanity: PGD
    tolerance: Annotated[float, Field(ge=0, le=1)] = 0.0  # slack of the monotonicity / PGD ≥ FGSM checks
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="before")
    @classmethod
    def _attack_list(cls, data: Any) -> Any:
        """`attacks: [fgsm, pgd]` is short for `attacks: {fgsm: {}, pgd: {}}`."""
        if isinstance(data, dict) and isinstance(data.get("attacks"), list):
            data = {**data, "attacks": {str(a): {} for a in data["attacks"]}}
        return data

    def resolved(self, path: str = "adversarial") -> dict[str, AttackParams]:
        for name in self.attacks:
            check_name("attack", name, ATTACKS, f"{path}.attacks.{name}")
        return {n: resolve_attack(n, p, f"{path}.attacks.{n}") for n, p in self.attacks.items()}


def check_block(block: Any, table, path: str) -> AdversarialParams:
    """Validate an adversarial block against its table (rows, columns) and the method registry."""
    from curriculab.methods import METHOD_SETTINGS, check_methods

    p = validate(AdversarialParams, block, prefix=path)
    p.resolved(path)
    for kind, names, have in (("row", p.rows, table.rows), ("column", p.columns, table.columns)):
        for i, name in enumerate(names or []):
            if name not in have:
                check_name(kind, name, have, f"{path}.{kind}s.{i}")
    check_methods(p.defences, f"{path}.defences")
    for name in p.defences:
        if "predict" not in METHOD_SETTINGS.get(name).hooks:
            raise ConfigError(f"{path}.defences.{name}: method {name!r} has no predict hook, so it is no "
                              "test-time defence")
    return p


def split_evaluate(block: dict) -> tuple[dict, Any]:
    """`evaluate.<table>` → (the table's own evaluate settings, its adversarial block or None)."""
    block = dict(block or {})
    return block, block.pop("adversarial", None)


def check_adversarial(block: Any, params, key: str) -> AdversarialParams:
    if key not in params.tables:
        raise ConfigError(f"evaluate.{key}.adversarial: table {key!r} has no block under `tables`, so there "
                          "are no runs to attack")
    return check_block(block, params.tables[key], f"evaluate.{key}.adversarial")


def selected(runs: list, p: AdversarialParams) -> list:
    """The table's runs whose row and column the block names (all of them by default), in table order."""
    return [r for r in runs if (p.rows is None or r.row in p.rows) and (p.columns is None or r.column in p.columns)]


def out_dir(workdir: Path, key: str) -> Path:
    return Path(workdir) / "runs" / "eval" / key / "adversarial"


def read_results(workdir: Path, key: str, run_ids: list[str]) -> dict[str, dict]:
    """run id → its adversarial record, for the runs that have one."""
    d = out_dir(workdir, key)
    return {r: json.loads((d / f"{r}.json").read_text()) for r in run_ids if (d / f"{r}.json").is_file()}
