"""Building task objects for the unit tests of experiments.tasks: a typed config and a loaded context with the
real MiniLM tokenizer and a tiny random model (tests/tiny_models.py, built in memory), nothing from disk."""
from __future__ import annotations

from typing import Any, Optional

from experiments.config.schema import DatasetConfig, ExperimentConfig, ModelConfig, TaskConfig
from experiments.tasks.base import Context


def config(task: str, **options: Any) -> ExperimentConfig:
    """An experiment config for ``task`` with ``options`` set on ``task.*`` (typed checks included)."""
    return ExperimentConfig(model=ModelConfig(name="tiny", name_or_path="tiny"),
                            dataset=DatasetConfig(name="toy"), task=TaskConfig(name=task, **options))


def make_task(cls, model=None, tokenizer=None, name: Optional[str] = None, **options: Any):
    """An instance of task class ``cls`` (configured as task ``name``, by default its own) with a CPU context
    around ``model`` and ``tokenizer``."""
    import torch

    cfg = config(name or cls.name, **options)
    return cls(cfg.task, Context(cfg, model, tokenizer, torch.device("cpu")))


def assert_one_line(exc: BaseException, *needles: str) -> str:
    """A user-facing error: a single non-empty line holding every needle."""
    message = str(exc)
    assert message.strip() and "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message
