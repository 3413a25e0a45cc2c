"""The same fine-tune on transformers' ``Trainer`` (``trainer=hf_trainer``), for comparison and familiarity.

``average_tokens_across_devices=False`` keeps the logged loss right under DDP (else it is scaled by the
number of processes). Trackers are ours (experiments.tracking), fed by a callback.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from transformers import Trainer, TrainerCallback

from experiments import adapters, hardware, interrupts
from experiments.config.schema import ExperimentConfig, TrainerConfig
from experiments.errors import ExperimentError, TrainingDiverged, disk_failure
from experiments.files import replace_dir
from experiments.interrupts import Interrupted
from experiments.metrics.examples import RECORD_KEY, write_records
from experiments.record import RunRecord, to_payload, write_record
from experiments.runs import environment, plot_learning_curve
from experiments.secrets import scrub
from experiments.tracking import Tracking, build_trackers
from experiments.train import nodes
from experiments.train.checkpoints import (
    last_hf_checkpoint,
    nothing_to_continue,
    resume_in_place,
    resume_requested,
    whole_hf_checkpoint,
)
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


def training_arguments(cfg: ExperimentConfig, run_dir: Path, arguments_class=None, **extra: Any):
    """The Trainer's arguments from ``cfg.trainer`` (an ``arguments_class`` such as TRL's DPOConfig takes the same
    ones, ``extra`` added or replacing them)."""
    from transformers import TrainingArguments

    arguments_class = arguments_class or TrainingArguments
    t = cfg.trainer
    precision = hardware.mixed_precision(t.mixed_precision)
    device = hardware.training_device_type()
    strategy = "steps" if t.eval_steps else "epoch"
    save_strategy = "steps" if t.save_steps else "epoch"
    values = dict(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        learning_rate=t.lr,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_steps or t.warmup_ratio,
        lr_scheduler_type=t.scheduler,
        per_device_train_batch_size=t.per_device_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_grad_norm=t.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        seed=t.seed,
        data_seed=t.seed,
        eval_strategy=strategy,
        eval_steps=t.eval_steps,
        save_strategy=save_strategy,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        # N machines with a run dir on each one's own disk: every node keeps a whole checkpoint (nodes.py)
        save_on_each_node=not nodes.shared_filesystem(run_dir, t.num_machines),
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        # step 0 inside train(), after the model is wrapped for DDP (an evaluate() before train() leaves it unwrapped
        # and the processes' gradients unsynchronised); a resumed run turns it off (_train)
        eval_on_start=t.eval_before_training,
        logging_steps=t.log_every_n_steps,
        logging_nan_inf_filter=False,  # a diverged loss must show (and stop the run), not be averaged away
        dataloader_num_workers=t.dataloader_num_workers,
        average_tokens_across_devices=False,
        # the same optimizer as our loop (fused where torch has it), so the two backends compare like for like
        optim="adamw_torch_fused" if hardware.fused_adamw_runs_on([device]) else "adamw_torch",
        torch_compile=hardware.use_compile(t.compile, device),
        report_to=[],
        use_cpu=device == "cpu",
        disable_tqdm=False,
    )
    return arguments_class(**{**values, **extra})


class StepClock(TrainerCallback):
    """Sums the seconds inside training steps (``on_step_begin`` to ``on_step_end``: forward, backward and the
    optimizer step), the span our loop's clock counts: evaluations and checkpoint saves between steps are left out.
    scripts/bench_preference.py times TRL used directly with it."""

    def __init__(self) -> None:
        self.step_seconds = 0.0
        self._step_began: Optional[float] = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_began = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_began is not None:
            self.step_seconds += time.perf_counter() - self._step_began
            self._step_began = None


class Mirror(StepClock):
    """Mirrors the Trainer's logs into our history, train log and trackers, keeps ``best/``, and stops on a
    diverged loss, a recorded signal, early stopping or a search's request."""

    def __init__(self, cfg: ExperimentConfig, perplexity: bool) -> None:
        super().__init__()
        self.cfg, self.lr, self.perplexity = cfg, cfg.trainer.lr, perplexity
        self.history: List[Dict[str, Any]] = []
        self.train_log: List[Dict[str, Any]] = []
        self.tracking = None
        self.stopped: Optional[Dict[str, Any]] = None
        self.run_dir: Optional[Path] = None
        self.evaluations: List[Dict[str, Any]] = []  # on every process (history: the main process's)
        self.train_keys: tuple = ()  # a trainer's own per-step metrics kept in the train log (TRL's rewards)

    def _evals(self, logs: Dict[str, Any]) -> Dict[str, float]:
        """The eval metrics of a Trainer log (runtime in seconds; language models: perplexity =
        exp(mean token loss))."""
        evals = {k.replace("_runtime", "_runtime_s"): float(v) for k, v in logs.items()
                 if k.startswith("eval_") and isinstance(v, (int, float))}
        if evals and self.perplexity and "eval_loss" in evals:
            evals["eval_perplexity"] = math.exp(min(evals["eval_loss"], 50.0))
        return evals

    def on_train_begin(self, args, state, control, **kwargs):
        """A resumed run's evaluations and train log so far (the Trainer restores its log history before this:
        what was logged up to the checkpoint, none of what came after it)."""
        self.evaluations = [{"step": entry["step"], **self._evals(entry)} for entry in state.log_history
                            if "eval_loss" in entry]
        if state.is_world_process_zero:
            self.history, self.train_log = [], []
            for entry in state.log_history:
                self._keep(entry, entry["step"], round(entry.get("epoch") or 0.0, 4))

    def on_evaluate(self, args, state, control, metrics=None, model=None, processing_class=None, **kwargs):
        """``best/`` when the best metric improved, ``trainer.early_stopping_patience`` (both the same rules
        as our loop) and a search's request to stop (a pruned trial); every process decides alike."""
        if self.run_dir is not None and self.stopped is None:
            self.stopped = requested_stop(self.run_dir, state.global_step, agree=any_process)
            control.should_training_stop = control.should_training_stop or self.stopped is not None
        if not metrics:
            return
        evals = self._evals(metrics)
        key = best_metric_key(self.cfg, evals)
        improved = math.isfinite(evals.get("eval_loss", 0.0)) and is_better(self.cfg, key, evals[key],
                                                                               self._best_value(key))
        self.evaluations.append({"step": state.global_step, **evals})
        if improved and state.is_world_process_zero:
            self._save_best(model, processing_class)
        stopped = early_stop(self.cfg, key, self.evaluations)
        if stopped and state.global_step > 0:
            self.stopped = stopped
            control.should_training_stop = True

    def _best_value(self, key: str) -> Optional[float]:
        best = None
        for row in self.evaluations:
            if key in row and is_better(self.cfg, key, row[key], best):
                best = row[key]
        return best

    def _save_best(self, model, tokenizer) -> None:
        """``best/``: the model (merged, with its adapter beside it, under peft) + tokenizer, swapped in whole."""
        if self.run_dir is not None and self.cfg.trainer.save_model and model is not None:
            replace_dir(self.run_dir / "best",
                        lambda tmp: adapters.save(model, tokenizer, tmp, self.cfg.peft, self.cfg.model))

    def on_step_end(self, args, state, control, **kwargs):
        super().on_step_end(args, state, control, **kwargs)
        if interrupts.current().requested:  # checkpoint this step, then stop (raised after train())
            control.should_save = True
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and not math.isfinite(float(logs["loss"])):
            raise TrainingDiverged(f"training diverged: train loss is {logs['loss']} at step {state.global_step}; "
                                   f"lower trainer.lr (now {self.lr}) or check the data")
        if not logs or not state.is_world_process_zero:
            return
        row, evals = self._keep(logs, state.global_step, round(state.epoch or 0.0, 4))
        for values in (row, evals):
            if values:
                self._log(values, state.global_step)
        if evals:
            self._write_progress()

    def _keep(self, logs: Dict[str, Any], step: int, epoch: float):
        """(train-log row, evaluation) of one Trainer log, each appended to ``train_log`` / ``history``
        (empty when the log holds none)."""
        row: Dict[str, float] = {}
        if "loss" in logs:
            row = {"train_loss": float(logs["loss"]), "lr": float(logs.get("learning_rate", 0.0)),
                   **{key: float(logs[key]) for key in self.train_keys
                      if isinstance(logs.get(key), (int, float)) and not isinstance(logs[key], bool)}}
            self.train_log.append({"step": step, "epoch": epoch, **row})
        evals = self._evals(logs)
        if evals:
            self.history.append({"step": step, "epoch": epoch, **evals})
        return row, evals

    def _write_progress(self) -> None:
        """The evaluations so far in metrics.json (what a search's pruner reads while the run trains)."""
        if self.run_dir is not None:
            write_record(self.run_dir, RunRecord(mode="train", model=self.cfg.model.name_or_path,
                                                 backend="hf_trainer", history=self.history,
                                                 train_log=self.train_log, task=self.cfg.task.name))

    def _log(self, values: Dict[str, float], step: int) -> None:
        if self.tracking is not None:
            self.tracking.log(values, step)


