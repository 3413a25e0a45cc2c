"""Matthews correlation coefficient (MCC) for classification."""

import datasets
import evaluate
from sklearn.metrics import matthews_corrcoef

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

_CITATION = """\
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V.
         and Thirion, B. and Grisel, O. and Blondel, M. and Prettenhofer, P.
         and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and
         Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MatthewsCorrelation(evaluate.Metric):
    """MCC computed with `sklearn.metrics.matthews_corrcoef`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.matthews_corrcoef.html"
            ],
        )

    def _compute(self, predictions, references, sample_weight=None) -> dict:
        score = matthews_corrcoef(references, predictions, sample_weight=sample_weight)
        return {"matthews_correlation": float(score)}
