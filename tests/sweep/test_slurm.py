"""``hydra/launcher=slurm`` on a real Slurm: a two-node cluster from Debian's munge, slurmctld and slurmd, each
node a separate host in its own network namespace (tests/sweep/slurm_cluster.py), started once per session.
Sweeps run as a user runs them (``python run.py -m hydra/launcher=slurm hydra.launcher.partition=...``): a
2-job sweep as a Slurm array, jobs landing on both nodes, a 2-process DDP job inside one Slurm job, a 2-node
DDP job, a job cancelled with ``scancel`` while it trains; preemption: a job requeued (``scontrol
requeue``), reaching a real time limit (warned by SIGUSR2), or whose node is taken down resumes from its checkpoint and
counts once, as finished, with the uninterrupted job's losses; the requeue limit (slow); and how the
launcher words a job's end (fast)."""
from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import slurm_cluster
from sweep_helpers import TINY, explain, run_sweep, summary

# A CPU-only node with 2 CPUs: no GPUs asked for, one CPU per job (two jobs side by side) unless said
# otherwise.
SLURM = ["hydra/launcher=slurm", f"hydra.launcher.partition={slurm_cluster.PARTITION}",
         "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10"]


@pytest.fixture(scope="session")
def slurm():
    """The running cluster (stopped, and its folder removed, at the end of the session)."""
    pytest.importorskip("submitit", reason="hydra-submitit-launcher is an optional extra ([sweep])")
    reason = slurm_cluster.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster = slurm_cluster.start_cluster()
    yield cluster
    slurm_cluster.stop_cluster(cluster)


@pytest.fixture
def cluster(slurm, monkeypatch):
    """The cluster, with ``SLURM_CONF`` set for this test's commands (sbatch, squeue, ... and the jobs)."""
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    return slurm


def slurm_ids(sweep_dir) -> list:
    """Slurm job ids named by submitit's folders (``12`` or array tasks ``12_0``, ``12_1``)."""
    return sorted(p.name for p in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+(_\d+)?", p.name)
                  and list(p.glob("*_log.out")))


def no_traceback(result) -> None:
    assert "Traceback" not in result.stdout + result.stderr, explain(result)