def _resume_checkpoint(t: TrainerConfig, output_dir: str) -> Optional[str]:
    """``trainer.resume``: this run's newest ``checkpoint-N`` (true/latest) or the given path."""
    if not resume_requested(t.resume):
        return None
    resume = t.resume
    if resume_in_place(t.resume):
        last = last_hf_checkpoint(Path(output_dir).parent)  # output_dir: the run dir's checkpoints/
        resume = str(last) if last else None
    if not resume and resume_in_place(t.resume) and nothing_to_continue(Path(output_dir).parent):
        return None  # stopped before its first checkpoint: it starts again from step 0
    if not resume:
        raise ExperimentError(f"trainer.resume: no checkpoint in {output_dir}")
    if not whole_hf_checkpoint(Path(resume).expanduser()):
        raise ExperimentError(f"trainer.resume: '{resume}' is not a complete HF Trainer checkpoint (a checkpoint-N "
                              f"folder holding trainer_state.json); pass one, or trainer.resume=true in the run's "
                              f"own directory")
    return str(Path(resume).expanduser())


def _start_tracking(cfg: ExperimentConfig, run_dir: Path, name: str, resume: Optional[str]):
    from omegaconf import OmegaConf

    config = scrub(OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True))
    restart = -1 if resume_requested(cfg.trainer.resume) else None  # starting again from step 0: drop every row
    resume_step = int(Path(resume).name.rsplit("-", 1)[-1]) if resume else restart
    return Tracking(build_trackers(cfg.logger, run_dir, name, cfg.tags + [cfg.model.name, cfg.dataset.name],
                                   resume_step=resume_step), config)


