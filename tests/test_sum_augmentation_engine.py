"""The Sum Augmentation methods through the engine: CSA's early stop and restore, GCSA, the kept-weights evaluation."""

from __future__ import annotations

import pytest

from curriculab.config import RunConfig
from curriculab.engine.loop import fit
from curriculab.tables.spec import RunSpec

RUN = {"data": {"dataset": "digits", "subset_per_class": 30}, "model": {"name": "small_cnn", "width": 0.25},
       "train": {"epochs": 40, "batch_size": 32, "schedule": {"name": "constant"}}}


def _run(methods: dict, epochs: int = 40) -> RunConfig:
    return RunConfig.model_validate({**RUN, "train": {**RUN["train"], "epochs": epochs}, "methods": methods})


def test_csa_stops_early_and_ends_with_the_kept_weights(workdir):
    from curriculab.evaluate.ttsa import KeptEvalParams, evaluate_kept
    from curriculab.methods.sum_augmentation import TTSAParams

    run = _run({"csa": {"cascade": [2, 1], "patience": 1}})
    spec = RunSpec("thesis.t31", "csa_k2", "digits", 0, run, "csa")
    rec = fit(run, spec.dir(workdir), workdir)
    h = rec["history"]
    ks = [r["sa_k"] for r in h]
    assert ks[0] == 2 and ks[-1] == 1 and ks == sorted(ks, reverse=True)
    assert rec["status"] == "done" and rec["final"]["stopped_epoch"] == len(h) < 40  # the plateau ended it
    # mixed epochs see every image (the last batch of 300 mod 32 = 12 is mixed too); index counts images
    assert h[0]["train_seen"] == 300 and h[-1]["train_seen"] == 300
    # the run ends with the best (validation) weights of its last phase: testing the final checkpoint
    # again gives exactly that epoch's test accuracy
    best = max((r for r in h if r["sa_k"] == 1), key=lambda r: (r["val_acc"], -r["epoch"]))
    out = evaluate_kept(spec, rec, KeptEvalParams(device="cpu", ttsa=TTSAParams(c=4)), workdir)
    assert out["test_err"] == pytest.approx(1 - best["test_acc"], abs=1e-9)
    assert 0 <= out["ttsa_test_err"] <= 1 and out["l2_norm"] > 0 and out["epochs_used"] == len(h)


def test_gcsa_and_the_comparators_train_and_end_on_clean_data(workdir):
    for name, params in [("gcsa", {"start": 4, "cascade_epochs": 3, "uneven": "drop"}),
                         ("mixup", {"alpha": 1.0, "patience": 1}),
                         ("sample_pairing", {"warmup": 0, "on_epochs": 1, "off_epochs": 1, "patience": 1})]:
        rec = fit(_run({name: params}, epochs=8), workdir / name, workdir)
        h = rec["history"]
        assert rec["status"] == "done" and h[-1]["sa_k"] == 1 and h[0]["sa_k"] > 1, name
        assert rec["final"]["test_acc"] > 0.3, name  # far above chance (0.1)
        if name == "gcsa":  # Algorithm 3: t = epoch / cascade_epochs, then 1 in the clean fine-tuning
            assert [r["sa_t"] for r in h[:4]] == pytest.approx([0, 1 / 3, 2 / 3, 1])


def test_mixed_batches_count_train_accuracy_top_k_against_the_k_labels(workdir):
    import torch

    from curriculab.engine.loop import build
    from curriculab.engine.tasks import get_task
    from curriculab.methods.base import TrainState
    from curriculab.methods.sum_augmentation import topk_correct

    run = _run({"csa": {"cascade": [4, 1]}})
    data, hooks, model = build(run, workdir / "r", workdir, torch.device("cpu"))
    state = TrainState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), data=data)
    task = get_task("classification", {})
    batch = next(iter(hooks.train_batches(0, state, lambda: data.batches(32))))
    assert batch.x.shape[0] == 8 and len(batch.index) == 32  # 32 images → 8 mixes of K = 4
    out = model(batch.x)
    labels = data.train_y[batch.index].reshape(4, 8)
    assert float(hooks.correct(out, batch, state, task.correct)) == float(topk_correct(out, labels))
