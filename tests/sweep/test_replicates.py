"""Replicates in the sweep summary: jobs that differ only in the seed are one configuration, shown with
mean ± 95 % CI (Student's t) and chosen on the mean; pruned and failed jobs are counted, never best."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import stats

from experiments.sweep import records
from experiments.sweep.summary import build_summary, format_table, headline, mean_ci, summarize, write_summary


def job(sweep: Path, num: int, overrides: List[str], status: str = records.FINISHED, acc: Optional[float] = None,
        error: Optional[str] = None) -> None:
    run_dir = sweep / str(num)
    run_dir.mkdir(parents=True)
    if acc is not None:
        (run_dir / "metrics.json").write_text(json.dumps({"final": {"eval_accuracy": acc, "eval_loss": 1 - acc}}))
    now = time.time()
    records.write(run_dir, records.build(job=num, overrides=overrides, status=status, run_dir=run_dir, sweep_dir=sweep,
                                         sweep="rep", started_at=now - 1, finished_at=now, error=error))


# (lr, seed, accuracy): lr=1e-5 has the single best job (0.9) but the worse mean; lr=3e-5 the better mean.
RUNS = [("1e-5", 1, 0.90), ("1e-5", 2, 0.50), ("1e-5", 3, 0.55),
        ("3e-5", 1, 0.70), ("3e-5", 2, 0.74), ("3e-5", 3, 0.71)]


@pytest.fixture
def replicated(tmp_path):
    for num, (lr, seed, acc) in enumerate(RUNS):
        job(tmp_path, num, [f"trainer.lr={lr}", f"trainer.seed={seed}", "debug=tiny"], acc=acc)
    job(tmp_path, 6, ["trainer.lr=3e-5", "trainer.seed=4", "debug=tiny"], status=records.PRUNED, acc=0.99)
    job(tmp_path, 7, ["trainer.lr=1e-5", "trainer.seed=4", "debug=tiny"], status=records.FAILED, error="boom")
    return tmp_path


def direct(values):
    """Mean, sample std and 95 % CI half-width computed straight from numpy / scipy."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    std = values.std(ddof=1)
    return values.mean(), std, stats.t.ppf(0.975, n - 1) * std / np.sqrt(n)


def test_mean_and_ci_equal_a_direct_computation(replicated):
    summary = build_summary(replicated)
    assert summary["grouped"] is True
    assert [c["overrides"] for c in summary["configs"]] == [["trainer.lr=1e-5", "debug=tiny"],
                                                             ["trainer.lr=3e-5", "debug=tiny"]]
    assert [c["jobs"] for c in summary["configs"]] == [[0, 1, 2, 7], [3, 4, 5, 6]]
    for config, lr in zip(summary["configs"], ("1e-5", "3e-5")):
        values = [acc for r_lr, _seed, acc in RUNS if r_lr == lr]  # finished jobs only: pruned/failed left out
        mean, std, ci = direct(values)
        assert config["n"] == 3 and config["values"] == values
        assert config["mean"] == pytest.approx(mean, rel=1e-12)
        assert config["std"] == pytest.approx(std, rel=1e-12)
        assert config["ci95"] == pytest.approx(ci, rel=1e-12)
    assert summary["configs"][0]["counts"] == {"finished": 3, "failed": 1}
    assert summary["configs"][1]["counts"] == {"finished": 3, "pruned": 1}


def test_best_configuration_is_chosen_on_the_mean(replicated):
    summary = build_summary(replicated)
    assert summary["best_config"] == 1 and [c["best"] for c in summary["configs"]] == [False, True]
    assert summary["best_job"] == 4  # the best job of the best configuration, not job 0 (0.9) nor the pruned 0.99
    assert summary["counts"] == {"finished": 6, "pruned": 1, "failed": 1}
    loss = build_summary(replicated, objective="eval_loss")  # minimised: lower mean loss = higher mean accuracy
    assert loss["direction"] == "minimize" and loss["best_config"] == 1


def test_table_headline_and_csv_show_configurations(replicated):
    summary = build_summary(replicated)
    table = format_table(summary)
    assert "configurations" in table and "mean ± 95% CI" in table
    mean, _std, ci = direct([0.70, 0.74, 0.71])
    best_row = next(line for line in table.splitlines() if line.split()[:2] == ["1", "*"])
    assert f"{mean:.4g} ± {ci:.2g}" in best_row and "3,4,5,6" in best_row
    assert "pruned" in table and "failed" in table
    line = headline(summary)
    assert "best: config 1" in line and f"{mean:.4g} ± {ci:.2g}" in line and "best job 4" in line
    assert "1 pruned" in line
    _json, csv_path = write_summary(summary, replicated)
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["config"] for r in rows] == ["0", "0", "0", "1", "1", "1", "1", "0"]
    assert {r["job"]: r["status"] for r in rows}["6"] == "pruned"
    assert [r["job"] for r in rows if r["best"] == "True"] == ["4"]


