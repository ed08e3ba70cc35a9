"""Contract tests over every registered entry: a model, method or table is covered once it is registered."""

from __future__ import annotations

import functools

import pytest
import torch

from curriculab.config import ConfigError, Params, table_key
from curriculab.data.prepare import prepare_all
from curriculab.engine import loop
from curriculab.methods import check_methods
from curriculab.methods.base import METHODS
from curriculab.models import create_model, model_names
from curriculab.project import load_params
from curriculab.registry import Registry
from curriculab.synthetic import real_shape
from curriculab.tables.spec import TABLES, expand_table
from tests.conftest import ROOT, micro_run

PROFILES = [ROOT / "params.yaml", ROOT / "profiles" / "paper.yaml"]
profile = functools.cache(load_params)


# --------------------------------------------------------------------------- the registry helper


def test_registry_refuses_duplicates_and_suggests_close_names():
    reg: Registry[int] = Registry("widget")
    reg.register("small_widget", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("small_widget", 2)
    with pytest.raises(ConfigError) as e:
        reg.get("smal_widget", "model.name")
    assert str(e.value) == "model.name: unknown widget 'smal_widget'; did you mean 'small_widget'?"
    assert reg.names() == ["small_widget"] and "small_widget" in reg


# --------------------------------------------------------------------------- models


def _native(dataset: str, params: Params) -> tuple[int, int]:
    """(side, channels) of a dataset as prepare writes it (the dry run's table of the real datasets)."""
    shape = real_shape(dataset, params)
    return shape.size, shape.channels


def profile_inputs() -> dict[str, set[tuple]]:
    """model name → every (side, channels, kwargs) a run of the two profiles feeds it."""
    out: dict[str, set[tuple]] = {name: set() for name in model_names()}
    for path in PROFILES:
        params = profile(path)
        for key in params.tables:
            for r in expand_table(TABLES.get(TABLES_BY_KEY[key]), params):
                side, chans = _native(r.config.data.dataset, params)
                m = r.config.model
                out[m.name].add((r.config.data.image_size or side, r.config.data.channels or chans,
                                 tuple(sorted(m.kwargs.items()))))
    return out


TABLES_BY_KEY = {table_key(t): t for t in TABLES.names()}
USED = profile_inputs()
# A model no profile uses yet is checked at every input side the profiles use, with one and three channels.
ANY = sorted({(s, c, ()) for v in USED.values() for s, _, _ in v for c in (1, 3)})
CASES = [(name, *case) for name in model_names() for case in sorted(USED[name] or ANY)]


@pytest.mark.parametrize("name, side, channels, kwargs", CASES,
                         ids=[f"{n}-{s}px{c}ch{'-' + str(dict(k)) if k else ''}" for n, s, c, k in CASES])
def test_every_model_forwards_at_every_profile_input_size(name, side, channels, kwargs):
    torch.manual_seed(0)
    width = 1.0 if name == "torchvision_imagenet" else 0.25  # torchvision's networks have no width multiplier
    model = create_model(name, channels, 10, width=width, image_size=side, **dict(kwargs)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, channels, side, side))
    first = out[0] if isinstance(out, tuple) else out
    assert first.shape[0] == 2 and torch.isfinite(first).all()


# --------------------------------------------------------------------------- methods


@pytest.fixture(scope="module")
def contract_root(tmp_path_factory):
    """digits prepared with every copy a method's contract example needs."""
    wd = tmp_path_factory.mktemp("contract")
    copies = {k: v for _, cls in METHODS.items() for k, v in cls.contract_copies.items()}
    prepare_all(Params.model_validate({"prepare": {"datasets": ["digits"], "copies": copies},
                                       "tracking": {"enabled": False}}), wd)
    return wd


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_and_resumes_exactly(name, contract_root, tmp_path, monkeypatch):
    cls = METHODS.get(name)
    run = micro_run(data={"subset_per_class": 6}, train={"epochs": 2, "batch_size": 32},
                    methods={name: cls.contract_params})  # 60 items: two steps per epoch
    check_methods(run.methods, "methods", run=run)
    run.methods = {name: cls.Params.model_validate(cls.contract_params).model_dump()}
    straight = loop.fit(run, tmp_path / "straight", contract_root)
    assert straight["status"] == "done" and [h["step"] for h in straight["history"]] == [2, 4]

    real = loop.test_epoch

    def killed_in_epoch_2(run_, state, *a):
        if state.epoch == 1:
            raise Interrupt
        return real(run_, state, *a)

    monkeypatch.setattr(loop, "test_epoch", killed_in_epoch_2)
    with pytest.raises(Interrupt):
        loop.fit(run, tmp_path / "resumed", contract_root)
    monkeypatch.setattr(loop, "test_epoch", real)
    resumed = loop.fit(run, tmp_path / "resumed", contract_root)

    def strip(rec):
        return [{k: v for k, v in h.items() if k != "time"} for h in rec["history"]], rec["artifacts"]

    assert strip(resumed) == strip(straight)
    drop = {"seconds"}
    assert {k: v for k, v in resumed["final"].items() if k not in drop} == \
        {k: v for k, v in straight["final"].items() if k not in drop}


# --------------------------------------------------------------------------- tables


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
@pytest.mark.parametrize("table", [t for t in TABLES.names() if not t.startswith("test.")])
def test_every_table_expands_under_both_profiles(table, path):
    params = profile(path)
    spec = TABLES.get(table)
    if spec.key not in params.tables:  # e.g. ImageNet tables, paper profile only
        assert any(spec.key in profile(p).tables for p in PROFILES), f"no profile has table {table}"
        pytest.skip(f"{path.name} has no block for table {table}")
    runs = expand_table(spec, params)
    assert runs and len({r.run_id for r in runs}) == len(runs)
