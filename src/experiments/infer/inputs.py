"""Where inputs come from: the command line, a file (txt, jsonl, csv), or a dataset split."""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, List, Optional, Tuple

from experiments.config.schema import ExperimentConfig, InferenceConfig
from experiments.config.validate import conf_dir
from experiments.data.sources import bom_encoding, load_raw
from experiments.errors import DataError, ExperimentError
from experiments.tasks.base import Item, Task

log = logging.getLogger(__name__)

FILE_TYPES = (".txt", ".jsonl", ".json", ".csv", ".tsv")


def read_records(path: Path) -> List[Any]:
    """Rows of an input file: strings for .txt (one per non-empty line), dicts for .jsonl/.json/.csv/.tsv."""
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in FILE_TYPES:
        raise DataError(f"input file {path.name}: unknown type '{suffix}' (use {', '.join(FILE_TYPES)})")
    encoding = bom_encoding([path]) or "utf-8"  # a UTF-16/32 file says so in its byte-order mark
    try:
        text = path.read_text(encoding=encoding).lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise DataError(f"input file {path}: not {encoding} text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise DataError(f"input file {path} is empty")
    if suffix == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if suffix == ".json" and text.lstrip().startswith("["):
        try:
            return list(json.loads(text))
        except json.JSONDecodeError as exc:
            raise DataError(f"input file {path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
    if suffix in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"input file {path}, line {number}: invalid JSON ({exc.msg})") from None
        return rows
    reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
    rows = [dict(row) for row in reader]
    if not rows:
        raise DataError(f"input file {path} has a header but no rows")
    return rows


def _item(task: Task, index: int, row: Any, text_column: Optional[str], reference_column: Optional[str]) -> Item:
    if isinstance(row, dict):
        record = {str(k): v for k, v in row.items()}
        value = task.from_record(record, text_column)
        reference = task.reference_from_record(record, reference_column)
        identifier = record.get("id", record.get("idx", index))
        return Item(str(identifier), value, reference)
    if isinstance(row, str):
        return Item(str(index), task.from_text(row))
    return Item(str(index), row)


def _log_kept(kept: int, total: int) -> None:
    log.info("the first %d of %d inputs (inference.max_samples=%d; null: all of them)", kept, total, kept)


def from_dataset(task: Task, cfg: ExperimentConfig) -> Tuple[List[Item], Optional[List[str]], str]:
    """Items of ``inference.split`` (default: dataset.eval_split) and the dataset's label names."""
    from datasets import ClassLabel

    data_cfg = cfg.dataset
    raw = load_raw(data_cfg, cfg.paths.mirror)
    split = cfg.inference.split or data_cfg.eval_split or next(iter(raw))
    if split not in raw:
        if cfg.inference.split is None and len(raw) >= 1:
            log.warning("dataset '%s' has no split '%s': using its split '%s' (choose with inference.split=)",
                        data_cfg.name, split, next(iter(raw)))
            split = next(iter(raw))
        else:
            raise DataError(f"dataset '{data_cfg.name}' has no split '{split}' (splits: {', '.join(raw)})")
    rows = raw[split]
    if cfg.inference.max_samples and len(rows) > cfg.inference.max_samples:
        _log_kept(cfg.inference.max_samples, len(rows))
        rows = rows.select(range(cfg.inference.max_samples))
    feature = rows.features.get(data_cfg.label_column)
    names = list(feature.names) if isinstance(feature, ClassLabel) else (list(data_cfg.label_names or []) or None)
    items = []
    for index, row in enumerate(rows):
        record = dict(row)
        if data_cfg.text_pair_column and data_cfg.text_pair_column in record:
            record["text_pair"] = record[data_cfg.text_pair_column]
        item = _item(task, index, record, data_cfg.text_column, data_cfg.label_column)
        if isinstance(item.reference, int) and item.reference < 0:  # unlabelled test rows (GLUE: -1)
            item.reference = None
        items.append(item)
    return items, names, f"dataset {data_cfg.name}:{split}"


def example_inputs(task_name: str) -> Optional[List[Any]]:
    """The example inputs ``conf/inference/<task>.yaml`` gives ``mode=infer task=<task>`` (None: it gives none)."""
    from omegaconf import OmegaConf

    path = conf_dir() / "inference" / f"{task_name}.yaml"
    inputs = OmegaConf.load(path).get("inputs") if path.is_file() else None
    return None if inputs is None else list(OmegaConf.to_container(inputs))


def _drop_examples(cfg: ExperimentConfig) -> Tuple[InferenceConfig, bool]:
    """``cfg.inference``, and whether its inputs are the task's example inputs. The examples are the source of
    last resort: an input file or a dataset split given as well is used instead of them (not an error)."""
    inference = cfg.inference
    if inference.inputs is None or list(inference.inputs) != example_inputs(cfg.task.name):
        return inference, False
    given = [k for k in ("input_file", "split") if getattr(inference, k) is not None]
    if not given:
        return inference, True
    log.info("inference.%s is given: the example inputs of task %s are not used", given[0], cfg.task.name)
    return dataclasses.replace(inference, inputs=None), False


def load_items(task: Task, cfg: ExperimentConfig) -> Tuple[List[Item], Optional[List[str]], str]:
    """(items, dataset label names or None, a description of the source); every input checked."""
    inference, examples = _drop_examples(cfg)
    names: Optional[List[str]] = None
    check_sources(inference)
    if inference.inputs is not None:
        rows = list(inference.inputs)
        items = [_item(task, i, r, inference.text_column, inference.reference_column) for i, r in enumerate(rows)]
        source = "command line"
        if examples:
            source = f"conf/inference/{cfg.task.name}.yaml (the task's example inputs)"
            log.info("task %s runs its example inputs: inference.inputs=[...] or inference.input_file=... replaces "
                     "them, inference.inputs=null reads dataset %s instead", cfg.task.name, cfg.dataset.name)
    elif inference.input_file is not None:
        path = Path(inference.input_file).expanduser()
        if not path.is_absolute():
            path = Path(cfg.paths.root_dir).expanduser() / path
        rows = read_records(path.resolve())
        items = [_item(task, i, r, inference.text_column, inference.reference_column) for i, r in enumerate(rows)]
        source = f"file {path}"
    else:
        items, names, source = from_dataset(task, cfg)
    if inference.max_samples and len(items) > inference.max_samples:
        _log_kept(inference.max_samples, len(items))
        items = items[: inference.max_samples]
    if not items:
        raise DataError(f"no inputs in {source}")
    for item in items:
        try:
            item.input = task.check_input(item.input)
        except DataError as exc:
            raise DataError(f"input {item.id}: {exc}") from None
    log.info("%d inputs from %s", len(items), source)
    return items, names, source


def check_sources(inference: InferenceConfig) -> None:
    """Exactly one input source, and nothing given that would be ignored or silently replaced.

    ``None`` means "not given" (the next source is used); a value given empty or blank is a mistake (an
    unset shell variable, a typo), never a request for the dataset split.
    """
    if inference.inputs is not None and not inference.inputs:
        raise ExperimentError("inference.inputs is empty: give at least one input "
                              "('inference.inputs=[first text,second text]'), or leave it out (null) to use "
                              "inference.input_file or the dataset split")
    for key in ("input_file", "split", "text_column", "reference_column"):
        value = getattr(inference, key)
        if value is not None and not str(value).strip():
            raise ExperimentError(f"inference.{key} is empty: give a value, or leave it out (null)")
    given = [k for k in ("inputs", "input_file") if getattr(inference, k) is not None]
    if len(given) > 1:
        raise ExperimentError("inference.inputs and inference.input_file are both given: give one of them")
    if given and inference.split is not None:
        raise ExperimentError(f"inference.split={inference.split} selects a dataset split, but inputs come from "
                              f"inference.{given[0]}: drop one of them")
