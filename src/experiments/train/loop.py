"""The training recipe under Accelerate, config to loop in one file.

Works unchanged on one CPU, N CPU processes (gloo DDP), and N GPUs: the launcher decides the world;
``trainer.distributed=fsdp`` shards the model over the processes instead (``sharding.py``).
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

from experiments import adapters, hardware, interrupts
from experiments.config.schema import ExperimentConfig
from experiments.data.lm import NUM_EXAMPLES
from experiments.data.prepare import length_grouped_sampler
from experiments.errors import ExperimentError, TrainingDiverged
from experiments.files import replace_dir
from experiments.interrupts import Interrupted
from experiments.metrics.examples import RECORD_KEY, write_records
from experiments.record import RunRecord, to_payload, write_record
from experiments.runs import environment, plot_learning_curve
from experiments.secrets import scrub
from experiments.tracking import Tracking, build_trackers
from experiments.train import checkpoints, nodes, sharding
from experiments.train.common import (
    any_process,
    best_metric_key,
    build_experiment,
    early_stop,
    hydra_overrides,
    is_better,
    requested_stop,
    reset_accelerate_state,
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
    return torch.optim.AdamW(groups, lr=lr, **hardware.adamw_options(decay + no_decay))


def _dynamo_plugin(setting: str):
    """``trainer.compile``: Accelerate compiles the model in ``prepare`` (dynamic shapes: batches vary in length)."""
    from accelerate.utils import TorchDynamoPlugin

    if hardware.use_compile(setting, hardware.training_device_type()):
        return TorchDynamoPlugin(backend="inductor", dynamic=True)
    return TorchDynamoPlugin(backend="no")


def _speed_settings(model, optimizer, collator, accelerator, cfg: ExperimentConfig) -> Dict[str, Any]:
    """The speed choices this run made (``auto`` resolved), recorded in metrics.json."""
    fused = any(group.get("fused") for group in optimizer.param_groups)
    return hardware.speed_settings(
        mixed_precision=accelerator.mixed_precision,
        attn_implementation=getattr(model.config, "_attn_implementation", None),
        optimizer="adamw (fused)" if fused else "adamw (foreach)",
        compile=str(accelerator.state.dynamo_plugin.backend).split(".")[-1].lower() != "no",
        group_by_length=cfg.trainer.group_by_length, collator=cfg.collator.name,
        padding_free=getattr(collator, "flattens", False), distributed=cfg.trainer.distributed,
        device=hardware.device_name(accelerator.device.type),
        **hardware.training_basis(cfg.trainer.mixed_precision, cfg.model.attn_implementation, cfg.trainer.compile,
                                  cfg.collator.padding_free))


def _dataloaders(exp, cfg: ExperimentConfig):
    import torch
    from torch.utils.data import DataLoader

    t = cfg.trainer
    common = dict(collate_fn=exp.collator, num_workers=t.dataloader_num_workers)
    if t.group_by_length:
        sampler = length_grouped_sampler(exp.data.train, t.per_device_batch_size, t.seed)
        # its own generator: starting an epoch's iterator (also a resumed one) then draws nothing from the
        # global RNG, whose restored state the dropout masks after a resume depend on
        train = DataLoader(exp.data.train, batch_size=t.per_device_batch_size, sampler=sampler,
                           generator=torch.Generator().manual_seed(t.seed), **common)
    else:
        generator = torch.Generator().manual_seed(t.seed)
        train = DataLoader(exp.data.train, batch_size=t.per_device_batch_size, shuffle=True, generator=generator,
                           **common)
    evaluation = DataLoader(exp.data.eval, batch_size=t.per_device_eval_batch_size, shuffle=False,
                            **{**common, "collate_fn": exp.eval_collator})
    return train, evaluation


def evaluate(model, dataloader, accelerator, exp, cfg: ExperimentConfig, limit: Optional[int] = None,
             keep: Optional[Dict[str, Any]] = None) -> Dict[str, float]:
    """Loss and task metrics over the whole eval split, gathered from every process (no duplicates), plus
    the task's inference-code metrics (span decoding, generation) run on the main process (under FSDP on
    every process: a forward pass needs every process's shards), rank 0's result taken by all. ``keep``
    receives the gathered per-example ``columns`` and the task's ``scores`` (the run's eval_predictions.jsonl)."""
    import torch
    from accelerate.utils import broadcast_object_list

    model.eval()
    rows: Dict[str, list] = {}
    start = time.perf_counter()
    for index, batch in enumerate(dataloader):
        if limit and index >= limit:
            break
        with torch.no_grad():
            output = model(**batch)
        gathered = accelerator.gather_for_metrics(exp.task.eval_rows(output, batch))
        for key, value in gathered.items():
            rows.setdefault(key, []).append(value.cpu())
    model.train()
    columns = {key: torch.cat(values) for key, values in rows.items()}
    scores = exp.task.eval_metrics(columns, exp.compute_metrics)
    if keep is not None:
        keep.update(columns=columns, scores=scores)
    extra = [None]
    if accelerator.is_main_process or sharding.is_sharded(accelerator):
        with accelerator.autocast():  # the precision the eval forward passes ran in
            extra[0] = exp.task.inference_metrics(accelerator.unwrap_model(model), exp.tokenizer, cfg, exp.data)
    if accelerator.num_processes > 1:
        broadcast_object_list(extra)  # every process takes the same best/ decision
    results = {f"eval_{k}": float(v) for k, v in {**extra[0], **scores}.items()}
    runtime = time.perf_counter() - start
    results["eval_runtime_s"] = runtime
    examples = len(next(iter(columns.values())))  # every column holds one row per eval example
    results["eval_samples_per_second"] = examples / runtime if runtime > 0 else 0.0
    return results


def run(cfg: ExperimentConfig, run_dir: Path) -> Dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` with the :class:`Recipe`; returns the metrics it wrote."""
    recipe = Recipe(cfg, run_dir)
    try:
        recipe.setup()
        recipe.train()
        return recipe.finish()
    finally:
        recipe.close()


