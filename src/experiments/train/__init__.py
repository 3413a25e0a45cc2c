"""Fine-tuning: pick the backend, in this process or under ``accelerate launch`` for N processes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict


def train(cfg, run_dir: Path) -> Dict[str, Any]:
    """Run the configured training; returns the run's metrics (also written to ``metrics.json``).
    Signals are deferred throughout (see experiments.interrupts): set-up and the loop act on them."""
    from experiments import interrupts
    from experiments.hardware import check_cpu_counts
    from experiments.tracking import check_wandb
    from experiments.train.launch import in_distributed_worker, launch_workers

    stop = interrupts.current()
    stop.deferring = True
    try:
        check_wandb(cfg.logger)  # a bad key or unreachable server: one line now, not a traceback after loading
        check_cpu_counts({"trainer.dataloader_num_workers": cfg.trainer.dataloader_num_workers})
        # FSDP needs torch.distributed even on one process (one GPU): it always runs through the launcher
        launched = cfg.trainer.num_processes > 1 or cfg.trainer.num_machines > 1 or cfg.trainer.distributed == "fsdp"
        if launched and not in_distributed_worker():
            return launch_workers(cfg, run_dir)
        if cfg.trainer.backend == "hf_trainer":
            from experiments.train.hf_trainer import run as run_hf

            return run_hf(cfg, run_dir)
        from experiments.train.loop import run as run_loop

        return run_loop(cfg, run_dir)
    finally:
        stop.deferring = False
