"""What both training backends share: build tokenizer, data, model and metric function from a config."""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from experiments import adapters
from experiments.config.schema import ExperimentConfig
from experiments.data.sources import load_raw
from experiments.errors import ExperimentError
from experiments.modeling import load_config, load_tokenizer, resolve
from experiments.record import higher_is_better, is_quality_metric
from experiments.record import is_better as better
from experiments.runs import run_name_from_overrides, stop_request
from experiments.tasks.registry import task_class, trainable_tasks

log = logging.getLogger(__name__)


@dataclass
class Experiment:
    """What the training backends need, built by the task object (experiments.tasks)."""

    task: Any  # a TrainingTask
    tokenizer: Any
    data: Any  # the task's tokenized train/eval data
    collator: Any
    eval_collator: Any
    model_dir: Path
    compute_metrics: Optional[Callable[[Any, Any], Dict[str, float]]]  # logits-scored tasks; else None
    model_source: str = ""  # "<origin>:<directory>" the weights were loaded from (recorded in metrics.json)

    def new_model(self, cfg: ExperimentConfig):
        """The task's model, wrapped with adapters when ``peft`` says so (both backends call this)."""
        model = self.task.new_model(self.model_dir, cfg, self.data, self.tokenizer)
        if not self.task.flattening_works(model, cfg):
            self.collator = self.eval_collator
        return adapters.wrap(model, cfg.peft, self.task.train_auto_class, self.task.new_weights)


def training_task(cfg: ExperimentConfig):
    """The task object ``cfg.task.name`` names, if it trains (else one line naming those that do)."""
    task = task_class(cfg.task.name)(cfg.task)
    if not task.trains:
        raise ExperimentError(f"task={cfg.task.name} does not train (mode=train covers: "
                              f"{', '.join(trainable_tasks())}); run it with mode=infer")
    return task


def build_experiment(cfg: ExperimentConfig, main_process_first=None) -> Experiment:
    """Resolve the model, load the tokenizer, load + tokenize the data (main process first), pick metrics —
    each through the task object, so training and inference share one definition of the task."""
    import contextlib

    task = training_task(cfg)
    resolved = resolve(cfg.model, cfg.paths.mirror)
    task.setup_training(load_config(resolved.path, cfg.model), cfg)
    tokenizer = load_tokenizer(resolved.path, cfg.tokenizer, cfg.model, cfg.paths.mirror)
    guard = main_process_first() if main_process_first else contextlib.nullcontext()
    with guard:  # rank 0 fills the datasets and evaluate-module caches; the others then read them
        raw = load_raw(cfg.dataset, cfg.paths.mirror)
        data = task.training_data(raw, tokenizer, cfg)
        compute = task.metric_function(cfg, data)
    return Experiment(task, tokenizer, data, task.collator(tokenizer, cfg), task.eval_collator(tokenizer, cfg),
                      resolved.path, compute, f"{resolved.origin}:{resolved.path}")


def best_metric_key(cfg: ExperimentConfig, eval_metrics: Dict[str, float]) -> str:
    key = cfg.trainer.metric_for_best
    if key:
        key = key if key.startswith("eval_") else f"eval_{key}"
        if key not in eval_metrics:
            raise ExperimentError(f"trainer.metric_for_best '{key}' is not an eval metric ({', '.join(eval_metrics)})")
        return key

    preferred = [k for k in eval_metrics if k != "eval_loss" and is_quality_metric(k)]
    return preferred[0] if preferred else "eval_loss"


def is_better(cfg: ExperimentConfig, key: str, value: float, best: Optional[float]) -> bool:
    return better(value, best, higher_is_better(key, cfg.trainer.greater_is_better))


def early_stop(cfg: ExperimentConfig, key: str, history: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """Why the run stops now, or None: ``trainer.early_stopping_patience`` evaluations in a row (the newest
    ones) did not beat the best value before them by more than ``trainer.early_stopping_threshold``. A function
    of the evaluation history alone, so a resumed run decides as the uninterrupted one would."""
    import math

    t = cfg.trainer
    if not t.early_stopping_patience:
        return None
    higher = higher_is_better(key, t.greater_is_better)
    best, best_step, stale = None, None, 0
    for row in history:
        value = row.get(key)
        if value is None or not math.isfinite(value):
            stale += 1
        elif best is None or (value - best if higher else best - value) > t.early_stopping_threshold:
            best, best_step, stale = value, row["step"], 0
        else:
            stale += 1
    if stale < t.early_stopping_patience:
        return None
    return {"reason": "early_stopping", "step": history[-1]["step"], "metric": key, "best": best,
            "best_step": best_step, "patience": t.early_stopping_patience,
            "threshold": t.early_stopping_threshold}


def any_process(flag: bool) -> bool:
    """True on every process when ``flag`` is true on any (one process: the flag itself)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor(float(flag), device=device)
    dist.all_reduce(value)
    return bool(value.item())


def requested_stop(run_dir, step: int, agree=None) -> Optional[Dict[str, Any]]:
    """Why the run stops now because something outside it asked (a search pruned this trial, see
    :data:`experiments.runs.STOP_REQUEST`), or None. ``agree(flag) -> bool`` makes every process of a
    multi-process run decide alike (called on all of them at the same step)."""
    request = stop_request(run_dir)
    if not (agree(request is not None) if agree is not None else request is not None):
        return None
    if request is None:  # another process saw the request first: stop with it all the same
        request = {"reason": "requested"}
    return {**request, "reason": str(request["reason"]), "step": step}


def run_name(cfg: ExperimentConfig, overrides: Optional[List[str]] = None) -> str:
    """A readable name from the overrides (``model=bert,trainer.lr=3e-5``) or model + dataset."""
    if cfg.logger.run_name:
        return cfg.logger.run_name

    return run_name_from_overrides(overrides or []) or f"{cfg.model.name}-{cfg.dataset.name}"


def hydra_overrides() -> List[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:
        return []


def reset_accelerate_state() -> None:
    """Forget this run's Accelerate settings, so a next run in the same process may choose others
    (e.g. another mixed precision); a distributed worker keeps its process group.

    Accelerate's state objects are process-wide singletons with no public reset; ``_reset_state`` is the
    call Accelerate's own test-suite uses for exactly this. Runs started from the CLI or a sweep each get a
    fresh process and never need it; in-process callers (tests, benchmarks, notebooks) do."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


@contextlib.contextmanager
def rng_untouched():
    """Python's, numpy's and torch's (CPU and every CUDA device's) random states as they were before the block: an
    evaluation before training (step 0) leaves the training run as it would be without it, so a run resumed from a
    checkpoint (which skips that evaluation) draws its data order and dropout exactly as the uninterrupted one."""
    import random

    import numpy as np
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
