"""Pearson correlation coefficient between predictions and references."""

from scipy.stats import pearsonr

from experiments.metrics._shared import CorrelationMetric

_DESCRIPTION = """\
The Pearson correlation coefficient measures the linear relationship between two variables. It lies in
[-1, 1]: 0 means no linear correlation, +1 / -1 an exact positive / negative linear relationship.
The p-value roughly indicates the probability of an uncorrelated system producing data at least as
correlated as this one.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): Predicted values.
    references (`list` of `float`): Ground truth values.
    return_pvalue (`bool`, defaults to `False`): Also return the two-sided p-value as `p-value`.
Returns:
    pearsonr (`float`): The coefficient, in [-1, 1].
    p-value (`float`): Only when `return_pvalue=True`.
Examples:
    >>> pearsonr = experiments.metrics.load("pearsonr")
    >>> round(pearsonr.compute(predictions=[10, 9, 2.5, 6, 4], references=[1, 2, 3, 4, 5])["pearsonr"], 2)
    -0.74
"""


class Pearsonr(CorrelationMetric):
    """Pearson's r computed with `scipy.stats.pearsonr`."""

    STATISTIC, KEY, PVALUE_KEY = staticmethod(pearsonr), "pearsonr", "p-value"
    DESCRIPTION, INPUTS = _DESCRIPTION, _KWARGS_DESCRIPTION
