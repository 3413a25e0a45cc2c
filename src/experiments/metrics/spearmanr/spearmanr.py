"""Spearman rank-order correlation coefficient between predictions and references."""

import datasets
import evaluate
from scipy.stats import spearmanr

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
class Spearmanr(evaluate.Metric):
    """Spearman's rho computed with `scipy.stats.spearmanr`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float"), "references": datasets.Value("float")}
            ),
            reference_urls=[
                "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.spearmanr.html"
            ],
        )

    def _compute(self, predictions, references, return_pvalue: bool = False) -> dict:
        statistic, pvalue = spearmanr(references, predictions)
        if return_pvalue:
            return {"spearmanr": float(statistic), "spearmanr_pvalue": float(pvalue)}
        return {"spearmanr": float(statistic)}
