"""What every TRL trainer (``tuning=dpo`` / ``grpo``) gets from the spine, without importing TRL itself.

:class:`TaskMetrics` is mixed in front of a TRL trainer class: at every evaluation it adds the task's own metric on
answers generated for the held-out prompts (BLEU / chrF / ROUGE against their references), and it names TRL's
metrics without ``/`` (``rewards/accuracies`` -> ``rewards_accuracies``) so every tracker and
``trainer.metric_for_best`` take them. :func:`run` is the HF Trainer backend's run around a TRL trainer: the same
callbacks, resume, trackers, run record and saved model.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

from experiments.config.schema import ExperimentConfig
from experiments.data.prepare import select_text_splits
from experiments.errors import DataError, ExperimentError
from experiments.modeling import load_config, load_tokenizer, resolve
from experiments.tasks.generation import Generation
from experiments.train import hf_trainer
from experiments.train.common import (
    hydra_overrides,
    reset_accelerate_state,
    rng_untouched,
    run_name,
    training_task,
)

FILE_LOADERS = ("json", "csv", "parquet", "text")  # loaders whose data_files are the user's own paths


class TaskMetrics:
    """Mixin for a TRL trainer (``class X(TaskMetrics, DPOTrainer)``); takes ``experiment`` and ``cfg``."""

    #: the metric that comes right after the generated ones in an evaluation (the default ``best/`` metric
    #: when the task generates none)
    preferred_metric: Optional[str] = None

    def __init__(self, *args: Any, experiment, cfg: ExperimentConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.experiment, self.cfg = experiment, cfg
        self._generated: Dict[str, float] = {}

    def evaluate(self, *args: Any, **kwargs: Any) -> Dict[str, float]:
        """TRL's evaluation plus the generated metrics. It leaves the random states as it found them, so how often
        a run evaluates (and the step-0 evaluation a resumed run skips) never changes what training draws."""
        with rng_untouched():
            self._generated = self._generation_metrics()
            try:
                return super().evaluate(*args, **kwargs)
            finally:
                self._generated = {}

    def _generation_metrics(self) -> Dict[str, float]:
        """The task's metrics on answers generated for the held-out prompts (main process, then shared)."""
        from accelerate.utils import broadcast_object_list

        found: List[Optional[Dict[str, float]]] = [None]
        if self.is_world_process_zero():
            model = self.accelerator.unwrap_model(self.model)
            with self.accelerator.autocast():
                found[0] = self.experiment.task.inference_metrics(model, self.processing_class, self.cfg,
                                                                  self.experiment.data)
        if self.args.world_size > 1:
            broadcast_object_list(found)
        return {f"eval_{key}": float(value) for key, value in (found[0] or {}).items()}

    def log(self, logs: Dict[str, float], start_time: Optional[float] = None) -> None:
        """TRL's averaging of its per-step metrics (kept in ``_metrics``; NaN left out, as TRL's GRPO does), then
        the generated metrics first and ``preferred_metric`` next, ``/`` out of every name. ``logs`` changes in
        place: ``evaluate`` hands the same dict to the callbacks' ``on_evaluate``."""
        from transformers import Trainer

        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        averaged = {}
        for key, values in self._metrics[mode].items():
            finite = [v for v in values if v is not None and not math.isnan(v)]
            if finite:
                averaged[f"{prefix}{key}"] = sum(finite) / len(finite)
        self._metrics[mode].clear()
        generated = self._generated if "eval_loss" in logs else {}
        named = {key.replace("/", "_"): value for key, value in {**generated, **logs, **averaged}.items()}
        first = [key for key in [*generated, f"{prefix}{self.preferred_metric}"] if key in named]
        logs.clear()
        logs.update({**{key: named[key] for key in first}, **named})
        Trainer.log(self, logs, start_time)


