"""Raw splits -> tokenized train/eval datasets, labels and a collator for sequence classification."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional

from experiments.config.schema import CollatorConfig, DatasetConfig, TokenizerConfig
from experiments.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class ClassificationData:
    train: object  # datasets.Dataset with input_ids, attention_mask, [token_type_ids], labels
    eval: object
    label_names: Optional[List[str]]  # None for regression
    num_labels: int
    is_regression: bool

    @property
    def id2label(self) -> Dict[int, str]:
        return {i: n for i, n in enumerate(self.label_names or ["score"])}


def _encode_labels(split, cfg: DatasetConfig, label_names: Optional[List[str]]):
    """String labels -> ids (by dataset.label_names, or sorted values); ClassLabel and ints stay as they are."""
    from datasets import ClassLabel

    column = cfg.label_column
    feature = split.features[column]
    if isinstance(feature, ClassLabel):
        return split, list(feature.names)
    if cfg.problem_type == "regression":
        return split.map(lambda b: {column: [float(x) for x in b[column]]}, batched=True), None
    values = split.unique(column)
    if all(isinstance(v, str) for v in values):
        names = list(label_names) if label_names else sorted(values)
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise DataError(f"labels {unknown[:5]} in column '{column}' are not in dataset.label_names {names}")
        return split.cast_column(column, ClassLabel(names=names)), names
    if label_names:
        return split, list(label_names)
    return split, [str(v) for v in range(int(max(values)) + 1)]


def _check_columns(split, cfg: DatasetConfig, name: str) -> None:
    needed = [c for c in (cfg.text_column, cfg.text_pair_column, cfg.label_column) if c]
    missing = [c for c in needed if c not in split.column_names]
    if missing:
        raise DataError(f"split '{name}' has no column(s) {missing} (columns: {', '.join(split.column_names)}); "
                        f"set dataset.text_column / dataset.label_column")


def select_splits(raw, cfg: DatasetConfig):
    """(train, eval) raw splits: the configured ones, or eval carved out of train (stratified when possible)."""
    if cfg.train_split not in raw:
        raise DataError(f"dataset '{cfg.name}' has no split '{cfg.train_split}' (splits: {', '.join(raw)})")
    train = raw[cfg.train_split]
    _check_columns(train, cfg, cfg.train_split)
    train, names = _encode_labels(train, cfg, cfg.label_names)
    if cfg.eval_split and cfg.eval_split in raw:
        evaluation = raw[cfg.eval_split]
        _check_columns(evaluation, cfg, cfg.eval_split)
        evaluation, _ = _encode_labels(evaluation, cfg, names)
    else:
        if cfg.eval_split and cfg.eval_split not in ("validation",):
            raise DataError(f"dataset '{cfg.name}' has no split '{cfg.eval_split}' (splits: {', '.join(raw)})")
        stratify = cfg.label_column if names is not None else None
        parts = train.train_test_split(test_size=cfg.validation_fraction, seed=cfg.split_seed,
                                       stratify_by_column=stratify)
        train, evaluation = parts["train"], parts["test"]
    if cfg.max_train_samples:
        train = train.shuffle(seed=cfg.split_seed).select(range(min(cfg.max_train_samples, len(train))))
    if cfg.max_eval_samples:
        evaluation = evaluation.select(range(min(cfg.max_eval_samples, len(evaluation))))
    return train, evaluation, names


def tokenize(split, tokenizer, cfg: DatasetConfig, tok_cfg: TokenizerConfig, *, desc: str):
    """``Dataset.map(batched=True, num_proc=…)``: the datasets cache makes a second identical run free."""
    text, pair, label = cfg.text_column, cfg.text_pair_column, cfg.label_column

    def encode(batch):
        args = (batch[text], batch[pair]) if pair else (batch[text],)
        out = tokenizer(*args, truncation=tok_cfg.truncation, max_length=tok_cfg.max_length)
        out["labels"] = batch[label]
        return out

    num_proc = cfg.num_proc if cfg.num_proc > 1 and len(split) >= 2 * cfg.num_proc else None
    return split.map(encode, batched=True, num_proc=num_proc, remove_columns=split.column_names, desc=desc)


def build_classification_data(raw, tokenizer, cfg: DatasetConfig, tok_cfg: TokenizerConfig) -> ClassificationData:
    train, evaluation, names = select_splits(raw, cfg)
    is_regression = cfg.problem_type == "regression"
    train_tok = tokenize(train, tokenizer, cfg, tok_cfg, desc=f"tokenize {cfg.name} train")
    eval_tok = tokenize(evaluation, tokenizer, cfg, tok_cfg, desc=f"tokenize {cfg.name} eval")
    num_labels = 1 if is_regression else len(names)
    log.info("%s: %d train / %d eval rows, %d labels", cfg.name, len(train_tok), len(eval_tok), num_labels)
    return ClassificationData(train_tok, eval_tok, None if is_regression else names, num_labels, is_regression)


def build_collator(tokenizer, cfg: CollatorConfig, tok_cfg: TokenizerConfig):
    """``dynamic``: DataCollatorWithPadding to the batch's longest; ``static``: pad all to max_length."""
    from transformers import DataCollatorWithPadding

    if cfg.name == "static":
        return DataCollatorWithPadding(tokenizer, padding="max_length", max_length=tok_cfg.max_length,
                                       pad_to_multiple_of=cfg.pad_to_multiple_of)
    return DataCollatorWithPadding(tokenizer, padding="longest", pad_to_multiple_of=cfg.pad_to_multiple_of)


def length_grouped_sampler(dataset, batch_size: int, seed: int):
    """transformers' LengthGroupedSampler, re-seeded per epoch so runs (and resumed runs) repeat exactly."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class EpochLengthGroupedSampler(LengthGroupedSampler):
        def set_epoch(self, epoch: int) -> None:
            self.generator = torch.Generator().manual_seed(seed + epoch)

    lengths = [len(ids) for ids in dataset["input_ids"]]
    sampler = EpochLengthGroupedSampler(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(seed))
    return sampler
