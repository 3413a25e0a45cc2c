"""``hydra/launcher=slurm`` on a real Slurm: a single-node cluster from Debian's munge, slurmctld and slurmd
(tests/sweep/slurm_cluster.py), started once per session. Sweeps run as a user runs them
(``python run.py -m hydra/launcher=slurm hydra.launcher.partition=...``): a 2-job sweep as a Slurm array,
a 2-process DDP job inside one Slurm job, and a job cancelled with ``scancel`` while it trains (slow); and
how the launcher words a job's end (fast)."""
from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

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
        assert f"JobEnvironment(job_id={job_id}, hostname={cluster.hostname}" in log_out
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
