"""Raw splits -> train/eval splits (every task), and tokenized datasets, labels and a collator for
sequence classification (the other tasks' features: experiments.data.qa and experiments.data.lm)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

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
    eval_ids: Optional[List[str]] = None  # each eval row's stable id (example_ids), in eval order

    @property
    def id2label(self) -> Dict[int, str]:
        return {i: n for i, n in enumerate(self.label_names or ["score"])}


def _first_bad(values: List, bad) -> Optional[int]:
    """The first row whose value ``bad`` rejects, or None."""
    return next((i for i, v in enumerate(values) if bad(v)), None)


def _empty(value) -> bool:
    import math

    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _check_ids(ids: List[int], names: List[str], where: str, classes: str) -> None:
    """Every id names one of ``names`` (``classes`` says where those come from)."""
    row = _first_bad(ids, lambda v: not 0 <= v < len(names))
    if row is not None:
        raise DataError(f"{where}, row {row}: label {ids[row]} is outside {classes}")


def _encode_labels(split, data_cfg: DatasetConfig, label_names: Optional[List[str]], split_name: str,
                   source: str = "dataset.label_names"):
    """Labels -> class ids (a ClassLabel column) checked row by row, so a bad label stops the run before
    training with the split, row and value: ``label_names`` (given, or the train split's) decide the
    classes; string labels map by name; integer labels must be ids 0..N-1."""
    from datasets import ClassLabel

    column = data_cfg.label_column
    values = split[column]
    where = f"split '{split_name}', column '{column}'"
    if isinstance(split.features[column], ClassLabel):
        names = list(split.features[column].names)
        _check_ids(values, names, where, f"the {len(names)} classes {names[:8]}")
        return split, names
    row = _first_bad(values, _empty)
    if row is not None:
        raise DataError(f"{where}, row {row}: empty label; fill it in or drop the row")
    if data_cfg.problem_type == "regression":
        return _regression_labels(split, column, values, where), None
    if values and all(isinstance(v, bool) for v in values):
        split, values = _bool_labels(split, column)
    if all(isinstance(v, str) for v in values):
        names = list(label_names) if label_names else sorted(set(values))
        known = set(names)
        row = _first_bad(values, lambda v: v not in known)
        if row is not None:
            source = source if label_names else "the labels of the train split"
            raise DataError(f"{where}, row {row}: label {values[row]!r} is not one of {source} {names}")
        return split.cast_column(column, ClassLabel(names=names)), names
    ids = _integer_ids(values, where)
    names = list(label_names) if label_names else _names_from_ids(ids, where)
    _check_ids(ids, names, where, f"{source} ({len(names)} classes: {names[:8]})" if label_names
               else f"the train split's classes 0..{len(names) - 1}")
    split = split.map(lambda b: {column: [int(v) for v in b[column]]}, batched=True)
    return split.cast_column(column, ClassLabel(names=names)), names


def _bool_labels(split, column: str):
    """true/false labels (a CSV's true/false, JSON booleans) are the classes "false" and "true"."""
    from datasets import Value

    split = split.cast_column(column, Value("string"))
    split = split.map(lambda b: {column: [v.lower() for v in b[column]]}, batched=True)
    return split, split[column]


def _regression_labels(split, column: str, values: List, where: str):
    import math

    def not_number(value) -> bool:
        try:
            float(value)
            return isinstance(value, bool)
        except (TypeError, ValueError):
            return True

    row = _first_bad(values, not_number)
    if row is not None:
        raise DataError(f"{where}, row {row}: label {values[row]!r} is not a number (problem_type=regression)")
    row = _first_bad(values, lambda v: not math.isfinite(float(v)))
    if row is not None:
        raise DataError(f"{where}, row {row}: label {values[row]} is not a finite number")
    return split.map(lambda b: {column: [float(x) for x in b[column]]}, batched=True)


def _integer_ids(values: List, where: str) -> List[int]:
    import math

    def not_id(value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True
        return not math.isfinite(value) or float(value) != int(value)

    row = _first_bad(values, not_id)
    if row is not None:
        raise DataError(f"{where}, row {row}: label {values[row]!r} is not a class id or name (integer ids 0..N-1 "
                        f"or strings; for numeric targets set dataset.problem_type=regression)")
    return [int(v) for v in values]


def _names_from_ids(ids: List[int], where: str) -> List[str]:
    """Classes 0..max of the train split's integer labels; a gap ({0, 1, 7}) would make classes no row has."""
    present = sorted(set(ids))
    if present[0] != 0 or present[-1] != len(present) - 1:  # sorted distinct ints: 0..N-1 exactly (never
        # a range as long as the largest label, which may be 2**63)
        raise DataError(f"{where}: integer labels are {present[:10]}{' ...' if len(present) > 10 else ''}, not "
                        f"0..N-1; relabel them, or set dataset.label_names (one name per id) to say how many "
                        f"classes there are")
    return [str(v) for v in present]


def _check_columns(split, data_cfg: DatasetConfig, name: str) -> None:
    needed = [c for c in (data_cfg.text_column, data_cfg.text_pair_column, data_cfg.label_column) if c]
    if len(set(needed)) < len(needed):
        raise DataError(f"dataset.text_column={data_cfg.text_column}, text_pair_column={data_cfg.text_pair_column} and "
                        f"label_column={data_cfg.label_column} name one column twice: the label cannot be the text")
    missing = [c for c in needed if c not in split.column_names]
    if missing:
        raise DataError(f"split '{name}' has no column(s) {missing} (columns: {', '.join(split.column_names)}); "
                        f"set dataset.text_column / dataset.label_column")


_TEXT_TYPES = ("string", "large_string")


def _check_texts(split, data_cfg: DatasetConfig, name: str):
    """Every row has a text (and pair text): null, missing, list or mapping text stops with the split, row and
    column; numbers where text is expected (ids, years, a JSON column of mixed types) are read as their text."""
    from datasets import Value

    for column in (c for c in (data_cfg.text_column, data_cfg.text_pair_column) if c):
        where = f"split '{name}', column '{column}'"
        values = split[column]
        row = _first_bad(values, _empty_text)
        if row is not None:
            raise DataError(f"{where}, row {row}: empty text ({values[row]!r}); fill it in or drop the row")
        row = _first_bad(values, lambda v: not isinstance(v, (str, int, float)))
        if row is not None:
            raise DataError(f"{where}, row {row}: {type(values[row]).__name__} value {_short(values[row])} "
                            f"where text is expected")
        feature = split.features[column]
        if not (isinstance(feature, Value) and feature.dtype in _TEXT_TYPES):
            log.warning("%s holds %s values: read as text", where, getattr(feature, "dtype", type(feature).__name__))
            split = _as_text(split, column)
    return split


def _as_text(split, column: str):
    """The column's values as their text (``5`` -> ``"5"``), typed as a string column."""
    from datasets import Value

    features = split.features.copy()
    features[column] = Value("string")
    return split.map(lambda b: {column: [str(v) for v in b[column]]}, batched=True, features=features)


def _empty_text(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_hold_out(train, data_cfg: DatasetConfig) -> None:
    """Eval carved out of train leaves rows on both sides (datasets would stop with a traceback)."""
    import math

    held = math.ceil(len(train) * data_cfg.validation_fraction)
    if held < 1 or len(train) - held < 1:
        raise DataError(f"split '{data_cfg.train_split}' has {len(train)} row(s): too few to hold out "
                        f"dataset.validation_fraction={data_cfg.validation_fraction} of them for eval; add rows, or give "
                        f"an eval file (dataset.data_files.{data_cfg.eval_split or 'validation'}=...)")


def _hold_out(train, data_cfg: DatasetConfig, names: Optional[List[str]]):
    """Carve eval from train: stratified by label when every class has rows to spare, else at random (said)."""
    from collections import Counter

    _check_hold_out(train, data_cfg)
    stratify = None
    if names is not None:
        counts = Counter(train[data_cfg.label_column])
        eval_rows = int(len(train) * data_cfg.validation_fraction)
        if min(counts.values()) >= 2 and eval_rows >= len(counts) and len(train) - eval_rows >= len(counts):
            stratify = data_cfg.label_column
        else:
            log.warning("%s: holding out %.0f%% of train at random (too few rows per class to stratify)",
                        data_cfg.name, 100 * data_cfg.validation_fraction)
    parts = train.train_test_split(test_size=data_cfg.validation_fraction, seed=data_cfg.split_seed,
                                   stratify_by_column=stratify)
    return parts["train"], parts["test"]


def _hold_out_groups(train, data_cfg: DatasetConfig):
    """Carve eval from train by whole groups of ``dataset.split_by`` (e.g. articles): no group in both."""
    import random

    groups = sorted(set(train[data_cfg.split_by]), key=str)
    if len(groups) < 2:
        raise DataError(f"dataset.split_by={data_cfg.split_by}: the train split has {len(groups)} group(s); "
                        f"need at least 2 to hold some out")
    random.Random(data_cfg.split_seed).shuffle(groups)
    held = set(groups[: max(1, round(len(groups) * data_cfg.validation_fraction))])
    column = train[data_cfg.split_by]
    eval_rows = [i for i, g in enumerate(column) if g in held]
    train_rows = [i for i, g in enumerate(column) if g not in held]
    log.info("%s: held out %d of %d %s groups (%d rows) for eval", data_cfg.name, len(held), len(groups), data_cfg.split_by,
             len(eval_rows))
    return train.select(train_rows), train.select(eval_rows)


def select_text_splits(raw, data_cfg: DatasetConfig, columns: List[str]):
    """(train, eval) raw splits for tasks without class labels: the configured splits, or eval carved out of
    train (by ``dataset.split_by`` groups when set, else at random); then ``max_*_samples``."""
    if data_cfg.train_split not in raw:
        raise DataError(f"dataset '{data_cfg.name}' has no split '{data_cfg.train_split}' (splits: {', '.join(raw)})")
    train = raw[data_cfg.train_split]
    needed = [c for c in columns + ([data_cfg.split_by] if data_cfg.split_by else []) if c]
    for name, split in ((data_cfg.train_split, train), (data_cfg.eval_split, raw.get(data_cfg.eval_split) if data_cfg.eval_split else None)):
        missing = [c for c in needed if split is not None and c not in split.column_names]
        if missing:
            raise DataError(f"split '{name}' has no column(s) {missing} (columns: {', '.join(split.column_names)}); "
                            f"set dataset.text_column / dataset.label_column")
    if data_cfg.eval_split and data_cfg.eval_split in raw and data_cfg.eval_split != data_cfg.train_split:
        evaluation = raw[data_cfg.eval_split]
    elif data_cfg.eval_split and data_cfg.eval_split not in ("validation",) and data_cfg.eval_split not in raw:
        raise DataError(f"dataset '{data_cfg.name}' has no split '{data_cfg.eval_split}' (splits: {', '.join(raw)})")
    elif data_cfg.split_by:
        train, evaluation = _hold_out_groups(train, data_cfg)
    else:
        _check_hold_out(train, data_cfg)
        parts = train.train_test_split(test_size=data_cfg.validation_fraction, seed=data_cfg.split_seed)
        train, evaluation = parts["train"], parts["test"]
    if data_cfg.max_train_samples:
        train = train.shuffle(seed=data_cfg.split_seed).select(range(min(data_cfg.max_train_samples, len(train))))
    if data_cfg.max_eval_samples:
        evaluation = evaluation.select(range(min(data_cfg.max_eval_samples, len(evaluation))))
    return train, evaluation


def select_splits(raw, data_cfg: DatasetConfig):
    """(train, eval) raw splits: the configured ones, or eval carved out of train (stratified when possible)."""
    if data_cfg.train_split not in raw:
        raise DataError(f"dataset '{data_cfg.name}' has no split '{data_cfg.train_split}' (splits: {', '.join(raw)})")
    train = raw[data_cfg.train_split]
    _check_columns(train, data_cfg, data_cfg.train_split)
    train = _check_texts(train, data_cfg, data_cfg.train_split)
    train, names = _encode_labels(train, data_cfg, data_cfg.label_names, data_cfg.train_split)
    if data_cfg.eval_split and data_cfg.eval_split in raw:
        evaluation = raw[data_cfg.eval_split]
        _check_columns(evaluation, data_cfg, data_cfg.eval_split)
        evaluation = _check_texts(evaluation, data_cfg, data_cfg.eval_split)
        evaluation, _ = _encode_labels(evaluation, data_cfg, names, data_cfg.eval_split,
                                       "dataset.label_names" if data_cfg.label_names else "the train split's labels")
    else:
        if data_cfg.eval_split and data_cfg.eval_split not in ("validation",):
            raise DataError(f"dataset '{data_cfg.name}' has no split '{data_cfg.eval_split}' (splits: {', '.join(raw)})")
        train, evaluation = _hold_out(train, data_cfg, names)
    if data_cfg.max_train_samples:
        train = train.shuffle(seed=data_cfg.split_seed).select(range(min(data_cfg.max_train_samples, len(train))))
    if data_cfg.max_eval_samples:
        evaluation = evaluation.select(range(min(data_cfg.max_eval_samples, len(evaluation))))
    return train, evaluation, names


def tokenize(split, tokenizer, data_cfg: DatasetConfig, tok_cfg: TokenizerConfig, *, desc: str):
    """``Dataset.map(batched=True, num_proc=…)``: the datasets cache makes a second identical run free."""
    text, pair, label = data_cfg.text_column, data_cfg.text_pair_column, data_cfg.label_column

    def encode(batch):
        args = (batch[text], batch[pair]) if pair else (batch[text],)
        out = tokenizer(*args, truncation=tok_cfg.truncation, max_length=tok_cfg.max_length)
        out["labels"] = batch[label]
        return out

    num_proc = data_cfg.num_proc if data_cfg.num_proc > 1 and len(split) >= 2 * data_cfg.num_proc else None
    encoded = split.map(encode, batched=True, num_proc=num_proc, remove_columns=split.column_names, desc=desc)
    if not tok_cfg.truncation:
        _check_lengths(encoded, split, tokenizer, data_cfg)
    return encoded


def _check_lengths(encoded, split, tokenizer, data_cfg: DatasetConfig) -> None:
    """``tokenizer.truncation=false``: a row longer than the model takes stops here, not inside the model."""
    limit = tokenizer.model_max_length
    if not limit or limit >= 10 ** 9:
        return
    row = _first_bad([len(ids) for ids in encoded["input_ids"]], lambda n: n > limit)
    if row is not None:
        raise DataError(f"column '{data_cfg.text_column}': the row {_short(split[row][data_cfg.text_column])} has "
                        f"{len(encoded[row]['input_ids'])} tokens, more than the model takes ({limit}); set "
                        f"tokenizer.truncation=true or shorten it")


def example_ids(split) -> List[str]:
    """Stable ids of a split's rows: its ``id`` column, else ``idx`` (GLUE), else the row's position in the
    split (the same from run to run: ``dataset.split_seed`` fixes a held-out split)."""
    for column in ("id", "idx"):
        if column in split.column_names:
            return [str(value) for value in split[column]]
    return [str(number) for number in range(len(split))]


def build_classification_data(raw, tokenizer, data_cfg: DatasetConfig, tok_cfg: TokenizerConfig) -> ClassificationData:
    train, evaluation, names = select_splits(raw, data_cfg)
    is_regression = data_cfg.problem_type == "regression"
    train_tok = tokenize(train, tokenizer, data_cfg, tok_cfg, desc=f"tokenize {data_cfg.name} train")
    eval_tok = tokenize(evaluation, tokenizer, data_cfg, tok_cfg, desc=f"tokenize {data_cfg.name} eval")
    num_labels = 1 if is_regression else len(names)
    log.info("%s: %d train / %d eval rows, %d labels", data_cfg.name, len(train_tok), len(eval_tok), num_labels)
    return ClassificationData(train_tok, eval_tok, None if is_regression else names, num_labels, is_regression,
                              example_ids(evaluation))


def build_collator(tokenizer, collator_cfg: CollatorConfig, tok_cfg: TokenizerConfig):
    """``dynamic``: DataCollatorWithPadding to the batch's longest; ``static``: pad all to max_length."""
    from transformers import DataCollatorWithPadding

    if collator_cfg.name == "static":
        return DataCollatorWithPadding(tokenizer, padding="max_length", max_length=tok_cfg.max_length,
                                       pad_to_multiple_of=collator_cfg.pad_to_multiple_of)
    return DataCollatorWithPadding(tokenizer, padding="longest", pad_to_multiple_of=collator_cfg.pad_to_multiple_of)


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """transformers' LengthGroupedSampler whose order is a function of (seed, epoch) alone: every pass over an
    epoch, the first or one resumed mid-epoch, draws the same order."""

    def __init__(self, batch_size: int, lengths: List[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(seed))
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


def length_grouped_sampler(dataset, batch_size: int, seed: int) -> EpochLengthGroupedSampler:
    return EpochLengthGroupedSampler(batch_size, [len(ids) for ids in dataset["input_ids"]], seed)
