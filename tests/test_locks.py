"""experiments.locks: one holder per folder, one line for the others, released on every way out, a dead
holder's lock taken over (same host: its pid no longer runs; Slurm: an earlier attempt of the same job)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import locks
from experiments.errors import ExperimentError

WORKER = Path(__file__).parent / "reliability" / "lock_worker.py"


def start_holder(folder: Path, seconds: float = 30, ending: str = "normal") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(WORKER), "hold", str(folder), str(seconds), ending],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("held"), proc.stderr.read()
    return proc


@pytest.fixture(autouse=True)
def _release_everything():
    yield
    locks.release_all()


def test_hold_creates_the_folder_and_release_removes_what_it_created(tmp_path):
    folder = tmp_path / "a" / "b" / "run"
    locks.hold(folder, "hydra.run.dir")
    assert sorted(p.name for p in folder.iterdir()) == [locks.LOCK_NAME, locks.OWNER_NAME]
    record = json.loads((folder / locks.OWNER_NAME).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    locks.release(folder)
    assert list(tmp_path.iterdir()) == []


def test_release_keeps_a_folder_that_existed_or_got_files(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    locks.hold(existing, "hydra.run.dir")
    locks.release(existing)
    assert existing.is_dir() and list(existing.iterdir()) == []
    made = tmp_path / "made"
    locks.hold(made, "hydra.run.dir")
    (made / "metrics.json").write_text("{}")
    locks.release(made)
    assert [p.name for p in made.iterdir()] == ["metrics.json"]


def test_hold_is_reentrant_in_one_process(tmp_path):
    locks.hold(tmp_path, "x")
    locks.hold(tmp_path, "x")
    locks.release(tmp_path)
    assert locks.held(tmp_path) and (tmp_path / locks.LOCK_NAME).exists()
    locks.release(tmp_path)
    assert not locks.held(tmp_path) and not (tmp_path / locks.LOCK_NAME).exists()


def test_a_second_process_is_refused_in_one_line_naming_the_holder(tmp_path):
    proc = start_holder(tmp_path / "run")
    try:
        with pytest.raises(locks.Busy) as caught:
            locks.hold(tmp_path / "run", "hydra.run.dir")
    finally:
        proc.kill()
        proc.wait()
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in message
    assert f"hydra.run.dir={tmp_path / 'run'} is in use" in message
    assert f"pid {proc.pid} on host {socket.gethostname()}" in message
    assert "wait for it to end" in message


@pytest.mark.parametrize("ending", ["normal", "exit2", "raise", "signal"])
def test_every_way_out_releases_the_lock(tmp_path, ending):
    proc = start_holder(tmp_path / "run", seconds=0.2, ending=ending)
    if ending == "signal":
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == {"normal": 0, "exit2": 2, "raise": 1, "signal": 143}[ending]
    assert not (tmp_path / "run").exists(), "the lock (and the folder it made) outlived its holder"


def test_a_killed_holder_leaves_a_lock_that_the_next_one_takes_over_with_a_warning(tmp_path, capsys):
    proc = start_holder(tmp_path / "run")
    proc.kill()
    proc.wait()
    assert (tmp_path / "run" / locks.LOCK_NAME).exists()
    locks.hold(tmp_path / "run", "hydra.run.dir")
    warning = capsys.readouterr().err.strip()
    assert warning.startswith("warning: took over the lock") and f"pid {proc.pid}" in warning
    assert "\n" not in warning
    assert json.loads((tmp_path / "run" / locks.OWNER_NAME).read_text())["pid"] == os.getpid()


def _left_on_another_node(folder: Path, job: str, restart: int, sweep_job: str = None) -> None:
    """The files a holder on host ``elsewhere`` left (killed with its node)."""
    folder.mkdir(parents=True)
    (folder / locks.LOCK_NAME).write_text("4242\nelsewhere\n123\n")
    (folder / locks.OWNER_NAME).write_text(json.dumps({"pid": 4242, "host": "elsewhere", "since": "earlier",
                                                       "job": sweep_job, "slurm_job_id": job,
                                                       "slurm_restart": restart}))


def test_a_lock_held_on_another_host_is_refused_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    _left_on_another_node(tmp_path / "run", job="77", restart=0)
    with pytest.raises(locks.Busy, match=r"pid 4242 on host elsewhere, since earlier.*delete .*\.lock$"):
        locks.hold(tmp_path / "run", "hydra.run.dir")
    assert (tmp_path / "run" / locks.LOCK_NAME).read_text().startswith("4242")


def test_a_requeued_slurm_job_takes_over_its_earlier_attempts_lock(tmp_path, monkeypatch, capsys):
    _left_on_another_node(tmp_path / "run", job="77", restart=0)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    locks.hold(tmp_path / "run", "hydra.run.dir")
    assert "took over the lock" in capsys.readouterr().err
    assert locks.holder(tmp_path / "run")["pid"] == os.getpid()


@pytest.mark.parametrize("job, restart", [("78", 0), ("77", 1)])
def test_another_slurm_job_or_the_same_attempt_is_refused(tmp_path, monkeypatch, job, restart):
    _left_on_another_node(tmp_path / "run", job=job, restart=restart)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with pytest.raises(locks.Busy):
        locks.hold(tmp_path / "run", "hydra.run.dir")


def test_a_sweep_job_run_again_takes_over_its_earlier_attempts_lock(tmp_path, monkeypatch, capsys):
    """A Ray task retried on another node after its node died: same sweep job, so the earlier attempt is gone."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    _left_on_another_node(tmp_path / "run", job=None, restart=0, sweep_job="/sweep#3")
    with pytest.raises(locks.Busy):
        locks.hold(tmp_path / "run", "hydra.run.dir", job="/sweep#4")
    locks.hold(tmp_path / "run", "hydra.run.dir", job="/sweep#3")
    assert "took over the lock" in capsys.readouterr().err
    assert locks.holder(tmp_path / "run")["job"] == "/sweep#3"


def test_a_forked_child_never_releases_its_parents_lock(tmp_path):
    locks.hold(tmp_path, "x")
    pid = os.fork()
    if pid == 0:  # a data-loading worker, say, that exits through the normal path
        locks.release_all()
        os._exit(0)
    os.waitpid(pid, 0)
    assert (tmp_path / locks.LOCK_NAME).exists() and locks.held(tmp_path)


def test_waiting_for_a_lock_gets_it_when_the_holder_ends(tmp_path):
    proc = start_holder(tmp_path, seconds=1)
    started = time.monotonic()
    locks.hold(tmp_path, "x", wait_s=30)
    assert 0.3 < time.monotonic() - started < 30
    proc.wait()


def test_a_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ExperimentError, match="cannot be created"):
        locks.hold(tmp_path / "file" / "run", "hydra.run.dir")


def test_lock_files_are_recognised():
    assert all(locks.is_lock_file(n) for n in (".lock", ".lock.owner", ".lock.summary", ".lock.break.1.ab"))
    assert not any(locks.is_lock_file(n) for n in (".locker", "lock", "config.yaml", ".hydra"))
