"""GPU-path defects of the scale-out issue that can be shown on the CPU: device per worker, no host syncs in
evaluation, batches in the model's memory format, deterministic pooling."""

from __future__ import annotations

import os
import time

from curriculab import executor


def _whoami(_):
    time.sleep(0.3)  # keep both workers busy so that tasks spread over them
    return os.getpid(), executor.worker_slot()


def test_each_worker_process_keeps_one_device_slot():
    """The GPU (and the progress line) belongs to the worker process, not to the run's index: with the
    index, two workers could train on one GPU while another GPU idled."""
    with executor.worker_pool(2, threads=1) as pool:
        got = list(pool.map(_whoami, range(6)))
    slots: dict[int, set[int]] = {}
    for pid, slot in got:
        slots.setdefault(pid, set()).add(slot)
    assert all(len(s) == 1 for s in slots.values()), slots
    assert sorted(s.pop() for s in slots.values()) == list(range(len(slots))), slots
