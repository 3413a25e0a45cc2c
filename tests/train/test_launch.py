"""experiments.train.launch, directly: the ``accelerate launch`` command it builds for N processes on M machines
(process counts, ranks, address, port, threads per process), what it refuses before starting anything (GPUs,
CPU cores, a busy port on node 0), the environment its workers get, how it reports a worker that failed, was
interrupted or never joined, and how it relays the workers' stderr. Workers here are tiny shell or Python
commands put in place of the launcher: nothing trains."""
from __future__ import annotations

import dataclasses
import functools
import io
import json
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from experiments import interrupts
from experiments.config.validate import compose, to_typed
from experiments.errors import ExperimentError
from experiments.interrupts import Interrupted
from experiments.record import RunRecord, write_record
from experiments.train import launch
from experiments.train.nodes import CONFIG_FILE_ENV, RENDEZVOUS_FILE_ENV, node_dir

# hypothesis runs many examples in one test's tmp_path: each example makes its own folder inside it
EACH_EXAMPLE_OWN_FOLDER = settings(suppress_health_check=[*settings().suppress_health_check,
                                                          HealthCheck.function_scoped_fixture])
STARTS_PROCESSES = settings(EACH_EXAMPLE_OWN_FOLDER, max_examples=30)  # each example starts a tiny command
MARKER = b"Traceback (most recent call last)"


@functools.lru_cache(maxsize=None)
def _composed(*overrides: str):
    return to_typed(compose(["mode=train", *overrides]))


def make_config(*overrides: str, **trainer):
    """The typed config ``python run.py <overrides>`` would train with, its trainer then changed to ``trainer``
    (validated again: the schema's checks run on the new values)."""
    cfg = _composed(*overrides)
    return dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, **trainer)) if trainer else cfg


@st.composite
def machines(draw):
    """(num_processes, num_machines, machine_rank, main_process_ip, main_process_port) the schema accepts: N
    machines need node 0's address and port, one machine may leave them out."""
    num_machines = draw(st.integers(1, 8))
    rank = draw(st.integers(0, num_machines - 1))
    if num_machines > 1:
        ip, port = draw(st.sampled_from(["10.0.0.1", "node0.cluster", "192.168.7.20"])), draw(st.integers(1, 65535))
    else:
        ip, port = draw(st.none() | st.just("127.0.0.1")), draw(st.none() | st.integers(1, 65535))
    return draw(st.integers(1, 64)), num_machines, rank, ip, port


def flags(cmd):
    """{--flag: value} of the accelerate part of a launch command (a flag without a value maps to None)."""
    head = cmd.index("accelerate.commands.launch") + 1
    tail = len(cmd) - 3  # -m experiments.worker <run dir>
    out, args = {}, cmd[head:tail]
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            nxt = args[i + 1] if i + 1 < len(args) else None
            out[arg] = None if nxt is None or nxt.startswith("--") else nxt
    return out


def cpu_only(mp: pytest.MonkeyPatch, cores: int = 64) -> None:
    mp.setattr(torch.cuda, "is_available", lambda: False)
    mp.setattr("os.cpu_count", lambda: cores)


# -- the command ---------------------------------------------------------------------------------------------
@given(machines(), st.integers(1, 256))
def test_the_command_starts_every_nodes_processes_and_names_this_machine(setup, cores):
    num_processes, num_machines, rank, ip, port = setup
    assume(num_processes <= cores)
    cfg = make_config(num_processes=num_processes, num_machines=num_machines, machine_rank=rank,
                      main_process_ip=ip, main_process_port=port, mixed_precision="no")
    run_dir = Path("/runs/a run")
    with pytest.MonkeyPatch.context() as mp:
        cpu_only(mp, cores)
        mp.delenv("OMP_NUM_THREADS", raising=False)
        cmd = launch.launch_command(cfg, run_dir)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[-3:] == ["-m", launch.WORKER_MODULE, str(run_dir)]
    got = flags(cmd)
    total = num_processes * num_machines
    assert int(got["--num_processes"]) == total  # accelerate counts the processes of every node
    assert int(got["--num_machines"]) == num_machines and int(got["--machine_rank"]) == rank
    # torch's launcher for one FSDP process too: accelerate refuses --multi_gpu for a single process
    assert ("--multi_gpu" in got) == (total > 1) and ("--use_fsdp" in got) == (total == 1)
    assert got.get("--main_process_ip") == ip
    assert got["--mixed_precision"] == "no" and got["--dynamo_backend"] == "no"
    if port is not None:
        assert int(got["--main_process_port"]) == port


