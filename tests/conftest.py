"""Shared fixtures: a prepared digits dataset in a temporary project."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ["CURRICULAB_STRICT_DETERMINISM"] = "1"  # a non-deterministic kernel fails the tests (and their subprocesses)
FASHION = Path("/usr/share/datasets/fashion-mnist")
if "MUTANT_UNDER_TEST" in os.environ:  # under mutmut (tests/README.md): subprocesses import the mutated copy too
    # mutmut forks each mutant's test process from one that already ran torch: an OpenMP thread pool made before
    # the fork deadlocks the child's first parallel op (a futex wait, no CPU, so mutmut's CPU limit never fires)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    import curriculab

    _mutated = str(Path(curriculab.__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_mutated, os.environ.get("PYTHONPATH")) if p)


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


MICRO = {"data": {"dataset": "digits"}, "model": {"name": "small_cnn", "width": 0.25},
         "train": {"epochs": 2, "batch_size": 64, "device": "cpu"}}


def micro_run(*layers: dict, **over):
    """A micro RunConfig: digits, a quarter-width small CNN, 2 epochs on the CPU, deep-merged with `layers`
    and then `over`."""
    from curriculab.config import RunConfig, deep_merge

    return RunConfig.model_validate(deep_merge(MICRO, *layers, over))


def own_data_workdir(prepared_root: Path, path: Path) -> Path:
    """A project at `path` whose data/ is its own (the pretrain stage writes data/pretrained), sharing the
    session's prepared/."""
    (path / "data").mkdir(parents=True)
    (path / "data" / "prepared").symlink_to(prepared_root / "data" / "prepared")
    return path


@pytest.fixture
def spl_workdir(prepared_root, tmp_path):
    return own_data_workdir(prepared_root, tmp_path)


class Micro:
    """Micro runs in one project: `run(**over)` is the settings, `fit(**over)` trains one in a fresh run
    dir, `build(**over)` gives its (data, hooks, model) on the CPU."""

    def __init__(self, workdir: Path):
        import itertools

        self.workdir, self.counter = workdir, itertools.count()

    run = staticmethod(micro_run)

    def fit(self, *layers, run_dir=None, **over):
        from curriculab.engine.loop import fit

        return fit(micro_run(*layers, **over), run_dir or self.workdir / f"run{next(self.counter)}", self.workdir)

    def build(self, *layers, **over):
        import torch

        from curriculab.engine.loop import build

        return build(micro_run(*layers, **over), self.workdir / f"run{next(self.counter)}", self.workdir,
                     torch.device("cpu"))

    def method(self, *layers, **over):
        """The run's first method, built on the CPU, and a TrainState with its model and its optimiser."""
        from curriculab.engine.optim import build_optimizer
        from curriculab.methods.base import TrainState

        run = micro_run(*layers, **over)
        data, hooks, model = self.build(*layers, **over)
        opt = build_optimizer(model.parameters(), run.train.optimizer)
        return hooks.methods[0], TrainState(model=model, optimizer=opt, data=data, epochs=run.train.epochs)


@pytest.fixture
def micro(workdir) -> Micro:
    """Micro runs in the test's project (see `Micro`)."""
    return Micro(workdir)


def micro_table(tmp_path: Path, table: str, block: dict, datasets=("digits",)):
    """A params file in tmp_path holding one table block, loaded and fully validated (curriculab.project)."""
    import yaml

    from curriculab.project import load_params

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"prepare": {"datasets": list(datasets)}, "tracking": {"enabled": False},
                                    "tables": {table: block}}))
    return load_params(path)


def copy_project(dst: Path) -> Path:
    """The repository's tracked layout copied to dst (for end-to-end tests)."""
    for name in ("params.yaml", "dvc.yaml", "stages", "profiles"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name)
        elif src.exists():
            shutil.copy(src, dst / name)
    return dst
