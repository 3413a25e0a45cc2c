"""The read side of searches on hand-made sweep folders (no training): report.html with configurations
(mean ± 95 % CI), pruned and failed jobs, log axes, the Pareto front and Optuna's own plots; compare.py's
configurations; the TensorBoard export's status of pruned and failed trials."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import stats

from experiments.sweep import records

# (job, lr, seed, status, accuracy)
JOBS = [(0, 1e-5, 1, "finished", 0.60), (1, 1e-5, 2, "finished", 0.64), (2, 1e-5, 3, "finished", 0.62),
        (3, 1e-4, 1, "finished", 0.80), (4, 1e-4, 2, "finished", 0.76), (5, 1e-4, 3, "finished", 0.81),
        (6, 1e-3, 1, "pruned", 0.30), (7, 1e-3, 2, "failed", None)]


def make_job(root: Path, num: int, lr: float, seed: int, status: str, acc: Optional[float],
             total_params: int = 1000) -> Path:
    run = root / str(num)
    run.mkdir(parents=True)
    cfg = {"mode": "train", "model": {"name": "minilm"}, "dataset": {"name": "mrpc"},
           "trainer": {"lr": lr, "seed": seed}, "paths": {"output_dir": str(run)}}
    (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    if acc is not None:
        steps = [1] if status == "pruned" else [1, 2]
        history = [{"step": s, "eval_accuracy": acc - 0.1 * (len(steps) - s), "eval_loss": 1 - acc} for s in steps]
        train_log = [{"step": s, "train_loss": 1.0 - 0.1 * s} for s in steps]
        final = {"eval_accuracy": acc, "eval_loss": 1 - acc, "global_step": steps[-1]}
        stopped = {"reason": "pruned" if status == "pruned" else "completed", "step": steps[-1]}
        (run / "metrics.json").write_text(json.dumps({"final": final, "history": history, "train_log": train_log,
                                                      "stopped": stopped, "total_params": total_params}))
    record = records.build(job=num, overrides=[f"trainer.lr={lr}", f"trainer.seed={seed}"], status=status,
                           run_dir=run, sweep_dir=root, sweep=root.name, started_at=0.0, finished_at=1.0,
                           error="RuntimeError: boom" if status == "failed" else None)
    records.write(run, record)
    return run


@pytest.fixture
def search(tmp_path):
    root = tmp_path / "multirun" / "search"
    for num, lr, seed, status, acc in JOBS:
        make_job(root, num, lr, seed, status, acc)
    return root


def journal_study(sweep: Path, values, directions=("maximize",), objectives=("eval_accuracy",), pruned: int = 1):
    """A real Optuna study in a journal file of the sweep dir, described by optuna_study.json."""
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "study.log")))
    study = optuna.create_study(study_name="s", storage=storage, directions=list(directions))
    space = {"trainer.lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True),
             "trainer.per_device_batch_size": optuna.distributions.CategoricalDistribution([16, 32])}
    for value in values:
        trial = study.ask(space)
        study.tell(trial, value)
    for _ in range(pruned):
        study.tell(study.ask(space), state=optuna.trial.TrialState.PRUNED)
    info = {"study_name": "s", "storage": "study.log", "objectives": list(objectives), "directions": list(directions)}
    (sweep / "optuna_study.json").write_text(json.dumps(info))


def images(html: str):
    return re.findall(r'<img alt="([^"]*)"', html)


def report(sweep: Path, **options) -> str:
    from experiments.report.html import write_report
    from experiments.sweep.summary import build_summary

    return write_report(sweep, build_summary(sweep, **options)).read_text()


def test_report_shows_configurations_pruned_and_failed_jobs(search):
    from experiments.sweep.summary import build_summary

    summary = build_summary(search)
    html = report(search)
    assert "<h2>Configurations</h2>" in html and "mean ± 95% CI" in html
    best = summary["configs"][summary["best_config"]]
    values = np.array([0.80, 0.76, 0.81])
    ci = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
    assert best["jobs"] == [3, 4, 5] and f"{values.mean():.4g} ± {ci:.2g}" in html
    assert "best configuration (on the mean): <b>1 (" in html
    assert re.search(r'<tr class="pruned"><td>6</td><td>pruned</td>', html)
    assert re.search(r'<tr class="failed"><td>7</td><td>failed</td>', html)
    assert "RuntimeError: boom" in html and "(pruned)" not in html.split("<h2>Jobs</h2>")[0]
    assert images(html) == ["eval_accuracy vs trainer.lr", "learning curves"]  # no plot against the seed
    assert "Optuna study" not in html  # not a search with a study


def test_learning_rate_like_axes_are_logarithmic():
    from experiments.report.html import log_axis

    assert log_axis("trainer.lr", [1e-5, 3e-5])  # lr-like, even within a factor of 10
    assert log_axis("optimizer.learning_rate", [0.1, 0.2])
    assert log_axis("trainer.weight_decay", [0.001, 0.1])  # positive and spans a factor of 10
    assert not log_axis("trainer.weight_decay", [0.0, 0.1])  # zero: linear
    assert not log_axis("trainer.warmup_ratio", [0.05, 0.2])
    assert not log_axis("trainer.lr", [0.0, 1e-5])


def test_report_embeds_optunas_plots(search):
    journal_study(search, [0.6, 0.8, 0.7, 0.75])
    html = report(search)
    assert "<h2>Optuna study</h2>" in html
    shown = images(html)
    for title in ("optimization history (eval_accuracy)", "parameter importances",
                  "parallel coordinates (eval_accuracy)"):
        assert title in shown
    assert "Pareto front (Optuna)" not in shown


def test_a_study_with_too_few_trials_leaves_its_plots_out_with_a_note(search):
    journal_study(search, [0.6])
    html = report(search)
    assert "need at least 2 complete trials; the study has 1" in html
    assert not [t for t in images(html) if "optimization history" in t]


def test_a_study_that_cannot_be_loaded_is_a_note(search):
    (search / "optuna_study.json").write_text(json.dumps({"study_name": "s", "storage": "missing.log"}))
    assert "Optuna study not loaded" in report(search) and not (search / "missing.log").exists()
    (search / "optuna_study.json").write_text(json.dumps({"study_name": "s", "storage": "sqlite:///nowhere.db"}))
    assert "Optuna study not loaded" in report(search) and not Path("nowhere.db").exists()


def test_multi_objective_report_has_the_pareto_front(tmp_path):
    sweep = tmp_path / "mo"
    for num, (acc, params) in enumerate([(0.8, 100), (0.9, 300), (0.7, 200), (0.85, 150)]):
        make_job(sweep, num, 1e-5 * (num + 1), 1, "finished", acc, total_params=params)
    journal_study(sweep, [[0.8, 100], [0.9, 300], [0.7, 200], [0.85, 150]], directions=("maximize", "minimize"),
                  objectives=("eval_accuracy", "total_params"))
    html = report(sweep, objectives=["eval_accuracy", "total_params"], sweeper_direction=["maximize", "minimize"])
    assert "Pareto front: <b>jobs 0, 1, 3;" in html
    shown = images(html)
    assert "Pareto front" in shown and "Pareto front (Optuna)" in shown
    assert "optimization history (eval_accuracy)" in shown
    assert "<th>Pareto front</th>" in html and "<th>total_params</th>" in html


def test_compare_groups_seeds_into_configurations(search, capsys):
    from experiments.report.compare import main

    assert main([str(search)]) == 0
    out = capsys.readouterr().out
    assert "configurations (runs that differ only in the seed" in out
    lines = out.split("configurations")[1].split("\n\n")[0].splitlines()[2:]  # that table only (verdicts follow)
    lrs = ("1e-05", "0.0001", "0.001")
    rows = {next(t for t in line.split() if t in lrs): line for line in lines if line.strip()}
    for lr, accs in (("1e-05", [0.60, 0.64, 0.62]), ("0.0001", [0.80, 0.76, 0.81])):
        values = np.array(accs)
        ci = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
        assert f"{values.mean():.4g} ± {ci:.2g}" in rows[lr]
    assert rows["0.0001"].split()[1] == "*" and "*" not in rows["1e-05"] + rows["0.001"]  # best on the mean
    assert rows["0.001"].split()[1:3] == ["0.001", "0"]  # pruned and failed: no finished run
    assert "pruned" in out.split("configurations")[0] and "failed" in out.split("configurations")[0]


def test_compare_without_replicates_has_no_configurations(search, capsys):
    from experiments.report.compare import main

    assert main([str(search / "0"), str(search / "3")]) == 0
    assert "configurations" not in capsys.readouterr().out


def test_tensorboard_export_marks_pruned_and_failed_trials(search, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, metadata

    from experiments.report.tb_export import export

    out = tmp_path / "events"
    export([search.parent], out)
    expected = {"3": ("finished", api_pb2.STATUS_SUCCESS), "6": ("pruned", api_pb2.STATUS_UNKNOWN),
                "7": ("failed", api_pb2.STATUS_FAILURE)}
    for job, (status, code) in expected.items():
        acc = EventAccumulator(str(out / "multirun/search" / job), size_guidance={"tensors": 0})
        acc.Reload()
        start = metadata.parse_session_start_info_plugin_data(
            acc.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content)
        end = metadata.parse_session_end_info_plugin_data(
            acc.SummaryMetadata(metadata.SESSION_END_INFO_TAG).plugin_data.content)
        assert start.hparams["status"].string_value == status
        assert end.status == code


def test_a_pruned_run_without_a_sweep_record_says_so(search):
    from experiments.report.runs_index import load_run

    (search / "6" / records.RECORD_FILE).unlink()
    assert load_run(search / "6").status == "pruned"
    assert load_run(search / "0").status == "finished"