@given(st.integers(1, 64), st.integers(1, 256), st.integers(1, 8))
def test_without_omp_num_threads_this_machines_cores_are_split_between_its_processes(num_processes, cores,
                                                                                     num_machines):
    assume(num_processes <= cores)
    cfg = make_config(num_processes=num_processes, num_machines=num_machines, main_process_ip="10.0.0.1",
                      main_process_port=29500, mixed_precision="no")
    with pytest.MonkeyPatch.context() as mp:
        cpu_only(mp, cores)
        mp.delenv("OMP_NUM_THREADS", raising=False)
        threads = int(flags(launch.launch_command(cfg, Path("run")))["--num_cpu_threads_per_process"])
    assert threads >= 1
    assert threads * num_processes <= cores  # no core runs two threads ...
    assert (threads + 1) * num_processes > cores  # ... and no process could have had another one


@given(st.integers(1, 16), st.integers(1, 64))
def test_the_cores_a_job_was_given_are_divided_between_its_processes(num_processes, share):
    """OMP_NUM_THREADS is the job's share (a sweep launcher's, Ray's, an xdist worker's), not each process's."""
    cfg = make_config(num_processes=num_processes, mixed_precision="no")
    with pytest.MonkeyPatch.context() as mp:
        cpu_only(mp, 64)
        mp.setenv("OMP_NUM_THREADS", str(share))
        threads = int(flags(launch.launch_command(cfg, Path("run")))["--num_cpu_threads_per_process"])
    assert threads >= 1 and (threads * num_processes <= share or threads == 1)
    assert (threads + 1) * num_processes > share  # ... and no process could have had another one


@given(st.integers(1, 16))
def test_on_gpus_the_command_leaves_the_threads_to_the_launcher(num_processes):
    cfg = make_config(num_processes=num_processes, mixed_precision="no")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_available", lambda: True)
        assert "--num_cpu_threads_per_process" not in launch.launch_command(cfg, Path("run"))


def test_without_a_port_one_machine_gets_a_free_one():
    cfg = make_config(num_processes=2, mixed_precision="no")
    with pytest.MonkeyPatch.context() as mp:
        cpu_only(mp)
        port = int(flags(launch.launch_command(cfg, Path("run")))["--main_process_port"])
    assert 0 < port < 65536
    with socket.socket() as sock:  # nothing listens there
        sock.bind(("127.0.0.1", port))


def test_fp16_on_a_machine_without_a_gpu_is_one_line_before_any_command():
    cfg = make_config(num_processes=2, mixed_precision="fp16")
    with pytest.MonkeyPatch.context() as mp:
        cpu_only(mp)
        with pytest.raises(ExperimentError, match="fp16 needs a GPU"):
            launch.launch_command(cfg, Path("run"))


def test_the_command_of_a_composed_multi_machine_config():
    """The overrides as given on each node's command line."""
    cfg = make_config("trainer.num_processes=2", "trainer.num_machines=3", "trainer.machine_rank=2",
                      "trainer.main_process_ip=10.1.2.3", "trainer.main_process_port=29511",
                      "trainer.mixed_precision=bf16")
    with pytest.MonkeyPatch.context() as mp:
        cpu_only(mp, 8)
        mp.delenv("OMP_NUM_THREADS", raising=False)
        cmd = launch.launch_command(cfg, Path("/shared/run"))
    assert flags(cmd) == {"--multi_gpu": None, "--num_processes": "6", "--num_machines": "3", "--machine_rank": "2",
                          "--mixed_precision": "bf16", "--dynamo_backend": "no", "--main_process_port": "29511",
                          "--main_process_ip": "10.1.2.3", "--num_cpu_threads_per_process": "4"}


@given(st.none() | st.integers(-3, 8), st.sampled_from([None, "0", "1", "yes"]))
def test_a_worker_is_a_process_of_a_world_of_several_or_one_the_launcher_marked(world, marked):
    with pytest.MonkeyPatch.context() as mp:
        for key, value in (("WORLD_SIZE", world), ("EXPERIMENTS_WORKER", marked)):
            if value is None:
                mp.delenv(key, raising=False)
            else:
                mp.setenv(key, str(value))
        assert launch.in_distributed_worker() == ((world or 1) > 1 or marked == "1")


# -- refused before anything starts ---------------------------------------------------------------------
@pytest.fixture
def workers(tmp_path, monkeypatch):
    """Put a tiny command in place of ``accelerate launch``; temporary folders (the launch's scratch, node > 0's
    folder) go under tmp_path. Returns the list of commands the launch started (as ``launch_command`` made)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(interrupts.current(), "signum", None)

    def use(cmd):
        started = []

        def fake(cfg, run_dir):
            started.append(run_dir)
            return list(cmd)
        monkeypatch.setattr(launch, "launch_command", fake)
        return started
    return use


def _run_dir(root: Path) -> Path:
    run_dir = Path(tempfile.mkdtemp(dir=root)) / "run"
    run_dir.mkdir()
    return run_dir


@STARTS_PROCESSES
@given(st.integers(1, 16), st.integers(0, 16))
def test_more_processes_than_visible_gpus_is_refused_before_any_starts(tmp_path, workers, num_processes, gpus):
    started = workers(["true"])
    cfg = make_config(num_processes=num_processes)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_available", lambda: True)
        mp.setattr(torch.cuda, "device_count", lambda: gpus)
        if gpus < num_processes:
            with pytest.raises(ExperimentError, match=rf"num_processes={num_processes} but only {gpus} GPU"):
                launch.launch_workers(cfg, _run_dir(tmp_path))
            assert not started
        else:
            assert launch.launch_workers(cfg, _run_dir(tmp_path)) == {}
            assert len(started) == 1


@STARTS_PROCESSES
@given(st.integers(1, 64), st.integers(1, 32))
def test_without_a_gpu_more_processes_than_cores_is_refused_before_any_starts(tmp_path, workers, num_processes,
                                                                              cores):
    started = workers(["true"])
    cfg = make_config(num_processes=num_processes)
    with pytest.MonkeyPatch.context() as mp:
        cpu_only(mp, cores)
        if num_processes > cores:
            with pytest.raises(ExperimentError, match=rf"trainer.num_processes={num_processes} is more than .* "
                                                      rf"{cores} CPU cores"):
                launch.launch_workers(cfg, _run_dir(tmp_path))
            assert not started
        else:
            launch.launch_workers(cfg, _run_dir(tmp_path))
            assert len(started) == 1


@pytest.mark.parametrize("rank", [0, 1])
def test_a_port_in_use_stops_node_0_only_and_before_it_starts(tmp_path, workers, monkeypatch, rank):
    started = workers(["true"])
    cpu_only(monkeypatch, 8)
    with socket.socket() as sock:
        sock.bind(("", 0))
        sock.listen()
        port = sock.getsockname()[1]
        cfg = make_config(num_processes=1, num_machines=2, machine_rank=rank, main_process_ip="127.0.0.1",
                          main_process_port=port)
        run_dir = _run_dir(tmp_path)
        node_dir(run_dir, 1).mkdir(parents=True)
        if rank == 0:  # node 0 listens there: one line now, not a rendezvous that times out
            with pytest.raises(ExperimentError, match=rf"main_process_port={port} cannot be used .*node 0"):
                launch.launch_workers(cfg, run_dir)
            assert not started
        else:  # the other nodes connect to it
            assert launch.launch_workers(cfg, run_dir) == {}
            assert started == [run_dir]


# -- what the workers get, and what comes back ----------------------------------------------------------------
DUMP_ENV = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_the_workers_environment_says_where_their_config_and_their_reports_go(tmp_path, workers, monkeypatch,
                                                                             rank):
    dump = tmp_path / "env.json"
    workers([sys.executable, "-c", DUMP_ENV, str(dump)])
    cpu_only(monkeypatch, 8)
    monkeypatch.setenv("SOME_PARENT_SETTING", "kept")
    cfg = make_config(num_processes=2, num_machines=3, machine_rank=rank, main_process_ip="127.0.0.1",
                      main_process_port=launch.free_port())
    run_dir = _run_dir(tmp_path)
    write_record(run_dir, RunRecord(mode="train", model="m", final={"eval_accuracy": 0.5}))
    if rank:
        node_dir(run_dir, rank).mkdir(parents=True)
    result = launch.launch_workers(cfg, run_dir)
    env = json.loads(dump.read_text())
    assert env["EXPERIMENTS_WORKER"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert env["ACCELERATE_USE_CPU"] == "1" and env["SOME_PARENT_SETTING"] == "kept"
    config_folder = run_dir if rank == 0 else node_dir(run_dir, rank)
    assert Path(env[CONFIG_FILE_ENV]) == config_folder / "config.yaml"
    scratch = Path(env[launch.ERROR_FILE_ENV]).parent  # this launch's own folder, node-local, gone afterwards
    assert Path(env[RENDEZVOUS_FILE_ENV]).parent == scratch and scratch.parent == tmp_path
    assert not scratch.exists()
    assert (config_folder / "launch.log").is_file()
    assert (run_dir / "launch.log").exists() == (rank == 0)  # node > 0 writes nothing into the run dir
    # node 0 holds the run's record; the other nodes return nothing of it
    assert result == ({} if rank else launch.read_metrics(run_dir)) and (rank or result["final"])


FAIL = 'if [ -n "$FAKE_ERROR" ]; then printf "%s\\n" "$FAKE_ERROR" > "$EXPERIMENTS_ERROR_FILE"; fi; exit $FAKE_EXIT'
ONE_LINE = st.text(st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=1, max_size=40)


@STARTS_PROCESSES
@given(st.integers(1, 8), st.integers(1, 255), st.none() | st.tuples(st.integers(1, 255), ONE_LINE, ONE_LINE))
def test_a_failed_run_is_one_line_with_the_exit_code_rank_0_reported(tmp_path, workers, num_processes, exit_code,
                                                                     reported):
    workers(["/bin/sh", "-c", FAIL])
    cfg = make_config(num_processes=num_processes)
    run_dir = _run_dir(tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        cpu_only(mp, 64)
        mp.setenv("FAKE_EXIT", str(exit_code))
        # as experiments.worker writes it: "<exit code> <the error's one line>"
        mp.setenv("FAKE_ERROR", f"{reported[0]} {reported[1]} {reported[2]}" if reported else "")
        with pytest.raises(ExperimentError) as caught:
            launch.launch_workers(cfg, run_dir)
    assert not isinstance(caught.value, Interrupted)
    head = f"{num_processes}-process run failed (exit {exit_code}): "
    if reported:
        assert str(caught.value) == f"{head}{reported[1]} {reported[2]}" and caught.value.exit_code == reported[0]
    else:  # a crash: its traceback is in launch.log
        assert str(caught.value) == f"{head}see {run_dir / 'launch.log'}" and caught.value.exit_code == 1


TERM_ONCE = """
import os, signal, sys, time
from pathlib import Path
count, ready = Path(sys.argv[1]), Path(sys.argv[2])
def stop(signum, frame):
    count.write_text(str(int(count.read_text() or 0) + 1) if count.exists() else "1")
    Path(os.environ["EXPERIMENTS_ERROR_FILE"]).write_text("143 stopped at step 3: checkpoint saved\\n")
signal.signal(signal.SIGTERM, stop)
ready.write_text("ok")
deadline = time.time() + 20
while time.time() < deadline and not count.exists():
    time.sleep(0.02)
time.sleep(0.7)  # the parent polls several times meanwhile: it must not send a second SIGTERM
"""


def test_a_stop_request_is_forwarded_once_and_reported_with_the_workers_line(tmp_path, workers, monkeypatch):
    count, ready = tmp_path / "terms", tmp_path / "ready"
    workers([sys.executable, "-c", TERM_ONCE, str(count), str(ready)])
    cpu_only(monkeypatch, 8)
    stop = interrupts.current()

    def press_ctrl_c():  # as the parent's signal handler does while train() defers signals
        deadline = time.time() + 20
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.02)
        stop.signum = signal.SIGTERM

    presser = threading.Thread(target=press_ctrl_c)
    presser.start()
    try:
        with pytest.raises(Interrupted) as caught:
            launch.launch_workers(make_config(num_processes=2), _run_dir(tmp_path))
    finally:
        presser.join()
    assert caught.value.signum == signal.SIGTERM and caught.value.exit_code == 128 + signal.SIGTERM
    assert str(caught.value) == "stopped at step 3: checkpoint saved"
    assert count.read_text() == "1"


NEVER_JOIN = 'sleep 30 & echo $! > "$PIDFILE"; wait'
JOIN_LATE_OK = 'sleep 0.4; : > "$EXPERIMENTS_RENDEZVOUS_FILE"; sleep 1.2'


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # a zombie: killed
    except (OSError, IndexError):
        return True


def test_a_rendezvous_that_never_completes_ends_every_process_of_the_launch_in_one_line(tmp_path, workers,
                                                                                      monkeypatch):
    pidfile = tmp_path / "grandchild.pid"
    workers(["/bin/sh", "-c", NEVER_JOIN])
    cpu_only(monkeypatch, 8)
    monkeypatch.setenv("PIDFILE", str(pidfile))
    began = time.monotonic()
    with pytest.raises(ExperimentError) as caught:
        launch.launch_workers(make_config(num_processes=2, rendezvous_timeout_s=1), _run_dir(tmp_path))
    assert 1 <= time.monotonic() - began < 10
    assert "2 processes did not all join at this machine within trainer.rendezvous_timeout_s=1 s" \
        in str(caught.value)
    assert "\n" not in str(caught.value)
    grandchild = int(pidfile.read_text())
    deadline = time.time() + 5
    while not _gone(grandchild) and time.time() < deadline:
        time.sleep(0.05)
    assert _gone(grandchild)  # the launcher's whole process group, not just the launcher


def test_once_the_workers_joined_the_rendezvous_timeout_no_longer_applies(tmp_path, workers, monkeypatch):
    workers(["/bin/sh", "-c", JOIN_LATE_OK])
    cpu_only(monkeypatch, 8)
    run_dir = _run_dir(tmp_path)
    write_record(run_dir, RunRecord(mode="train", model="m", final={"eval_loss": 0.25}))
    assert launch.launch_workers(make_config(num_processes=2, rendezvous_timeout_s=1), run_dir)["final"] == \
        {"eval_loss": 0.25}


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@EACH_EXAMPLE_OWN_FOLDER
@given(st.integers(1, 600), st.lists(st.tuples(st.floats(0, 400), st.booleans()), min_size=1, max_size=12))
def test_a_rendezvous_expires_after_its_timeout_unless_the_flag_was_seen_before(tmp_path, timeout, steps):
    flag = Path(tempfile.mkdtemp(dir=tmp_path)) / "rendezvous.ok"
    clock = _Clock()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(launch, "time", clock)
        rendezvous = launch.Rendezvous(flag, timeout)
        seen = False
        for wait, flag_there in steps:
            clock.now += wait
            if flag_there:
                flag.touch()
            else:
                flag.unlink(missing_ok=True)
            seen = seen or flag_there  # the workers met: removing the flag later changes nothing
            assert rendezvous.expired() == (not seen and clock.now - 1000.0 > timeout)


# -- the workers' stderr ----------------------------------------------------------------------------------------
class _Proc:
    """A launcher whose stderr arrives in the given chunks."""

    def __init__(self, chunks) -> None:
        self.chunks = list(chunks)
        self.stderr = self

    def read1(self, size: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def wait(self) -> int:
        return 1


def _relay(tmp_path: Path, chunks, stopped_on_purpose: bool, before: bytes = b""):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    log_path, error_file = folder / "launch.log", folder / "error.txt"
    log_path.write_bytes(before)
    if stopped_on_purpose:
        error_file.write_text("2 bad input\n")
    console = io.TextIOWrapper(io.BytesIO())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stderr", console)
        launch._relay_stderr(_Proc(chunks), log_path, error_file)
    return log_path.read_bytes(), console.buffer.getvalue()


# pieces of output that never make the launcher's traceback line unless they are it
PIECES = st.sampled_from([b"step 3/10 loss 0.5\r", b"\n", b"rank 1: ok\n", b"  File \"x.py\", line 3\n",
                          b"ChildFailedError: exit 2\n", b"error: bad input\n", MARKER + b":\n"])
CHUNKS = st.lists(st.lists(PIECES, min_size=1, max_size=5).map(b"".join), max_size=8)


@EACH_EXAMPLE_OWN_FOLDER
@given(CHUNKS, st.booleans(), st.sampled_from([b"", b"an earlier attempt\n"]))
def test_launch_log_gets_everything_and_the_console_all_but_a_deliberate_stops_traceback(tmp_path, chunks,
                                                                                        stopped_on_purpose, before):
    log, console = _relay(tmp_path, chunks, stopped_on_purpose, before)
    everything = b"".join(chunks)
    assert log == before + everything  # appended: a resumed run's earlier launch stays
    if stopped_on_purpose:  # its one line is reported by the parent; the launcher's report stays in launch.log
        assert console == everything.split(MARKER)[0]
    else:  # a real crash is shown whole
        assert console == everything


def test_a_traceback_line_split_between_two_reads_is_still_held_back(tmp_path):
    chunks = [b"rank 0: step 3\n" + MARKER[:12], MARKER[12:] + b":\n  File \"launch.py\"\nChildFailedError\n"]
    log, console = _relay(tmp_path, chunks, stopped_on_purpose=True)
    assert log == b"".join(chunks)
    assert console == b"rank 0: step 3\n"
