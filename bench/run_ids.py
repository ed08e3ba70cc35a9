"""Print every run id of every table of a params file (default: params.yaml and profiles/paper.yaml).

A refactoring that must change no number keeps this output identical: diff it before and after.
"""

from __future__ import annotations

import sys

from curriculab.config import table_key


def run_ids(path: str) -> list[str]:
    try:
        from curriculab.project import load_params
    except ImportError:  # before curriculab.project existed
        from curriculab.config import load_params
    from curriculab.tables.spec import expand_table, get_spec

    params = load_params(path)
    out = []
    for key in sorted(params.tables):
        for r in expand_table(get_spec(key), params):
            out.append(f"{path} {table_key(r.table)} {r.row} {r.column} {r.seed} {r.run_id}")
    return out


if __name__ == "__main__":
    for p in sys.argv[1:] or ["params.yaml", "profiles/paper.yaml"]:
        print("\n".join(run_ids(p)))
