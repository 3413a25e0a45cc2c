"""experiments.callbacks at the end of a sweep: the verdicts of a sweep with replicates reach each job's W&B run."""
from __future__ import annotations

import json
import time

import pytest
from wandb_log import records

from experiments.callbacks import _verdicts_to_wandb
from experiments.sweep import records as sweep_records
from experiments.sweep.summary import build_summary


def _job(sweep, num, lr, seed, acc, trackers):
    run_dir = sweep / str(num)
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps({"final": {"eval_accuracy": acc}}))
    (run_dir / "config.yaml").write_text(f"logger:\n  trackers: {json.dumps(trackers)}\n  project: p\n"
                                         f"  wandb_mode: offline\n")
    now = time.time()
    sweep_records.write(run_dir, sweep_records.build(
        job=num, overrides=[f"trainer.lr={lr}", f"trainer.seed={seed}"], status=sweep_records.FINISHED,
        run_dir=run_dir, sweep_dir=sweep, sweep="v", started_at=now - 1, finished_at=now))


def _summary_values(run_dir) -> dict:
    values = {}
    for path in sorted((run_dir / "wandb").rglob("run-*.wandb")):
        for record in records(path):
            if record["type"] == "summary":
                values.update(record["summary"].get("update") or {})
    return values


def test_each_wandb_job_gets_its_configurations_verdict_in_its_run_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    accs = {"1e-5": [0.80, 0.81, 0.79], "2e-5": [0.86, 0.87, 0.85]}
    num = 0
    for lr, values in accs.items():
        for seed, acc in enumerate(values):
            _job(tmp_path, num, lr, seed, acc, ["csv", "wandb"] if num != 1 else ["csv"])
            num += 1
    summary = build_summary(tmp_path)
    _verdicts_to_wandb(summary)
    worse, best = _summary_values(tmp_path / "0"), _summary_values(tmp_path / "3")
    assert worse["vs_best"] == "worse" and best["vs_best"] == "best"
    assert worse["vs_best_p_holm"] == pytest.approx(summary["configs"][0]["vs_best"]["p_holm"])
    assert worse["vs_best_difference"] == pytest.approx(sum(accs["1e-5"]) / 3 - sum(accs["2e-5"]) / 3)
    assert not (tmp_path / "1" / "wandb").exists()  # a job without W&B is left alone


def test_a_damaged_job_config_is_a_warning_and_the_other_jobs_get_their_verdicts(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_MODE", "offline")
    num = 0
    for lr, values in {"1e-5": [0.80, 0.81, 0.79], "2e-5": [0.86, 0.87, 0.85]}.items():
        for seed, acc in enumerate(values):
            _job(tmp_path, num, lr, seed, acc, ["wandb"])
            num += 1
    (tmp_path / "0" / "config.yaml").write_text("logger: [unclosed\n")
    _verdicts_to_wandb(build_summary(tmp_path))
    assert "job 0" in caplog.text and _summary_values(tmp_path / "3")["vs_best"] == "best"