def generation_task(cfg: ExperimentConfig):
    """(task, resolved model, tokenizer) for a TRL method: a causal language model on a generation task, else
    one line (checked from the model's config, before the weights load)."""
    task = training_task(cfg)
    resolved = resolve(cfg.model, cfg.paths.mirror)
    task.setup_training(load_config(resolved.path, cfg.model), cfg)
    if not isinstance(task, Generation) or task.train_auto_class != "AutoModelForCausalLM":
        raise ExperimentError(f"tuning={cfg.tuning.name} trains a causal language model on a generation task "
                              f"(translation, summarization, text-generation); task={cfg.task.name} with "
                              f"{cfg.model.name_or_path} is not one")
    return task, resolved, load_tokenizer(resolved.path, cfg.tokenizer, cfg.model, cfg.paths.mirror)


def check_data_files(cfg: ExperimentConfig, what: str) -> None:
    """Every data file of a file loader (json / csv / ...) exists, else one line saying how to get the rows."""
    if cfg.dataset.loader not in FILE_LOADERS:
        return
    for split, path in cfg.dataset.files.items():
        if not Path(path).exists():
            raise DataError(f"dataset.data_files.{split}: {path} does not exist; point it at your {what}, or build "
                            f"the Multi30k set with: python scripts/build_preferences.py")


def checked_splits(raw, cfg: ExperimentConfig, columns: List[str], hint: str, check_rows: Callable[[Any, str, List[str]], None]):
    """(train, eval) raw splits holding ``columns`` (else one line ending in ``hint``: which keys to set), each
    non-empty and passing ``check_rows(split, name, columns)``."""
    missing = [c for c in columns if any(c not in split.column_names for split in raw.values())]
    if missing:
        found = ", ".join(next(iter(raw.values())).column_names)
        raise DataError(f"dataset '{cfg.dataset.name}' has no column(s) {missing} (columns: {found}); set {hint}")
    train, evaluation = select_text_splits(raw, cfg.dataset, columns)
    for name, split in (("train", train), ("eval", evaluation)):
        if len(split) == 0:
            raise DataError(f"the {name} split of dataset '{cfg.dataset.name}' has no rows")
        check_rows(split, name, columns)
    return train, evaluation


def check_text_cells(split, name: str, columns: Iterable[str]) -> None:
    """Every cell of ``columns`` is a non-empty string: else one line naming the split, the row and the column."""
    for number, row in enumerate(split):
        for column in columns:
            value = row[column]
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"split '{name}' row {number}: column '{column}' is {value!r}; every one of "
                                f"{', '.join(columns)} must be a non-empty text")


def run(cfg: ExperimentConfig, run_dir: Path, args, exp, make_trainer: Callable[..., Any], train_keys: Iterable[str] = ()) -> Dict[str, Any]:
    """A TRL trainer on the HF Trainer spine: ``make_trainer(model, args, exp, callbacks)`` builds it; the rest
    (callbacks, step-0 evaluation, resume, trackers, run record, ``best/``, ``last/``) is ``trainer=hf_trainer``'s."""
    resume = hf_trainer._resume_checkpoint(cfg.trainer, args.output_dir)  # before the Trainer makes checkpoints/
    model = exp.new_model(cfg)
    name = run_name(cfg, hydra_overrides())
    mirror = hf_trainer.Mirror(cfg, perplexity=False)
    mirror.run_dir, mirror.train_keys = run_dir, tuple(train_keys)
    trainer = make_trainer(model, args, exp, [mirror])
    if args.process_index == 0:
        mirror.tracking = hf_trainer._start_tracking(cfg, run_dir, name, resume)
    try:
        tic = time.perf_counter()
        result = hf_trainer._train(trainer, resume, run_dir)
        return hf_trainer._finish(cfg, run_dir, trainer, exp, mirror, result, time.perf_counter() - tic, name,
                                  resume, {})
    finally:
        if mirror.tracking is not None:
            mirror.tracking.finish()
        reset_accelerate_state()
