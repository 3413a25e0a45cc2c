"""Training lifecycle faults: divergence, Ctrl-C / SIGTERM (one line, exit 130 / 143, resumable); a resumed
run's logs have no duplicated rows. SIGKILL at every point of a run (a checkpoint write among them):
test_crash_points.py."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from cli_helpers import REPO
from faults import TINY, assert_user_error, run

# 16 steps of 4 rows, a checkpoint every 2 steps: long enough to interrupt in the middle.
STEPS = [*TINY, "dataset.max_train_samples=64", "trainer.per_device_batch_size=4", "trainer.max_steps=16",
         "trainer.save_steps=2", "trainer.save_total_limit=3", "trainer.lr=1e-4"]


def _start(*args, cwd: Path, script=None) -> subprocess.Popen:
    cmd = [sys.executable, *(script or [str(REPO / "run.py")]), *args]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared (exit {proc.poll()})"


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _duplicate_rows(run_dir: Path) -> list:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    return [key for key, n in Counter((r["step"], r["name"]) for r in rows).items() if n > 1]


def test_diverged_loss_stops_with_exit_3_and_saves_no_best(tmp_path):
    result = run(*TINY, "trainer.max_steps=4", "trainer.lr=1e6", "trainer.max_grad_norm=0",
                 "trainer.per_device_batch_size=4", "trainer.save_model=true", f"hydra.run.dir={tmp_path}/run",
                 cwd=tmp_path)
    assert_user_error(result, "training diverged", "loss is nan", "trainer.lr", code=3)
    assert not (tmp_path / "run" / "best").exists() and not (tmp_path / "run" / "last").exists()


def test_hf_trainer_diverged_loss_stops_with_exit_3(tmp_path):
    result = run(*TINY, "trainer=hf_trainer", "trainer.max_steps=4", "trainer.lr=1e6", "trainer.max_grad_norm=0",
                 "trainer.per_device_batch_size=4", "trainer.save_model=true", f"hydra.run.dir={tmp_path}/run",
                 cwd=tmp_path)
    assert_user_error(result, "training diverged", code=3)
    assert not (tmp_path / "run" / "best").exists() and not (tmp_path / "run" / "last").exists()


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_training_checkpoints_and_resume_finishes(tmp_path, signum, code):
    run_dir = tmp_path / "run"
    proc = _start(*STEPS, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    _wait_for(run_dir / "checkpoints" / "step_2" / "loop_state.json", proc)
    proc.send_signal(signum)
    result = _finish(proc)
    line = assert_user_error(result, "interrupted by", "checkpoint saved", "trainer.resume=true", code=code)
    step = int(line.split(" at step ")[1].split(":")[0])
    assert step < 16 and (run_dir / "checkpoints" / f"step_{step}" / "loop_state.json").exists()
    resumed = run(*STEPS, "trainer.resume=true", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["final"]["global_step"] == 16 and metrics["resumed_from"].endswith(f"step_{step}")
    assert [r["step"] for r in metrics["train_log"]] == list(range(1, 17))
    assert _duplicate_rows(run_dir) == []


def test_ctrl_c_during_start_up_is_one_line_and_leaves_nothing(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(*STEPS, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    _wait_for(run_dir / "config.yaml", proc)  # loading data and model now
    proc.send_signal(signal.SIGINT)
    result = _finish(proc)
    assert_user_error(result, "interrupted by SIGINT", code=130)
    assert not run_dir.exists()


@pytest.mark.slow
def test_sigterm_to_a_two_process_run_checkpoints_every_rank(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(*STEPS, "trainer.num_processes=2", "trainer.per_device_batch_size=2", f"hydra.run.dir={run_dir}",
                  cwd=tmp_path)
    _wait_for(run_dir / "checkpoints" / "step_2" / "loop_state.json", proc)
    proc.send_signal(signal.SIGTERM)
    result = _finish(proc)
    assert_user_error(result, "interrupted by SIGTERM", "checkpoint saved", code=143)
    resumed = run(*STEPS, "trainer.num_processes=2", "trainer.per_device_batch_size=2", "trainer.resume=true",
                  f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run_dir / "metrics.json").read_text())["final"]["global_step"] == 16
