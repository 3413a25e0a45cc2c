"""Spearman rank-order correlation coefficient between predictions and references."""

from scipy.stats import spearmanr

from experiments.metrics._shared import CorrelationMetric

_DESCRIPTION = """\
The Spearman rank-order correlation coefficient measures how well the relationship between two variables
can be described by a monotonic function. It lies in [-1, 1]: 0 means no monotonic correlation,
+1 / -1 an exact monotonic increasing / decreasing relationship.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): Predicted values.
    references (`list` of `float`): Ground truth values.
    return_pvalue (`bool`, defaults to `False`): Also return the two-sided p-value as `spearmanr_pvalue`.
Returns:
    spearmanr (`float`): The coefficient, in [-1, 1].
    spearmanr_pvalue (`float`): Only when `return_pvalue=True`.
Examples:
    >>> spearmanr = experiments.metrics.load("spearmanr")
    >>> spearmanr.compute(references=[1, 2, 3, 4, 5], predictions=[10, 9, 2.5, 6, 4])
    {'spearmanr': -0.7}
"""


class Spearmanr(CorrelationMetric):
    """Spearman's rho computed with `scipy.stats.spearmanr`."""

    STATISTIC, KEY, PVALUE_KEY = staticmethod(spearmanr), "spearmanr", "spearmanr_pvalue"
    DESCRIPTION, INPUTS = _DESCRIPTION, _KWARGS_DESCRIPTION
