"""bench/gpu_check.sh in its CPU mode (issue 15 §5): versions, a dry-run table and the throughput ratio."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow  # ~1 min of CPU time, 5+ min wall on the 2 loaded cores here; run by .ci/run
def test_gpu_check_cpu_mode():
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert re.search(r"^torch \d+\.\d+", text, re.M) and "CUDA " in text and "driver" in text
    assert re.search(r"^\| baseline \| 6 \| 2 \|.*\| ok \|$", text, re.M)
    assert re.search(r"^harness: [\d,.]+ images/s", text, re.M) and re.search(r"^minimal: [\d,.]+ images/s", text, re.M)
    assert re.search(r"^ratio harness/minimal: \d+\.\d\dx \(target >= 0\.8x\)", text, re.M)
