"""Sweep plumbing without training: naming, summaries, the GPU pool, config composition."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from experiments.runs import run_name_from_overrides
from experiments.sweep import records
from experiments.sweep.naming import choice_tags, sweep_id
from experiments.sweep.summary import build_summary, direction_for, format_table, write_summary


def test_sweep_id_from_the_sweep_dir(tmp_path):
    assert sweep_id("multirun/2026-11-22/10-11-12-000001") == "2026-11-22_10-11-12-000001"
    assert sweep_id("multirun/lr-sweep") == "lr-sweep"
    assert sweep_id(str(tmp_path / "multirun" / "grid"), cwd=tmp_path) == "grid"
    assert sweep_id("/elsewhere/sweeps/my sweep", cwd=tmp_path) == "sweeps_my_sweep"


def test_run_name_and_tags():
    assert run_name_from_overrides(["trainer.lr=3e-5", "model=bert", "hydra.launcher.n_jobs=2", "logger=wandb"]) \
        == "trainer.lr=3e-5,model=bert,logger=wandb"
    assert run_name_from_overrides(["hydra.sweep.dir=x"]) is None
    tags = choice_tags({"model": "bert", "dataset": "mrpc", "hydra/launcher": "subprocess", "paths": "default",
                        "experiment": None})
    assert tags == ["dataset:mrpc", "model:bert"]


def _record(tmp_path: Path, job: int, status: str, acc=None, lr="1e-5", error=None):
    run_dir = tmp_path / str(job)
    run_dir.mkdir(parents=True)
    if acc is not None:
        (run_dir / "metrics.json").write_text(
            f'{{"final": {{"eval_accuracy": {acc}, "eval_loss": 0.5, "train_runtime_s": 3.0}}}}')
    record = records.build(job=job, overrides=[f"trainer.lr={lr}", "debug=tiny"], status=status, run_dir=run_dir,
                           sweep_dir=tmp_path, sweep="s", started_at=time.time() - 2, finished_at=time.time(),
                           error=error)
    records.write(run_dir, record)


def test_summary_marks_the_best_finished_job_and_keeps_failures(tmp_path):
    _record(tmp_path, 0, "finished", 0.7, lr="1e-5")
    _record(tmp_path, 1, "finished", 0.9, lr="3e-5")
    _record(tmp_path, 2, "failed", None, lr="1e-3", error="boom")
    summary = build_summary(tmp_path)
    assert summary["metric"] == "eval_accuracy" and summary["best_job"] == 1
    assert summary["counts"] == {"finished": 2, "failed": 1}
    assert summary["swept"] == {"trainer.lr": ["1e-5", "3e-5", "1e-3"]}
    assert "train_runtime_s" not in summary["metrics"]
    json_path, csv_path = write_summary(summary, tmp_path)
    assert json_path.is_file() and csv_path.read_text().count("\n") == 4
    table = format_table(summary)
    best_line = next(line for line in table.splitlines() if line.strip().startswith("1 "))
    assert "*" in best_line and "boom" in table
    loss = build_summary(tmp_path, objective="eval_loss")
    assert loss["direction"] == "minimize"


def test_direction_rules():
    assert direction_for("eval_accuracy", None) == "maximize"
    assert direction_for("eval_loss", None) == "minimize"
    assert direction_for("eval_accuracy", "minimize") == "minimize"
    assert direction_for("x", ["maximize"]) == "maximize"


def test_resume_only_trusts_finished_jobs_with_metrics(tmp_path):
    _record(tmp_path, 0, "finished", 0.7, lr="1e-5")
    _record(tmp_path, 1, "failed", None, lr="3e-5")
    _record(tmp_path, 2, "finished", None, lr="1e-3")  # metrics.json is gone: run again
    done = records.finished_jobs(tmp_path)
    assert list(done) == [records.job_key(["debug=tiny", "trainer.lr=1e-5"])]


def test_error_line_is_one_line():
    from experiments.errors import ExperimentError

    assert records.error_line(ExperimentError("bad value\nmore")) == "bad value"
    assert records.error_line(RuntimeError("CUDA out of memory\ntrace")) == "RuntimeError: CUDA out of memory"


def test_gpu_pool_hands_out_disjoint_sets():
    from hydra_plugins.experiments_launcher._gpus import GpuPool

    pool = GpuPool(["0", "1", "2", "3"])
    held, lock, overlaps = set(), threading.Lock(), []

    def job(n):
        ids = pool.acquire(n)
        with lock:
            overlaps.extend(set(ids) & held)
            held.update(ids)
        time.sleep(0.05)
        with lock:
            held.difference_update(ids)
        pool.release(ids)

    threads = [threading.Thread(target=job, args=(n,)) for n in (2, 2, 1, 3, 1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not overlaps and not any(t.is_alive() for t in threads)
    with pytest.raises(RuntimeError, match="needs 5 GPU"):
        pool.acquire(5)
    assert GpuPool([]).acquire(2) is None


def test_gpu_ids_follow_cuda_visible_devices(monkeypatch):
    from hydra_plugins.experiments_launcher._gpus import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def test_launcher_configs_compose_and_preflight_accepts_them():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from experiments.config import schema
    from experiments.config.validate import check_overrides, conf_dir

    check_overrides(["hydra/launcher=slurm_local", "hydra.launcher.n_jobs=2", "trainer.lr=1e-5,2e-5"])
    schema.register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            default = compose(config_name="config", overrides=[], return_hydra_config=True)
            assert default.hydra.launcher._target_.endswith("SubprocessLauncher")
            assert default.hydra.callbacks.sweep._target_ == "experiments.callbacks.SweepCallback"
            slurm = compose(config_name="config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
            assert slurm.hydra.launcher._target_.endswith("SlurmAccelerateLauncher")
            assert slurm.hydra.launcher.tasks_per_node == 1
            search = compose(config_name="config", overrides=["hparams_search=optuna"], return_hydra_config=True)
            assert search.objective == "eval_accuracy"
            assert search.hydra.sweeper._target_.endswith("OptunaSweeper") and search.hydra.sweeper.replicates == 1
            assert set(search.hydra.sweeper.params) >= {"trainer.lr", "trainer.per_device_batch_size"}
    finally:
        GlobalHydra.instance().clear()


def test_rendezvous_port_is_the_same_for_one_job():
    from hydra_plugins.experiments_launcher.slurm import rendezvous_port

    assert rendezvous_port("123456") == rendezvous_port("123456")
    assert 20000 <= rendezvous_port("987654_3") < 40000
