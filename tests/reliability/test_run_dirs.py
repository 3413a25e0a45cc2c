"""Run directories: a new run never writes into an existing one, clean-up removes only what this
invocation created, and resume continues the same experiment or refuses."""
from __future__ import annotations

import json
import shutil

import pytest
from faults import TINY, assert_user_error, changed, run, snapshot

CKPT = [*TINY, "trainer.max_steps=2", "trainer.save_steps=1", "trainer.save_total_limit=2"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run with two checkpoints (steps 1 and 2), copied fresh for each test."""
    root = tmp_path_factory.mktemp("finished")
    result = run(*CKPT, f"hydra.run.dir={root}/run", cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "run"


@pytest.fixture
def done(finished, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(finished, target)
    return target


def test_new_run_into_a_finished_run_dir_is_refused(done, tmp_path):
    before = snapshot(tmp_path)
    result = run(*CKPT, f"hydra.run.dir={done}", cwd=tmp_path)
    assert_user_error(result, f"hydra.run.dir={done} already holds a run", "trainer.resume=true")
    assert snapshot(tmp_path) == before


def test_new_run_into_a_folder_of_user_files_keeps_every_file(tmp_path):
    """Files named like ours (config.yaml, *.log, .hydra/) are the user's: refused, nothing removed."""
    folder = tmp_path / "mine"
    (folder / ".hydra").mkdir(parents=True)
    (folder / "config.yaml").write_text("my: config\n")
    (folder / "notes.log").write_text("my notes\n")
    (folder / ".hydra" / "x.yaml").write_text("a: 1\n")
    before = snapshot(tmp_path)
    result = run(*TINY, f"hydra.run.dir={folder}", cwd=tmp_path)
    assert_user_error(result, "already holds", "new or empty directory")
    assert snapshot(tmp_path) == before


def test_bad_input_in_an_existing_empty_dir_keeps_the_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run(*TINY, "dataset=csv", "dataset.data_files.train=nope.csv", f"hydra.run.dir={tmp_path}/empty",
                 cwd=tmp_path)
    assert_user_error(result, "nope.csv")
    assert (tmp_path / "empty").is_dir()


def test_bad_input_after_start_removes_only_its_own_run_dir(tmp_path):
    """A failure found after Hydra made the run dir (a missing data file) removes that dir, not its siblings."""
    sibling = tmp_path / "outputs" / "earlier"
    sibling.mkdir(parents=True)
    (sibling / "config.yaml").write_text("earlier: run\n")
    before = snapshot(tmp_path)
    result = run(*TINY, "dataset=csv", "dataset.data_files.train=nope.csv", cwd=tmp_path)
    assert_user_error(result, "missing file for split 'train'", "nope.csv")
    assert snapshot(tmp_path) == before
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["earlier"]


def test_resume_with_changed_lr_is_refused(done, tmp_path):
    before = snapshot(tmp_path)
    result = run(*CKPT, "trainer.resume=true", "trainer.lr=1e-3", f"hydra.run.dir={done}", cwd=tmp_path)
    assert_user_error(result, "trainer.resume", "trainer.lr: 5e-05 -> 0.001")
    assert snapshot(tmp_path) == before


def test_resume_with_changed_dataset_is_refused(done, tmp_path):
    before = snapshot(tmp_path)
    result = run(*CKPT, "trainer.resume=true", "dataset=tweet_sentiment", f"hydra.run.dir={done}", cwd=tmp_path)
    assert_user_error(result, "differs from the run", "dataset.")
    assert snapshot(tmp_path) == before


def test_resume_with_fewer_steps_is_refused(done, tmp_path):
    before = snapshot(tmp_path)
    result = run(*CKPT, "trainer.resume=true", "trainer.max_steps=1", f"hydra.run.dir={done}", cwd=tmp_path)
    assert_user_error(result, "trainer.max_steps: 2 -> 1")
    assert snapshot(tmp_path) == before


def test_resume_with_more_steps_continues_and_records_the_change(done, tmp_path):
    """...and removes the temporary files a killed attempt left mid-write (atomic_write's names), nothing else."""
    stale = [done / ".metrics.json.4242.tmp", done / "checkpoints" / "step_2" / ".loop_state.json.77.tmp"]
    for path in stale:
        path.write_text("half a write")
    (done / "notes.tmp").write_text("a user's file")
    before = snapshot(tmp_path)
    result = run(*CKPT, "trainer.resume=true", "trainer.max_steps=3", f"hydra.run.dir={done}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((done / "metrics.json").read_text())
    assert metrics["final"]["global_step"] == 3 and metrics["resumed_from"].endswith("step_2")
    log = [json.loads(line) for line in (done / "resume_log.jsonl").read_text().splitlines()]
    assert log[-1]["changes"] == {"trainer.max_steps": [2, 3]}
    assert "max_steps: 3" in (done / "config.yaml").read_text()
    # the first run's Hydra record is kept; the resume's own is beside it
    diff = changed(before, snapshot(tmp_path), allowed=["run/checkpoints"])
    assert all(path.startswith("run/.hydra/resume-") for path in diff if ".hydra" in path), diff
    assert not any(path.exists() for path in stale) and (done / "notes.tmp").read_text() == "a user's file"
    assert {p for p in diff if ".hydra" not in p} <= {"run/config.yaml", "run/metrics.json", "run/metrics.csv", "run/run.log",
                         "run/learning_curve.png", "run/resume_log.jsonl", "run/.metrics.json.4242.tmp"}


def test_resume_in_a_dir_without_a_run_is_refused(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    result = run(*CKPT, "trainer.resume=true", f"hydra.run.dir={tmp_path}/other", cwd=tmp_path)
    assert_user_error(result, "holds no run")
    assert snapshot(tmp_path) == before


def test_resume_from_another_runs_checkpoint_with_other_settings_is_refused(done, tmp_path):
    before = snapshot(tmp_path)
    result = run(*CKPT, f"trainer.resume={done}/checkpoints/step_2", "trainer.seed=7", cwd=tmp_path)
    assert_user_error(result, "differs from the run", "trainer.seed: 42 -> 7")
    assert snapshot(tmp_path) == before


def test_truncated_newest_checkpoint_is_skipped_for_the_whole_one(done, tmp_path):
    weights = done / "checkpoints" / "step_2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = run(*CKPT, "trainer.resume=true", "trainer.max_steps=3", f"hydra.run.dir={done}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((done / "metrics.json").read_text())["resumed_from"].endswith("step_1")
    console = result.stdout + result.stderr
    assert "skipping" in console and "model.safetensors" in console


def test_half_written_checkpoint_is_never_resumed(done, tmp_path):
    (done / "checkpoints" / "step_2" / "loop_state.json").unlink()  # killed before the state was written
    result = run(*CKPT, "trainer.resume=true", f"hydra.run.dir={done}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((done / "metrics.json").read_text())["resumed_from"].endswith("step_1")


def test_explicit_damaged_checkpoint_is_one_line(done, tmp_path):
    weights = done / "checkpoints" / "step_2" / "model.safetensors"
    weights.write_bytes(b"garbage")
    result = run(*CKPT, f"trainer.resume={done}/checkpoints/step_2", cwd=tmp_path)
    assert_user_error(result, "step_2", "model.safetensors")


def test_checkpoint_damaged_in_a_way_sizes_cannot_see_is_one_line(done, tmp_path):
    """Same size, wrong bytes: loading fails, and says which checkpoint and what to do. The resume asked for a
    longer run (an allowed change) but saved nothing: config.yaml and the resume log are as they were, so a
    later resume is checked against what the run is."""
    shutil.rmtree(done / "checkpoints" / "step_1")
    weights = done / "checkpoints" / "step_2" / "model.safetensors"
    weights.write_bytes(b"\0" * weights.stat().st_size)
    before = snapshot(tmp_path)
    result = run(*CKPT, "trainer.resume=true", "trainer.max_steps=4", f"hydra.run.dir={done}", cwd=tmp_path)
    assert_user_error(result, "cannot be loaded", "earlier one")
    diff = changed(before, snapshot(tmp_path))
    assert {p for p in diff if not p.startswith("run/.hydra/resume-")} <= {"run/run.log"}, diff
