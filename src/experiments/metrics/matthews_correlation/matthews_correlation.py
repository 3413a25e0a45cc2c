"""Matthews correlation coefficient (MCC) for classification."""

from sklearn.metrics import matthews_corrcoef

from experiments.metrics._shared import SklearnMetric

_DESCRIPTION = """\
The Matthews correlation coefficient measures the quality of binary and multiclass classifications.
It takes true and false positives and negatives into account and is a balanced measure even when the
classes are of very different sizes. It lies in [-1, 1]: +1 is a perfect prediction, 0 no better than
random, -1 total disagreement.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted labels.
    references (`list` of `int`): Ground truth labels.
    sample_weight (`list` of `float`, defaults to `None`): Per-example weights.
Returns:
    matthews_correlation (`float`): The coefficient, in [-1, 1].
Examples:
    >>> mcc = experiments.metrics.load("matthews_correlation")
    >>> mcc.compute(references=[1, 3, 2, 0, 3, 2], predictions=[1, 2, 2, 0, 3, 3])
    {'matthews_correlation': 0.5384615384615384}
"""


class MatthewsCorrelation(SklearnMetric):
    """MCC computed with `sklearn.metrics.matthews_corrcoef`."""

    SCORE, KEY = staticmethod(matthews_corrcoef), "matthews_correlation"
    DESCRIPTION, INPUTS = _DESCRIPTION, _KWARGS_DESCRIPTION
