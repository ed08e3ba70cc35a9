"""Every table names the paper profile's settings that its paper does not state (`TableSpec.chosen_here`), and
each name is a real setting of that table's paper-profile runs, so the list cannot drift from the profile."""

from __future__ import annotations

import pytest

from curriculab.project import load_params
from curriculab.tables.spec import TABLES, expand_table
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def paper():
    return load_params(ROOT / "profiles" / "paper.yaml")


def _has(tree, path: str) -> bool:
    for part in path.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


PAPER_TABLES = sorted(TABLES.get(n).key for n in TABLES.names() if TABLES.get(n).source != "harness")


@pytest.mark.parametrize("key", PAPER_TABLES)
def test_chosen_here_names_settings_of_the_paper_profile(key, paper):
    if key not in paper.tables:  # an offline-only table (dp.sweep): no paper-profile settings to list
        pytest.skip(f"{key} is not in the paper profile")
    spec = TABLES.get(next(n for n in TABLES.names() if TABLES.get(n).key == key))
    assert spec.chosen_here, f"{spec.id}: no `chosen_here` list (the paper profile's settings its paper leaves open)"
    configs = [run.config.model_dump(mode="json") for run in expand_table(spec, paper)]
    for path, why in spec.chosen_here.items():
        assert why.strip(), f"{spec.id}: `{path}` has no explanation"
        if path.startswith("evaluate."):
            assert _has(paper.evaluate.get(spec.key, {}), path.removeprefix("evaluate.")), \
                f"{spec.id}: chosen_here names {path!r}, not in the paper profile's evaluate.{spec.key}"
        else:
            assert any(_has(c, path) for c in configs), \
                f"{spec.id}: chosen_here names {path!r}, not a setting of its paper-profile runs"


def test_chosen_here_is_shown_in_the_notes():
    from curriculab.tables.spec import TableSpec

    spec = TableSpec("x.t1", "x", "x", ["test_acc"], notes="n.",
                     chosen_here={"train.epochs": "200, as CIFAR usual", "seed": "0-4"})
    assert spec.all_notes.startswith("n.\n\n")
    assert spec.all_notes.endswith(":\n\n- `train.epochs`: 200, as CIFAR usual\n- `seed`: 0-4")  # a markdown list
