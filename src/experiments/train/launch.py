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
from pathlib import Path
from typing import Any, Dict, List

from experiments.errors import ExperimentError
from experiments.interrupts import Interrupted

log = logging.getLogger(__name__)

WORKER_MODULE = "experiments.worker"
ERROR_FILE_ENV = "EXPERIMENTS_ERROR_FILE"  # where rank 0 writes the one-line error of a deliberate stop


def in_distributed_worker() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or os.environ.get("EXPERIMENTS_WORKER") == "1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(cfg, run_dir: Path) -> List[str]:
    import torch

    from experiments.hardware import mixed_precision

    t = cfg.trainer
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", str(t.num_processes * t.num_machines if t.num_machines > 1 else t.num_processes),
           "--num_machines", str(t.num_machines), "--machine_rank", str(t.machine_rank),
           "--mixed_precision", mixed_precision(t.mixed_precision), "--dynamo_backend", "no",
           "--main_process_port", str(t.main_process_port or free_port())]
    if t.main_process_ip:
        cmd += ["--main_process_ip", t.main_process_ip]
    if not torch.cuda.is_available():
        cmd += ["--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // t.num_processes))]
    return cmd + ["-m", WORKER_MODULE, str(run_dir)]


def launch_workers(cfg, run_dir: Path) -> Dict[str, Any]:
    """Start the workers, wait, and return the metrics rank 0 wrote."""
    import torch

    from experiments.runs import read_metrics

    env = dict(os.environ, EXPERIMENTS_WORKER="1", PYTHONUNBUFFERED="1")
    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "1"
    elif torch.cuda.device_count() < cfg.trainer.num_processes:
        raise ExperimentError(f"trainer.num_processes={cfg.trainer.num_processes} but only "
                              f"{torch.cuda.device_count()} GPU(s) are visible")
    cmd = launch_command(cfg, run_dir)
    log.info("launching %d processes: %s", cfg.trainer.num_processes, " ".join(cmd))
    error_file = run_dir / f".error-{os.getpid()}.txt"  # this invocation's: an earlier attempt's never counts
    env[ERROR_FILE_ENV] = str(error_file)
    returncode, signum = _wait_forwarding_signals(cmd, env, run_dir / "launch.log", error_file)
    message = error_file.read_text().strip() if error_file.exists() else None
    error_file.unlink(missing_ok=True)
    if signum is not None:
        raise Interrupted(signum, message or "")
    if returncode != 0:
        detail = message or f"see {run_dir}/launch.log"
        error = ExperimentError(f"{cfg.trainer.num_processes}-process run failed (exit {returncode}): {detail}")
        error.exit_code = returncode if returncode in (2, 3) else 1  # bad input / diverged, as in one process
        raise error
    return read_metrics(run_dir)


def _wait_forwarding_signals(cmd: List[str], env: Dict[str, str], log_path: Path, error_file: Path):
    """Run the launcher in its own session and pass Ctrl-C / SIGTERM on as one SIGTERM, which torch's
    launcher hands to every rank: each rank checkpoints at the next step and stops (no rank is killed
    mid-write). Signals are recorded, not raised, while ``train()`` runs (it sets the deferral).
    Returns (exit code, the signal received or None)."""
    import signal
    import threading

    from experiments import interrupts

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
                return code, stop.signum
            except subprocess.TimeoutExpired:
                if stop.requested and not forwarded:
                    proc.send_signal(signal.SIGTERM)
                    forwarded = True
    finally:
        if proc.poll() is None:  # a second signal: stop now
            proc.kill()


_LAUNCHER_TRACE = b"Traceback (most recent call last)"


def _relay_stderr(proc, log_path: Path, error_file: Path) -> None:
    """Workers' stderr to the console as it comes (progress bars), all of it to launch.log. From the first
    traceback on, output is held back: when a rank stopped on purpose (its one-line error is in error_file)
    the launcher's report of the exit stays in launch.log; a real crash is shown whole."""
    held = b""
    with log_path.open("ab") as log_file:
        for chunk in iter(lambda: proc.stderr.read1(65536), b""):
            log_file.write(chunk)
            if not held and _LAUNCHER_TRACE in chunk:
                shown, held = chunk.split(_LAUNCHER_TRACE, 1)
                held = _LAUNCHER_TRACE + held
                sys.stderr.buffer.write(shown)
            elif held:
                held += chunk
            else:
                sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
    proc.wait()
    if held and not error_file.exists():
        sys.stderr.buffer.write(held)
        sys.stderr.flush()
