"""Task names -> task classes (``sentiment-analysis`` is an alias of ``text-classification``)."""
from __future__ import annotations

from typing import Dict, List, Type

from experiments.errors import ExperimentError
from experiments.tasks.base import Task
from experiments.tasks.classification import SentimentAnalysis, TextClassification
from experiments.tasks.features import FeatureExtraction
from experiments.tasks.fill_mask import FillMask
from experiments.tasks.generation import Summarization, TextGeneration, Translation
from experiments.tasks.question_answering import QuestionAnswering
from experiments.tasks.zero_shot import ZeroShotClassification

TASKS: Dict[str, Type[Task]] = {
    cls.name: cls
    for cls in (FeatureExtraction, FillMask, QuestionAnswering, TextClassification, SentimentAnalysis, Summarization,
                TextGeneration, Translation, ZeroShotClassification)
}


def task_class(name: str) -> Type[Task]:
    try:
        return TASKS[name]
    except KeyError:
        raise ExperimentError(f"unknown task '{name}' (choose from: {', '.join(sorted(TASKS))})") from None


def trainable_tasks() -> List[str]:
    """Names of the tasks that train (``mode=train``), sorted."""
    return sorted(name for name, cls in TASKS.items() if cls.trains)
