"""Offline, quiet test environment and shared fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "TOKENIZERS_PARALLELISM": "false",
    "HYDRA_FULL_ERROR": "0",
}.items():
    os.environ[_key] = _value
os.environ.pop("WANDB_API_KEY", None)

# pytest-xdist runs one worker per core (`make test`), and each worker starts runs that would each take every
# core for torch's OpenMP threads: 2 workers x 2 threads on 2 cores spin against each other (measured on the
# 2-core Xeon with 2 workers busy: a 24-step MiniLM run trained in 10.6 s with one thread, 36-44 s with two).
# So every process a test starts gets its share of the cores, as a cluster's scheduler would give it;
# `launch` divides that share among a run's processes. Outside xdist, runs keep torch's default.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _SHARE = str(max(1, len(os.sched_getaffinity(0)) // _WORKERS))
    for _key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_key, _SHARE)

from cli_helpers import REPO, SHARED_DATA, run_cli  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from scheduling import CACHE_KEY, ModuleClock, order_longest_first  # noqa: E402

# Property-based tests (tests/reliability/test_fuzz_*.py): "ci" (the default) is a fixed, derandomized
# budget that fits the CI run; `pytest --hypothesis-profile=long tests/reliability` searches far longer.
_FUZZ = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=100, derandomize=True, **_FUZZ)
settings.register_profile("long", max_examples=1500, **_FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Modules run longest first (tests/scheduling.py): no module starts last and runs alone while the workers idle.
_CLOCK = ModuleClock()


def pytest_collection_modifyitems(config, items):
    cache = getattr(config, "cache", None)  # None under -p no:cacheprovider
    order_longest_first(items, cache.get(CACHE_KEY, {}) if cache is not None else {})


def pytest_runtest_logreport(report):
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # the controller (or a run without xdist) sees every report
        _CLOCK.add(report)


def pytest_sessionfinish(session):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        _CLOCK.save(getattr(session.config, "cache", None))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (real GLUE, SQuAD, XSum, Multi30k files)."""
    if not (SHARED_DATA / "MANIFEST.md").exists():
        pytest.skip(f"real test data not found at {SHARED_DATA} (the shared/ folder beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from experiments.resolve import resolve_model

    return resolve_model("sentence-transformers/all-MiniLM-L6-v2").path


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, minilm_dir):
    """Tiny random checkpoints (tests/tiny_models.py) for the tasks no offline model covers."""
    from tiny_models import build_all

    return build_all(tmp_path_factory.mktemp("tiny-models"), minilm_dir)
