"""F1: the harmonic mean of precision and recall."""

from sklearn.metrics import f1_score

from experiments.metrics._shared import SklearnMetric

_DESCRIPTION = """\
The F1 score is the harmonic mean of precision and recall:
F1 = 2 * (precision * recall) / (precision + recall). Binary by default; pass `average` for multiclass
inputs, or use the `multilabel` config for label vectors.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted labels (lists of labels with the `multilabel` config).
    references (`list` of `int`): Ground truth labels, same shape as `predictions`.
    labels (`list` of `int`, defaults to `None`): Labels to include when `average != "binary"`, and their
        order when `average=None`.
    pos_label (`str` or `int`, defaults to 1): The class to report when `average="binary"`.
    average (`str`, defaults to `"binary"`): One of `"binary"`, `"micro"`, `"macro"`, `"weighted"`,
        `"samples"`, or `None` for per-class scores.
    sample_weight (`list` of `float`, defaults to `None`): Per-example weights.
Returns:
    f1 (`float` or `numpy.ndarray`): A float in [0, 1], or one score per class when `average=None`.
Examples:
    >>> f1 = experiments.metrics.load("f1")
    >>> f1.compute(references=[0, 1, 2, 0, 1, 2], predictions=[0, 2, 1, 0, 0, 1], average="macro")
    {'f1': 0.26666666666666666}
"""


class F1(SklearnMetric):
    """F1 computed with `sklearn.metrics.f1_score`."""

    SCORE, KEY, MULTILABEL = staticmethod(f1_score), "f1", True
    DESCRIPTION, INPUTS = _DESCRIPTION, _KWARGS_DESCRIPTION
