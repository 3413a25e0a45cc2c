"""``hparams_search=optuna`` end to end, as a user runs it: a pruned study with two trials at a time, a study
killed mid-way and resumed, and a multi-objective study with its Pareto front."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from sweep_helpers import REPO, TINY, explain, run_sweep, summary

from experiments.sweep import records

pytestmark = pytest.mark.slow
optuna = pytest.importorskip("optuna", reason="the [sweep] extra installs optuna")

SEARCH = ["hparams_search=optuna"]
# 8 steps of batch 8 on debug=fast's 64 rows, evaluated every 2 steps; only the learning rate is searched.
PRUNED_STUDY = ["debug=fast", *SEARCH, "hydra.sweeper.sampler=grid", "hydra.sweeper.pruner=median",
                "hydra.sweeper.n_trials=6", "hydra.launcher.n_jobs=2", "objective=eval_loss",
                "hydra.sweeper.direction=minimize", "trainer.lr=choice(1e-4,3e-4,2e-5,1e-3,1e-2,5e-5)",
                "trainer.per_device_batch_size=8", "trainer.eval_steps=2", "trainer.warmup_ratio=0.0",
                "trainer.weight_decay=0.0"]


def _study(sweep_dir: Path):
    described = json.loads((sweep_dir / "optuna_study.json").read_text())
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / described["storage"])))
    return optuna.load_study(study_name=described["study_name"], storage=storage)


def _metrics(sweep_dir: Path, job: dict) -> dict:
    return json.loads((sweep_dir / job["run_dir"] / "metrics.json").read_text())


def _span(job: dict) -> tuple:
    start = datetime.strptime(job["started_at"], "%Y-%m-%dT%H:%M:%S").timestamp()
    return start, start + job["duration_s"]


def test_a_pruned_study_stops_a_bad_trial_early_and_runs_two_trials_at_once(tmp_path):
    sweep_dir = tmp_path / "multirun" / "pruned"
    result = run_sweep([*PRUNED_STUDY, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    data = summary(sweep_dir)
    jobs = {j["job"]: j for j in data["jobs"]}
    assert len(jobs) == 6 and data["counts"].get("pruned", 0) >= 1, data["counts"]
    study = _study(sweep_dir)
    states = {t.user_attrs["jobs"][0][0]: t.state.name for t in study.trials}
    for num, job in jobs.items():
        metrics = _metrics(sweep_dir, job)
        if job["status"] == records.PRUNED:
            assert states[num] == "PRUNED"
            assert metrics["stopped"]["reason"] == "pruned" and metrics["final"]["global_step"] < 8
            assert not (sweep_dir / job["run_dir"] / "last").exists()  # no weights kept for a pruned trial
        else:
            assert job["status"] == records.FINISHED and states[num] == "COMPLETE"
            assert metrics["final"]["global_step"] == 8
    bad = next(j for j in jobs.values() if "trainer.lr=0.01" in j["overrides"])
    assert bad["status"] == records.PRUNED, "the lr=1e-2 trial should have been pruned"
    assert jobs[data["best_job"]]["status"] == records.FINISHED
    (a0, a1), (b0, b1) = _span(jobs[0]), _span(jobs[1])
    assert a0 < b1 and b0 < a1, "jobs 0 and 1 should have run at the same time (n_jobs=2)"


def _kill_tree(pid: int) -> None:
    """SIGKILL the sweep and the jobs it started (as when the machine running it goes away)."""
    import psutil

    children = psutil.Process(pid).children(recursive=True)
    os.kill(pid, signal.SIGKILL)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def test_a_killed_study_resumes_to_exactly_n_trials_without_touching_finished_jobs(tmp_path):
    sweep_dir = tmp_path / "multirun" / "killed"
    args = [*TINY, *SEARCH, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={sweep_dir}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline")
    proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), "-m", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not ((sweep_dir / "0" / records.RECORD_FILE).exists() and (sweep_dir / "1" / "config.yaml").exists()):
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.1)
    _kill_tree(proc.pid)
    proc.wait()
    finished = (sweep_dir / "0" / "metrics.json").read_bytes()
    result = run_sweep([*args, "hydra.launcher.resume=true"], cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    data = summary(sweep_dir)
    assert [j["job"] for j in data["jobs"]] == [0, 2, 3] and data["counts"] == {"finished": 3}
    assert [(j["job"], j["superseded_by"]) for j in data["superseded"]] == [(1, 2)]
    assert "interrupted" in data["superseded"][0]["error"]
    assert (sweep_dir / "0" / "metrics.json").read_bytes() == finished
    study = _study(sweep_dir)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[2].params == study.trials[1].params  # the interrupted trial ran again
    jobs = [j[0] for t in study.trials for j in t.user_attrs["jobs"]]
    assert jobs == [0, 1, 2, 3]


def test_a_multi_objective_study_tells_each_jobs_metrics_and_writes_the_pareto_front(tmp_path):
    sweep_dir = tmp_path / "multirun" / "pareto"
    result = run_sweep([*TINY, *SEARCH, "hydra.sweeper.n_trials=3", "hydra.launcher.n_jobs=2",
                        "hydra.sweeper.objectives=[eval_accuracy,eval_runtime_s]",
                        "hydra.sweeper.direction=[maximize,minimize]", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    data = summary(sweep_dir)
    assert [j["status"] for j in data["jobs"]] == ["finished"] * 3
    study = _study(sweep_dir)
    for trial in study.trials:
        (num, _, run_dir), = trial.user_attrs["jobs"]
        final = json.loads((sweep_dir / run_dir / "metrics.json").read_text())["final"]
        assert trial.values == pytest.approx([final["eval_accuracy"], final["eval_runtime_s"]])
    front = sorted(t.user_attrs["jobs"][0][0] for t in study.best_trials)
    assert sorted(data["pareto_front"]) == front
    assert "Pareto front" in result.stdout


def test_a_study_stopped_by_sigterm_says_so_in_one_line_and_resumes(tmp_path):
    sweep_dir = tmp_path / "multirun" / "stopped"
    args = [*TINY, *SEARCH, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep_dir}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline")
    with open(tmp_path / "out.txt", "w") as out_file, open(tmp_path / "err.txt", "w") as err_file:
        proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), "-m", *args], cwd=tmp_path, env=env,
                                stdout=out_file, stderr=err_file, start_new_session=True)
        deadline = time.time() + 300
        while not (sweep_dir / "0" / "config.yaml").exists():
            assert proc.poll() is None and time.time() < deadline, "the sweep ended before it could be stopped"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    out, err = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in out + err
    assert "error: the sweep was interrupted (SIGTERM); its finished jobs are kept" in err
    result = run_sweep([*args, "hydra.launcher.resume=true"], cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    data = summary(sweep_dir)
    assert data["counts"] == {"finished": 2} and [j["job"] for j in data["superseded"]] == [0]
    assert [t.state.name for t in _study(sweep_dir).trials] == ["FAIL", "COMPLETE", "COMPLETE"]
