"""SQuAD v1.1 exact match and token-level F1 for extractive question answering."""

import re
import string
from collections import Counter

import datasets

from experiments.metrics._shared import BundledMetric, citation

_DESCRIPTION = """\
The official evaluation of the Stanford Question Answering Dataset (SQuAD) v1.1. Predicted and gold
answers are normalised (lower-cased, punctuation, articles and extra whitespace removed); each
question scores the best match over its gold answers. Exact match is the share of questions whose
prediction equals a gold answer; F1 is the average token-overlap F1. Both are percentages.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `dict`): One `{"id": str, "prediction_text": str}` per question.
    references (`list` of `dict`): One per question:
        `{"id": str, "answers": {"text": list[str], "answer_start": list[int]}}`.
Returns:
    exact_match (`float`): Exact match, in [0, 100].
    f1 (`float`): Average token F1, in [0, 100].
Examples:
    >>> squad = experiments.metrics.load("squad")
    >>> squad.compute(
    ...     predictions=[{"id": "q1", "prediction_text": "1976"}],
    ...     references=[{"id": "q1", "answers": {"text": ["1976"], "answer_start": [97]}}],
    ... )
    {'exact_match': 100.0, 'f1': 100.0}
"""

SQUAD_URL = "https://rajpurkar.github.io/SQuAD-explorer/"
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, and collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def token_f1_score(prediction: str, ground_truth: str) -> float:
    """F1 over the bags of normalised tokens of the two strings."""
    prediction_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(ground_truth).split()
    num_same = sum((Counter(prediction_tokens) & Counter(truth_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


class Squad(BundledMetric):
    """SQuAD v1.1 exact match and F1, matched by question id."""

    DESCRIPTION, INPUTS, CITATION = _DESCRIPTION, _KWARGS_DESCRIPTION, citation("Rajpurkar2016SQuAD10")
    LINKS = {"codebase_urls": [SQUAD_URL], "reference_urls": [SQUAD_URL]}
    FEATURES = datasets.Features(
        {
            "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
            "references": {
                "id": datasets.Value("string"),
                "answers": datasets.Sequence(
                    {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                ),
            },
        }
    )

    def _compute(self, predictions, references) -> dict[str, float]:
        predicted = {p["id"]: p["prediction_text"] for p in predictions}
        exact_match = f1 = 0.0
        for reference in references:
            if reference["id"] not in predicted:  # unanswered questions score 0
                continue
            prediction = predicted[reference["id"]]
            gold = reference["answers"]["text"]
            exact_match += max(exact_match_score(prediction, answer) for answer in gold)
            f1 += max(token_f1_score(prediction, answer) for answer in gold)
        total = len(references)
        return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}
