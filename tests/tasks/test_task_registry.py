"""experiments.tasks.registry, directly: every registered name builds its task (a real transformers Auto class
and pipeline name, the training half complete where it trains), an unknown name is a one-line error naming
the choices, and the trainable tasks are exactly those that mix in the training half."""
from __future__ import annotations

import pytest
import transformers
from hypothesis import given
from hypothesis import strategies as st
from task_helpers import assert_one_line, config

from experiments.errors import ExperimentError
from experiments.tasks.base import Task, TrainingTask
from experiments.tasks.classification import TextClassification
from experiments.tasks.registry import TASKS, task_class, trainable_tasks


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_registered_name_builds_the_task_of_that_name(name):
    from transformers.pipelines import SUPPORTED_TASKS, TASK_ALIASES

    cls = task_class(name)
    assert cls is TASKS[name] and issubclass(cls, Task) and cls.name == name
    cfg = config(name)
    task = cls(cfg.task)
    assert task.cfg is cfg.task and task.ctx is None
    auto = task.choose_auto_class(None, cfg.task)
    assert hasattr(transformers, auto) and auto.startswith("AutoModel"), auto
    for pipeline in {task.pipeline_task, task.pipeline_name()} - {None}:
        assert pipeline in SUPPORTED_TASKS or pipeline in TASK_ALIASES, pipeline
    assert task.head and isinstance(task.trains, bool)


@pytest.mark.parametrize("name", trainable_tasks())
def test_a_task_that_trains_implements_its_data_collator_and_eval_rows(name):
    cls = task_class(name)
    assert issubclass(cls, TrainingTask)
    for method in ("training_data", "collator", "eval_rows"):
        assert getattr(cls, method) is not getattr(TrainingTask, method), (name, method)


def test_trainable_tasks_are_sorted_and_exactly_the_training_classes():
    names = trainable_tasks()
    assert names == sorted(names)
    assert set(names) == {name for name, cls in TASKS.items() if issubclass(cls, TrainingTask)}
    assert {"feature-extraction", "zero-shot-classification"}.isdisjoint(names)
    assert {name for name, cls in TASKS.items() if getattr(cls, "hf_trainer", False)} <= set(names)


def test_sentiment_analysis_is_text_classification_under_another_name():
    cls = task_class("sentiment-analysis")
    assert issubclass(cls, TextClassification) and cls.pipeline_task == "text-classification"


@given(name=st.text(st.characters(exclude_categories=("Cc", "Zl", "Zp")), max_size=30).filter(
    lambda s: s not in TASKS))
def test_an_unknown_name_is_one_line_naming_it_and_every_choice(name):
    with pytest.raises(ExperimentError) as info:
        task_class(name)
    message = assert_one_line(info.value, f"unknown task '{name}'", *TASKS)
    assert message.index("choose from") < min(message.rindex(task) for task in TASKS)
    assert info.value.__cause__ is None and info.value.__suppress_context__