def run(cfg: ExperimentConfig, run_dir: Path) -> Dict[str, Any]:
    """The same fine-tune on transformers' Trainer; writes the same run record as our loop."""
    from transformers.trainer_utils import set_seed

    t = cfg.trainer
    args = training_arguments(cfg, run_dir)
    resume = _resume_checkpoint(t, args.output_dir)  # a bad trainer.resume: one line before anything loads
    set_seed(t.seed)
    exp = build_experiment(cfg, lambda: args.main_process_first(desc="dataset"))
    if not exp.task.hf_trainer:
        raise ExperimentError(f"trainer=hf_trainer trains text-classification and text-generation; "
                              f"task={cfg.task.name} trains with trainer=accelerate (the default)")
    model = exp.new_model(cfg)
    name = run_name(cfg, hydra_overrides())
    mirror = Mirror(cfg, perplexity=exp.compute_metrics is None)
    mirror.run_dir = run_dir
    last_eval: Dict[str, Any] = {}
    trainer = Trainer(model=model, args=args, train_dataset=exp.data.train, eval_dataset=exp.data.eval,
                      data_collator=exp.collator, processing_class=exp.tokenizer,
                      compute_metrics=_metric_function(exp, last_eval) if exp.compute_metrics else None,
                      callbacks=[mirror])
    if args.process_index == 0:
        mirror.tracking = _start_tracking(cfg, run_dir, name, resume)
    try:
        tic = time.perf_counter()
        result = _train(trainer, resume, run_dir)
        return _finish(cfg, run_dir, trainer, exp, mirror, result, time.perf_counter() - tic, name, resume,
                       last_eval)
    finally:
        if mirror.tracking is not None:
            mirror.tracking.finish()
        reset_accelerate_state()


def _metric_function(exp, last: Dict[str, Any]):
    """The Trainer's ``compute_metrics``; ``last`` keeps the latest evaluation's per-example predictions,
    labels and scores (the run's eval_predictions.jsonl)."""
    def compute_metrics(eval_pred) -> Dict[str, float]:
        import torch

        logits, labels = eval_pred.predictions, eval_pred.label_ids
        logits = torch.as_tensor(logits[0] if isinstance(logits, tuple) else logits).float()
        labels = torch.as_tensor(labels)
        preds, _ = exp.task.eval_outputs(logits, labels, exp.data)  # the same post-processing
        scores = exp.compute_metrics(preds.tolist(), labels.tolist())
        last.update(columns={"prediction": preds, "label": labels}, scores=scores)
        return scores

    return compute_metrics


def _eval_predictions(cfg: ExperimentConfig, run_dir: Path, exp, last: Dict[str, Any]) -> Dict[str, Any]:
    """eval_predictions.jsonl of the final evaluation (main process), and its entry in metrics.json. The
    Trainer's eval_loss is a mean of batch means, so the loss is not among the rows' metrics."""
    if not last:
        return {}
    records = exp.task.eval_records(last["columns"], last["scores"], exp.data, cfg)
    if records is None:
        return {}
    records.not_recomputed["loss"] = "the Trainer's eval_loss is a mean of per-batch means"
    return {RECORD_KEY: write_records(run_dir, records)}


