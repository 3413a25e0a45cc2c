"""What every task provides, and the state it runs with.

Inference: a task turns raw inputs (strings or dicts) into outputs shaped like transformers' pipeline
outputs, two ways: :meth:`Task.pipeline` calls ``transformers.pipeline()`` where it still has the task,
and :meth:`Task.manual` writes the same thing out (tokenizer -> model -> post-processing).

Training: the same object says how it is fine-tuned (:class:`TrainingTask`): its data, its model (the
same ``auto_class`` inference loads), its collator, its metrics and how logits become predictions.
A task that does not train yet stops the run before anything is loaded, naming the tasks that do.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from experiments.config.schema import ExperimentConfig, TaskConfig
from experiments.errors import DataError

log = logging.getLogger(__name__)

TEXT_KEYS = ("text", "sentence", "input", "document", "prompt", "content")
REFERENCE_KEYS = ("label", "reference", "target", "summary", "answers", "answer", "output")


@dataclass
class Item:
    """One input with its id and (when known) the expected output."""

    id: str
    input: Any
    reference: Any = None


@dataclass
class Context:
    """A loaded model with its tokenizer and the config it runs under."""

    cfg: ExperimentConfig
    model: Any
    tokenizer: Any
    device: Any  # torch.device
    extra: Dict[str, Any] = field(default_factory=dict)  # per-task state (e.g. the method in use)

    @property
    def task(self) -> TaskConfig:
        return self.cfg.task

    @property
    def max_length(self) -> int:
        return int(self.cfg.task.max_length or self.cfg.tokenizer.max_length)


class Task:
    """Base class: one subclass per task name (see :mod:`experiments.tasks.registry`)."""

    #: whether ``mode=train`` fine-tunes this task (see :class:`TrainingTask`).
    trains: bool = False

    name: str = ""
    #: transformers.pipeline() task name, or None where transformers no longer has one.
    pipeline_task: Optional[str] = None
    #: Auto class the model is loaded with.
    auto_class: str = "AutoModel"
    #: a readable name of the head the task needs (for errors).
    head: str = "base"

    def __init__(self, cfg: TaskConfig, ctx: Optional[Context] = None):
        self.cfg = cfg  # the task's options
        self.ctx = ctx  # the loaded model; set before running
        self._pipe = None

    # --- model --------------------------------------------------------------------------------------
    def choose_auto_class(self, config, task_cfg: TaskConfig) -> str:
        """The Auto class for this checkpoint (most tasks: a fixed one)."""
        return self.auto_class

    def check_model(self, model, tokenizer, task_cfg: TaskConfig) -> None:
        """Raise ExperimentError when the model cannot do the task (beyond missing head weights)."""

    def prepare_tokenizer(self, tokenizer, model) -> None:
        """Adjust the tokenizer for the task (e.g. left padding for decoder-only generation)."""

    def method_name(self) -> Optional[str]:
        """How the task is done (e.g. nli / embedding, seq2seq / causal), for the run's record."""
        return self.cfg.method

    @property
    def has_pipeline(self) -> bool:
        return self.pipeline_task is not None

    # --- inputs ---------------------------------------------------------------------------------------
    def from_text(self, text: str) -> Any:
        """An input given as a bare string (txt file line, command line)."""
        return text

    def from_record(self, record: Dict[str, Any], text_column: Optional[str] = None) -> Any:
        """An input from a jsonl/csv row or a dataset row."""
        return text_field(record, text_column)

    def reference_from_record(self, record: Dict[str, Any], reference_column: Optional[str] = None) -> Any:
        keys = (reference_column,) if reference_column else REFERENCE_KEYS
        for key in keys:
            if key in record and record[key] is not None and record[key] != "":
                return record[key]
        return None

    def check_input(self, value: Any) -> Any:
        """Validate (and normalise) one input before the model loads; raise DataError with a one-line reason."""
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{self.name} needs a non-empty text input, got {short(value)}")
        return value

    def adapt_input(self, value: Any) -> Any:
        """Fit a checked input to the loaded tokenizer (e.g. its mask token)."""
        return value

    def length(self, value: Any) -> int:
        """A cheap size of one input, for length-sorted batching."""
        return len(value) if isinstance(value, str) else sum(len(str(v)) for v in value.values())

    def input_text(self, value: Any) -> List[str]:
        """The texts of one input the model reads (token counting)."""
        return [value] if isinstance(value, str) else [str(v) for v in value.values()]

    def output_text(self, output: Any) -> Optional[str]:
        """Generated text of one output (token counting), or None for non-generative tasks."""
        return None

    # --- running ------------------------------------------------------------------------------------
    def pipeline_inputs(self, batch: List[Any]) -> List[Any]:
        """What the pipeline is called with for ``batch`` (e.g. prompts built from the inputs)."""
        return list(batch)

    def pipeline_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of every pipeline call (task options; never batch_size)."""
        return {}

    def pipeline(self, batch: List[Any]) -> List[Any]:
        """One batch through transformers.pipeline()."""
        return self.get_pipeline()(self.pipeline_inputs(batch), batch_size=len(batch), **self.pipeline_kwargs())

    def manual(self, batch: List[Any]) -> List[Any]:
        raise NotImplementedError

    def pipeline_name(self) -> Optional[str]:
        """The transformers pipeline the ``pipeline`` path calls for this model."""
        return self.pipeline_task

    def get_pipeline(self):
        """transformers.pipeline() around the already-loaded model and tokenizer (built once)."""
        if self._pipe is None:
            from transformers import pipeline

            self._pipe = pipeline(self.pipeline_name(), model=self.ctx.model, tokenizer=self.ctx.tokenizer,
                                  device=self.ctx.device)
        return self._pipe

    # --- quality --------------------------------------------------------------------------------------
    def quality(self, outputs: List[Any], references: List[Any]) -> Dict[str, float]:
        """Task metrics over the items that have a reference (empty when none has)."""
        return {}

    def prepare_reference(self, reference: Any) -> Any:
        """A reference in the form :meth:`quality` compares with (e.g. a label id -> its name)."""
        return reference


def text_field(record: Dict[str, Any], column: Optional[str] = None, keys=TEXT_KEYS) -> Any:
    """The text of a row: ``column`` when given, else the first of the usual column names."""
    if column:
        if column not in record:
            raise DataError(f"input row has no column '{column}' (columns: {', '.join(map(str, record))})")
        return record[column]
    for key in keys:
        if key in record:
            return record[key]
    raise DataError(f"input row has none of the columns {', '.join(keys)} (columns: {', '.join(map(str, record))}); "
                    f"set inference.text_column")


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TrainingTask:
    """The training half of a task: mixed into a :class:`Task` subclass that trains.

    The recipe (``experiments.train``) calls these and nothing task-specific, so a new trainable task
    (question answering, seq2seq, causal LM) is a new class here, not a branch in the training loop.
    """

    trains = True

    def training_data(self, raw, tokenizer, cfg):
        """Tokenized train/eval datasets (and what the model head needs to know about the labels)."""
        raise NotImplementedError

    def new_model(self, model_dir, cfg, data, tokenizer):
        """The model to fine-tune: the checkpoint with this task's head (``auto_class``)."""
        raise NotImplementedError

    def collator(self, tokenizer, cfg):
        raise NotImplementedError

    def metric_function(self, cfg, data):
        """(predictions, references) -> {metric: value} for evaluation during training."""
        raise NotImplementedError

    def eval_outputs(self, logits, labels, data):
        """(predictions, per-example loss) of one evaluation batch."""
        raise NotImplementedError


def trainable_tasks() -> List[str]:
    from experiments.tasks.registry import TASKS

    return sorted(name for name, cls in TASKS.items() if cls.trains)
