"""What every task provides, and the state it runs with.

Inference: a task turns raw inputs (strings or dicts) into outputs shaped like transformers' pipeline
outputs, two ways: :meth:`Task.pipeline` calls ``transformers.pipeline()`` where it still has the task,
and :meth:`Task.manual` writes the same thing out (tokenizer -> model -> post-processing).

Training: the same object says how it is fine-tuned (:class:`TrainingTask`): its data, its model (the
same ``auto_class`` inference loads), its collator, its metrics and how logits become predictions.
A task that does not train (feature-extraction, zero-shot) stops the run before anything is loaded, naming the tasks that do.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

from experiments.config.schema import ExperimentConfig, TaskConfig
from experiments.errors import DataError
from experiments.metrics.examples import TOKEN_LOSS_METRICS, ExampleRecords, eval_set_name, token_loss_stats
from experiments.modeling import load_for_training, training_attention

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

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
    #: whether the task runs generate() (one forward per new token: inference stays eager, reports tokens/s)
    generates: bool = False

    name: str = ""
    #: transformers.pipeline() task name, or None where transformers no longer has one.
    pipeline_task: Optional[str] = None
    #: Auto class the model is loaded with.
    auto_class: str = "AutoModel"
    #: a readable name of the head the task needs (for errors).
    head: str = "base"

    def __init__(self, task_cfg: TaskConfig, ctx: Optional[Context] = None):
        self.cfg = task_cfg  # the task's options
        self.ctx = ctx  # the loaded model; set before running
        self._pipe = None

    # --- model --------------------------------------------------------------------------------------
    def choose_auto_class(self, model_config: PreTrainedConfig, task_cfg: TaskConfig) -> str:
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

    def input_text(self, value: Any) -> List[str]:
        """The texts of one input the model reads (token counting)."""
        return [value] if isinstance(value, str) else [str(v) for v in value.values()]

    def output_text(self, output: Any) -> Optional[str]:
        """Generated text of one output (token counting), or None for non-generative tasks."""
        return None

    def token_costs(self, values: List[Any]) -> List[int]:
        """Tokens each input occupies in a padded batch (its texts tokenized together, capped at the input
        limit): what ``inference.max_batch_tokens`` budgets."""
        limit = self.ctx.max_length
        texts = [" ".join(self.input_text(value)) for value in values]
        ids = self.ctx.tokenizer(texts, truncation=True, max_length=limit)["input_ids"]
        return [len(row) for row in ids]

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

    def example_rows(self, items: List[Item], outputs: List[Any]) -> Optional[Tuple[Dict[str, Any], Iterator]]:
        """Per-example rows of :meth:`quality` over the items with a reference (``eval_predictions.jsonl``,
        :mod:`experiments.metrics.examples`): ({metric: how it is recomputed}, rows), or None when the task
        keeps none."""
        return None

    def scored(self, items: List[Item], outputs: List[Any]) -> List[Tuple[Item, Any, Any]]:
        """(item, output, prepared reference) of the items with a reference."""
        pairs = [(item, output, self.prepare_reference(item.reference)) for item, output in zip(items, outputs)]
        return [(item, output, reference) for item, output, reference in pairs if reference is not None]


def _names(record: Dict[str, Any]) -> str:
    """A row's column names for a one-line message (a newline or tab in a name shown escaped)."""
    return ", ".join("".join(c if c.isprintable() else repr(c)[1:-1] for c in str(name)) for name in record)


def text_field(record: Dict[str, Any], column: Optional[str] = None, keys=TEXT_KEYS) -> Any:
    """The text of a row: ``column`` when given, else the first of the usual column names."""
    if column:
        if column not in record:
            raise DataError(f"input row has no column '{column}' (columns: {_names(record)})")
        return record[column]
    for key in keys:
        if key in record:
            return record[key]
    raise DataError(f"input row has none of the columns {', '.join(keys)} (columns: {_names(record)}); "
                    f"set inference.text_column")


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class TrainingData:
    """Tokenized train/eval datasets of a task, and the raw eval items inference-style metrics run on."""

    train: Any  # datasets.Dataset of model inputs (+ labels)
    eval: Any
    eval_items: List[Item] = field(default_factory=list)


