"""Training across machines, proven on separate hosts: two network namespaces with their own hostname and
address (tests/netns_hosts.py), gloo rendezvous over TCP between them, each node started by the command a
user types on that machine (``python run.py ... trainer.num_machines=2 trainer.machine_rank=K
trainer.main_process_ip=node0 ...``).

The property: 2 machines x 1 process train exactly what 1 machine x 2 processes trains (same data order,
losses and metrics within float tolerance), into one run dir holding one config.yaml and one metrics.json
written by node 0, whether the nodes share the run dir's filesystem or each has its own disk; and the
faults of a multi-machine start are one line each."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import netns_hosts
import pytest
from cli_helpers import REPO
from test_ddp import COMMON

from experiments.train import checkpoints

pytestmark = pytest.mark.slow

# One thread per process: the "machines" share this machine's 2 cores.
ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline",
           TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
# A real fine-tune of a few steps with a checkpoint every 2 steps (the 1-machine DDP test's settings).
RUN = [*COMMON, "trainer.per_device_batch_size=8", "trainer.save_steps=2"]
PORT = 29517


@pytest.fixture(scope="module")
def hosts():
    reason = netns_hosts.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster = netns_hosts.Hosts(["node0", "node1"]).start()
    yield cluster
    cluster.stop()


def machine_args(rank: int, run_dir: Path, port: int = PORT, machines: int = 2) -> list:
    return [f"trainer.num_machines={machines}", f"trainer.machine_rank={rank}", "trainer.main_process_ip=node0",
            f"trainer.main_process_port={port}", f"hydra.run.dir={run_dir}", "trainer.rendezvous_timeout_s=90"]


def on_host(hosts, name: str, args: list, disks=None, timeout: int = 300) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(REPO / "run.py"), *args]
    return subprocess.run(hosts.command(name, argv, disks), env=ENV, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def two_nodes(hosts, args0: list, args1: list, disks0=None, disks1=None, timeout: int = 300):
    """Both nodes' commands at once (node 1 first: it waits for node 0)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        one = pool.submit(on_host, hosts, "node1", args1, disks1, timeout)
        time.sleep(1)
        zero = pool.submit(on_host, hosts, "node0", args0, disks0, timeout)
        return zero.result(), one.result()


def explain(*results) -> str:
    return "\n".join(f"--- exit {r.returncode} ---\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}" for r in results)


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def losses(m: dict) -> list:
    return [r["train_loss"] for r in m["train_log"]]


