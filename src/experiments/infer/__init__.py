"""``mode=infer``: run one task over a set of inputs and record outputs, speed and quality.

Entry point :func:`infer`. Each task (see :mod:`experiments.tasks.registry`) runs either through
transformers' ``pipeline()`` (``inference.path=pipeline``, where transformers still has the task) or written
out by hand (``inference.path=manual``: tokenizer -> model -> post-processing). Both give outputs of the same
shape, so runs over either path compare directly.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List

from experiments.hardware import check_cpu_counts
from experiments.infer.batching import plan_batches, run_batches
from experiments.infer.inputs import load_items
from experiments.infer.loading import load_model, pick_device
from experiments.infer.report import (
    PREDICTIONS_FILE,
    count_tokens,
    final_metrics,
    generation_batches,
    generation_metrics,
    peak_memory_mb,
    write_eval_predictions,
    write_predictions,
)
from experiments.record import RunRecord, write_record
from experiments.runs import environment
from experiments.tasks.base import Context
from experiments.tasks.generation import FIRST_TOKEN_TIMES
from experiments.tasks.registry import task_class

if TYPE_CHECKING:  # annotations only
    from experiments.config.schema import ExperimentConfig

log = logging.getLogger(__name__)

__all__ = ["infer", "load_task", "plan", "runner"]


def load_task(cfg: ExperimentConfig, task=None):
    """``cfg.task`` bound to its loaded model and tokenizer: call ``.pipeline(batch)`` / ``.manual(batch)``."""
    import torch

    task = task or task_class(cfg.task.name)(cfg.task)
    if cfg.inference.num_threads:
        check_cpu_counts({"inference.num_threads": cfg.inference.num_threads})
        torch.set_num_threads(cfg.inference.num_threads)
    device = pick_device(cfg.inference.device)
    model, tokenizer, source, speed = load_model(task, cfg, device)
    task.ctx = Context(cfg, model, tokenizer, device, extra={"model_source": source, "speed": speed})
    return task


def plan(task, inputs, inference) -> List[List[int]]:
    """``mode=infer``'s batches of ``inputs`` (index lists): length-sorted, at most ``inference.batch_size``
    inputs and ``inference.max_batch_tokens`` padded tokens each."""
    return plan_batches(task.token_costs(inputs), inference.batch_size, inference.sort_by_length,
                        inference.max_batch_tokens)


def runner(task, inference) -> Callable[[List[Any]], List[Any]]:
    """The batch function ``inference.path`` selects: the pipeline where transformers has one for this
    task and model, else the hand-written path."""
    use_pipeline = inference.path == "pipeline" and task.has_pipeline
    if inference.path == "pipeline" and not use_pipeline:
        log.info("transformers has no %s pipeline for this model: running the model-API implementation",
                 task.name)
    return task.pipeline if use_pipeline else task.manual


def infer(cfg: ExperimentConfig, run_dir: Path) -> Dict[str, Any]:
    """Run ``cfg.task`` over the configured inputs; write predictions.jsonl and metrics.json in ``run_dir``."""
    inference = cfg.inference
    task = task_class(cfg.task.name)(cfg.task)
    items, label_names, source = load_items(task, cfg)  # bad input fails before the model loads
    if hasattr(task, "label_names"):
        task.label_names = label_names
    if task.name == "zero-shot-classification":
        task.labels  # noqa: B018 - fails now when there are no candidate labels

    start = time.perf_counter()
    load_task(cfg, task)
    load_seconds = time.perf_counter() - start
    device = task.ctx.device
    inputs = [task.adapt_input(item.input) for item in items]

    fn = runner(task, inference)
    use_pipeline = fn == task.pipeline
    if use_pipeline:
        task.get_pipeline()  # built before the clock starts
    batches = plan(task, inputs, inference)
    run = run_batches(fn, inputs, batches, progress=inference.progress, desc=f"{task.name} ({inference.path})")

    references = [item.reference for item in items]
    quality = task.quality(run.outputs, references) if any(r is not None for r in references) else {}
    tokens = count_tokens(task, items, run.outputs)
    final = final_metrics(len(items), tokens, run.batch_seconds, peak_memory_mb(device), quality)
    per_batch: Dict[str, Any] = {}
    if task.generates:
        rows = generation_batches(task, batches, run.outputs, run.batch_seconds, run.batch_starts,
                                  task.ctx.extra.get(FIRST_TOKEN_TIMES, []))
        final.update(generation_metrics(rows))
        per_batch["generation_batches"] = rows

    write_predictions(run_dir / PREDICTIONS_FILE, items, run.outputs)
    examples = write_eval_predictions(run_dir, task, items, run.outputs, source)
    record = RunRecord(
        mode="infer", model=cfg.model.name_or_path, backend=inference.path, dataset=cfg.dataset.name,
        model_source=task.ctx.extra.get("model_source", ""), final=final, task=task.name,
        environment={**environment(1), "device": str(device)},
        details={"path": inference.path,
                 "implementation": "pipeline" if use_pipeline else "manual", "method": task.method_name(),
                 "model_name": cfg.model.name, "inputs": source, "num_items": len(items),
                 "num_batches": len(batches), "batch_size": inference.batch_size,
                 "max_batch_tokens": inference.max_batch_tokens, "sort_by_length": inference.sort_by_length,
                 "speed": task.ctx.extra.get("speed", {}), "load_seconds": load_seconds, "tokens": tokens,
                 "batch_seconds": run.batch_seconds, **per_batch, **examples})
    payload = write_record(run_dir, record)
    log.info("%s: %d items in %.2f s (%.1f items/s) -> %s", task.name, len(items), run.total_seconds,
             final["items_per_second"], run_dir / PREDICTIONS_FILE)
    return payload
