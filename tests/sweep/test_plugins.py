"""A launcher of one's own is one module in a ``hydra_plugins/`` folder plus its YAML (docs/architecture.md): added
here from the test itself, outside this project, and run as a user runs a sweep; one in the wrong place is one
line before anything is written."""
from __future__ import annotations

import os
import textwrap

import pytest
from sweep_helpers import TINY, run_sweep, summary

LAUNCHER = '''
"""Runs each job as the subprocess launcher does, and writes how many jobs it launched."""
from pathlib import Path

from hydra_plugins.experiments_launcher.subprocess_launcher import SubprocessLauncher


class CountingLauncher(SubprocessLauncher):
    def launch(self, job_overrides, initial_job_idx):
        returns = super().launch(job_overrides, initial_job_idx)
        Path(str(self.config.hydra.sweep.dir), "launched.txt").write_text(f"{len(job_overrides)}\\n")
        return returns
'''


def _add_launcher(root, module_dir, target):
    (root / module_dir).mkdir(parents=True)
    (root / module_dir / "counting_launcher.py").write_text(LAUNCHER)
    (root / "conf" / "hydra" / "launcher").mkdir(parents=True)
    (root / "conf" / "hydra" / "launcher" / "counting.yaml").write_text(textwrap.dedent(f"""\
        _target_: {target}
        n_jobs: 1
        resume: false
        """))
    return [f"hydra.searchpath=[file://{root / 'conf'}]", "hydra/launcher=counting"]


def _env(root):
    return {"PYTHONPATH": os.pathsep.join([str(root / "ext"), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
def test_a_launcher_added_from_outside_runs_the_sweep(tmp_path):
    added = _add_launcher(tmp_path, "ext/hydra_plugins", "hydra_plugins.counting_launcher.CountingLauncher")
    sweep_dir = tmp_path / "sweep"
    result = run_sweep([*TINY, *added, "trainer.lr=1e-5,3e-5", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path,
                       env=_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (sweep_dir / "launched.txt").read_text() == "2\n"
    assert summary(sweep_dir)["counts"]["finished"] == 2


def test_a_launcher_outside_hydra_plugins_is_one_line_and_writes_nothing(tmp_path):
    added = _add_launcher(tmp_path, "ext", "counting_launcher.CountingLauncher")
    sweep_dir = tmp_path / "sweep"
    result = run_sweep([*TINY, *added, "trainer.lr=1e-5,3e-5", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path,
                       env=_env(tmp_path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "outside the hydra_plugins package" in result.stderr
    assert not sweep_dir.exists() and not (tmp_path / "multirun").exists()
