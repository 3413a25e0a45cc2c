"""Crash at every point: SIGKILL at each point of a run's life (start-up, a train step, an evaluation, each file
of a checkpoint, the rotation of old checkpoints, best/, metrics.json, last/, the plot), leaving a half-written
file where the point writes one. Then ``trainer.resume=true`` either finishes with exactly the result of a run
that was never killed (final metrics, train losses, final weights; a run killed before its first checkpoint starts
again from step 0) or refuses in one line; no other run changes."""
from __future__ import annotations

import json

import pytest
from faults import TINY, assert_user_error, changed, snapshot
from injection import RESUME, Case, duplicate_rows, first_of_each_kind, kind, outcome, run_batch, run_case

from experiments.train.checkpoints import checkpoint_dirs

ROTATE = ["trainer.save_total_limit=2"]  # step_2 is removed once step_6 is whole: that is a point too
# (a substring of the event, which of the events with it is the point): a fast subset of the points
FAST = [
    ("call:run_job", 1),  # start-up, before the run's config is written: refused in one line
    ("call:Recipe.train_step", 2),  # mid-training before the first checkpoint: started again, logged rows dropped
    ("call:Recipe.train_step", 3),  # mid-training, after checkpoint step_2
    ("call:evaluate", 1),  # mid-evaluation at step 3
    ("optimizer.bin", 2),  # half of checkpoint step_4's optimizer state written
    ("loop_state.json", 3),  # checkpoint step_4's loop_state.json half written
    ("rmtree", 1),  # rotating checkpoint step_2 away
]


@pytest.fixture(scope="module")
def tiny_run(tiny_models):
    return [f"model.name_or_path={tiny_models['classifier']}", *ROTATE]


def _kill_and_resume(root, tiny_run, points):
    """The reference, then per point: a run killed there and its resume, in one batch."""
    reference = run_case(root / "reference", *tiny_run)
    cases = [reference]
    for name, match, at in points:
        killed = run_case(root / name, *tiny_run, action="kill", at=at, match=match)
        killed.resumed = run_case(root / f"{name}-resume", *tiny_run, RESUME, run_dir=killed.run_dir)
        cases += [killed, killed.resumed]
    run_batch(cases, root)
    assert reference.rc == 0, reference.stderr[-3000:]
    return reference, cases[1::2]


def _check(reference, killed) -> str:
    """Resumed to the reference's result, or refused in one line (then the run dir is as the kill left it)."""
    assert killed.rc == -9, f"the point was never reached (exit {killed.rc}):\n{killed.stderr[-2000:]}"
    resumed = killed.resumed
    if resumed.rc != 0:  # refused: no whole checkpoint (or not even a run) to resume from
        assert_user_error(resumed.result(), "trainer.resume=true but", "before the run began", code=2)
        assert checkpoint_dirs(killed.run_dir) == []
        return "refused"
    assert outcome(killed.run_dir) == outcome(reference.run_dir)
    assert duplicate_rows(killed.run_dir) == []
    return "resumed"


@pytest.fixture(scope="module")
def fast_batch(tmp_path_factory, tiny_run):
    points = [(f"point{i}", match, at) for i, (match, at) in enumerate(FAST)]
    return _kill_and_resume(tmp_path_factory.mktemp("crash"), tiny_run, points)


@pytest.mark.parametrize("index", range(len(FAST)), ids=[f"{m}#{a}" for m, a in FAST])
def test_killed_at_a_point_resumes_to_the_same_result_or_refuses(fast_batch, index):
    reference, killed = fast_batch
    how = _check(reference, killed[index])
    assert how == ("refused" if FAST[index][0] == "call:run_job" else "resumed")


def test_no_other_run_changes(fast_batch):
    reference, _ = fast_batch
    assert snapshot(reference.kept) == snapshot(reference.run_dir)


def _covered(event: dict) -> bool:
    """Points the fast subset has, and points that leave the same state as another: Hydra's and the run dir
    lock's own files, the appended run.log, the start of a save (as the kill before its first file), the rename
    of a temporary file (as the kill while it is written: the old file and a temporary one)."""
    if any(m in event["op"] or m in event["path"] for m, _ in FAST):
        return True
    if any(part in event["path"] for part in ("/.hydra/", "/.lock", "run.log")) or event["op"].startswith("call:"):
        return True
    return event["op"] == "replace" and not event["path"].endswith(("/best", "/last"))


@pytest.mark.slow
def test_killed_at_every_kind_of_point(tmp_path, tiny_run, fast_batch):
    """Every other kind of event of the reference run (each file of a checkpoint, best/, metrics.json, last/,
    the plot, the logs), first occurrence."""
    reference, _ = fast_batch
    events = [e for e in first_of_each_kind(reference.events()) if not _covered(e)]
    assert len(events) >= 12, [kind(e) for e in events]
    points = [(f"e{e['n']}", "", e["n"]) for e in events]
    reference, killed = _kill_and_resume(tmp_path, tiny_run, points)
    outcomes = {kind(e): _check(reference, k) for e, k in zip(events, killed)}
    assert "resumed" in outcomes.values(), outcomes


@pytest.mark.slow
def test_killed_while_writing_the_sweep_summary_keeps_every_job_and_a_resumed_sweep_writes_it(tmp_path):
    """SIGKILL of a sweep's parent as it writes the summary (both jobs done): no job folder changes, and the
    same command with hydra.launcher.resume=true reruns nothing and writes the whole summary."""
    sweep_dir = tmp_path / "sweep"
    argv = ["-m", *TINY, "trainer.seed=1,2", f"hydra.sweep.dir={sweep_dir}"]
    killed = Case(tmp_path / "killed", argv, sweep_dir, action="kill", at=1, match="call:write_summary",
                  root=tmp_path)
    resumed = Case(tmp_path / "resumed", [*argv, "hydra.launcher.resume=true"], sweep_dir, root=tmp_path)
    for case in (killed, resumed):
        case.env["INJECT_OPEN"] = "real"  # the subprocess launcher pickles each job
    run_batch([killed, resumed], tmp_path)
    assert killed.rc == -9, killed.stderr[-2000:]
    assert not (killed.kept / "sweep_summary.json").exists()
    assert resumed.rc == 0, resumed.stderr[-2000:]
    rewritten = {"multirun.yaml", "sweep_summary.json", "sweep_summary.csv", "report.html"}
    diff = changed(snapshot(killed.kept), snapshot(sweep_dir), allowed=[".launcher"])
    assert {p for p in diff if not p.startswith(".lock")} <= rewritten, diff  # the dead sweep's lock is taken over
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert [j["job"] for j in summary["jobs"]] == [0, 1] and summary["counts"] == {"finished": 2}