class TrainingTask:
    """The training half of a task: mixed into a :class:`Task` subclass that trains.

    The recipe (``experiments.train``) calls these and nothing task-specific, so a new trainable task is
    a new class here, not a branch in the training loop. Order: :meth:`setup_training` (the model's
    config is known: pick the head, refuse what cannot work) -> :meth:`training_data` -> :meth:`new_model`
    -> per evaluation batch :meth:`eval_rows` (gathered over processes) -> :meth:`eval_metrics`, and
    :meth:`inference_metrics` (the task's own inference code on the eval items, e.g. span decoding or
    generation).
    """

    trains = True
    #: the task trains under transformers' Trainer too (trainer=hf_trainer)
    hf_trainer = False
    #: weights the checkpoint lacked (a new head), set by :meth:`new_model`; LoRA trains them fully
    new_weights: List[str] = []

    def setup_training(self, model_config: PreTrainedConfig, cfg: ExperimentConfig) -> None:
        """Remember the checkpoint's config and choose the head; raise ExperimentError when the model
        cannot learn the task."""
        self.model_config = model_config
        self.train_auto_class = self.choose_auto_class(model_config, cfg.task)

    def training_data(self, raw, tokenizer, cfg: ExperimentConfig) -> TrainingData:
        raise NotImplementedError

    def new_model(self, model_dir, cfg: ExperimentConfig, data, tokenizer):
        """The model to fine-tune: the checkpoint with this task's head (a new head if it has none)."""
        model, self.new_weights = load_for_training(model_dir, cfg.model, self.train_auto_class, self.head,
                                                    attn_implementation=training_attention(cfg))
        if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            model.config.pad_token_id = tokenizer.pad_token_id
        return model

    def collator(self, tokenizer, cfg: ExperimentConfig):
        raise NotImplementedError

    def flattening_works(self, model, cfg: ExperimentConfig) -> bool:
        """False when this task's train collator flattens batches (padding-free) and ``model`` cannot keep
        the examples apart: the run then trains on padded batches (the eval collator's)."""
        return True

    def eval_collator(self, tokenizer, cfg: ExperimentConfig):
        """The collator of the eval split (e.g. without random masking)."""
        return self.collator(tokenizer, cfg)

    def metric_function(self, cfg: ExperimentConfig, data):
        """(predictions, references) -> {metric: value}, for tasks scored on logits (else None)."""
        return None

    def eval_rows(self, output, batch) -> Dict[str, Any]:
        """Per-example tensors of one evaluation batch (gathered from every process): at least ``loss``."""
        raise NotImplementedError

    def eval_metrics(self, rows: Dict[str, Any], compute) -> Dict[str, float]:
        """{metric: value} over the whole eval split, ``loss`` included (keys without ``eval_``)."""
        return {"loss": float(rows["loss"].float().mean())}

    def inference_metrics(self, model, tokenizer, cfg: ExperimentConfig, data: TrainingData) -> Dict[str, float]:
        """Metrics of the task's inference code on the eval items (main process only); none by default."""
        return {}

    def eval_records(self, columns: Dict[str, Any], scores: Dict[str, float], data, cfg: ExperimentConfig):
        """The per-example rows of the evaluation that gave ``scores`` (its gathered ``columns``, and what
        :meth:`inference_metrics` generated): an :class:`~experiments.metrics.examples.ExampleRecords`, or
        None when the task keeps none. Main process only."""
        return None

    def run_inference(self, model, tokenizer, cfg: ExperimentConfig, items: List[Item]) -> List[Any]:
        """This task's ``manual`` inference path on ``items`` with the model being trained, in batches of
        ``trainer.per_device_eval_batch_size`` (a copy of the tokenizer: inference may pad on the left)."""
        import copy

        import torch

        task = type(self)(cfg.task)
        task.ctx = Context(cfg, model, copy.deepcopy(tokenizer), next(model.parameters()).device)
        task.prepare_tokenizer(task.ctx.tokenizer, model)
        batch_size = cfg.trainer.per_device_eval_batch_size
        was_training = model.training
        model.eval()
        outputs: List[Any] = []
        try:
            with torch.no_grad():
                for start in range(0, len(items), batch_size):
                    batch = [task.adapt_input(item.input) for item in items[start:start + batch_size]]
                    outputs.extend(task.manual(batch))
        finally:
            model.train(was_training)
        return outputs

    def quality_of(self, outputs: List[Any], items: List[Item]) -> Dict[str, float]:
        return self.quality(outputs, [self.prepare_reference(item.reference) for item in items])


class TokenLossTraining(TrainingTask):
    """Language-model losses: evaluation sums token losses per example, so ``eval_loss`` is the mean over
    target tokens (not over batches) and ``eval_perplexity`` is ``exp(eval_loss)``."""

    #: causal models predict the next token: logits at t score the label at t + 1
    shift_labels = False

    def eval_rows(self, output, batch) -> Dict[str, Any]:
        import torch.nn.functional as F

        logits, labels = output.logits.float(), batch["labels"]
        if self.shift_labels:
            logits, labels = logits[:, :-1, :], labels[:, 1:]
        losses = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
        return {"loss_sum": losses.sum(-1), "tokens": (labels != -100).sum(-1)}

    def eval_metrics(self, rows: Dict[str, Any], compute) -> Dict[str, float]:
        import math

        tokens = float(rows["tokens"].sum())
        loss = float(rows["loss_sum"].sum()) / tokens if tokens else float("nan")
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)) if math.isfinite(loss) else float("nan")}

    def eval_records(self, columns, scores, data, cfg: ExperimentConfig):
        """One row per eval example (a text block, or a prompt -> target pair): its summed token loss and
        token count, from which the mean token loss and the perplexity are recomputed."""
        return ExampleRecords(eval_set_name(cfg.dataset), dict(TOKEN_LOSS_METRICS), self.token_loss_rows(columns, data),
                              prefix="eval_")

    def token_loss_rows(self, columns, data) -> Iterator[Dict[str, Any]]:
        ids = [item.id for item in getattr(data, "eval_items", [])]
        for number, (loss_sum, tokens) in enumerate(zip(columns["loss_sum"].tolist(), columns["tokens"].tolist())):
            yield {"id": ids[number] if number < len(ids) else str(number), "prediction": None, "reference": None,
                   "stats": token_loss_stats(loss_sum, tokens)}