def _new_state() -> Dict[str, Any]:
    """The loop counters a checkpoint carries (with Accelerate's model/optimizer/scheduler/RNG state)."""
    return {"global_step": 0, "epoch": 0, "batches_in_epoch": 0, "history": [], "train_log": [], "best": None,
            "stopped": None,
            "samples_seen": 0, "train_time_s": 0.0, "flos": 0.0}


class Recipe:
    """The fine-tuning recipe, top to bottom: setup -> train (epochs of train steps, with evaluation and
    checkpoints at their intervals) -> finish. ``state`` is everything a checkpoint must carry to continue
    exactly; only the main process writes files and logs to trackers."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path) -> None:
        self.cfg, self.t, self.run_dir = cfg, cfg.trainer, run_dir
        self.state = _new_state()
        self.results: Dict[str, float] = {}
        self.resume_from: Optional[Path] = None
        self.accelerator = self.tracking = self.progress = None
        self._tic = 0.0
        self._running_loss, self._running_batches = 0.0, 0
        self._checked_step = 0  # the step up to which the train loss is known to be finite
        self._last_eval: Dict[str, Any] = {}  # the latest evaluation's per-example columns and scores
        self.eval_predictions: Dict[str, Any] = {}  # metrics.json's record of eval_predictions.jsonl

    # -- setup ------------------------------------------------------------------------------------
    def setup(self) -> None:
        from accelerate import Accelerator, DataLoaderConfiguration
        from accelerate.utils import ProjectConfiguration, set_seed

        t = self.t
        self.precision = hardware.mixed_precision(t.mixed_precision)
        self.shared_fs = nodes.shared_filesystem(self.run_dir, t.num_machines)
        self.accelerator = Accelerator(
            mixed_precision=self.precision, gradient_accumulation_steps=t.gradient_accumulation_steps,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=t.seed),
            dynamo_plugin=_dynamo_plugin(t.compile), fsdp_plugin=sharding.fsdp_plugin(t),
            project_config=ProjectConfiguration(save_on_each_node=not self.shared_fs))
        sharding.activate(self.accelerator, t)
        set_seed(t.seed)
        stop = interrupts.current()
        self.exp = build_experiment(self.cfg, self.accelerator.main_process_first)
        stop.check()  # safe points of set-up: a Ctrl-C here stops before anything is trained
        model = self.exp.new_model(self.cfg)
        stop.check()
        self.n_params = _non_embedding_params(model)
        self.param_counts = adapters.parameter_counts(model)
        log.info("%s: %s of %s parameters train", self.cfg.task.name, f"{self.param_counts['trainable_params']:,}",
                 f"{self.param_counts['total_params']:,}")
        train_dl, eval_dl = _dataloaders(self.exp, self.cfg)
        optimizer = _optimizer(model, t.lr, t.weight_decay)
        self.speed = _speed_settings(model, optimizer, self.exp.collator, self.accelerator, self.cfg)
        log.info("speed: %s", ", ".join(f"{k}={v}" for k, v in self.speed.items()))
        self.model, self.optimizer, self.train_dl, self.eval_dl = self.accelerator.prepare(
            model, optimizer, train_dl, eval_dl)
        self._schedule()
        stop.check()
        self.resume_from = self._resume_point()
        if self.resume_from is not None:
            self.state = checkpoints.restore(self.accelerator, self.resume_from)
            log.info("resumed from %s (step %d, epoch %d)", self.resume_from, self.state["global_step"],
                     self.state["epoch"])
        self.name = run_name(self.cfg, hydra_overrides())
        self._start_tracking()

    def _resume_point(self) -> Optional[Path]:
        """The checkpoint to continue from; with several processes, the same step on every one of them."""
        if self.accelerator.num_processes == 1:
            return checkpoints.find(self.t.resume, self.run_dir)
        try:
            found, error = checkpoints.find(self.t.resume, self.run_dir), None
        except ExperimentError as exc:
            found, error = None, str(exc)
        return nodes.agree_on_step(found, error)

    def _schedule(self) -> None:
        """Steps per epoch, total steps and the LR scheduler (its horizon scaled to the process count)."""
        from transformers import get_scheduler

        t, processes = self.t, self.accelerator.num_processes
        self.batches_per_epoch = min(len(self.train_dl), t.limit_train_batches or len(self.train_dl))
        self.steps_per_epoch = max(1, math.ceil(self.batches_per_epoch / t.gradient_accumulation_steps))
        self.total_steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(t.epochs * self.steps_per_epoch))
        self.num_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        warmup = t.warmup_steps or math.ceil(t.warmup_ratio * self.total_steps)
        # The prepared scheduler steps once per process per optimizer step: scale its horizon to match.
        scheduler = get_scheduler(t.scheduler, self.optimizer, num_warmup_steps=warmup * processes,
                                  num_training_steps=self.total_steps * processes)
        self.scheduler = self.accelerator.prepare(scheduler)

    def _start_tracking(self) -> None:
        from omegaconf import OmegaConf

        if not self.accelerator.is_main_process:
            return
        config = scrub(OmegaConf.to_container(OmegaConf.structured(self.cfg), resolve=True))
        tags = self.cfg.tags + [self.cfg.model.name, self.cfg.dataset.name]
        resume_step = self.state["global_step"] if self.resume_from else (  # -1: starting again, drop every row
            -1 if checkpoints.resume_requested(self.t.resume) else None)
        self.tracking = Tracking(build_trackers(self.cfg.logger, self.run_dir, self.name, tags,
                                                resume_step=resume_step), config)

    # -- training ---------------------------------------------------------------------------------
    def train(self) -> None:
        from tqdm.auto import tqdm

        self.model.train()
        self._checked_step = self.state["global_step"]
        if self.t.eval_before_training and self.resume_from is None and not self.state["history"]:
            self.evaluate()  # step 0: the untrained model, measured by the same code (the baseline)
        self.progress = tqdm(total=self.total_steps, initial=self.state["global_step"], desc="train", unit="step",
                             disable=not self.accelerator.is_local_main_process, dynamic_ncols=True)
        for epoch in range(self.state["epoch"], self.num_epochs):
            if self.state["global_step"] >= self.total_steps or self.state.get("stopped"):
                break
            self.train_epoch(epoch)
        self.progress.close()

    def train_epoch(self, epoch: int) -> None:
        state, t = self.state, self.t
        state["epoch"] = epoch
        loader = self.train_dl
        loader.set_epoch(epoch)  # before skipping: the skipping loader draws from the same sampler
        if state["batches_in_epoch"]:
            loader = self.accelerator.skip_first_batches(self.train_dl, state["batches_in_epoch"])
        loader.set_epoch(epoch)
        self._tic = time.perf_counter()
        for batch in loader:
            if state["batches_in_epoch"] >= self.batches_per_epoch:
                break
            if self.train_step(batch, epoch) and self.after_optimizer_step():
                break
        self._pause_clock()
        self._check_loss(state["global_step"])
        state["epoch"], state["batches_in_epoch"] = epoch + 1, 0
        if not t.eval_steps:
            self.evaluate()
        if not t.save_steps and not self._pruned():
            self.checkpoint()

    def train_step(self, batch, epoch: int) -> bool:
        """Forward, backward and (at the end of an accumulation) an optimizer step; True after that step."""
        accelerator, state = self.accelerator, self.state
        examples = batch.pop(NUM_EXAMPLES, None) or batch["input_ids"].shape[0]  # a flattened row holds several
        with accelerator.accumulate(self.model):
            loss = self.model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and self.t.max_grad_norm > 0:
                accelerator.clip_grad_norm_(self.model.parameters(), self.t.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
        state["batches_in_epoch"] += 1
        state["samples_seen"] += examples * accelerator.num_processes
        state["flos"] += 6.0 * self.n_params * batch["input_ids"].numel() * accelerator.num_processes
        # summed on the device: the host waits for it only at logging, evaluation and checkpoint steps
        self._running_loss = self._running_loss + loss.detach().float()
        self._running_batches += 1
        if not accelerator.sync_gradients:
            return False
        state["global_step"] += 1
        self.progress.update(1)
        return True

    def after_optimizer_step(self) -> bool:
        """Log, evaluate, checkpoint and honour a stop request at their intervals; True when training is done."""
        step, t = self.state["global_step"], self.t
        evaluating = bool(t.eval_steps) and step % t.eval_steps == 0
        saving = bool(t.save_steps) and step % t.save_steps == 0
        if evaluating or saving or step == self.total_steps:
            self._check_loss(step)  # nothing is evaluated or saved after a non-finite loss
        if step % t.log_every_n_steps == 0 or step == self.total_steps:
            self._log_train_loss(step)
        if evaluating:
            self._pause_clock()
            self.evaluate()
            self._tic = time.perf_counter()
        if saving:
            self._pause_clock()
            self.checkpoint()
            self._tic = time.perf_counter()
        if (evaluating or step % t.log_every_n_steps == 0) and not self.state.get("stopped"):
            self._stop_if_requested(step)
        self.stop_if_asked()
        return step >= self.total_steps or bool(self.state.get("stopped"))

    def _check_loss(self, step: int) -> None:
        """Stop when a train loss since the last check was nan/inf (one host sync)."""
        if self._running_batches and not math.isfinite(float(self._running_loss)):
            since = self._checked_step
            when = f"at step {step}" if since == step - 1 else f"between steps {since + 1} and {step}"
            raise TrainingDiverged(
                f"training diverged: train loss is {float(self._running_loss)} {when} (epoch {self.state['epoch']}); "
                f"lower trainer.lr (now {self.t.lr}) or check the data; nothing was saved as best after it")
        self._checked_step = step

    def _log_train_loss(self, step: int) -> None:
        self._check_loss(step)
        mean = (self._running_loss / self._running_batches).to(self.accelerator.device)
        mean_loss = self.accelerator.reduce(mean, "mean").item()
        record = {"step": step, "epoch": round(step / self.steps_per_epoch, 4), "train_loss": mean_loss,
                  "lr": self.scheduler.get_last_lr()[0]}
        self.state["train_log"].append(record)
        self._log({"train_loss": mean_loss, "lr": record["lr"]}, step)
        self.progress.set_postfix(loss=f"{mean_loss:.4f}")
        self._running_loss, self._running_batches = 0.0, 0

    def _pause_clock(self) -> None:
        self.state["train_time_s"] += time.perf_counter() - self._tic

    def _log(self, values: Dict[str, float], step: int) -> None:
        if self.tracking is not None:
            self.tracking.log(values, step=step)

    # -- evaluation, checkpoints, stopping -------------------------------------------------------
    def evaluate(self) -> Dict[str, float]:
        """Evaluate, record, and save ``best/`` when the best metric improved (never on non-finite values)."""
        state, cfg = self.state, self.cfg
        self._last_eval = {}
        results = evaluate(self.model, self.eval_dl, self.accelerator, self.exp, cfg, self.t.limit_eval_batches,
                           keep=self._last_eval)
        state["history"].append({"step": state["global_step"],
                                 "epoch": round(state["global_step"] / self.steps_per_epoch, 4), **results})
        self._log(results, state["global_step"])
        key = best_metric_key(cfg, results)
        finite = math.isfinite(results[key]) and math.isfinite(results["eval_loss"])
        if finite and is_better(cfg, key, results[key], state["best"]["value"] if state["best"] else None):
            state["best"] = {"metric": key, "value": results[key], "step": state["global_step"]}
            self.accelerator.wait_for_everyone()
            if self.t.save_model:
                self.save_model("best")
        log.info("step %d: %s", state["global_step"],
                 ", ".join(f"{k}={v:.4f}" for k, v in results.items() if "runtime" not in k))
        stopped = early_stop(cfg, key, state["history"])
        if stopped and state["global_step"] > 0:
            state["stopped"] = stopped
            log.info("early stopping at step %d: %s did not improve on %.4f (step %d) for %d evaluations",
                     stopped["step"], key, stopped["best"], stopped["best_step"], stopped["patience"])
        self.save_metrics()
        self.results = results
        return results

    def save_model(self, name: str) -> None:
        """``best/`` or ``last/``: the model (merged, with its adapter beside it, under peft) + tokenizer.
        Every process calls it (under FSDP gathering the weights is collective); the main process writes."""
        model = sharding.full_model(self.accelerator, self.model, self.exp.task.train_auto_class,
                                    self.cfg.model.trust_remote_code)
        if self.accelerator.is_main_process:
            replace_dir(self.run_dir / name,
                        lambda tmp: adapters.save(model, self.exp.tokenizer, tmp, self.cfg.peft, self.cfg.model))

    def checkpoint(self) -> None:
        checkpoints.save(self.accelerator, self.run_dir, self.state["global_step"], self.state,
                         keep=self.t.save_total_limit, shared=self.shared_fs)

    def _pruned(self) -> bool:
        return (self.state.get("stopped") or {}).get("reason") == "pruned"

    def _stop_if_requested(self, step: int) -> None:
        """A search's pruner asked this run to stop (at a logging or evaluation step, on every process)."""
        stopped = requested_stop(self.run_dir, step, agree=any_process)
        if stopped:
            self.state["stopped"] = stopped
            log.info("stopping at step %d: %s", step, stopped["reason"])

    def stop_if_asked(self) -> None:
        """At an optimizer-step boundary: every process agrees, saves a checkpoint, and stops."""
        import torch

        stop = interrupts.current()
        asked = float(stop.requested)
        if self.accelerator.num_processes > 1:
            asked = self.accelerator.reduce(torch.tensor(asked, device=self.accelerator.device), "sum").item()
        if asked:
            self.checkpoint()
            # every rank stops; a rank that got no signal itself reports the one its launcher forwarded
            raise Interrupted.after_checkpoint(stop.signum or signal.SIGTERM, self.state["global_step"], self.run_dir)

    # -- the run's record -------------------------------------------------------------------------
    def save_metrics(self, final: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        t, accelerator, state = self.t, self.accelerator, self.state
        record = RunRecord(
            mode="train", model=self.cfg.model.name_or_path, run_name=self.name, backend="accelerate",
            model_source=self.exp.model_source, dataset=self.cfg.dataset.name, final=final or {},
            best=state["best"], history=state["history"], train_log=state["train_log"],
            num_train_samples=len(self.exp.data.train), num_eval_samples=len(self.exp.data.eval),
            global_batch_size=t.per_device_batch_size * accelerator.num_processes * t.gradient_accumulation_steps,
            mixed_precision=self.precision, resumed_from=str(self.resume_from) if self.resume_from else None,
            distributed_type=str(accelerator.distributed_type).split(".")[-1], task=self.cfg.task.name,
            stopped=state.get("stopped") or ({"reason": "completed", "step": state["global_step"]} if final else None),
            peft=self.cfg.peft.name, **self.param_counts, environment=environment(accelerator.num_processes),
            details={"speed": self.speed, **self.eval_predictions})
        if accelerator.is_main_process:
            return write_record(self.run_dir, record)
        return to_payload(record)

    def finish(self) -> Dict[str, Any]:
        """The final state is always evaluated; ``last/``, the final metrics and the learning curve."""
        state = self.state
        if not state["history"] or state["history"][-1]["step"] != state["global_step"]:
            self.evaluate()
        results = self.results or {k: v for k, v in state["history"][-1].items() if k.startswith("eval_")}
        self.accelerator.wait_for_everyone()
        if self.t.save_model and not self._pruned():  # a pruned trial's weights are not worth the disk
            self.save_model("last")
        train_time = max(state["train_time_s"], 1e-9)
        final = {**results,
                 "train_samples_per_second": state["samples_seen"] / train_time,
                 "train_runtime_s": state["train_time_s"],
                 "train_loss": state["train_log"][-1]["train_loss"] if state["train_log"] else None,
                 "train_flops_per_second": state["flos"] / train_time,
                 "global_step": state["global_step"], "epochs": state["epoch"]}
        self._log({k: v for k, v in final.items()  # train_loss of this step is logged already
                   if k.startswith("train_") and k != "train_loss" and v is not None}, state["global_step"])
        self.write_eval_predictions()
        payload = self.save_metrics(final)
        if self.tracking is not None:
            self.tracking.mark_stopped(payload.get("stopped"))
        if self.accelerator.is_main_process:
            plot_learning_curve(state["history"], state["train_log"], self.run_dir / "learning_curve.png",
                                title=self.name)
        return payload

    def write_eval_predictions(self) -> None:
        """The final evaluation's per-example rows (eval_predictions.jsonl; main process), recorded in
        metrics.json. None when this process did not run that evaluation (a resume right after it)."""
        last = self._last_eval
        if not self.accelerator.is_main_process or not last:
            return
        records = self.exp.task.eval_records(last["columns"], last["scores"], self.exp.data, self.cfg)
        if records is not None:
            self.eval_predictions = {RECORD_KEY: write_records(self.run_dir, records)}

    def close(self) -> None:
        """Always: close the progress bar (so an error line is the last on the console), finish trackers,
        and forget this run's Accelerate state."""
        if self.progress is not None:
            self.progress.close()
        if self.tracking is not None:
            self.tracking.finish()
        if self.accelerator is not None:
            self.accelerator.end_training()
        reset_accelerate_state()


def _non_embedding_params(model) -> int:
    """Parameters every token pays 6 FLOPs each for (forward + backward); embeddings are lookups."""
    return sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)
