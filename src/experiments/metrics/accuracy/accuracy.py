"""Accuracy: the fraction (or count) of predictions equal to their reference label."""

from sklearn.metrics import accuracy_score

from experiments.metrics._shared import SklearnMetric

_DESCRIPTION = """\
Accuracy is the proportion of correct predictions among the total number of cases processed:
Accuracy = (TP + TN) / (TP + TN + FP + FN). With the `multilabel` config every example is a
vector of labels and counts as correct only when the whole vector matches (subset accuracy).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted labels (lists of labels with the `multilabel` config).
    references (`list` of `int`): Ground truth labels, same shape as `predictions`.
    normalize (`bool`, defaults to `True`): If `False`, return the number of correct predictions
        instead of the fraction.
    sample_weight (`list` of `float`, defaults to `None`): Per-example weights.
Returns:
    accuracy (`float`): In [0, 1] when `normalize=True`, otherwise the (weighted) count of hits.
Examples:
    >>> accuracy = experiments.metrics.load("accuracy")
    >>> accuracy.compute(references=[0, 1, 2, 0, 1, 2], predictions=[0, 1, 1, 2, 1, 0])
    {'accuracy': 0.5}
"""


class Accuracy(SklearnMetric):
    """Accuracy computed with `sklearn.metrics.accuracy_score`."""

    SCORE, KEY, MULTILABEL = staticmethod(accuracy_score), "accuracy", True
    DESCRIPTION, INPUTS = _DESCRIPTION, _KWARGS_DESCRIPTION
