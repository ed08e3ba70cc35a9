# The two entry points of the README. Each builds .venv first if it is missing.
PY := .venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)
VENV_STAMP := .venv/.installed

.PHONY: repro test venv bench clean-runs

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $$($(PY) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['tool']['curriculab']['no-deps'])")
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

# Prepare the offline data and rebuild every table of the embedded default profile.
repro: $(VENV_STAMP)
	.venv/bin/curriculab validate  # our one-line message even where DVC could not read params.yaml
	.venv/bin/dvc repro

test: $(VENV_STAMP)
	$(PY) -m pytest

bench: $(VENV_STAMP)
	$(PY) bench/loader.py
