"""Shared by tests: the repo root, ../shared/data, and running the CLI as a user would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()


def run_cli(*overrides: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600,
            multirun: bool = False) -> subprocess.CompletedProcess:
    """``python run.py <overrides>`` in a subprocess, as a user would type it."""
    cmd = [sys.executable, str(REPO / "run.py")] + (["-m"] if multirun else []) + list(overrides)
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(cmd, cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def load_script(name: str):
    """A script of scripts/ imported as a module (its functions tested without running its main)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
