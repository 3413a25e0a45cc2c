"""``hparams_search=optuna``: a 3-trial TPE search whose objective is read from each job's metrics."""
from __future__ import annotations

import json

import pytest
from sweep_helpers import TINY, explain, run_sweep, summary

pytestmark = pytest.mark.slow


def test_three_trial_optuna_search_returns_each_jobs_objective(tmp_path):
    optuna = pytest.importorskip("optuna", reason="hydra-optuna-sweeper is an optional extra ([sweep])")
    sweep_dir = tmp_path / "multirun" / "search"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_sweep([*TINY, "hparams_search=optuna", "hydra.sweeper.n_trials=3", "hydra.launcher.n_jobs=2",
                        "objective=train_loss", "hydra.sweeper.direction=minimize", f"hydra.sweeper.storage={storage}",
                        "hydra.sweeper.study_name=t", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    data = summary(sweep_dir)
    assert [j["status"] for j in data["jobs"]] == ["finished"] * 3
    assert data["metric"] == "train_loss" and data["direction"] == "minimize"
    from_runs = []
    for job in data["jobs"]:
        final = json.loads((sweep_dir / job["run_dir"] / "metrics.json").read_text())["final"]
        assert job["objective"] == "train_loss"
        assert job["objective_value"] == pytest.approx(final["train_loss"])
        assert {"trainer.lr", "trainer.per_device_batch_size"} <= {o.split("=")[0] for o in job["overrides"]}
        from_runs.append(final["train_loss"])
    study = optuna.load_study(study_name="t", storage=storage)
    told = [t.value for t in sorted(study.trials, key=lambda t: t.number)]
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert told == pytest.approx(from_runs)  # what Optuna was told is each job's metric
    results = (sweep_dir / "optimization_results.yaml").read_text()
    assert f"best_value: {min(from_runs)}" in results
