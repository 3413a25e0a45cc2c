"""Preference tuning (``tuning=dpo``): DPO and its variants through TRL's ``DPOTrainer``, on the HF Trainer spine.

The rows are prompt (``dataset.text_column``), chosen and rejected answers (``tuning.chosen_column`` /
``tuning.rejected_column``), checked before the model loads. The prompt becomes what ``mode=infer`` feeds the
model for the task (its template and chat template), so the tuned model is used exactly as it was trained. TRL
tokenizes the pairs, keeps the reference model (with ``peft=lora``: the same model with its adapter disabled, no
second copy) and computes the loss; :mod:`experiments.train.trl_spine` adds what the spine promises: the run
record, trackers, resume, checkpoints, ``last/``, and at every evaluation the task's own metric on generated
answers (BLEU / chrF / ROUGE against the chosen answers) beside TRL's reward accuracy, margins and log-probs.

TRL is imported by this module only, and this module only for ``tuning=dpo``: other runs never import TRL.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from transformers import TrainerCallback
from trl import DPOConfig, DPOTrainer

from experiments.config.schema import ExperimentConfig
from experiments.data.prepare import example_ids
from experiments.data.sources import load_raw
from experiments.errors import DataError
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

# TRL's per-step metrics kept in the run's train log beside the loss
TRAIN_KEYS = ("rewards_accuracies", "rewards_margins", "rewards_chosen", "rewards_rejected", "num_tokens")


class PreferenceTrainer(TaskMetrics, DPOTrainer):
    """TRL's DPOTrainer with the task's generated metrics at every evaluation, reward accuracy next."""

    preferred_metric = "rewards_accuracies"


class TokenCountOnResume(TrainerCallback):
    """TRL's DPOTrainer counts ``num_tokens`` from 0 in each process it runs in; a resumed run continues the count
    its checkpoint logged last (GRPO counts in the Trainer's state, which the checkpoint restores)."""

    def __init__(self, trainer: DPOTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        counted = [entry["num_tokens"] for entry in state.log_history if "num_tokens" in entry]
        if counted:
            self.trainer._total_train_tokens = int(counted[-1])


def check_preference_rows(split, name: str, columns: List[str]) -> None:
    """Every prompt / chosen / rejected cell is a non-empty string, and not every row's chosen equals its rejected
    (nothing to learn): else one line naming the split (and the row and column)."""
    check_text_cells(split, name, columns)
    same = sum(row[columns[1]].strip() == row[columns[2]].strip() for row in split)
    if len(split) and same == len(split):
        raise DataError(f"split '{name}': chosen equals rejected in all {same} rows, so there is no preference to "
                        f"learn; check tuning.chosen_column / tuning.rejected_column")


def preference_splits(raw, cfg: ExperimentConfig):
    """(train, eval) raw splits with the prompt, chosen and rejected columns, checked."""
    columns = [cfg.dataset.text_column, cfg.tuning.chosen_column, cfg.tuning.rejected_column]
    return checked_splits(raw, cfg, columns, "dataset.text_column (the prompt), tuning.chosen_column and "
                                             "tuning.rejected_column", check_preference_rows)


def pairs(split, task, cfg: ExperimentConfig):
    """TRL's preference rows: the task's inference prompt, and the answers as assistant turns (chat) or text."""
    text, chosen, rejected = cfg.dataset.text_column, cfg.tuning.chosen_column, cfg.tuning.rejected_column
    chat = task.use_chat()

    def answer(value: str) -> Any:
        return [{"role": "assistant", "content": value}] if chat else value

    def to_pair(row: Dict[str, Any]) -> Dict[str, Any]:
        # length: what trainer.group_by_length sorts by (the Trainer's length_column_name; characters of the
        # longer pair stand in for its tokens)
        return {"prompt": task.pipeline_inputs([row[text]])[0], "chosen": answer(row[chosen]),
                "rejected": answer(row[rejected]),
                "length": len(row[text]) + max(len(row[chosen]), len(row[rejected]))}

    return split.map(to_pair, remove_columns=split.column_names, desc=f"preference pairs {cfg.dataset.name}")


def build_experiment(cfg: ExperimentConfig):
    """The task, tokenizer and preference data: an :class:`~experiments.train.common.Experiment` whose eval items
    are (prompt text, chosen answer), so the task's generation metrics score the held-out prompts."""
    task, resolved, tokenizer = generation_task(cfg)
    check_data_files(cfg, "preference rows")
    train, evaluation = preference_splits(load_raw(cfg.dataset, cfg.paths.mirror), cfg)
    prompts = task.data_task(tokenizer, cfg)
    items = [Item(example, row[cfg.dataset.text_column], row[cfg.tuning.chosen_column])
             for example, row in zip(example_ids(evaluation), evaluation)]
    data = TrainingData(pairs(train, prompts, cfg), pairs(evaluation, prompts, cfg), items)
    return Experiment(task, tokenizer, data, None, None, resolved.path, None, f"{resolved.origin}:{resolved.path}")


def dpo_arguments(cfg: ExperimentConfig, run_dir: Path) -> DPOConfig:
    """The Trainer arguments of the hf_trainer backend, as TRL's DPOConfig with the tuning options."""
    longest = int(cfg.task.max_length or cfg.tokenizer.max_length) + cfg.task.max_new_tokens
    # TRL turns gradient checkpointing on by default (memory for time); the spine trains without it, as the
    # hf_trainer backend and our loop do
    return training_arguments(cfg, run_dir, DPOConfig, beta=cfg.tuning.beta, loss_type=[cfg.tuning.loss_type],
                              max_length=longest, remove_unused_columns=False,
                              gradient_checkpointing=False)


def run(cfg: ExperimentConfig, run_dir: Path) -> Dict[str, Any]:
    """DPO on the HF Trainer spine."""
    from transformers.trainer_utils import set_seed

    args = dpo_arguments(cfg, run_dir)
    set_seed(cfg.trainer.seed)
    with args.main_process_first(desc="dataset"):
        exp = build_experiment(cfg)

    def make_trainer(model, args, exp, callbacks):
        trainer = PreferenceTrainer(model=model, args=args, train_dataset=exp.data.train, eval_dataset=exp.data.eval,
                                    processing_class=exp.tokenizer, callbacks=callbacks, experiment=exp, cfg=cfg)
        trainer.add_callback(TokenCountOnResume(trainer))
        return trainer

    return run_on_spine(cfg, run_dir, args, exp, make_trainer, TRAIN_KEYS)
