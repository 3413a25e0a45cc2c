"""Offline, quiet test environment and shared fixtures."""
from __future__ import annotations

import os
import subprocess
import sys
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

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()


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


def run_cli(*overrides: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600,
            multirun: bool = False) -> subprocess.CompletedProcess:
    """``python run.py <overrides>`` in a subprocess, as a user would type it."""
    cmd = [sys.executable, str(REPO / "run.py")] + (["-m"] if multirun else []) + list(overrides)
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(cmd, cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli
