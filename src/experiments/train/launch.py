"""Run one job on N processes: the parent (this Hydra job) fixes the run dir and config, then
``accelerate launch`` starts the workers, which read ``<run dir>/config.yaml``.

On CPU this is real DDP over gloo: ``ACCELERATE_USE_CPU=1`` with ``--multi_gpu`` (``--cpu`` alone would
silently run a single process). On GPUs the same command uses NCCL, one process per GPU.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from experiments import interrupts
from experiments.config.schema import ExperimentConfig, TrainerConfig
from experiments.errors import ExperimentError
from experiments.hardware import check_cpu_counts, mixed_precision
from experiments.interrupts import Interrupted
from experiments.runs import CONFIG_FILE, read_metrics
from experiments.train.nodes import CONFIG_FILE_ENV, RENDEZVOUS_FILE_ENV, config_dir

log = logging.getLogger(__name__)

WORKER_MODULE = "experiments.worker"
ERROR_FILE_ENV = "EXPERIMENTS_ERROR_FILE"  # where rank 0 writes the one-line error of a deliberate stop


def in_distributed_worker() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or os.environ.get("EXPERIMENTS_WORKER") == "1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def job_cores() -> int:
    """The cores this job may use: the share a sweep launcher, Ray or a test runner gave it in OMP_NUM_THREADS
    (a job's, not each process's), else the machine's."""
    given = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(given) if given.isdigit() and int(given) > 0 else (os.cpu_count() or 1)


def launch_command(cfg: ExperimentConfig, run_dir: Path) -> List[str]:
    import torch

    t = cfg.trainer
    # torch's launcher sets up torch.distributed for one FSDP process too (accelerate refuses --multi_gpu there)
    spread = "--multi_gpu" if t.num_processes * t.num_machines > 1 else "--use_fsdp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", spread,
           "--num_processes", str(t.num_processes * t.num_machines),  # accelerate counts every node's
           "--num_machines", str(t.num_machines), "--machine_rank", str(t.machine_rank),
           "--mixed_precision", mixed_precision(t.mixed_precision), "--dynamo_backend", "no",
           "--main_process_port", str(t.main_process_port or free_port())]
    if t.main_process_ip:
        cmd += ["--main_process_ip", t.main_process_ip]
    if not torch.cuda.is_available():  # the job's cores split between this machine's processes
        cmd += ["--num_cpu_threads_per_process", str(max(1, job_cores() // t.num_processes))]
    return cmd + ["-m", WORKER_MODULE, str(run_dir)]


def check_port_free(port: int) -> None:
    """Node 0 of N machines listens on ``trainer.main_process_port``: a port in use is one line, now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as torch's store binds it: an earlier
        try:  # run's connections still closing (TIME_WAIT) do not count, a process listening there does
            sock.bind(("", port))
        except OSError as exc:
            raise ExperimentError(f"trainer.main_process_port={port} cannot be used on this machine (node 0): "
                                  f"{exc.strerror or exc}; choose a free port, the same on every node") from None


def launch_workers(cfg: ExperimentConfig, run_dir: Path) -> Dict[str, Any]:
    """Start this node's workers, wait, and return the metrics rank 0 wrote (a node of rank > 0 returns {}:
    node 0 holds the run's record)."""
    import tempfile

    import torch

    t = cfg.trainer
    env = dict(os.environ, EXPERIMENTS_WORKER="1", PYTHONUNBUFFERED="1")
    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "1"
        check_cpu_counts({"trainer.num_processes": t.num_processes})  # no GPU: each process on its own cores
    elif torch.cuda.device_count() < t.num_processes:
        raise ExperimentError(f"trainer.num_processes={t.num_processes} but only "
                              f"{torch.cuda.device_count()} GPU(s) are visible")
    if t.num_machines > 1 and t.machine_rank == 0:
        check_port_free(t.main_process_port)
    cmd = launch_command(cfg, run_dir)
    log.info("launching %d of %d processes (machine %d of %d): %s", t.num_processes,
             t.num_processes * t.num_machines, t.machine_rank, t.num_machines, " ".join(cmd))
    with tempfile.TemporaryDirectory(prefix="experiments-launch-") as scratch:  # this invocation's, node-local
        error_file, met = Path(scratch) / "error.txt", Path(scratch) / "rendezvous.ok"
        env.update({ERROR_FILE_ENV: str(error_file), RENDEZVOUS_FILE_ENV: str(met),
                    CONFIG_FILE_ENV: str(config_dir(run_dir, t.machine_rank) / CONFIG_FILE)})
        log_path = run_dir / "launch.log" if t.machine_rank == 0 else config_dir(run_dir, t.machine_rank) / "launch.log"
        returncode, signum, waited = _wait_forwarding_signals(cmd, env, log_path, error_file,
                                                              Rendezvous(met, t.rendezvous_timeout_s))
        code, _, message = (error_file.read_text().strip() if error_file.exists() else "").partition(" ")
    if waited:
        raise ExperimentError(rendezvous_failed(t, waited))
    if signum is not None:
        raise Interrupted(signum, message or "")
    if returncode != 0:
        detail = message or f"see {log_path}"
        error = ExperimentError(f"{t.num_processes * t.num_machines}-process run failed (exit {returncode}): {detail}")
        # bad input / diverged, as in one process (torch's launcher itself exits 1 whatever its ranks did)
        error.exit_code = int(code) if code.isdigit() and message else 1
        raise error
    if t.machine_rank > 0:
        log.info("machine %d of %d is done; node 0 holds the run's record in %s", t.machine_rank, t.num_machines,
                 run_dir)
        return {}
    return read_metrics(run_dir)


class Rendezvous:
    """The parent's view of its workers' rendezvous: done once ``flag`` exists; given up after ``timeout_s``."""

    def __init__(self, flag: Path, timeout_s: float) -> None:
        self.flag, self.timeout_s = flag, timeout_s
        self.started = time.monotonic()
        self.done = False

    def expired(self) -> bool:
        if not self.done:
            self.done = self.flag.exists()
        return not self.done and time.monotonic() - self.started > self.timeout_s


def rendezvous_failed(t: TrainerConfig, waited: float) -> str:
    """The one line of a rendezvous that did not complete in time."""
    where = f"{t.main_process_ip}:{t.main_process_port}" if t.num_machines > 1 else "this machine"
    if t.num_machines > 1:
        hint = (f"start the same command on all {t.num_machines} machines, each with its own trainer.machine_rank, "
                f"and check that trainer.main_process_ip is node 0's address, reachable from every node, and "
                f"its port open")
    else:
        hint = "check that the processes can reach each other"
    return (f"the {t.num_processes * t.num_machines} processes did not all join at {where} within "
            f"trainer.rendezvous_timeout_s={t.rendezvous_timeout_s} s (machine {t.machine_rank} of "
            f"{t.num_machines} waited {waited:.0f} s): {hint}")


def _wait_forwarding_signals(cmd: List[str], env: Dict[str, str], log_path: Path, error_file: Path,
                             rendezvous: "Rendezvous"):
    """Run the launcher in its own session and pass Ctrl-C / SIGTERM on as one SIGTERM, which torch's
    launcher hands to every rank: each rank checkpoints at the next step and stops (no rank is killed
    mid-write). Signals are recorded, not raised, while ``train()`` runs (it sets the deferral). A rendezvous
    that does not complete in time ends the launcher's whole process group.
    Returns (exit code, the signal received or None, seconds waited for a rendezvous that failed or 0)."""
    import signal
    import threading

    stop = interrupts.current()
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE)
    relay = threading.Thread(target=_relay_stderr, args=(proc, log_path, error_file), daemon=True)
    relay.start()
    forwarded = False
    try:
        while True:
            try:
                code = proc.wait(timeout=0.2)
                relay.join()
                return code, stop.signum, 0
            except subprocess.TimeoutExpired:
                if stop.requested and not forwarded:
                    proc.send_signal(signal.SIGTERM)
                    forwarded = True
                elif rendezvous.expired():
                    os.killpg(proc.pid, signal.SIGKILL)  # nothing was trained yet: nothing to save
                    proc.wait()
                    relay.join(timeout=5)
                    return proc.returncode, None, time.monotonic() - rendezvous.started
    finally:
        if proc.poll() is None:  # a second signal: stop now
            proc.kill()


_LAUNCHER_TRACE = b"Traceback (most recent call last)"


def _trace_start(text: bytes) -> int:
    """How many bytes at the end of ``text`` could be the start of the launcher's traceback (read on in the next
    chunk of the pipe)."""
    return next((n for n in range(min(len(text), len(_LAUNCHER_TRACE) - 1), 0, -1)
                 if _LAUNCHER_TRACE.startswith(text[-n:])), 0)


def _relay_stderr(proc, log_path: Path, error_file: Path) -> None:
    """Workers' stderr to the console as it comes (progress bars), all of it to launch.log. From the first
    traceback on, output is held back: when a rank stopped on purpose (its one-line error is in error_file)
    the launcher's report of the exit stays in launch.log; a real crash is shown whole."""
    held, pending = b"", b""  # pending: the end of what came, shown once it cannot begin a traceback
    with log_path.open("ab") as log_file:
        for chunk in iter(lambda: proc.stderr.read1(65536), b""):
            log_file.write(chunk)
            if held:
                held += chunk
                continue
            text, pending = pending + chunk, b""
            if _LAUNCHER_TRACE in text:
                text, held = text.split(_LAUNCHER_TRACE, 1)
                held = _LAUNCHER_TRACE + held
            else:
                cut = len(text) - _trace_start(text)
                text, pending = text[:cut], text[cut:]
            sys.stderr.buffer.write(text)
            sys.stderr.flush()
    proc.wait()
    sys.stderr.buffer.write(pending)
    if held and not error_file.exists():
        sys.stderr.buffer.write(held)
    sys.stderr.flush()
