"""A real 2x2 grid sweep (debug=tiny, W&B offline, 2 jobs side by side): runs, summary, W&B grouping,
resume and the terminal comparison."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time

import pytest
from sweep_helpers import GRID, REPO, TINY, explain, run_sweep, summary

pytestmark = pytest.mark.slow

EXPECTED = {("1e-05", "8"), ("1e-05", "16"), ("3e-05", "8"), ("3e-05", "16")}


def _params(job):
    values = dict(o.split("=", 1) for o in job["overrides"])
    return values["trainer.lr"], values["trainer.per_device_batch_size"]


def test_grid_sweep_gives_four_finished_runs_and_a_correct_summary(grid):
    sweep_dir, result = grid
    assert result.returncode == 0, explain(result)
    data = summary(sweep_dir)
    jobs = data["jobs"]
    assert [j["job"] for j in jobs] == [0, 1, 2, 3]
    assert {_params(j) for j in jobs} == EXPECTED
    assert all(j["status"] == "finished" and j["error"] is None for j in jobs)
    assert data["counts"] == {"finished": 4}
    assert set(data["swept"]) == {"trainer.lr", "trainer.per_device_batch_size"}
    for job in jobs:
        run_dir = sweep_dir / job["run_dir"]
        final = json.loads((run_dir / "metrics.json").read_text())["final"]
        assert job["metrics"]["eval_accuracy"] == pytest.approx(final["eval_accuracy"])
        assert job["metrics"]["train_loss"] == pytest.approx(final["train_loss"])
        assert job["duration_s"] > 0
        assert (run_dir / "config.yaml").is_file()
    # exactly one best job, and it has the highest metric of the sweep
    assert data["metric"] == "eval_accuracy" and data["direction"] == "maximize"
    best = [j for j in jobs if j["best"]]
    assert len(best) == 1 and best[0]["job"] == data["best_job"]
    assert best[0]["metrics"]["eval_accuracy"] == max(j["metrics"]["eval_accuracy"] for j in jobs)
    with (sweep_dir / "sweep_summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows] == ["finished"] * 4
    assert [r["best"] for r in rows].count("True") == 1
    assert {"job", "overrides", "eval_accuracy", "duration_s", "run_dir", "error"} <= set(rows[0])
    # the table printed at the end marks the best job
    assert f"best: job {data['best_job']}" in result.stdout
    table_rows = [line for line in result.stdout.splitlines() if line.strip().startswith(("0 ", "1 ", "2 ", "3 "))]
    assert sum(" * " in line for line in table_rows) == 1
    report = (sweep_dir / "report.html").read_text()
    assert report.count("<img") == 3  # metric vs lr, metric vs batch size, learning curves
    assert "eval_accuracy vs trainer.lr" in report


def test_wandb_runs_of_a_sweep_share_a_group(grid):
    from wandb_log import read_run

    sweep_dir, result = grid
    assert result.returncode == 0, explain(result)
    data = summary(sweep_dir)
    assert data["sweep"] == "grid"
    seen = []
    for job in data["jobs"]:
        files = list((sweep_dir / job["run_dir"] / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(files) == 1, f"job {job['job']}: {files}"
        run = read_run(files[0])
        lr, batch = _params(job)
        assert run["group"] == "grid"
        assert run["name"] == f"trainer.lr={lr},trainer.per_device_batch_size={batch}"
        assert {"model:minilm", "dataset:bbc_news", "debug:tiny"} <= set(run["tags"])
        assert run["config"]["trainer"]["lr"] == pytest.approx(float(lr))  # the resolved config is logged
        assert run["config"]["logger"]["group"] == "grid"
        seen.append(run["name"])
    assert len(set(seen)) == 4


def test_resume_skips_finished_jobs(grid):
    sweep_dir, result = grid
    assert result.returncode == 0, explain(result)
    stamps = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/metrics.json")}
    assert len(stamps) == 4
    started = time.time()
    again = run_sweep([*TINY, "logger=wandb", *GRID, "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}",
                       "hydra.launcher.resume=true"], cwd=sweep_dir.parent.parent)
    assert again.returncode == 0, explain(again)
    assert (again.stdout + again.stderr).count(": kept)") == 4
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/metrics.json")} == stamps
    assert time.time() - started < 60  # no job ran (a tiny job alone takes ~15 s here)
    assert summary(sweep_dir)["counts"] == {"finished": 4}


def test_compare_prints_the_differing_configs_side_by_side(grid):
    sweep_dir, result = grid
    assert result.returncode == 0, explain(result)
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "compare.py"), str(sweep_dir)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = lines[0].split()
    assert header == ["0", "1", "2", "3"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["trainer.lr"] == ["1e-05", "1e-05", "3e-05", "3e-05"]
    assert rows["trainer.per_device_batch_size"] == ["8", "16", "8", "16"]
    assert "dataset.name" not in rows  # the same in every run
    assert len(rows["eval_accuracy"]) == 4 and rows["status"] == ["finished"] * 4
