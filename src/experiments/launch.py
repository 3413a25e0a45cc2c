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

log = logging.getLogger(__name__)

WORKER_MODULE = "experiments.worker"


def in_distributed_worker() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or os.environ.get("EXPERIMENTS_WORKER") == "1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(cfg, run_dir: Path) -> List[str]:
    import torch

    from experiments.train.common import resolve_mixed_precision

    t = cfg.trainer
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", str(t.num_processes * t.num_machines if t.num_machines > 1 else t.num_processes),
           "--num_machines", str(t.num_machines), "--machine_rank", str(t.machine_rank),
           "--mixed_precision", resolve_mixed_precision(t.mixed_precision), "--dynamo_backend", "no",
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
    result = subprocess.run(cmd, env=env)
    if result.returncode != 0:
        error_file = run_dir / "error.txt"
        detail = error_file.read_text().strip() if error_file.exists() else f"see {run_dir}"
        raise ExperimentError(f"{cfg.trainer.num_processes}-process run failed (exit {result.returncode}): {detail}")
    return read_metrics(run_dir)
