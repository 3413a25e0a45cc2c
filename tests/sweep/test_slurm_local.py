"""``hydra/launcher=slurm`` code path through submitit's local executor: the job runs under
``accelerate launch`` (2 CPU processes, DDP over gloo) and is recorded like any sweep job."""
from __future__ import annotations

import json

import pytest
from sweep_helpers import TINY, explain, run_sweep, summary

pytestmark = pytest.mark.slow


def test_submitit_local_job_runs_under_accelerate_launch(tmp_path):
    pytest.importorskip("submitit", reason="hydra-submitit-launcher is an optional extra ([sweep])")
    sweep_dir = tmp_path / "multirun" / "cluster"
    result = run_sweep([*TINY, "hydra/launcher=slurm_local", "trainer.num_processes=2", f"hydra.sweep.dir={sweep_dir}"],
                       cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    data = summary(sweep_dir)
    assert [j["status"] for j in data["jobs"]] == ["finished"]
    metrics = json.loads((sweep_dir / data["jobs"][0]["run_dir"] / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics.get("distributed_type", "MULTI_CPU") == "MULTI_CPU"
    assert "accelerate.commands.launch" in (sweep_dir / "0" / "run.log").read_text()
    assert list((sweep_dir / ".submitit").glob("*/*_log.out"))  # it went through submitit
