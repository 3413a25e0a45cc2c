"""The import contract (pyproject.toml [tool.importlinter]): layers point one way, and a cycle fails."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cli_helpers import REPO

LINT = Path(sys.executable).parent / "lint-imports"


def _lint(src: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(src))  # this copy of the packages, ahead of the installed one
    return subprocess.run([str(LINT), "--no-cache", "--config", str(REPO / "pyproject.toml")], cwd=src, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_layers_are_kept():
    result = _lint(REPO / "src")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    for package in ("experiments", "hydra_plugins"):
        shutil.copytree(REPO / "src" / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    errors = tmp_path / "experiments" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom experiments import cli  # noqa: E402,F401\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "experiments.errors is not allowed to import experiments.cli" in result.stdout


def test_a_mode_importing_the_report_breaks_the_contract(tmp_path):
    for package in ("experiments", "hydra_plugins"):
        shutil.copytree(REPO / "src" / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    records = tmp_path / "experiments" / "sweep" / "records.py"
    records.write_text(records.read_text() + "\nfrom experiments.report import html  # noqa: E402,F401\n")
    result = _lint(tmp_path)
    assert result.returncode != 0 and "experiments.sweep is not allowed to import experiments.report" in result.stdout


def test_a_cycle_between_siblings_through_an_import_inside_a_function_breaks_the_contract(tmp_path):
    """Modules of one layer may import each other (``:``), but never both ways, not even inside a function."""
    for package in ("experiments", "hydra_plugins"):
        shutil.copytree(REPO / "src" / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    errors = tmp_path / "experiments" / "errors.py"  # experiments.locks imports experiments.errors
    errors.write_text(errors.read_text() + "\n\ndef _later():\n    from experiments import locks  # noqa: F401\n")
    result = _lint(tmp_path)
    assert result.returncode != 0 and "No cycles are allowed in experiments." in result.stdout, result.stdout[-2000:]
