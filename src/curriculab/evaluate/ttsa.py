"""Evaluate-stage test of the weights a run ended with: plain and Test-Time Sum Augmentation error, L2 norm.

A phase-wise run (CSA, GCSA, mixup, SamplePairing) ends by restoring the best checkpoint of its last
phase, so its final checkpoint is the model the thesis reports; this evaluates exactly that model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from curriculab.evaluate.settings.ttsa import KeptEvalParams
from curriculab.evaluate.transfer import cpu_threads
from curriculab.methods.sum_augmentation import TTSASampler


def evaluate_kept(run, record: dict, opts: KeptEvalParams, workdir: Path) -> dict:
    """test_err of the final checkpoint (and ttsa_test_err with `ttsa`), its L2 norm, the epochs used."""
    from curriculab.engine.loop import load_trained, model_l2_norm
    from curriculab.engine.tasks import get_task

    if record.get("status") == "diverged":  # its weights are not finite: no error to report
        return {"diverged": 1.0, "epochs_used": len(record["history"])}
    with cpu_threads(opts.threads), torch.no_grad():
        model, data, _ = load_trained(run.config, run.dir(workdir), workdir, opts.device)
        task = get_task(run.config.task, run.config.task_params)
        out = {"test_err": 1 - task.evaluate(model, data.eval_batches("test", opts.batch_size))["acc"],
               "l2_norm": model_l2_norm(model), "epochs_used": len(record["history"])}
        if opts.ttsa is not None:
            sampler = TTSASampler(opts.ttsa, data, run.config.seed)
            bs = max(1, opts.batch_size // opts.ttsa.c)
            acc = task.evaluate(lambda x: sampler.predict(model, x), data.eval_batches("test", bs))
            out["ttsa_test_err"] = 1 - acc["acc"]
    return out
