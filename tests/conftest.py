"""Shared fixtures: a prepared digits dataset in a temporary project."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def prepared_root(tmp_path_factory) -> Path:
    """A workdir with digits and a small syndigits prepared (no MLflow)."""
    from curriculab.config import Params
    from curriculab.data.prepare import prepare_all

    wd = tmp_path_factory.mktemp("project")
    params = Params.model_validate({"prepare": {"datasets": ["digits", "syndigits"],
                                                "syndigits": {"train": 300, "val": 100, "test": 100, "size": 16}},
                                    "tracking": {"enabled": False}})
    prepare_all(params, wd)
    return wd


@pytest.fixture
def workdir(prepared_root, tmp_path) -> Path:
    """A fresh project dir sharing the session's prepared data."""
    (tmp_path / "data").symlink_to(prepared_root / "data")
    return tmp_path


def copy_project(dst: Path) -> Path:
    """The repository's tracked layout copied to dst (for end-to-end tests)."""
    for name in ("params.yaml", "dvc.yaml", "stages", "profiles"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name)
        elif src.exists():
            shutil.copy(src, dst / name)
    return dst
