"""Two commands at once on one folder (run dir, sweep dir, a sweep job's run dir, a dashboard's export
folder): exactly one proceeds, the others stop with one line naming the folder and the holder. By design,
runs share the datasets cache, and sweep summaries written at once lose no row.

Commands are started together: each process imports the CLI, then waits for the same moment to call it
(:func:`start_together`), so their checks really overlap."""
from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import pytest
from cli_helpers import REPO
from faults import TINY, assert_user_error, error_line, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import locks

WORKER = Path(__file__).parent / "lock_worker.py"


def start_together(commands: List[List[str]], cwd: Path, env: dict = None, lead_s: float = 4.0) -> list:
    """``python run.py <args>`` for each command, all entering the CLI at the same moment."""
    start_at = time.time() + lead_s  # every interpreter is up and has imported the CLI by then
    code = ("import sys, time\nfrom experiments.cli import main\nstart = float(sys.argv[1])\n"
            f"sys.argv = [{str(REPO / 'run.py')!r}] + sys.argv[2:]\n"
            "time.sleep(max(0.0, start - time.time()))\nmain()\n")
    full_env = dict(os.environ, **(env or {}))
    return [subprocess.Popen([sys.executable, "-c", code, str(start_at), *args], cwd=cwd, env=full_env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args in commands]


def finish(procs: list, timeout: int = 600) -> List[subprocess.CompletedProcess]:
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def start_holder(folder: Path) -> subprocess.Popen:
    """Another command holding ``folder`` (a run in progress, say)."""
    proc = subprocess.Popen([sys.executable, str(WORKER), "hold", str(folder), "120", "normal"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("held"), proc.stderr.read()
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def one_winner(results, pids) -> tuple:
    """(winner, loser line): exactly one exit 0; the other exit 2 naming the winner's pid and host."""
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], "\n---\n".join(r.stderr[-2500:] for r in results)
    winner = next(i for i, r in enumerate(results) if r.returncode == 0)
    loser = results[1 - winner]
    line = assert_user_error(loser, "is in use by another command", f"pid {pids[winner]} on host {socket.gethostname()}")
    return winner, line


# -- run dirs -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_runs_started_together_on_one_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    procs = start_together([[*TINY, f"hydra.run.dir={run_dir}"]] * 2, cwd=tmp_path)
    results = finish(procs)
    _, line = one_winner(results, [p.pid for p in procs])
    assert f"hydra.run.dir={run_dir}" in line and "wait for it to end" in line
    assert (run_dir / "metrics.json").is_file()
    assert not [p for p in run_dir.iterdir() if locks.is_lock_file(p.name)], "the winner left its lock"
    assert [p.name for p in (run_dir / ".hydra").iterdir() if p.is_dir()] == [], "a second Hydra record"


@pytest.mark.parametrize("extra", [[], ["trainer.resume=true"]], ids=["new run", "resume"])
def test_a_command_on_a_run_dir_in_use_changes_nothing(tmp_path, extra):
    """A new run or a resume aimed at a run dir another command holds: refused before anything is written
    (the lock is taken before the run dir is checked, so the refusal names the holder, not the files)."""
    run_dir = tmp_path / "run"
    holder = start_holder(run_dir)
    try:
        before = snapshot(tmp_path)
        result = subprocess.run([sys.executable, str(REPO / "run.py"), *TINY, *extra, f"hydra.run.dir={run_dir}"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert_user_error(result, f"hydra.run.dir={run_dir} is in use", f"pid {holder.pid}")
        assert snapshot(tmp_path) == before
    finally:
        stop(holder)


def test_other_nodes_of_a_multi_machine_run_take_no_lock(tmp_path):
    """Node 0 holds the run dir; node 1 joins it (it writes only its node-local folder)."""
    from experiments.rundir import plan_single_run

    run_dir = tmp_path / "run"
    holder = start_holder(run_dir)
    try:
        extra = plan_single_run([*TINY, "trainer.num_machines=2", "trainer.machine_rank=1",
                                 "trainer.main_process_ip=127.0.0.1", "trainer.main_process_port=29555",
                                 f"hydra.run.dir={run_dir}"])
        assert any(e.startswith("hydra.output_subdir=") for e in extra)
        assert not locks.held(run_dir) and locks.holder(run_dir)["pid"] == holder.pid
    finally:
        stop(holder)


# -- sweep dirs ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_sweeps_started_together_on_one_sweep_dir(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "trainer.seed=1,2", f"hydra.sweep.dir={sweep}"]
    procs = start_together([args, args], cwd=tmp_path)
    results = finish(procs)
    _, line = one_winner(results, [p.pid for p in procs])
    assert f"hydra.sweep.dir={sweep}" in line
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [j["job"] for j in summary["jobs"]] == [0, 1] and summary["counts"] == {"finished": 2}
    leftovers = [str(p.relative_to(sweep)) for p in sweep.rglob("*") if locks.is_lock_file(p.name)]
    assert leftovers == [], "locks left behind by the sweep or its jobs"


@pytest.mark.slow
def test_a_resume_aimed_at_a_running_sweep_job_is_refused(tmp_path):
    """Each job holds its own run dir while it runs: a single run (a resume) pointed at it waits its turn."""
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), "-m", *TINY, "trainer.seed=1",
                             f"hydra.sweep.dir={sweep}"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while locks.holder(sweep / "0") is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    job = locks.holder(sweep / "0")
    assert job is not None, "job 0 never locked its run dir"
    result = subprocess.run([sys.executable, str(REPO / "run.py"), *TINY, "trainer.resume=true",
                             f"hydra.run.dir={sweep / '0'}"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert job["pid"] != proc.pid and job["job"] == f"{sweep.resolve()}#0"  # the job's own process
    assert_user_error(result, f"hydra.run.dir={sweep / '0'} is in use", f"pid {job['pid']}")


def test_a_sweep_into_a_sweep_dir_in_use_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    holder = start_holder(sweep)
    try:
        result = subprocess.run([sys.executable, str(REPO / "run.py"), "-m", *TINY, "trainer.seed=1,2",
                                 "hydra.launcher.resume=true", f"hydra.sweep.dir={sweep}"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert_user_error(result, f"hydra.sweep.dir={sweep} is in use", f"pid {holder.pid}")
        assert sorted(p.name for p in sweep.iterdir()) == [locks.LOCK_NAME, locks.OWNER_NAME]
    finally:
        stop(holder)


# -- the lock itself, over random interleavings ------------------------------------------------------------------
def _take_turns(folder: Path, room: Path, turns) -> List[int]:
    """Start one process per (hold ms, killed) at once; SIGKILL the ``killed`` ones once inside. Returns the
    pids that were not killed (each warned of a takeover at most once per killed holder)."""
    procs = [(subprocess.Popen([sys.executable, str(WORKER), "turn", str(folder), str(room),
                                str(20000 if killed else hold_ms)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True), killed) for hold_ms, killed in turns]
    deadline = time.monotonic() + 120
    while any(p.poll() is None for p, _ in procs) and time.monotonic() < deadline:
        for proc, killed in procs:
            if killed and proc.poll() is None and (room / f"in.{proc.pid}").exists():
                proc.send_signal(signal.SIGKILL)
                proc.wait()  # reaped: its pid no longer runs
        time.sleep(0.01)
    for proc, _ in procs:
        if proc.poll() is None:
            stop(proc)
    survivors = [p for p, killed in procs if not killed]
    warnings = 0
    for proc in survivors:
        err = proc.stderr.read()
        assert proc.returncode == 0, err[-2000:]
        warnings += err.count("warning: took over the lock")
    assert warnings <= sum(killed for _, killed in procs), "a takeover warning without a killed holder"
    return [p.pid for p in survivors]


# A fifth of the profile's budget (each example starts up to five processes): 8 in CI, 300 with "long".
@settings(max_examples=max(8, settings.default.max_examples // 5), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=st.lists(st.tuples(st.integers(0, 60), st.booleans()), min_size=2, max_size=5))
def test_one_holder_at_a_time_and_a_killed_holders_lock_is_recovered(turns):
    with tempfile.TemporaryDirectory() as tmp:
        folder, room = Path(tmp) / "run", Path(tmp) / "room"
        room.mkdir()
        survivors = _take_turns(folder, room, turns)
        violations = (room / "violations").read_text() if (room / "violations").exists() else ""
        assert violations == ""
        done = (room / "done").read_text().split() if (room / "done").exists() else []
        assert sorted(map(int, done)) == sorted(survivors), "a holder never got its turn"
        locks.hold(folder, "hydra.run.dir", wait_s=10)  # free again, or recoverable (killed last holder)
        locks.release(folder)


# -- by design: shared caches and summaries ----------------------------------------------------------------------
def _csv_rows(path: Path, n: int, offset: int = 0) -> None:
    rows = [{"text": f"article {i} about {'sport' if i % 2 else 'money'} number {i + offset}",
             "label": "sport" if i % 2 else "business"} for i in range(n)]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
def test_two_runs_preparing_one_dataset_at_once_share_the_datasets_cache(tmp_path):
    import datasets

    _csv_rows(tmp_path / "train.csv", 40)
    _csv_rows(tmp_path / "dev.csv", 16, offset=100)
    cache = tmp_path / "hf-cache"
    data = ["dataset=csv", f"dataset.data_files.train={tmp_path / 'train.csv'}",
            f"dataset.data_files.validation={tmp_path / 'dev.csv'}"]
    procs = start_together([[*TINY, *data, f"hydra.run.dir={tmp_path / name}"] for name in ("a", "b")],
                           cwd=tmp_path, env={"HF_DATASETS_CACHE": str(cache)})
    results = finish(procs)
    assert [r.returncode for r in results] == [0, 0], "\n---\n".join(error_line(r) for r in results)
    arrows = sorted(cache.rglob("*.arrow"))
    assert arrows, f"nothing cached in {cache}"
    partial = [p for p in cache.rglob("*") if p.name.endswith((".incomplete", ".tmp")) or p.name.startswith("tmp")]
    assert partial == [], "a half-written cache file was left behind"
    train = [p for p in arrows if p.name.endswith("-train.arrow")]
    assert len(train) == 1, f"one cached copy of the train split expected: {train}"
    table = datasets.Dataset.from_file(str(train[0]))
    with (tmp_path / "train.csv").open() as handle:
        assert table["text"] == [row["text"] for row in csv.DictReader(handle)]
    finals = [json.loads((tmp_path / name / "metrics.json").read_text())["final"] for name in ("a", "b")]
    assert finals[0].keys() == finals[1].keys()


def test_summaries_written_at_once_by_many_processes_lose_no_row(tmp_path):
    sweep, workers, per_worker = tmp_path / "sweep", 6, 4
    procs = [subprocess.Popen([sys.executable, str(WORKER), "hammer", str(sweep), str(w), str(per_worker), str(w)],
                              stderr=subprocess.PIPE, text=True) for w in range(workers)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
        assert "took over" not in proc.stderr.read(), "a lock released normally was taken for a stale one"
    expected = sorted(w * 1000 + i for w in range(workers) for i in range(per_worker))
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert sorted(j["job"] for j in summary["jobs"]) == expected
    with (sweep / "sweep_summary.csv").open() as handle:
        assert sorted(int(r["job"]) for r in csv.DictReader(handle)) == expected
    assert not [p.name for p in sweep.iterdir() if p.name.endswith(".tmp") or locks.is_lock_file(p.name)]


def test_a_second_dashboard_on_one_export_dir_is_refused(tmp_path, capsys):
    """Two dashboards exporting into one folder would remove each other's event files."""
    from experiments.report import dashboard

    (tmp_path / "outputs").mkdir()
    export = tmp_path / "export"
    holder = start_holder(export)
    try:
        assert dashboard.main([str(tmp_path / "outputs"), "--export-dir", str(export), "--reload", "0"]) == 2
    finally:
        stop(holder)
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"error: --export-dir={export} is in use") and f"pid {holder.pid}" in line
    assert "\n" not in line
