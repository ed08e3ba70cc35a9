"""Behaviour that a single-line defect would break unnoticed: schedules across a resume, run ids,
augmentation in the training batch path, atomic writes, copies' checksums, data parameters at evaluation."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from curriculab.config import ConfigError, Params, RunConfig
from curriculab.engine.loop import fit


class Disk:
    """Fault injection under atomic_write_bytes: temporary files on a full disk or in a read-only folder."""

    def __init__(self, fault: str):
        self.fault = fault

    def mkstemp(self, dir, prefix):
        name = os.path.join(dir, prefix + "tmp")
        if self.fault == "readonly":
            raise PermissionError(errno.EACCES, "Permission denied", name)
        return os.open("/dev/full", os.O_WRONLY), name  # every write: ENOSPC


RUN = {"data": {"dataset": "digits", "subset_per_class": 12}, "model": {"name": "small_cnn", "width": 0.25},
       "train": {"epochs": 5, "batch_size": 32, "optimizer": {"lr": 0.1}}}


def _interrupted_then_resumed(run: RunConfig, run_dir, workdir, monkeypatch, after: int) -> dict:
    """Train, die right after the `after`-th checkpoint is on disk (before its metrics.json), resume."""
    import curriculab.engine.checkpoint as ck

    real, saved = ck.atomic_write_bytes, []

    def write_then_die(path, data):
        real(path, data)
        saved.append(path)
        if len(saved) == after:
            raise KeyboardInterrupt

    monkeypatch.setattr(ck, "atomic_write_bytes", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(run, run_dir, workdir)
    monkeypatch.setattr(ck, "atomic_write_bytes", real)
    return fit(run, run_dir, workdir)


@pytest.mark.parametrize("schedule", [
    {"name": "step", "step_size": 3, "gamma": 0.2},
    {"name": "multistep", "milestones": [3], "gamma": 0.2},
    {"name": "plateau", "patience": 1, "gamma": 0.5},
])
def test_lr_schedule_resumes_across_a_milestone(workdir, monkeypatch, schedule):
    cfg = dict(RUN, train={**RUN["train"], "schedule": schedule})
    if schedule["name"] == "plateau":  # a long run on a tiny subset: validation loss stops improving
        cfg["train"] = {**cfg["train"], "epochs": 8, "optimizer": {"lr": 0.3}}
        cfg["data"] = {**cfg["data"], "subset_per_class": 4}
    run = RunConfig.model_validate(cfg)
    straight = fit(run, workdir / "straight", workdir)
    lrs = [h["lr"] for h in straight["history"]]
    killed_at = 3 if schedule["name"] != "plateau" else next(i for i in range(1, len(lrs)) if lrs[i] != lrs[i - 1])
    assert lrs[killed_at] != lrs[killed_at - 1]  # the first resumed epoch is the one where the lr changes
    resumed = _interrupted_then_resumed(run, workdir / "resumed", workdir, monkeypatch, after=killed_at)
    assert [h["lr"] for h in resumed["history"]] == lrs
    assert [h["val_loss"] for h in resumed["history"]] == [h["val_loss"] for h in straight["history"]]


def test_run_id_changes_with_a_method_parameter():
    from curriculab.tables.spec import expand_table, get_spec

    rows = {f"init{v}": {"methods": {"data_parameters": {"curriculum": "class", "class_init": v}}} for v in (1.0, 2.0)}
    table = {"seeds": [0], "run": {"data": {"dataset": "digits"}}, "rows": rows}
    params = Params.model_validate({"prepare": {"datasets": ["digits"]}, "tables": {"baseline": table}})
    a, b = expand_table(get_spec("baseline"), params)
    assert a.config.methods != b.config.methods and a.run_id != b.run_id


@pytest.mark.parametrize("augment", [{"flip": True}, {"crop_pad": 2}])
def test_augmentation_reaches_the_training_batches(prepared_root, augment):
    from curriculab.data.loader import DeviceData

    run = RunConfig.model_validate({"data": {"dataset": "digits", "subset_per_class": 20, "augment": augment}})
    data = DeviceData(run, prepared_root / "data", torch.device("cpu"))
    plain = data.to_input(data.train_x, augment=False)
    changed = same = 0
    for batch in data.batches(50):  # the batches the training loop draws by default
        ref = plain[batch.index]
        moved = (batch.x != ref).flatten(1).any(1)
        changed, same = changed + int(moved.sum()), same + int((~moved).sum())
        if "flip" in augment:  # every augmented image is the plain one mirrored
            assert torch.equal(batch.x[moved], ref[moved].flip(3))
    assert changed > 0.25 * data.n_train and same > 0  # a random part of the batch, not all, not none


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    import curriculab.data.prepared as prepared

    f = tmp_path / "metrics.json"
    prepared.atomic_write_json(f, {"v": 1})
    before = f.read_bytes()
    monkeypatch.setattr(prepared, "tempfile", Disk("full"))
    with pytest.raises(OSError) as e:
        prepared.atomic_write_json(f, {"v": 2, "pad": "x" * 100_000})
    assert e.value.filename == str(f)
    assert f.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["metrics.json"]


def test_files_follow_the_umask(tmp_path):
    from curriculab.data.prepared import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a", b"x")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o644 and (tmp_path / "b").stat().st_mode & 0o777 == 0o600


def test_corrupt_copy_is_detected(prepared_root, tmp_path):
    import shutil

    from curriculab.data.prepared import dataset_dir, load_copy, load_prepared, write_copy

    shutil.copytree(prepared_root / "data", tmp_path / "data")
    write_copy(tmp_path / "data", "digits", "inverted", 255 - load_prepared(tmp_path / "data", "digits").x)
    f = dataset_dir(tmp_path / "data", "digits") / "copies" / "inverted.npz"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="checksum mismatch") as e:
        load_copy(tmp_path / "data", "digits", "inverted")
    assert str(f) in str(e.value)
    f.unlink()
    with pytest.raises(ConfigError, match="is missing"):
        load_copy(tmp_path / "data", "digits", "inverted")


def test_data_parameters_do_not_scale_evaluation(workdir):
    from curriculab.engine.loop import load_trained
    from curriculab.engine.tasks import get_task

    run = RunConfig.model_validate({**RUN, "train": {"epochs": 1, "batch_size": 32},
                                    "methods": {"data_parameters": {"curriculum": "joint"}}})
    fit(run, workdir / "dp", workdir)
    model, data, hooks = load_trained(run, workdir / "dp", workdir, "cpu")
    dp = hooks.methods[0]
    task = get_task(run.task, run.task_params)
    batch = next(data.batches(64, shuffle=False, augment=False))
    results, losses = [], []
    for scale in (0.0, 1.5, -2.0):  # log σ: σ = 1, e^1.5, e^-2 for every class and instance
        with torch.no_grad():
            dp.class_log.fill_(scale)
            dp.inst_log.fill_(scale)
            results.append(task.evaluate(lambda x: hooks.predict(model, x), data.eval_batches("val", 100)))
            losses.append(hooks.loss(model(batch.x), batch, None, task.loss).mean().item())
    assert results[0] == results[1] == results[2]
    assert len(set(losses)) == 3  # σ does scale the training loss
