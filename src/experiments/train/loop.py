"""The training recipe under Accelerate, config to loop in one file.

Works unchanged on one CPU, N CPU processes (gloo DDP), and N GPUs: the launcher decides the world.
Only the main process writes files and logs to trackers; metrics are gathered with
``gather_for_metrics``. Checkpoints hold everything needed to continue a killed run exactly.
"""
from __future__ import annotations

import logging
import math
import signal
import time
from pathlib import Path
from typing import Any, Dict, Optional

from experiments import interrupts
from experiments.errors import TrainingDiverged
from experiments.interrupts import Interrupted
from experiments.train import checkpoints
from experiments.train.common import (
    best_metric_key,
    build_experiment,
    hydra_overrides,
    is_better,
    reset_accelerate_state,
    resolve_mixed_precision,
    run_name,
)

log = logging.getLogger(__name__)


def _optimizer(model, lr: float, weight_decay: float):
    """AdamW; no weight decay on biases and LayerNorm weights."""
    import torch

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def _dataloaders(exp, cfg):
    import torch
    from torch.utils.data import DataLoader

    from experiments.data.prepare import length_grouped_sampler

    t = cfg.trainer
    common = dict(collate_fn=exp.collator, num_workers=t.dataloader_num_workers)
    if t.group_by_length:
        sampler = length_grouped_sampler(exp.data.train, t.per_device_batch_size, t.seed)
        train = DataLoader(exp.data.train, batch_size=t.per_device_batch_size, sampler=sampler, **common)
    else:
        generator = torch.Generator().manual_seed(t.seed)
        train = DataLoader(exp.data.train, batch_size=t.per_device_batch_size, shuffle=True, generator=generator,
                           **common)
    evaluation = DataLoader(exp.data.eval, batch_size=t.per_device_eval_batch_size, shuffle=False, **common)
    return train, evaluation