def test_a_sweep_without_replicates_looks_as_before(tmp_path):
    for num, (lr, acc) in enumerate([("1e-5", 0.7), ("3e-5", 0.9)]):
        job(tmp_path, num, [f"trainer.lr={lr}"], acc=acc)
    job(tmp_path, 2, ["trainer.lr=1e-4"], status=records.PRUNED, acc=0.95)
    summary = build_summary(tmp_path)
    assert summary["grouped"] is False and summary["best_job"] == 1 and summary["best_config"] == 1
    assert [c["n"] for c in summary["configs"]] == [1, 1, 0]
    assert summary["configs"][0]["std"] is None and summary["configs"][0]["ci95"] is None
    table = format_table(summary)
    assert "configurations" not in table and "config" not in table.splitlines()[0]
    assert headline(summary).startswith("sweep ") and "best: job 1 (eval_accuracy=0.9, maximize)" in headline(summary)
    _json, csv_path = write_summary(summary, tmp_path)
    assert "config" not in csv_path.read_text().splitlines()[0].split(",")


def test_seeds_alone_make_one_configuration(tmp_path):
    for num, acc in enumerate([0.8, 0.82, 0.79]):
        job(tmp_path, num, [f"trainer.seed={num + 1}"], acc=acc)
    summary = build_summary(tmp_path)
    assert len(summary["configs"]) == 1 and summary["best_config"] == 0 and summary["best_job"] == 1
    mean, std, ci = direct([0.8, 0.82, 0.79])
    assert (summary["configs"][0]["mean"], summary["configs"][0]["ci95"]) == (pytest.approx(mean), pytest.approx(ci))


def test_replicates_setting_groups_even_one_job_per_configuration(tmp_path):
    job(tmp_path, 0, ["trainer.lr=1e-5", "trainer.seed=1"], acc=0.7)
    job(tmp_path, 1, ["trainer.lr=3e-5", "trainer.seed=1"], acc=0.8)
    cfg = OmegaConf.create({"objective": "eval_accuracy", "trainer": {"seed": 1},
                            "hydra": {"sweep": {"dir": str(tmp_path)},
                                      "sweeper": {"direction": "maximize", "replicates": 3}}})
    summary = summarize(cfg)
    assert summary["replicates"] == 3 and summary["grouped"] is True and summary["best_config"] == 1
    saved = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert saved["configs"][1]["mean"] == pytest.approx(0.8) and saved["configs"][1]["ci95"] is None


def test_mean_ci_small_samples():
    assert mean_ci([]) == {"n": 0, "mean": None, "std": None, "ci95": None}
    assert mean_ci([0.5]) == {"n": 1, "mean": 0.5, "std": None, "ci95": None}
    mean, std, ci = direct([1.0, 2.0])
    got = mean_ci([1.0, 2.0])
    assert (got["mean"], got["std"], got["ci95"]) == (pytest.approx(mean), pytest.approx(std), pytest.approx(ci))


def test_each_configuration_gets_a_verdict_against_the_best_over_seeds(tmp_path):
    """vs_best: Welch over seeds, Holm-corrected together, equal to a direct scipy / statsmodels computation;
    shown in the table, the HTML report and TensorBoard's hparams table."""
    from statsmodels.stats.multitest import multipletests

    from experiments.report.html import write_report
    from experiments.report.tb_export import export

    accs = {"1e-5": [0.80, 0.81, 0.79, 0.80], "2e-5": [0.86, 0.87, 0.85, 0.86], "3e-5": [0.85, 0.87, 0.84, 0.86]}
    num = 0
    for lr, values in accs.items():
        for seed, acc in enumerate(values):
            job(tmp_path, num, [f"trainer.lr={lr}", f"trainer.seed={seed}", "debug=tiny"], acc=acc)
            num += 1
    summary = build_summary(tmp_path)
    verdicts = [c["vs_best"] for c in summary["configs"]]
    assert [v["vs_best"] for v in verdicts] == ["worse", "best", "tie (not distinguishable)"]
    welch = [stats.ttest_ind(accs[lr], accs["2e-5"], equal_var=False).pvalue for lr in ("1e-5", "3e-5")]
    holm = multipletests(welch, method="holm")[1]
    assert [verdicts[0]["p_value"], verdicts[2]["p_value"]] == pytest.approx(welch)
    assert [verdicts[0]["p_holm"], verdicts[2]["p_holm"]] == pytest.approx(holm)
    assert verdicts[0]["difference"] == pytest.approx(np.mean(accs["1e-5"]) - np.mean(accs["2e-5"]))
    table = format_table(summary)
    assert "vs best (over seeds)" in table and "worse (Holm p=" in table and "tie (not distinguishable)" in table
    write_summary(summary, tmp_path)
    assert "worse (Holm p=" in write_report(tmp_path, summary).read_text()
    for number in range(num):  # the runs as the dashboard finds them
        (tmp_path / str(number) / "config.yaml").write_text("trainer:\n  lr: 1\n")
    export([tmp_path], tmp_path / "events")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    shown = {}
    for number in (0, 4, 8):
        acc = EventAccumulator(str(next((tmp_path / "events").rglob(f"{number}"))), size_guidance={"tensors": 0})
        acc.Reload()
        start = metadata.parse_session_start_info_plugin_data(
            acc.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content)
        shown[number] = start.hparams["vs_best"].string_value
    assert shown[4] == "best" and shown[0].startswith("worse") and shown[8].startswith("tie")
