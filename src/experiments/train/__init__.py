"""Fine-tuning: pick the backend, in this process or under ``accelerate launch`` for N processes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from experiments import interrupts
from experiments.config.schema import ExperimentConfig
from experiments.errors import ExperimentError
from experiments.hardware import check_cpu_counts
from experiments.tracking import check_wandb
from experiments.train.launch import in_distributed_worker, launch_workers


def train(cfg: ExperimentConfig, run_dir: Path) -> Dict[str, Any]:
    """Run the configured training; returns the run's metrics (also written to ``metrics.json``).
    Signals are deferred throughout (see experiments.interrupts): set-up and the loop act on them."""
    stop = interrupts.current()
    stop.deferring = True
    try:
        check_wandb(cfg.logger)  # a bad key or unreachable server: one line now, not a traceback after loading
        check_cpu_counts({"trainer.dataloader_num_workers": cfg.trainer.dataloader_num_workers})
        # FSDP needs torch.distributed even on one process (one GPU): it always runs through the launcher
        launched = cfg.trainer.num_processes > 1 or cfg.trainer.num_machines > 1 or cfg.trainer.distributed == "fsdp"
        if launched and not in_distributed_worker():
            return launch_workers(cfg, run_dir)
        if cfg.tuning.name != "sft":  # TRL's trainers on the HF Trainer spine (TRL imported only here)
            return _run_trl(cfg, run_dir)
        if cfg.trainer.backend == "hf_trainer":
            from experiments.train.hf_trainer import run as run_hf

            return run_hf(cfg, run_dir)
        from experiments.train.loop import run as run_loop

        return run_loop(cfg, run_dir)
    finally:
        stop.deferring = False


def _run_trl(cfg: ExperimentConfig, run_dir: Path) -> Dict[str, Any]:
    """``tuning=dpo`` / ``grpo``: TRL's trainer for the method, one line when TRL is not installed."""
    import importlib.util

    if importlib.util.find_spec("trl") is None:
        raise ExperimentError(f"tuning={cfg.tuning.name} needs TRL: pip install 'trl>=1.16' "
                              f"(or pip install -e '.[preference]')")
    if cfg.tuning.name == "grpo":
        from experiments.train.reinforcement import run as run_grpo

        return run_grpo(cfg, run_dir)
    from experiments.train.preference import run as run_dpo

    return run_dpo(cfg, run_dir)
