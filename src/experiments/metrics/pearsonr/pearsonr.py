"""Pearson correlation coefficient between predictions and references."""

import datasets
import evaluate
from scipy.stats import pearsonr

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

_CITATION = """\
@article{2020SciPy-NMeth,
  author  = {Virtanen, Pauli and Gommers, Ralf and Oliphant, Travis E. and others},
  title   = {{SciPy 1.0: Fundamental Algorithms for Scientific Computing in Python}},
  journal = {Nature Methods},
  year    = {2020},
  volume  = {17},
  pages   = {261--272},
  doi     = {10.1038/s41592-019-0686-2},
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Pearsonr(evaluate.Metric):
    """Pearson's r computed with `scipy.stats.pearsonr`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float"), "references": datasets.Value("float")}
            ),
            reference_urls=["https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.pearsonr.html"],
        )

    def _compute(self, predictions, references, return_pvalue: bool = False) -> dict:
        statistic, pvalue = pearsonr(references, predictions)
        if return_pvalue:
            return {"pearsonr": float(statistic), "p-value": float(pvalue)}
        return {"pearsonr": float(statistic)}
