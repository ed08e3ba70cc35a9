"""Shared by the stage scripts: run a curriculab command as a stage, with the project's interpreter.

dvc.yaml calls `python3`. When that interpreter cannot import curriculab (`.venv/bin/dvc repro` from
a shell whose PATH has no .venv/bin), the stage re-executes itself with the `.venv/bin/python` of the
project (or of the project a DVC temporary experiment copy was made from).
"""

import os
import sys
from pathlib import Path


def _venv_python() -> Path | None:
    for folder in Path(__file__).resolve().parents:
        py = folder / ".venv" / "bin" / "python"
        if py.is_file():
            return py
    return None


def run(argv: list[str]) -> None:
    try:
        from curriculab.cli import main
    except ModuleNotFoundError as e:
        if e.name != "curriculab":
            raise
        py = _venv_python()
        if py is None or Path(sys.executable).resolve() == py.resolve() or os.environ.get("CURRICULAB_REEXEC"):
            sys.exit(f"error: {sys.executable} cannot import curriculab; run `make venv`, then `.venv/bin/dvc repro`")
        os.environ["CURRICULAB_REEXEC"] = "1"
        os.execv(py, [str(py), sys.argv[0], *sys.argv[1:]])
    sys.exit(main(argv, stage=True))  # a stage process dies with the process that started it