@pytest.fixture(scope="module")
def one_machine(tmp_path_factory):
    """The reference: one machine, two processes, the same global batch."""
    run_dir = tmp_path_factory.mktemp("one-machine") / "run"
    result = subprocess.run([sys.executable, str(REPO / "run.py"), *RUN, "trainer.num_processes=2",
                             f"hydra.run.dir={run_dir}"], env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, explain(result)
    return metrics(run_dir)


def assert_same_training(two: dict, one: dict) -> None:
    assert two["num_processes"] == one["num_processes"] == 2 and two["distributed_type"] == "MULTI_CPU"
    assert two["global_batch_size"] == one["global_batch_size"] == 16
    assert two["final"]["global_step"] == one["final"]["global_step"] == 4
    assert losses(two) == pytest.approx(losses(one), rel=1e-4)
    assert two["final"]["eval_loss"] == pytest.approx(one["final"]["eval_loss"], rel=1e-4)
    assert two["final"]["eval_accuracy"] == one["final"]["eval_accuracy"]


def test_two_machines_on_a_shared_filesystem_train_as_one_machine(hosts, tmp_path, one_machine):
    run_dir = tmp_path / "outputs" / "run"
    zero, one = two_nodes(hosts, [*RUN, *machine_args(0, run_dir)], [*RUN, *machine_args(1, run_dir)])
    assert zero.returncode == 0 and one.returncode == 0, explain(zero, one)
    assert "Traceback" not in zero.stderr + one.stderr, explain(zero, one)
    assert_same_training(metrics(run_dir), one_machine)
    # One record, written by node 0: its config says machine 0; node 1 wrote none of the run's files.
    config = (run_dir / "config.yaml").read_text()
    assert "machine_rank: 0" in config and "num_machines: 2" in config
    assert sorted(p.name for p in run_dir.glob("*.yaml")) == ["config.yaml"]
    assert not list(run_dir.glob(".shared-fs-probe-*"))
    assert (run_dir / "metrics.csv").read_text().count("step,name,value") == 1
    assert "machine 1 of 2 is done" in one.stdout + one.stderr, explain(one)
    # The checkpoints hold both ranks' RNG states (rank 1's written from node 1) and are whole.
    step = run_dir / "checkpoints" / "step_4"
    assert (step / "random_states_0.pkl").is_file() and (step / "random_states_1.pkl").is_file()
    assert (step / "loop_state.json").is_file()


def test_two_machines_with_their_own_disks_train_as_one_machine(hosts, tmp_path, one_machine):
    """The run dir's path is the same on both nodes, but each node mounts its own folder there."""
    outputs = tmp_path / "outputs"
    disks = {name: tmp_path / f"disk-{name}" for name in ("node0", "node1")}
    for folder in (outputs, *disks.values()):
        folder.mkdir()
    run_dir = outputs / "run"
    zero, one = two_nodes(hosts, [*RUN, *machine_args(0, run_dir)], [*RUN, *machine_args(1, run_dir)],
                          {str(outputs): str(disks["node0"])}, {str(outputs): str(disks["node1"])})
    assert zero.returncode == 0 and one.returncode == 0, explain(zero, one)
    on0, on1 = disks["node0"] / "run", disks["node1"] / "run"
    assert_same_training(metrics(on0), one_machine)
    # Node 0's disk holds the run's record; node 1's holds no record, only its whole checkpoints.
    assert not (on1 / "metrics.json").exists() and not (on1 / "config.yaml").exists()
    assert "on each node's own disk" in zero.stdout + zero.stderr, explain(zero)
    for disk, rank in ((on0, 0), (on1, 1)):
        step = disk / "checkpoints" / "step_4"
        assert (step / "loop_state.json").is_file(), sorted(p.name for p in step.iterdir())
        assert (step / f"random_states_{rank}.pkl").is_file()
        assert any(step.glob("model*.safetensors")), sorted(p.name for p in step.iterdir())


def test_two_machines_stopped_by_sigterm_resume_to_the_same_training(hosts, tmp_path, one_machine):
    """SIGTERM to node 0 while both train: every rank checkpoints at the next step and stops (exit 143 on
    both nodes); the same commands with trainer.resume=true end with the uninterrupted run's losses."""
    run_dir = tmp_path / "outputs" / "run"
    argv = [sys.executable, str(REPO / "run.py"), *RUN]
    one = subprocess.Popen(hosts.command("node1", [*argv, *machine_args(1, run_dir)]), env=ENV, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    zero = subprocess.Popen(hosts.command("node0", [*argv, *machine_args(0, run_dir)]), env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while "train_loss" not in (run_dir / "metrics.csv").read_text() if (run_dir / "metrics.csv").exists() else True:
        assert time.time() < deadline and zero.poll() is None, "node 0 never logged a step"
        time.sleep(0.2)
    zero.send_signal(signal.SIGTERM)
    out0, err0 = zero.communicate(timeout=240)
    out1, err1 = one.communicate(timeout=240)
    assert zero.returncode == 143 and one.returncode == 143, (out0, err0[-3000:], err1[-3000:])
    assert "checkpoint saved" in err0 and "Traceback" not in err0 + err1, err0[-3000:]
    stopped_at = checkpoints.step_of(checkpoints.checkpoint_dirs(run_dir)[-1])
    assert 1 <= stopped_at < 4 and not (run_dir / "metrics.json").exists() or \
        json.loads((run_dir / "metrics.json").read_text())["final"] == {}
    more = [*RUN, "trainer.resume=true"]
    zero_r, one_r = two_nodes(hosts, [*more, *machine_args(0, run_dir)], [*more, *machine_args(1, run_dir)])
    assert zero_r.returncode == 0 and one_r.returncode == 0, explain(zero_r, one_r)
    resumed = metrics(run_dir)
    assert resumed["resumed_from"].endswith(f"step_{stopped_at}")
    assert_same_training(resumed, one_machine)


# -- faults: one line, exit 2, nothing of another run touched --------------------------------------
def one_line_error(result) -> str:
    assert "Traceback" not in result.stderr + result.stdout, explain(result)
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, explain(result)
    return errors[0]


def test_a_node_whose_peer_never_comes_times_out_naming_the_key(hosts, tmp_path):
    run_dir = tmp_path / "outputs" / "run"
    started = time.time()
    zero = on_host(hosts, "node0", [*RUN, *machine_args(0, run_dir), "trainer.rendezvous_timeout_s=20"])
    assert zero.returncode == 2, explain(zero)
    line = one_line_error(zero)
    assert "trainer.rendezvous_timeout_s=20" in line and "node0:29517" in line, line
    assert time.time() - started < 120
    assert not (run_dir / "metrics.json").exists()


def test_an_unreachable_main_process_ip_times_out_naming_the_key(hosts, tmp_path):
    run_dir = tmp_path / "outputs" / "run"
    args = [*RUN, *machine_args(1, run_dir), "trainer.rendezvous_timeout_s=15",
            f"trainer.main_process_ip=10.77.{hosts.subnet}.99"]  # inside the test's subnet, nobody there
    one = on_host(hosts, "node1", args)
    assert one.returncode == 2, explain(one)
    line = one_line_error(one)
    assert "trainer.rendezvous_timeout_s=15" in line and "trainer.main_process_ip" in line, line
    assert not run_dir.exists() or not any(run_dir.iterdir())  # node 1 writes nothing into the run dir


def test_a_port_in_use_on_node_0_is_one_line(hosts, tmp_path):
    run_dir = tmp_path / "outputs" / "run"
    holder = subprocess.Popen(hosts.command("node0", [sys.executable, "-c",
                              "import socket,time; s=socket.socket(); s.bind(('', 29518)); s.listen(); time.sleep(120)"]))
    try:
        time.sleep(1.5)
        zero = on_host(hosts, "node0", [*RUN, *machine_args(0, run_dir, port=29518)])
    finally:
        holder.kill()
    assert zero.returncode == 2, explain(zero)
    line = one_line_error(zero)
    assert "trainer.main_process_port=29518" in line and "choose a free port" in line, line


def test_nodes_that_disagree_on_the_config_stop_naming_the_key(hosts, tmp_path):
    run_dir = tmp_path / "outputs" / "run"
    zero, one = two_nodes(hosts, [*RUN, *machine_args(0, run_dir, port=29519)],
                          [*RUN, "trainer.lr=3e-4", *machine_args(1, run_dir, port=29519)])
    assert zero.returncode == 2 and one.returncode == 2, explain(zero, one)
    line = one_line_error(zero)
    assert "disagree on the config: trainer.lr" in line and "0.0001 on rank 0" in line, line
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "checkpoints").exists()


def test_a_second_node_needs_the_run_dir_of_node_0(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "run.py"), *RUN, "trainer.num_machines=2",
                             "trainer.machine_rank=1", "trainer.main_process_ip=node0",
                             f"trainer.main_process_port={PORT}"], env=ENV, capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert one_line_error(result).startswith("error: trainer.machine_rank=1 joins node 0's run: give it the same "
                                             "hydra.run.dir"), explain(result)
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("args, key", [
    (["trainer.num_machines=2", "trainer.main_process_port=29500"], "trainer.main_process_ip"),
    (["trainer.num_machines=2", "trainer.main_process_ip=node0"], "trainer.main_process_port"),
    (["trainer.num_machines=2", "trainer.main_process_ip=node0", "trainer.main_process_port=70000"],
     "trainer.main_process_port"),
    (["trainer.num_machines=2", "trainer.machine_rank=2"], "trainer.machine_rank"),
    (["trainer.rendezvous_timeout_s=0"], "trainer.rendezvous_timeout_s"),
])
def test_machine_settings_are_checked_before_anything_runs(tmp_path, args, key):
    result = subprocess.run([sys.executable, str(REPO / "run.py"), "debug=tiny", *args], env=ENV,
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, explain(result)
    assert key in one_line_error(result)
    assert not (tmp_path / "outputs").exists()


def test_the_free_port_check_sees_a_listening_socket():
    from experiments.errors import ExperimentError
    from experiments.train.launch import check_port_free

    with socket.socket() as sock:
        sock.bind(("", 0))
        sock.listen()
        with pytest.raises(ExperimentError, match="cannot be used on this machine"):
            check_port_free(sock.getsockname()[1])
