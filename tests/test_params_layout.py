"""params.yaml without YAML anchors: shared `defaults` blocks taken with `use`, every key addressable by
`dvc exp run -S` (DVC's own override code applies each change here, on both profiles)."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from curriculab.config import ConfigError
from curriculab.project import load_params
from curriculab.settings_file import resolve_uses
from curriculab.tables.spec import expand_table, get_spec
from tests.conftest import ROOT

PROFILES = [ROOT / "params.yaml", ROOT / "profiles" / "paper.yaml"]


@pytest.mark.parametrize("path", [ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))],
                         ids=lambda p: p.name)
def test_profiles_have_no_anchors_and_no_dotted_names(path):
    events = list(yaml.parse(path.read_text()))
    assert not [e for e in events if isinstance(e, yaml.AliasEvent)]
    assert not [e for e in events if getattr(e, "anchor", None)]
    params = load_params(path)
    for key, t in params.tables.items():
        assert "." not in key and not [n for n in (*t.rows, *t.columns) if "." in n]


def test_use_merges_named_defaults_under_own_keys():
    data = {"defaults": {"base": {"epochs": 3, "optimizer": {"lr": 0.1, "momentum": 0.9}},
                         "long": {"use": "base", "epochs": 9}},
            "tables": {"t": {"run": {"train": {"use": "long", "optimizer": {"lr": 0.5}}}}}}
    out = resolve_uses(data)
    assert out["tables"]["t"]["run"]["train"] == {"epochs": 9, "optimizer": {"lr": 0.5, "momentum": 0.9}}
    assert out["defaults"] == data["defaults"]  # the named blocks themselves stay as written


def test_unknown_or_cyclic_use_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"tables\.t\.run\.train\.use: no block 'trian' under defaults; "
                                          r"did you mean 'train'"):
        resolve_uses({"defaults": {"train": {}}, "tables": {"t": {"run": {"train": {"use": "trian"}}}}})
    with pytest.raises(ConfigError, match="cycle"):
        resolve_uses({"defaults": {"a": {"use": "b"}, "b": {"use": "a"}}, "x": {"use": "a"}})


def test_a_dotted_row_name_is_refused_naming_the_key(tmp_path):
    p = tmp_path / "params.yaml"
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    rows = data["tables"]["cbs_app"]["rows"]
    rows["sigma0.5_decay0.5"] = rows.pop("sigma0p5_decay0p7")
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"tables\.cbs_app\.rows\.sigma0\.5_decay0\.5: a name with a dot"):
        load_params(p)


def _override(src, tmp_path, overrides: list[str]):
    from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` runs

    p = tmp_path / src.name
    shutil.copy(src, p)
    apply_overrides(str(p), overrides)
    return load_params(p)


HYDRA_KEY = re.compile(r"[A-Za-z_$][\w$-]*$")  # a key segment `dvc exp run -S` (Hydra's grammar) can parse
UNADDRESSABLE = {"thesis_t35", "thesis_t36"}  # rows named 8-4-2, 4-2, 2: a segment may not start with a digit


def _row(params, key: str) -> str | None:
    return next((r for r in params.tables[key].rows if HYDRA_KEY.match(r)), None)


def _samples(params, key: str) -> list[tuple[str, str, object]]:
    """(override, resolved path, new value): a training, an optimiser, a data and a method setting of
    the table's first addressable row (the most specific block, so the change must reach all its runs)."""
    row = _row(params, key)
    run = next(r for r in expand_table(get_spec(key), params) if r.row == row)
    base = f"++tables.{key}.rows.{row}"
    out = [(f"{base}.train.epochs={run.config.train.epochs + 1}", "train.epochs", run.config.train.epochs + 1),
           (f"{base}.train.optimizer.lr=0.0123", "train.optimizer.lr", 0.0123),
           (f"{base}.data.test_limit=17", "data.test_limit", 17)]
    for name, mp in run.config.methods.items():
        num = [k for k, v in mp.items() if isinstance(v, float) and not isinstance(v, bool)]
        if num:
            new = round(mp[num[0]] * 0.5 + 0.125, 4)
            out.append((f"{base}.methods.{name}.{num[0]}={new}", f"methods.{name}.{num[0]}", new))
            break
    return out


def _get(cfg, path: str):
    node = cfg.model_dump(mode="json")
    for part in path.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_dvc_set_param_reaches_every_table(profile, tmp_path):
    before = load_params(profile)
    assert {k for k in before.tables if _row(before, k) is None} <= UNADDRESSABLE  # every other table has one
    samples = {key: _samples(before, key) for key in before.tables if _row(before, key) is not None}
    after = _override(profile, tmp_path, [o for s in samples.values() for o, _, _ in s])
    for key, sample in samples.items():
        row = _row(after, key)
        runs = [r for r in expand_table(get_spec(key), after) if r.row == row]
        for override, path, value in sample:
            assert all(_get(r.config, path) == value for r in runs), (key, override)


def test_dvc_set_param_on_a_shared_default_reaches_every_table_that_uses_it(tmp_path):
    before = load_params(ROOT / "params.yaml")
    users = [k for k, t in yaml.safe_load((ROOT / "params.yaml").read_text())["tables"].items()
             if t.get("run", {}).get("train") == {"use": "train"}]
    assert len(users) >= 3
    after = _override(ROOT / "params.yaml", tmp_path, ["defaults.train.epochs=5", "defaults.train.optimizer.lr=0.02"])
    for key in before.tables:
        old = expand_table(get_spec(key), before)
        new = expand_table(get_spec(key), after)
        if key in users:
            assert {(r.config.train.epochs, r.config.train.optimizer.lr) for r in new} == {(5, 0.02)}
            assert not {r.run_id for r in old} & {r.run_id for r in new}
        else:
            assert [r.run_id for r in old] == [r.run_id for r in new]  # untouched tables keep their run ids
