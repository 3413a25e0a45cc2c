"""I/O faults: every kind of write of a run fails in turn (no space left, permission denied, read-only), a real
disk fills up, a folder the run writes to is a file, and the run's own records are damaged. Each ends in one
line and exit 4 (a failed write) or 2 (a damaged record), the earlier results intact, and a resume after the
fault is fixed finishes with the result of a run that never failed."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from faults import assert_user_error, changed, snapshot
from injection import (
    RESUME,
    STEPS,
    duplicate_rows,
    first_of_each_kind,
    kind,
    outcome,
    run_batch,
    run_case,
    sha,
    writes,
)

# (name, a substring of the event, which of the events with it fails, how, resume afterwards)
FAULTS = [
    ("hydra-own-files", "/.hydra/", 2, "enospc", False),  # Hydra's .hydra/hydra.yaml, before any job code
    ("config", "/.config.yaml.", 1, "enospc", False),  # config.yaml: nothing of the run exists yet
    ("csv-append", "metrics.csv", 3, "enospc", False),  # the first logged row (no checkpoint yet)
    ("optimizer-torch-save", "optimizer.bin", 2, "enospc", True),  # checkpoint step_4, torch's own error
    ("best-safetensors", ".best.tmp/model.safetensors", 1, "enospc", True),
    ("metrics-json", ".metrics.json.", 2, "eacces", True),  # the step-6 record: the step-3 one stays
    ("loop-state-replace", "loop_state.json", 4, "erofs", False),  # step_4 made whole: os.replace fails
    ("last", ".last.tmp/model.safetensors", 1, "enospc", True),
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_models):
    return [f"model.name_or_path={tiny_models['classifier']}"]


@pytest.fixture(scope="module")
def fault_batch(tmp_path_factory, tiny_run):
    """The uninterrupted reference, then each fault (and, where asked, its resume), in one batch."""
    root = tmp_path_factory.mktemp("io-faults")
    reference = run_case(root / "reference", *tiny_run)
    cases, faults = [reference], {}
    for name, match, at, action, resume in FAULTS:
        faults[name] = run_case(root / name, *tiny_run, action=action, at=at, match=match)
        cases.append(faults[name])
        if resume:
            faults[name].resumed = run_case(root / f"{name}-resume", *tiny_run, RESUME,
                                            run_dir=faults[name].run_dir)
            cases.append(faults[name].resumed)
    run_batch(cases, root)
    assert reference.rc == 0, reference.stderr[-3000:]
    return reference, faults


def _checkpoints(run_dir: Path) -> dict:
    """Every checkpoint file but loop_state.json (which holds the run's timings) by its hash."""
    return {k: v for k, v in snapshot(run_dir / "checkpoints").items() if not k.endswith("loop_state.json")}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


@pytest.mark.parametrize("name,match,at,action,resume", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_failed_write_is_one_line_keeps_earlier_results_and_resumes(fault_batch, name, match, at, action, resume):
    reference, faults = fault_batch
    case = faults[name]
    reason = {"enospc": "No space left on device", "eacces": "Permission denied", "erofs": "Read-only file system"}
    line = assert_user_error(case.result(), "could not write", str(case.run_dir), code=4)
    if "torch" not in name:  # torch's writer reports its own text, not the OS error
        assert reason[action] in line
    run_dir = case.kept  # as the fault left it
    leftovers = [p for p in run_dir.rglob("*") if p.name.endswith((".tmp", ".old"))] if run_dir.exists() else []
    assert leftovers == []
    whole = _checkpoints(run_dir) if run_dir.exists() else {}
    ref = _checkpoints(reference.run_dir)
    assert whole == {k: ref.get(k) for k in whole}, "a checkpoint differs from the reference's"
    if whole:  # only whole checkpoints are left, and the line says how to continue
        for step in {k.split("/")[0] for k in whole}:
            json.loads((run_dir / "checkpoints" / step / "loop_state.json").read_text())
        assert "trainer.resume=true" in line
    if (run_dir / "metrics.json").exists():
        json.loads((run_dir / "metrics.json").read_text())  # the earlier record, whole
    if not resume:
        return
    assert case.resumed.rc == 0, case.resumed.stderr[-3000:]
    assert outcome(case.run_dir) == outcome(reference.run_dir)
    assert duplicate_rows(case.run_dir) == []


def test_a_failed_write_before_training_leaves_no_run_dir(fault_batch):
    _, faults = fault_batch
    for name in ("hydra-own-files", "config", "csv-append"):
        assert not faults[name].kept.exists(), name
        assert "run the command again" in faults[name].stderr


@pytest.fixture
def tmpfs(tmp_path, fault_batch):
    """A disk that holds the run's first checkpoint and best/, and half of its second checkpoint."""
    reference, _ = fault_batch
    step = _size(reference.run_dir / "checkpoints" / "step_2")
    size = step + _size(reference.run_dir / "best") + step // 2 + (1 << 20)
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True,
                       capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_real_full_disk_is_one_line_and_resumes_after_space_is_freed(tmp_path, tmpfs, tiny_run, fault_batch):
    from faults import run

    reference, _ = fault_batch
    run_dir = tmpfs / "run"
    result = run(*STEPS, *tiny_run, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    line = assert_user_error(result, "could not write", str(run_dir), "No space left on device",
                             "trainer.resume=true", code=4)
    assert (run_dir / "checkpoints" / "step_2" / "loop_state.json").exists(), line
    weights = ("model.safetensors", "optimizer.bin", "scheduler.bin")
    assert [sha(run_dir / "checkpoints" / "step_2" / f) for f in weights] == [
        sha(reference.run_dir / "checkpoints" / "step_2" / f) for f in weights]
    subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)
    resumed = run(*STEPS, *tiny_run, RESUME, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert outcome(run_dir) == outcome(reference.run_dir)


@pytest.fixture(scope="module")
def damaged_batch(tmp_path_factory, tiny_run, fault_batch):
    """Copies of the finished reference run, each with one record damaged or its disk made read-only, then resumed
    for 2 more steps (allowed: training longer)."""
    reference, _ = fault_batch
    root = tmp_path_factory.mktemp("damaged")
    longer = [*tiny_run, RESUME, "trainer.max_steps=8"]
    damage = {
        "config-garbage": lambda d: (d / "config.yaml").write_bytes(b"\x00\xff: [unclosed\n"),
        "config-truncated": lambda d: (d / "config.yaml").write_text((d / "config.yaml").read_text()[:40]),
        "config-unreadable": lambda d: (d / "config.yaml").unlink() or (d / "config.yaml").mkdir(),
        "loop-state-garbage": lambda d: [(c / "loop_state.json").write_bytes(b"\x89garbage")
                                         for c in (d / "checkpoints").iterdir()],
        "weights-truncated": lambda d: (d / "checkpoints" / "step_6" / "model.safetensors").write_bytes(b"\x00" * 9),
        "checkpoint-path-is-a-file": lambda d: (d / "checkpoints" / "step_8").write_text("a file"),
    }
    cases = {}
    for name, spoil in damage.items():
        run_dir = root / name / "run"
        shutil.copytree(reference.run_dir, run_dir)
        spoil(run_dir)
        cases[name] = run_case(root / name, *longer, run_dir=run_dir)
        cases[name].before = snapshot(run_dir)
    run_batch(list(cases.values()), root)
    return cases


@pytest.mark.parametrize("name,needles,code", [
    ("config-garbage", ["cannot read", "config.yaml"], 2),
    ("config-truncated", ["cannot read", "config.yaml"], 2),
    ("config-unreadable", ["config.yaml"], 2),
    ("loop-state-garbage", ["no complete checkpoint"], 2),
    ("checkpoint-path-is-a-file", ["could not write", "step_8"], 4),
])
def test_a_damaged_record_or_a_blocked_path_is_one_line_and_changes_nothing(damaged_batch, name, needles, code):
    case = damaged_batch[name]
    assert_user_error(case.result(), *needles, code=code)
    diff = changed(case.before, snapshot(case.run_dir), allowed=[".hydra"])
    results = [p for p in diff if p.startswith(("checkpoints/", "best/", "last/", "metrics.json"))]
    assert results == [] and set(diff) <= {"run.log", "metrics.csv"}, diff  # a resume that saved nothing: the
    # config and resume log it found are put back


def test_a_truncated_checkpoint_is_skipped_for_the_one_before(damaged_batch):
    """A checkpoint whose file sizes disagree with its loop_state.json is never resumed from."""
    case = damaged_batch["weights-truncated"]
    assert case.rc == 0, case.stderr[-3000:]
    metrics = json.loads((case.run_dir / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("step_4") and metrics["final"]["global_step"] == 8


def _same_path_as_another(event: dict) -> bool:
    """Writes whose failure takes the code path of another: the rename after a temporary file (atomic_write),
    Hydra's own files (one guard, a fast case), and the run dir lock's files (experiments.locks)."""
    return event["op"] == "replace" or any(part in event["path"] for part in ("/.hydra/", "/.lock"))


@pytest.mark.slow
def test_every_kind_of_write_fails_in_one_line(tmp_path, tiny_run, fault_batch):
    """ENOSPC at the first write of each kind the reference run made (config, logs, each checkpoint file,
    best/, last/, metrics.json, the plot): one line, exit 4, no temporary file left, whole checkpoints only."""
    reference, _ = fault_batch
    events = [e for e in first_of_each_kind(writes(reference.events())) if not _same_path_as_another(e)]
    assert len(events) >= 15, [kind(e) for e in events]
    cases = [run_case(tmp_path / f"w{e['n']}", *tiny_run, action="enospc", at=e["n"]) for e in events]
    run_batch(cases, tmp_path)
    for event, case in zip(events, cases):
        assert_user_error(case.result(), "could not write", code=4)
        if case.run_dir.exists():
            assert [p for p in case.run_dir.rglob("*") if p.name.endswith((".tmp", ".old"))] == [], kind(event)
            for step in (case.run_dir / "checkpoints").glob("step_*"):
                assert (step / "loop_state.json").exists(), kind(event)


GARBAGE = {"truncated": lambda text: text[: len(text) // 2], "garbage": lambda text: "\x00\xff{[: ,"}


@pytest.mark.parametrize("how", sorted(GARBAGE))
def test_readers_of_damaged_records_name_the_file_or_skip_it(tmp_path, how, caplog):
    """In-process: config.yaml (resume, workers, compare) is one error naming it; a damaged metrics.json is
    no record; a damaged sweep record is skipped with a warning naming it."""
    from experiments.errors import RecordUnreadable
    from experiments.record import read_record
    from experiments.runs import read_config
    from experiments.sweep import records

    (tmp_path / "config.yaml").write_text(GARBAGE[how]('{"trainer": {"lr": 0.001, "epochs": 3}, "model": {}}'))
    with pytest.raises(RecordUnreadable, match="config.yaml"):
        read_config(tmp_path / "config.yaml")
    (tmp_path / "metrics.json").write_text(GARBAGE[how](json.dumps({"final": {"eval_loss": 1.0}})))
    assert read_record(tmp_path) is None
    job = tmp_path / "0"
    job.mkdir()
    (job / records.RECORD_FILE).write_text(GARBAGE[how](json.dumps({"job": 0, "status": "finished"})))
    assert records.read_all(tmp_path) == []
    assert str(job / records.RECORD_FILE) in caplog.text


def test_atomic_write_leaves_the_old_file_and_no_temporary_one_when_the_write_fails(tmp_path, monkeypatch):
    import errno
    import os

    from experiments.errors import WriteFailed
    from experiments.files import atomic_write

    target = tmp_path / "metrics.json"
    atomic_write(target, "old\n")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteFailed, match=f"could not write {target}: No space left on device"):
        atomic_write(target, "new\n")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
