# The two entry points of the README. Each builds .venv first if it is missing.
PY := .venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)
VENV_STAMP := .venv/.installed
TEST_STAMP := .venv/.installed-test

.PHONY: repro test venv bench clean-runs fashion-mnist
FASHION := /usr/share/datasets/fashion-mnist

# What `repro` needs: the package and its dependencies. The test and Ray extras come with `make test`.
$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q -e .
	$(PY) -m pip install -q --no-deps $$($(PY) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['tool']['curriculab']['no-deps'])")
	touch $(VENV_STAMP)

$(TEST_STAMP): $(VENV_STAMP)
	$(PY) -m pip install -q -e '.[dev,ray]'
	touch $(TEST_STAMP)

venv: $(TEST_STAMP)

# Fashion-MNIST for the offline profile: Debian's package when apt can install it (as root); otherwise
# `prepare` downloads it with torchvision; otherwise it stops saying what is missing and how to get it.
fashion-mnist:
	@test -d $(FASHION) || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null && \
	  { apt-get install -y -q dataset-fashion-mnist || \
	    { apt-get update -q && apt-get install -y -q dataset-fashion-mnist; }; } >/dev/null 2>&1 && \
	  echo "installed Debian's dataset-fashion-mnist"; } || true

# Prepare the offline data and rebuild every table of the embedded default profile.
repro: $(VENV_STAMP) fashion-mnist
	.venv/bin/curriculab validate  # our one-line message even where DVC could not read params.yaml
	.venv/bin/dvc repro

test: $(TEST_STAMP)
	$(PY) -m pytest

bench: $(TEST_STAMP)
	$(PY) bench/loader.py
