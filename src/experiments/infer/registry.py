"""Task names -> task classes (``sentiment-analysis`` is an alias of ``text-classification``)."""
from __future__ import annotations

from typing import Dict, Type

from experiments.errors import ExperimentError
from experiments.infer.base import Task
from experiments.infer.classification import SentimentAnalysis, TextClassification
from experiments.infer.features import FeatureExtraction
from experiments.infer.fill_mask import FillMask
from experiments.infer.generation import Summarization, TextGeneration, Translation
from experiments.infer.question_answering import QuestionAnswering
from experiments.infer.zero_shot import ZeroShotClassification

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