@pytest.mark.slow
def test_sweep_runs_as_a_slurm_array_and_is_summarised(cluster, tmp_path):
    sweep_dir = tmp_path / "multirun" / "slurm"
    result = run_sweep([*TINY, *SLURM, "trainer.lr=1e-5,3e-5", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path,
                       timeout=300)
    assert result.returncode == 0, explain(result)
    no_traceback(result)
    data = summary(sweep_dir)
    assert [j["status"] for j in data["jobs"]] == ["finished", "finished"], data["jobs"]
    assert data["swept"] == {"trainer.lr": ["1e-05", "3e-05"]} and data["best_job"] in (0, 1)
    assert (sweep_dir / "sweep_summary.csv").is_file() and (sweep_dir / "report.html").is_file()
    # It went through Slurm: one array of two tasks, known to the controller as completed in the partition,
    # each task's submitit log naming its Slurm job id.
    ids = slurm_ids(sweep_dir)
    assert len(ids) == 2 and re.fullmatch(r"(\d+)_0", ids[0]) and ids[1] == ids[0].replace("_0", "_1"), ids
    assert cluster.ended(ids) == ["COMPLETED", "COMPLETED"], cluster.jobs()
    for job_id in ids:
        log_out = (sweep_dir / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
        assert re.search(rf"JobEnvironment\(job_id={job_id}, hostname=(n1|n2)", log_out), log_out[:500]
    assert f"submitted as Slurm job(s) {', '.join(ids)}" in result.stdout + result.stderr, explain(result)
    for job in data["jobs"]:
        metrics = json.loads((sweep_dir / job["run_dir"] / "metrics.json").read_text())
        assert metrics["num_processes"] == 1


@pytest.mark.slow
def test_two_process_ddp_job_inside_one_slurm_job(cluster, tmp_path):
    sweep_dir = tmp_path / "multirun" / "ddp"
    result = run_sweep([*TINY, *SLURM, "hydra.launcher.cpus_per_task=2", "trainer.num_processes=2",
                        f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, explain(result)
    no_traceback(result)
    data = summary(sweep_dir)
    assert [j["status"] for j in data["jobs"]] == ["finished"], data["jobs"]
    metrics = json.loads((sweep_dir / data["jobs"][0]["run_dir"] / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics.get("distributed_type", "MULTI_CPU") == "MULTI_CPU"
    assert "accelerate.commands.launch" in (sweep_dir / "0" / "run.log").read_text()
    ids = slurm_ids(sweep_dir)
    assert len(ids) == 1 and cluster.ended(ids) == ["COMPLETED"], (ids, cluster.jobs())


@pytest.mark.slow
def test_a_job_cancelled_with_scancel_is_recorded_as_cancelled(cluster, tmp_path):
    sweep_dir = tmp_path / "multirun" / "cancel"
    args = [*TINY, *SLURM, "trainer.max_steps=100000", f"hydra.sweep.dir={sweep_dir}"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        sweep = pool.submit(run_sweep, args, tmp_path, 300)
        run_log = sweep_dir / "0" / "run.log"
        deadline = time.time() + 120
        while not (run_log.is_file() and "[experiments.train.loop]" in run_log.read_text(errors="replace")):
            assert time.time() < deadline and not sweep.done(), "the job never started training" + (
                explain(sweep.result()) if sweep.done() else "")
            time.sleep(0.5)
        ids = slurm_ids(sweep_dir)
        assert len(ids) == 1 and cluster.jobs().get(ids[0]) == "RUNNING", (ids, cluster.jobs())
        cluster.run("scancel", ids[0])
        result = sweep.result()
    assert result.returncode == 1, explain(result)  # a failed job: exit code 1, as for any failed sweep job
    no_traceback(result)
    data = summary(sweep_dir)
    assert [j["status"] for j in data["jobs"]] == ["failed"], data["jobs"]
    error = data["jobs"][0]["error"]
    assert error.startswith(f"cancelled (Slurm job {ids[0]} CANCELLED"), error
    assert f"job #0 failed: {error}" in result.stdout + result.stderr, explain(result)
    assert cluster.ended(ids) == ["CANCELLED"], cluster.jobs()


def test_how_a_failed_slurm_job_is_described():
    pytest.importorskip("submitit", reason="hydra-submitit-launcher is an optional extra ([sweep])")
    from hydra_plugins.experiments_launcher.slurm import describe_end, parse_squeue

    assert describe_end("12_1", "CANCELLED by 0", "interrupted by SIGTERM") == \
        "cancelled (Slurm job 12_1 CANCELLED by 0); the job: interrupted by SIGTERM"
    assert describe_end("12", "CANCELLED", "", result=False) == "cancelled (Slurm job 12 CANCELLED)"
    assert describe_end("12", "TIMEOUT", "").startswith("out of time (Slurm job 12 TIMEOUT)")
    assert describe_end("12", "ENDED", "", result=False) == "ended without a result (Slurm job 12 ENDED)"
    assert describe_end("12", "COMPLETED", "missing file") == "missing file"  # the job's own failure
    assert parse_squeue("7_0|COMPLETED|vm\n7_1|RUNNING|vm\n8|PENDING|\n") == {
        "7_0": {"JobID": "7_0", "State": "COMPLETED", "NodeList": "vm"},
        "7_1": {"JobID": "7_1", "State": "RUNNING", "NodeList": "vm"},
        "8": {"JobID": "8", "State": "PENDING", "NodeList": ""}}


# -- across nodes -------------------------------------------------------------------------------------
# A real fine-tune long enough to be stopped part-way: 8 optimizer steps, a checkpoint every 2.
LONGER = ["trainer.mixed_precision=no", "dataset.max_train_samples=64", "dataset.max_eval_samples=40",
          "tokenizer.max_length=32", "trainer.epochs=1", "trainer.lr=1e-4", "trainer.log_every_n_steps=1",
          "trainer.save_model=false", "trainer.per_device_batch_size=8", "trainer.save_steps=2",
          "+model.config_overrides.hidden_dropout_prob=0.0", "+model.config_overrides.attention_probs_dropout_prob=0.0"]


def job_nodes(cluster, ids) -> list:
    out = cluster.run("squeue", "--states=all", "--array", "--noheader", "--format=%i|%N",
                      f"--jobs={','.join(ids)}").stdout
    found = dict(line.split("|", 1) for line in out.split() if "|" in line)
    return [found.get(i) for i in ids]


@pytest.mark.slow
def test_a_sweep_spreads_over_both_nodes(cluster, tmp_path):
    """Jobs that each take a whole node (2 CPUs) run side by side on n1 and n2."""
    sweep_dir = tmp_path / "multirun" / "spread"
    result = run_sweep([*TINY, *SLURM, "hydra.launcher.cpus_per_task=2", "trainer.lr=1e-5,3e-5",
                        f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, explain(result)
    assert [j["status"] for j in summary(sweep_dir)["jobs"]] == ["finished", "finished"]
    ids = slurm_ids(sweep_dir)
    assert cluster.ended(ids) == ["COMPLETED", "COMPLETED"]
    assert sorted(job_nodes(cluster, ids)) == ["n1", "n2"], cluster.jobs()


@pytest.mark.slow
def test_a_two_node_ddp_job(cluster, tmp_path):
    """hydra.launcher.nodes=2: one Slurm job on n1 and n2, one process each, rendezvous over TCP between the
    hosts; one record, written by node 0."""
    sweep_dir = tmp_path / "multirun" / "two-nodes"
    result = run_sweep([*TINY, *SLURM, "hydra.launcher.nodes=2", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path,
                       timeout=300)
    assert result.returncode == 0, explain(result)
    no_traceback(result)
    data = summary(sweep_dir)
    assert [j["status"] for j in data["jobs"]] == ["finished"], data["jobs"]
    run_dir = sweep_dir / data["jobs"][0]["run_dir"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["distributed_type"] == "MULTI_CPU"
    config = (run_dir / "config.yaml").read_text()
    assert "num_machines: 2" in config and "machine_rank: 0" in config and "main_process_ip: n1" in config
    assert sorted(p.name for p in (run_dir / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    ids = slurm_ids(sweep_dir)
    assert len(ids) == 1 and cluster.ended(ids) == ["COMPLETED"] and job_nodes(cluster, ids) == ["n[1-2]"]


def wait_for_checkpoint(sweep, run_dir, step: int = 2, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not (run_dir / "checkpoints" / f"step_{step}" / "loop_state.json").is_file():
        assert time.time() < deadline and not sweep.done(), "no checkpoint" + (
            explain(sweep.result()) if sweep.done() else "")
        time.sleep(0.3)


def losses(run_dir) -> list:
    return [r["train_loss"] for r in json.loads((run_dir / "metrics.json").read_text())["train_log"]]


def stopped_and_resumed(cluster, tmp_path, name: str, stop, extra=(), requeued: bool = True) -> tuple:
    """A 2-job sweep of the same training (jobs differ only in how they log); job 0 is stopped by ``stop(its
    Slurm id)`` after its first checkpoint and, when it is to be ``requeued``, released as soon as Slurm holds it
    again. Returns (sweep result, sweep dir, the Slurm ids)."""
    sweep_dir = tmp_path / "multirun" / name
    args = [*LONGER, *SLURM, "hydra.launcher.cpus_per_task=2", "logger=csv,none", *extra,
            f"hydra.sweep.dir={sweep_dir}"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        sweep = pool.submit(run_sweep, args, tmp_path, 600)
        wait_for_checkpoint(sweep, sweep_dir / "0")
        ids = slurm_ids(sweep_dir)
        stop(ids[0])
        seen = release_when_requeued(cluster, ids[0], sweep) if requeued else []
        # running again: the stopped attempt left no record (the job is not over)
        assert not requeued or not (sweep_dir / "0" / "sweep_job.json").exists()
        result = sweep.result()
    assert not requeued or "PENDING" in seen, (seen, cluster.logs())
    return result, sweep_dir, ids


def job_processes(numeric_id: str) -> list:
    """Processes of a Slurm job on any node, its slurmstepd included (the nodes share this machine's process
    table): until they are gone, the node still holds the job and would refuse it as a duplicate."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            environ, cmdline = (proc / "environ").read_bytes(), (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"SLURM_JOB_ID={numeric_id}\0".encode() in environ or f"[{numeric_id}.".encode() in cmdline:
            found.append(proc.name)
    return found


def release_when_requeued(cluster, job: str, sweep, timeout: float = 240) -> list:
    """Slurm holds a requeued job back for about two minutes (its begin time), so that the node has let go of
    its first run before it starts again. Here: once that run's processes have been gone for a few seconds
    (slurmd reports the end after its processes), let it start now. Returns the states the job went through."""
    numeric = re.search(r"JobId=(\d+)", cluster.run("scontrol", "show", "job", job).stdout).group(1)
    deadline, seen, gone_since = time.time() + timeout, [], None
    while time.time() < deadline and not sweep.done():
        state = cluster.jobs().get(job)
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == "PENDING" and not job_processes(numeric):
            gone_since = gone_since or time.time()
            if time.time() - gone_since > 8:
                cluster.run("scontrol", "update", f"jobid={job}", "StartTime=now", check=False)
        if "PENDING" in seen and state == "RUNNING":
            break
        time.sleep(0.5)
    return seen


def assert_counted_once_and_same(result, sweep_dir) -> dict:
    assert result.returncode == 0, explain(result)
    no_traceback(result)
    data = summary(sweep_dir)
    assert [j["status"] for j in data["jobs"]] == ["finished", "finished"], data["jobs"]
    metrics = json.loads((sweep_dir / "0" / "metrics.json").read_text())
    assert metrics["resumed_from"] and metrics["final"]["global_step"] == 8
    assert losses(sweep_dir / "0") == pytest.approx(losses(sweep_dir / "1"), rel=1e-5)
    return metrics


@pytest.mark.slow
def test_a_requeued_job_resumes_and_counts_once(cluster, tmp_path):
    result, sweep_dir, ids = stopped_and_resumed(cluster, tmp_path, "requeue",
                                                 lambda job: cluster.run("scontrol", "requeue", job))
    assert_counted_once_and_same(result, sweep_dir)
    log = (sweep_dir / "0" / "run.log").read_text()
    assert "stopped by SIGTERM after a checkpoint: requeued (1 of 3)" in log and "resumed from" in log, log[-3000:]


@pytest.mark.slow
def test_a_job_at_its_time_limit_checkpoints_requeues_itself_and_resumes(cluster, tmp_path):
    """A real time limit: a 2-minute job warned 10 s ahead (``--signal=USR2@10``; slurmctld checks limits every
    30 s, so the warning comes 80-110 s in, and without it the job is killed at 120 s + KillWait). Its training is
    longer than any attempt: the test follows it through the warning, the checkpoint, the requeue it asks for and
    the resume from that checkpoint, then cancels it."""
    sweep_dir = tmp_path / "multirun" / "time-limit"
    run_log = sweep_dir / "0" / "run.log"
    args = [*LONGER, *SLURM, "hydra.launcher.cpus_per_task=2", "hydra.launcher.timeout_min=2",
            "hydra.launcher.signal_delay_s=10", "trainer.max_steps=100000", "trainer.save_steps=20",
            f"hydra.sweep.dir={sweep_dir}"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        sweep = pool.submit(run_sweep, args, tmp_path, 600)
        wait_for_checkpoint(sweep, sweep_dir / "0", step=20)
        job = slurm_ids(sweep_dir)[0]
        seen = release_when_requeued(cluster, job, sweep)
        deadline = time.time() + 120
        while "resumed from" not in run_log.read_text(errors="replace"):
            assert time.time() < deadline and not sweep.done(), (seen, run_log.read_text()[-3000:])
            time.sleep(0.5)
        cluster.run("scancel", job)
        result = sweep.result()
    no_traceback(result)
    assert "PENDING" in seen, (seen, cluster.logs())
    log = run_log.read_text()
    assert "stopped by SIGUSR2 after a checkpoint: requeued (1 of 3)" in log, log[-3000:]
    step = int(re.search(r"resumed from \S*step_(\d+)", log).group(1))
    assert step >= 20 and (sweep_dir / "0" / "checkpoints" / f"step_{step}" / "loop_state.json").is_file()
    assert summary(sweep_dir)["jobs"][0]["error"].startswith(f"cancelled (Slurm job {job} CANCELLED")


@pytest.mark.slow
def test_a_job_whose_node_goes_down_is_requeued_and_resumes(cluster, tmp_path):
    def take_down(job):
        node = job_nodes(cluster, [job])[0]
        cluster.run("scontrol", "update", f"nodename={node}", "state=down", "reason=test")
        took_down.append(node)

    took_down: list = []
    try:
        result, sweep_dir, ids = stopped_and_resumed(cluster, tmp_path, "node-down", take_down)
    finally:
        for node in took_down:
            cluster.run("scontrol", "update", f"nodename={node}", "state=resume", check=False)
    assert_counted_once_and_same(result, sweep_dir)
    assert took_down and "requeued (1 of 3)" in (sweep_dir / "0" / "run.log").read_text()


@pytest.mark.slow
def test_the_requeue_limit_records_the_job_as_failed(cluster, tmp_path):
    result, sweep_dir, ids = stopped_and_resumed(cluster, tmp_path, "limit",
                                                 lambda job: cluster.run("scancel", "--signal=USR2", job),
                                                 extra=["hydra.launcher.max_requeues=0"], requeued=False)
    assert result.returncode == 1, explain(result)
    no_traceback(result)
    jobs = summary(sweep_dir)["jobs"]
    assert jobs[0]["status"] == "failed" and "interrupted by SIGUSR2" in jobs[0]["error"], jobs
    assert jobs[1]["status"] == "finished", jobs
    assert "is not requeued: it ran 1 time(s) already (hydra.launcher.max_requeues=0)" in (
        sweep_dir / "0" / "run.log").read_text()
