"""Start-up cost of the command line: wall time of `curriculab validate` (issue 12's target: ≤ 1.5 s), and what
each entry point imports (torch, matplotlib, pandas, scipy) with the seconds `python -X importtime` charges to it.

Every DVC stage and every spawned training worker pays its entry point's imports once, so this is also part of
`make repro`'s wall time (bench/pipeline.md).

    .venv/bin/python bench/startup.py [--repeat 5] [--params params.yaml]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "matplotlib", "pandas", "scipy")
ENTRY_POINTS = {
    # what `curriculab validate` runs
    "validate (load_params)": "from curriculab.project import load_params; load_params({params!r})",
    # what a spawned training worker resolves before its first step
    "training worker (engine + model/method lookup)":
        "import curriculab.executor, curriculab.engine.loop\n"
        "from curriculab.models import MODELS; from curriculab.methods import registry\n"
        "MODELS.names(); registry()",
}


def _family(name: str) -> str | None:
    top = name.split(".")[0]
    return top if top in HEAVY else None


def heavy_imports(code: str) -> dict[str, float]:
    """Heavy package → seconds spent importing it and its submodules, for `code` in a fresh interpreter.

    `-X importtime` prints a module after the modules it imported, one level deeper; a line counts when the
    import that pulled it in (the next line with less indentation) is not of the same package."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                         check=True).stderr
    rows = [(len(m.group(2)), m.group(3), int(m.group(1))) for line in err.splitlines()
            if (m := re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)$", line))]
    out: dict[str, float] = {}
    for i, (depth, name, cumulative) in enumerate(rows):
        family = _family(name)
        parent = next((n for d, n, _ in rows[i + 1:] if d < depth), None)
        if family and (parent is None or _family(parent) != family):
            out[family] = out.get(family, 0.0) + cumulative / 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--params", default="params.yaml")
    a = ap.parse_args()
    exe = Path(sys.executable).with_name("curriculab")
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        subprocess.run([str(exe), "validate", a.params], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    print(f"curriculab validate {a.params}: median {statistics.median(times):.2f} s, min {min(times):.2f} s "
          f"over {a.repeat} runs (target ≤ 1.5 s)")
    for name, code in ENTRY_POINTS.items():
        found = heavy_imports(code.format(params=a.params))
        listed = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(found.items(), key=lambda kv: -kv[1])) or "none"
        print(f"{name}: imports {listed}")


if __name__ == "__main__":
    main()
