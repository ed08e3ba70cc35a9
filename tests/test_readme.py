"""The README's shell commands work as written from a fresh shell (no activated venv): every one parses,
the cheap ones run, and `.venv/bin/dvc repro` runs stages with the project's interpreter."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from curriculab.cli import build_parser
from tests.conftest import ROOT, copy_project

README = (ROOT / "README.md").read_text()
COMMANDS = [ln.strip() for block in re.findall(r"```bash\n(.*?)```", README, re.S) for ln in block.splitlines()
            if ln.strip() and not ln.strip().startswith("#")]
VENV = Path(sys.executable).parent.parent


def _fresh_shell(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    """`cmd` as a new login would run it: PATH without the venv, no inherited settings."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home()), "CI": "1", "LANG": "C.UTF-8"}
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_every_command_parses_and_names_real_subcommands():
    assert len(COMMANDS) >= 15
    for cmd in COMMANDS:
        assert subprocess.run(["bash", "-n", "-c", cmd]).returncode == 0, cmd
        for part in re.split(r"&&|;", cmd.split(" #")[0]):
            words = shlex.split(part)
            if words and words[0] == ".venv/bin/curriculab":
                build_parser().parse_args(words[1:])  # exits (fails the test) on an unknown subcommand
            elif words and words[0] in (".venv/bin/dvc", ".venv/bin/mlflow", "make"):
                assert (ROOT / words[0]).exists() or words[0] == "make", cmd
    assert "SPEC.md" not in README and "pretrain spl " not in README


@pytest.fixture
def fresh_project(tmp_path) -> Path:
    root = copy_project(tmp_path)
    (root / ".venv").symlink_to(VENV)
    for name in ("README.md", "src"):
        (root / name).symlink_to(ROOT / name)
    return root


def test_cheap_commands_run_from_a_fresh_shell(fresh_project):
    for cmd in (".venv/bin/curriculab validate", ".venv/bin/curriculab use-profile nosuch"):
        r = _fresh_shell(cmd, fresh_project)
        if "nosuch" in cmd:
            assert r.returncode == 2 and "valid: paper" in r.stderr
        else:
            assert r.returncode == 0 and "valid" in r.stdout, r.stderr


def test_dvc_repro_from_a_fresh_shell_uses_the_project_venv(fresh_project):
    params = {"profile": "micro", "prepare": {"datasets": ["digits"]}, "defaults": {}, "pretrain": {},
              "evaluate": {}, "tracking": {"enabled": False}, "tables": {}}
    (fresh_project / "params.yaml").write_text(yaml.safe_dump(params))
    assert _fresh_shell("git init -q && .venv/bin/dvc init -q", fresh_project).returncode == 0
    r = _fresh_shell(".venv/bin/dvc repro prepare", fresh_project)
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    assert (fresh_project / "data" / "prepared").is_dir()