def evaluate(model, dataloader, accelerator, exp, limit: Optional[int] = None) -> Dict[str, float]:
    """Loss and task metrics over the whole eval split, gathered from every process (no duplicates)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    preds, refs, losses = [], [], []
    start = time.perf_counter()
    for index, batch in enumerate(dataloader):
        if limit and index >= limit:
            break
        with torch.no_grad():
            logits = model(**batch).logits.float()
        labels = batch["labels"]
        if exp.data.is_regression:
            pred = logits.squeeze(-1)
            loss = F.mse_loss(pred, labels.float(), reduction="none")
        else:
            pred = logits.argmax(-1)
            loss = F.cross_entropy(logits, labels, reduction="none")
        pred, labels, loss = accelerator.gather_for_metrics((pred, labels, loss))
        preds.append(pred.cpu())
        refs.append(labels.cpu())
        losses.append(loss.cpu())
    model.train()
    predictions = torch.cat(preds).tolist()
    references = torch.cat(refs).tolist()
    results = {f"eval_{k}": float(v) for k, v in exp.compute_metrics(predictions, references).items()}
    results["eval_loss"] = float(torch.cat(losses).mean())
    runtime = time.perf_counter() - start
    results["eval_runtime_s"] = runtime
    results["eval_samples_per_second"] = len(predictions) / runtime if runtime > 0 else 0.0
    return results


def run(cfg, run_dir: Path) -> Dict[str, Any]:
    import torch
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    from experiments.modeling import save_pretrained
    from experiments.runs import METRICS_FILE, environment, plot_learning_curve, write_json
    from experiments.secrets import scrub
    from experiments.tracking import Tracking, build_trackers

    t = cfg.trainer
    precision = resolve_mixed_precision(t.mixed_precision)
    accelerator = Accelerator(
        mixed_precision=precision,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=t.seed),
    )
    is_main = accelerator.is_main_process
    set_seed(t.seed)
    exp = build_experiment(cfg, accelerator.main_process_first)
    model = exp.new_model(cfg)
    n_params = _non_embedding_params(model)
    train_dl, eval_dl = _dataloaders(exp, cfg)
    optimizer = _optimizer(model, t.lr, t.weight_decay)
    model, optimizer, train_dl, eval_dl = accelerator.prepare(model, optimizer, train_dl, eval_dl)

    batches_per_epoch = min(len(train_dl), t.limit_train_batches or len(train_dl))
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / t.gradient_accumulation_steps))
    total_steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(t.epochs * steps_per_epoch))
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    warmup = t.warmup_steps or math.ceil(t.warmup_ratio * total_steps)
    # The prepared scheduler steps once per process per optimizer step: scale its horizon to match.
    scheduler = get_scheduler(t.scheduler, optimizer, num_warmup_steps=warmup * accelerator.num_processes,
                              num_training_steps=total_steps * accelerator.num_processes)
    scheduler = accelerator.prepare(scheduler)

    state: Dict[str, Any] = {"global_step": 0, "epoch": 0, "batches_in_epoch": 0, "history": [], "train_log": [],
                             "best": None, "samples_seen": 0, "train_time_s": 0.0, "flos": 0.0}
    resume_from = checkpoints.find(t.resume, run_dir)
    if resume_from is not None:
        state = checkpoints.restore(accelerator, resume_from)
        log.info("resumed from %s (step %d, epoch %d)", resume_from, state["global_step"], state["epoch"])

    name = run_name(cfg, hydra_overrides())
    tracking = None
    if is_main:
        from omegaconf import OmegaConf

        config = scrub(OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True))
        tracking = Tracking(build_trackers(cfg.logger, run_dir, name, cfg.tags + [cfg.model.name, cfg.dataset.name],
                                           resume_step=state["global_step"] if resume_from else None), config)

    def log_values(values: Dict[str, float], step: int) -> None:
        if tracking is not None:
            tracking.log(values, step=step)

    def save_metrics(final: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        payload = {
            "run_name": name,
            "mode": "train",
            "backend": "accelerate",
            "model": cfg.model.name_or_path,
            "model_source": exp.model_source,
            "dataset": cfg.dataset.name,
            "final": final or {},
            "best": state["best"],
            "history": state["history"],
            "train_log": state["train_log"],
            "num_train_samples": len(exp.data.train),
            "num_eval_samples": len(exp.data.eval),
            "global_batch_size": t.per_device_batch_size * accelerator.num_processes * t.gradient_accumulation_steps,
            "mixed_precision": precision,
            "resumed_from": str(resume_from) if resume_from else None,
            "distributed_type": str(accelerator.distributed_type).split(".")[-1],
            **environment(accelerator.num_processes),
        }
        if is_main:
            write_json(run_dir / METRICS_FILE, payload)
        return payload

    def run_eval() -> Dict[str, float]:
        results = evaluate(model, eval_dl, accelerator, exp, t.limit_eval_batches)
        record = {"step": state["global_step"], "epoch": round(state["global_step"] / steps_per_epoch, 4), **results}
        state["history"].append(record)
        log_values(results, state["global_step"])
        key = best_metric_key(cfg, results)
        finite = math.isfinite(results[key]) and math.isfinite(results["eval_loss"])
        if finite and is_better(cfg, key, results[key], state["best"]["value"] if state["best"] else None):
            state["best"] = {"metric": key, "value": results[key], "step": state["global_step"]}
            accelerator.wait_for_everyone()
            if is_main and t.save_model:
                save_pretrained(accelerator.unwrap_model(model), exp.tokenizer, run_dir / "best")
        log.info("step %d: %s", state["global_step"],
                 ", ".join(f"{k}={v:.4f}" for k, v in results.items() if "runtime" not in k))
        save_metrics()
        return results

    def checkpoint() -> None:
        checkpoints.save(accelerator, run_dir, state["global_step"], state, keep=t.save_total_limit)

    def stop_if_asked() -> None:
        """At an optimizer-step boundary: every process agrees, saves a checkpoint, and stops."""
        asked = float(stop.requested)
        if accelerator.num_processes > 1:
            asked = accelerator.reduce(torch.tensor(asked, device=accelerator.device), "sum").item()
        if asked:
            checkpoint()
            signum = stop.signum or signal.SIGTERM
            raise Interrupted(signum, f"interrupted by {interrupts.signal_name(signum)} at step {state['global_step']}: "
                                      f"checkpoint saved; continue with trainer.resume=true hydra.run.dir={run_dir}")

    stop = interrupts.current()
    stop.deferring = True
    progress = None
    try:
        model.train()
        results: Dict[str, float] = {}
        progress = tqdm(total=total_steps, initial=state["global_step"], desc="train", unit="step",
                        disable=not accelerator.is_local_main_process, dynamic_ncols=True)
        running_loss, running_batches = 0.0, 0
        for epoch in range(state["epoch"], num_epochs):
            if state["global_step"] >= total_steps:
                break
            state["epoch"] = epoch
            loader = train_dl
            if state["batches_in_epoch"]:
                loader = accelerator.skip_first_batches(train_dl, state["batches_in_epoch"])
            loader.set_epoch(epoch)
            tic = time.perf_counter()
            for batch in loader:
                if state["batches_in_epoch"] >= batches_per_epoch:
                    break
                with accelerator.accumulate(model):
                    loss = model(**batch).loss
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and t.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                state["batches_in_epoch"] += 1
                state["samples_seen"] += batch["input_ids"].shape[0] * accelerator.num_processes
                state["flos"] += 6.0 * n_params * batch["input_ids"].numel() * accelerator.num_processes
                loss_value = loss.detach().float().item()
                if not math.isfinite(loss_value):
                    raise TrainingDiverged(
                        f"training diverged: train loss is {loss_value} at step {state['global_step'] + 1} "
                        f"(epoch {epoch}); lower trainer.lr (now {t.lr}) or check the data; nothing was saved "
                        f"as best after it")
                running_loss += loss_value
                running_batches += 1
                if not accelerator.sync_gradients:
                    continue
                state["global_step"] += 1
                progress.update(1)
                step = state["global_step"]
                if step % t.log_every_n_steps == 0 or step == total_steps:
                    mean_loss = accelerator.reduce(torch.tensor(running_loss / running_batches,
                                                                device=accelerator.device), "mean").item()
                    record = {"step": step, "epoch": round(step / steps_per_epoch, 4), "train_loss": mean_loss,
                              "lr": scheduler.get_last_lr()[0]}
                    state["train_log"].append(record)
                    log_values({"train_loss": mean_loss, "lr": record["lr"]}, step)
                    progress.set_postfix(loss=f"{mean_loss:.4f}")
                    running_loss, running_batches = 0.0, 0
                if t.eval_steps and step % t.eval_steps == 0:
                    state["train_time_s"] += time.perf_counter() - tic
                    results = run_eval()
                    tic = time.perf_counter()
                if t.save_steps and step % t.save_steps == 0:
                    state["train_time_s"] += time.perf_counter() - tic
                    checkpoint()
                    tic = time.perf_counter()
                stop_if_asked()
                if step >= total_steps:
                    break
            state["train_time_s"] += time.perf_counter() - tic
            state["epoch"], state["batches_in_epoch"] = epoch + 1, 0
            if not t.eval_steps:
                results = run_eval()
            if not t.save_steps:
                checkpoint()
        progress.close()
        if not state["history"] or state["history"][-1]["step"] != state["global_step"]:
            results = run_eval()  # the final state is always evaluated
        if not results:
            results = {k: v for k, v in state["history"][-1].items() if k.startswith("eval_")}
        accelerator.wait_for_everyone()
        if is_main and t.save_model:
            save_pretrained(accelerator.unwrap_model(model), exp.tokenizer, run_dir / "last")
        final = dict(results)
        train_time = max(state["train_time_s"], 1e-9)
        final.update({
            "train_samples_per_second": state["samples_seen"] / train_time,
            "train_runtime_s": state["train_time_s"],
            "train_loss": state["train_log"][-1]["train_loss"] if state["train_log"] else None,
            "train_flops_per_second": state["flos"] / train_time,
            "global_step": state["global_step"],
            "epochs": state["epoch"],
        })
        log_values({k: v for k, v in final.items()  # train_loss of this step is logged already
                    if k.startswith("train_") and k != "train_loss" and v is not None}, state["global_step"])
        payload = save_metrics(final)
        if is_main:
            plot_learning_curve(state["history"], state["train_log"], run_dir / "learning_curve.png", title=name)
        return payload
    finally:
        stop.deferring = False
        if progress is not None:
            progress.close()  # before any error line, so that line is the last one on the console
        if tracking is not None:
            tracking.finish()
        accelerator.end_training()
        reset_accelerate_state()


def _non_embedding_params(model) -> int:
    """Parameters every token pays 6 FLOPs each for (forward + backward); embeddings are lookups."""
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
