"""One run on many processes: torchrun + DistributedDataParallel (`train.ddp: N`, `curriculab train --ddp N`).

The executor launches `python -m torch.distributed.run --standalone --nproc-per-node N -m curriculab.distributed
RUN_DIR WORKDIR`: NCCL with one GPU per process on CUDA, gloo over N CPU processes otherwise. Every rank
loads the whole dataset on its device (DeviceData) and draws the same global shuffled (and augmented)
batch from the same seed, then trains on its 1/N slice; the loss is scaled so that DDP's gradient average
is the gradient of the global batch mean. Evaluation runs on every rank (identical weights, and rank 0's
buffers, which DDP broadcasts): each rank needs the validation loss for the schedule and stopping decisions.
Only rank 0 writes the run dir (checkpoint, metrics.json, timing); MLflow is logged by the stage process
from metrics.json, as for any run. All ranks resume from rank 0's checkpoint.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from curriculab.config import ConfigError

ERROR = re.compile(r"^[\w.]+(Error|Exception|Interrupt): ")  # a traceback's last line


def processes(asked: int, gpus: int | None = None) -> int:
    """The process count of `--ddp [N]`: N, or one per visible GPU; one clear error below 2."""
    gpus = torch.cuda.device_count() if gpus is None else gpus
    n = asked or gpus
    if n < 2:
        have = f"{gpus} visible GPU" + ("" if gpus == 1 else "s")
        raise ConfigError(f"--ddp needs at least 2 processes: {'asked for ' + str(asked) if asked else have}; "
                          f"give a process count, e.g. `--ddp 2` (gloo over 2 CPU processes with train.device: cpu)")
    return n


def check(run) -> None:
    """Refuse, before any process starts, a DDP run that cannot run: a method or table runner without DDP
    support, or more NCCL processes than GPUs."""
    from curriculab.engine.devices import resolve_device
    from curriculab.methods.base import METHODS
    from curriculab.tables.spec import get_spec

    n = run.config.train.ddp
    for name, params in run.config.methods.items():
        cls = METHODS.get(name)
        why = cls.ddp_refusal(cls.Params.model_validate(params or {}))
        if why:
            raise ConfigError(f"methods.{name}: {why} (train.ddp: {n}); train it in one process")
    if get_spec(run.table).runner is not None:
        raise ConfigError(f"table {run.table!r} has its own runner, which cannot run under DDP (train.ddp: {n})")
    gpus = torch.cuda.device_count()
    if resolve_device(run.config.train.device).type == "cuda" and n > gpus:
        raise ConfigError(f"train.ddp: {n} NCCL processes need {n} GPUs (one each), {gpus} visible; "
                          f"use train.device: cpu for gloo")


def launch(run, run_dir: Path, workdir: Path) -> None:
    """torchrun over the run's processes; the run dir already holds config.yaml (the run's settings)."""
    n = run.config.train.ddp
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the executor's `threads`
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
           "-m", "curriculab.distributed", str(run_dir), str(workdir)]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr)  # the workers' tracebacks, then torchrun's summary
        cause = next((ln for ln in proc.stderr.splitlines()
                      if ERROR.match(ln) and "ChildFailedError" not in ln), "a worker died without a traceback")
        # the executor's one line names the run: "<table> run <id> (...): RuntimeError: its 2 DDP processes ..."
        raise RuntimeError(f"its {n} DDP processes failed (exit {proc.returncode}): {cause.strip()}")


def main(argv: list[str]) -> None:
    """One torchrun worker: join the group, train the run with `fit`, leave."""
    import yaml

    from curriculab.config import RunConfig
    from curriculab.engine.devices import resolve_device
    from curriculab.engine.loop import fit

    run_dir, workdir = Path(argv[0]), Path(argv[1])
    conf = yaml.safe_load((run_dir / "config.yaml").read_text())
    run = RunConfig.model_validate(conf["config"])
    cuda = resolve_device(run.train.device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        fit(run, run_dir, workdir, run_id=conf["labels"]["run_id"],
            meta={"labels": conf["labels"], "data_checksum": conf["data_checksum"]})
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
