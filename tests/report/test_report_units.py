"""HTML report, TensorBoard export and comparison table on hand-made run dirs (no training)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments.sweep import records


def make_run(root: Path, name: str, lr: float, acc: float, status: str = "finished") -> Path:
    run = root / name
    run.mkdir(parents=True)
    cfg = {"mode": "train", "model": {"name": "minilm"}, "dataset": {"name": "mrpc"},
           "trainer": {"lr": lr, "seed": 42}, "paths": {"output_dir": str(run)}}
    (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    history = [{"step": 1, "eval_accuracy": acc - 0.1, "eval_loss": 0.7}, {"step": 2, "eval_accuracy": acc,
                                                                            "eval_loss": 0.6}]
    train_log = [{"step": 1, "train_loss": 0.9, "lr": lr}, {"step": 2, "train_loss": 0.8, "lr": lr}]
    final = {"eval_accuracy": acc, "eval_loss": 0.6, "train_loss": 0.8, "global_step": 2, "eval_runtime_s": 1.0}
    (run / "metrics.json").write_text(json.dumps({"final": final, "history": history, "train_log": train_log}))
    record = records.build(job=int(name), overrides=[f"trainer.lr={lr}"], status=status, run_dir=run, sweep_dir=root,
                           sweep=root.name, started_at=0.0, finished_at=1.0)
    records.write(run, record)
    return run


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "multirun" / "s1"
    for i, (lr, acc) in enumerate([(1e-5, 0.6), (3e-5, 0.8), (1e-4, 0.7)]):
        make_run(root, str(i), lr, acc)
    return root


def test_html_report_has_the_table_and_plots(sweep):
    from experiments.report.html import write_report
    from experiments.sweep.summary import build_summary

    summary = build_summary(sweep)
    path = write_report(sweep, summary)
    text = path.read_text()
    assert text.count("<img") == 2  # eval_accuracy vs trainer.lr + learning curves
    assert "eval_accuracy vs trainer.lr" in text and "Learning curves" in text
    assert 'class="best"' in text and summary["best_job"] == 1


def test_tensorboard_export_writes_hparams_and_scalars(sweep, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    from experiments.report.tb_export import export

    out = tmp_path / "events"
    written = export([sweep.parent], out)
    assert written == ["multirun/s1/0", "multirun/s1/1", "multirun/s1/2"]
    assert export([sweep.parent], out) == []  # unchanged runs are not written again
    acc = EventAccumulator(str(out / "multirun/s1/1"), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    assert [e.value for e in acc.Scalars("eval_accuracy")] == pytest.approx([0.7, 0.8, 0.8])
    assert [e.value for e in acc.Scalars("train_loss")][-1] == pytest.approx(0.8)
    assert "eval_runtime_s" not in acc.Tags()["scalars"]
    content = acc.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
    start = metadata.parse_session_start_info_plugin_data(content)
    assert start.hparams["trainer.lr"].number_value == pytest.approx(3e-5)
    assert start.hparams["run"].string_value == "multirun/s1/1"
    assert start.hparams["sweep"].string_value == "s1"


def test_compare_table_shows_what_differs(sweep, capsys):
    from experiments.report.compare import main

    assert main([str(sweep / "0"), str(sweep / "2")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["0", "2"]
    rows = {line.split()[0]: line.split()[1:] for line in out[1:]}
    assert rows["trainer.lr"] == ["1e-05", "0.0001"]
    assert rows["eval_accuracy"] == ["0.6", "0.7"]
    assert "trainer.seed" not in rows and "paths.output_dir" not in rows


def test_compare_rejects_a_folder_without_runs(tmp_path, capsys):
    from experiments.report.compare import main

    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no run found")


def _seeded_runs(tmp_path, accuracies_by_lr):
    """RunInfo of finished runs: per learning rate, one run per seed with the given eval accuracy."""
    from experiments.report.runs_index import RunInfo

    runs = []
    for lr, accuracies in accuracies_by_lr.items():
        for seed, accuracy in enumerate(accuracies):
            runs.append(RunInfo(path=tmp_path / f"lr{lr}-s{seed}", config={"trainer.lr": lr, "trainer.seed": seed},
                                metrics={"status": "finished", "final": {"eval_accuracy": accuracy}}))
    return runs


def test_verdicts_against_the_best_configuration_over_seeds(tmp_path):
    from experiments.metrics.significance import over_seeds
    from experiments.report.compare import verdicts_table

    best, tied, worse = [0.86, 0.87, 0.85, 0.86, 0.87], [0.85, 0.87, 0.84, 0.86, 0.86], [0.80, 0.79, 0.81, 0.80, 0.78]
    table = verdicts_table(_seeded_runs(tmp_path, {1e-5: tied, 2e-5: best, 3e-5: worse}))
    rows = {row["config"]: row for row in table.to_dict("records")}
    assert rows[1]["vs best"] == "best" and rows[1]["n"] == 5
    assert rows[0]["vs best"].startswith("tie") and rows[2]["vs best"] == "worse"
    assert rows[2]["difference"] == pytest.approx(sum(worse) / 5 - sum(best) / 5)
    assert rows[2]["p (Welch)"] == pytest.approx(over_seeds(best, worse).p_value)
    assert rows[2]["p (Holm)"] >= rows[2]["p (Welch)"] and rows[2]["P(seed beats best)"] == 0.0
    assert verdicts_table(_seeded_runs(tmp_path, {1e-5: [0.8], 2e-5: [0.9, 0.91]})) is None  # one seed: no test