def _train(trainer: Trainer, resume: Optional[str], run_dir: Path):
    """``trainer.train``; a signal recorded during it stops at the next step with a checkpoint."""
    stop = interrupts.current()
    stop.check()  # a signal during set-up: stop before training
    if resume is not None:
        trainer.args.eval_on_start = False  # the step-0 evaluation is in the checkpoint's history already
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except RuntimeError as exc:  # torch's checkpoint writer on a full disk: one line, as in our loop
        failed = disk_failure(exc, Path(run_dir) / "checkpoints")
        if failed is None:
            raise
        raise failed from None
    finally:
        _close_progress_bars(trainer)  # an error line must be the last line on the console
    if stop.requested:
        raise Interrupted.after_checkpoint(stop.signum, result.global_step, run_dir)
    return result


def _finish(cfg: ExperimentConfig, run_dir: Path, trainer: Trainer, exp, mirror, result, wall: float, name: str,
            resume: Optional[str], last_eval: Dict[str, Any]) -> Dict[str, Any]:
    """Final evaluation, ``last/``, and the same run record our loop writes."""
    t, args, history, train_log = cfg.trainer, trainer.args, mirror.history, mirror.train_log
    # The final state is always evaluated; log_history is the same on every rank, so all ranks agree.
    if not any("eval_loss" in h and h.get("step") == result.global_step for h in trainer.state.log_history):
        trainer.evaluate()
    final = {k: v for k, v in history[-1].items() if k.startswith("eval_")} if history else {}
    key = best_metric_key(cfg, final)
    best = None
    for row in history:  # the same rule as our loop's best/ (finite values only, first of equals)
        if key in row and is_better(cfg, key, row[key], best[key] if best else None):
            best = row
    # the time inside training steps (evaluations and checkpoints left out, as our loop counts it); the Trainer's
    # own train_runtime spans them too
    runtime = float(result.metrics.get("train_runtime", wall))
    seconds = mirror.step_seconds or runtime
    final.update({
        "train_samples_per_second": float(result.metrics.get("train_samples_per_second", 0.0)) * runtime / seconds,
        "train_runtime_s": seconds,
        "train_loss": train_log[-1]["train_loss"] if train_log else float(result.training_loss),
        "global_step": int(result.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
    })
    record = RunRecord(
        mode="train", model=cfg.model.name_or_path, run_name=name, backend="hf_trainer",
        model_source=exp.model_source, dataset=cfg.dataset.name, final=final,
        best={"metric": key, "value": best[key], "step": best["step"]} if best else None,
        history=history, train_log=train_log,
        num_train_samples=len(exp.data.train), num_eval_samples=len(exp.data.eval),
        global_batch_size=t.per_device_batch_size * args.world_size * t.gradient_accumulation_steps,
        mixed_precision="bf16" if args.bf16 else "fp16" if args.fp16 else "no",
        resumed_from=str(resume) if resume else None,
        stopped=mirror.stopped or {"reason": "completed", "step": int(result.global_step)},
        distributed_type=str(trainer.accelerator.distributed_type).split(".")[-1], task=cfg.task.name,
        peft=cfg.peft.name, **adapters.parameter_counts(trainer.model), environment=environment(args.world_size),
        details={"speed": hardware.speed_settings(
            mixed_precision="bf16" if args.bf16 else "fp16" if args.fp16 else "no",
            attn_implementation=getattr(trainer.model.config, "_attn_implementation", None),
            optimizer=str(args.optim).split(".")[-1].lower(), compile=args.torch_compile,
            group_by_length=t.group_by_length, collator=cfg.collator.name,
            device=hardware.device_name(args.device.type),
            **hardware.training_basis(t.mixed_precision, cfg.model.attn_implementation, t.compile))})
    if not trainer.is_world_process_zero():
        return to_payload(record)
    if t.save_model and (mirror.stopped or {}).get("reason") != "pruned":  # a pruned trial's weights: not kept
        replace_dir(run_dir / "last", lambda tmp: adapters.save(trainer.model, exp.tokenizer, tmp, cfg.peft, cfg.model))
    plot_learning_curve(history, train_log, run_dir / "learning_curve.png", title=name)
    record.details.update(_eval_predictions(cfg, run_dir, exp, last_eval))
    if mirror.tracking is not None:
        mirror.tracking.mark_stopped(record.stopped)
    return write_record(run_dir, record)


def _close_progress_bars(trainer: Trainer) -> None:
    from transformers.trainer_callback import ProgressCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ProgressCallback):
            for bar in (callback.training_bar, callback.prediction_bar):
                if bar is not None:
                    bar.close()
