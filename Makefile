# `make run` and `make test` do all the set-up on a fresh machine (no GPU, no hub access needed).
PY := .venv/bin/python
SHARED ?= $(abspath ../shared/data)

.venv/.installed: pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh
	touch $@

setup: .venv/.installed

run: .venv/.installed
	$(PY) run.py

# Tests run on every core (pytest-xdist), a module per worker: its module-scoped fixtures (a cluster, a trained run) are built once.
TEST_WORKERS ?= auto

test: .venv/.installed
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -q --durations=30 -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# The same run under coverage.py: prints the line coverage of src/experiments (slower than `make test`).
coverage: .venv/.installed
	$(PY) -m coverage erase
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline $(PY) -m coverage run -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder
	$(PY) -m coverage combine -q && $(PY) -m coverage report --format=total && $(PY) -m coverage report | tail -n 1

test-fast: .venv/.installed
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

.PHONY: setup run test test-fast coverage
