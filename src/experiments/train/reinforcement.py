"""Reinforcement tuning (``tuning=grpo``): GRPO through TRL's ``GRPOTrainer``, on the HF Trainer spine.

Rows are prompts (``dataset.text_column``), with a reference (``dataset.label_column``) where the rewards need
one. The prompt is what ``mode=infer`` feeds the model for the task. For each prompt TRL samples
``tuning.num_generations`` completions (``task.max_new_tokens`` long, ``tuning.temperature``; batched generation
with the KV cache), scores them with the configured rewards (:mod:`experiments.metrics.rewards`) and moves the
policy towards the better ones of each group, ``tuning.kl_coef`` holding it near the reference model (with
``peft=lora``: the adapter disabled). Per step the run's train log keeps the rewards' mean and spread, the KL and
the completion lengths; every evaluation adds the task's own metric on greedy answers to the held-out prompts.

TRL is imported by this module only, and this module only for ``tuning=grpo``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from trl import GRPOConfig, GRPOTrainer

from experiments.config.schema import ExperimentConfig
from experiments.data.prepare import example_ids
from experiments.data.sources import load_raw
from experiments.errors import ExperimentError
from experiments.metrics.rewards import REFERENCE_REWARDS, build_rewards
from experiments.tasks.base import Item, TrainingData
from experiments.train.common import Experiment
from experiments.train.hf_trainer import training_arguments
from experiments.train.trl_spine import (
    TaskMetrics,
    check_data_files,
    check_text_cells,
    checked_splits,
    generation_task,
)
from experiments.train.trl_spine import run as run_on_spine

# TRL's per-step metrics kept in the run's train log (names without '/')
TRAIN_KEYS = ("reward", "reward_std", "kl", "completions_mean_length", "completions_min_length",
              "completions_max_length", "completions_clipped_ratio", "frac_reward_zero_std", "num_tokens")


class RolloutTrainer(TaskMetrics, GRPOTrainer):
    """TRL's GRPOTrainer with the task's generated metrics at every evaluation, the mean reward next."""

    preferred_metric = "reward"


def prompt_splits(raw, cfg: ExperimentConfig, needs_reference: bool):
    """(train, eval) raw splits with the prompt column (and the reference column the rewards need), checked."""
    columns = [cfg.dataset.text_column] + ([cfg.dataset.label_column] if needs_reference else [])
    return checked_splits(raw, cfg, columns, "dataset.text_column (the prompt) and dataset.label_column (the "
                                             "reference)", check_text_cells)


def prompts(split, task, cfg: ExperimentConfig, with_reference: bool):
    """TRL's prompt rows: the task's inference prompt, and the reference the rewards read (column ``reference``)."""
    text, label = cfg.dataset.text_column, cfg.dataset.label_column

    def to_row(row: Dict[str, Any]) -> Dict[str, Any]:
        out = {"prompt": task.pipeline_inputs([row[text]])[0]}
        if with_reference:
            out["reference"] = row[label]
        return out

    return split.map(to_row, remove_columns=split.column_names, desc=f"prompts {cfg.dataset.name}")


def build_experiment(cfg: ExperimentConfig, rewards):
    """The task, tokenizer and prompt data (eval items: prompt text and reference, where there is one)."""
    task, resolved, tokenizer = generation_task(cfg)
    check_data_files(cfg, "prompts")
    needs_reference = any(reward.__name__ in REFERENCE_REWARDS for reward in rewards)
    raw = load_raw(cfg.dataset, cfg.paths.mirror)
    has_reference = needs_reference or all(cfg.dataset.label_column in split.column_names for split in raw.values())
    train, evaluation = prompt_splits(raw, cfg, needs_reference)
    data_task = task.data_task(tokenizer, cfg)
    items = [Item(example, row[cfg.dataset.text_column], row[cfg.dataset.label_column] if has_reference else None)
             for example, row in zip(example_ids(evaluation), evaluation)]
    data = TrainingData(prompts(train, data_task, cfg, has_reference), prompts(evaluation, data_task, cfg, has_reference),
                        items)
    return Experiment(task, tokenizer, data, None, None, resolved.path, None, f"{resolved.origin}:{resolved.path}")


def check_group(cfg: ExperimentConfig) -> None:
    """The batches hold whole groups (TRL's GRPOConfig would raise a traceback): the rollout batch is a whole
    number of optimizer-step batches and of groups, the eval batch a whole number of groups; else one line."""
    t, g = cfg.trainer, cfg.tuning.num_generations
    step = t.per_device_batch_size * t.num_processes * t.num_machines
    rollout = cfg.tuning.rollout_batch_size or step * t.gradient_accumulation_steps
    if rollout % step:
        raise ExperimentError(f"tuning.rollout_batch_size={rollout} must be a multiple of the {step} completions "
                              f"of one step (trainer.per_device_batch_size x processes)")
    if rollout % g:
        raise ExperimentError(f"tuning.num_generations={g} must divide the rollout batch of {rollout} completions "
                              f"(tuning.rollout_batch_size, or trainer.per_device_batch_size x "
                              f"gradient_accumulation_steps x processes)")
    if (t.per_device_eval_batch_size * t.num_processes * t.num_machines) % g:
        raise ExperimentError(f"tuning.num_generations={g} must divide trainer.per_device_eval_batch_size x "
                              f"processes ({t.per_device_eval_batch_size} per process): evaluation samples whole groups")


def grpo_arguments(cfg: ExperimentConfig, run_dir: Path) -> GRPOConfig:
    """The Trainer arguments of the hf_trainer backend, as TRL's GRPOConfig with the tuning options."""
    tuning = cfg.tuning
    check_group(cfg)
    rollout = {"generation_batch_size": tuning.rollout_batch_size} if tuning.rollout_batch_size else {}
    # TRL turns gradient checkpointing on by default (memory for time); the spine trains without it, as the
    # hf_trainer backend and our loop do
    return training_arguments(cfg, run_dir, GRPOConfig, beta=tuning.kl_coef, num_generations=tuning.num_generations,
                              max_completion_length=cfg.task.max_new_tokens, temperature=tuning.temperature,
                              reward_weights=tuning.reward_weights, remove_unused_columns=False,
                              train_sampling_strategy="random", log_completions=False,
                              gradient_checkpointing=False, **rollout)


def run(cfg: ExperimentConfig, run_dir: Path) -> Dict[str, Any]:
    """GRPO on the HF Trainer spine."""
    from transformers.trainer_utils import set_seed

    rewards: List[Any] = build_rewards(cfg.tuning.rewards, cfg.tuning.reward_options)  # one line before loading
    args = grpo_arguments(cfg, run_dir)
    set_seed(cfg.trainer.seed)
    with args.main_process_first(desc="dataset"):
        exp = build_experiment(cfg, rewards)

    def make_trainer(model, args, exp, callbacks):
        # TRL's evaluation samples a group per prompt: one eval batch of held-out prompts (eval batch / group size)
        # keeps it cheap; the task's metric covers trainer.eval_generate_samples of them
        count = max(1, args.per_device_eval_batch_size // cfg.tuning.num_generations)
        rollout_prompts = exp.data.eval.select(range(min(len(exp.data.eval), count)))
        return RolloutTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=exp.data.train,
                              eval_dataset=rollout_prompts, processing_class=exp.tokenizer, callbacks=callbacks,
                              experiment=exp, cfg=cfg)

    return run_on_spine(cfg, run_dir, args, exp, make_trainer, TRAIN_KEYS)
