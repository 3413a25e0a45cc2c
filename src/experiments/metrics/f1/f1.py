"""F1: the harmonic mean of precision and recall."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import f1_score

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
class F1(evaluate.Metric):
    """F1 computed with `sklearn.metrics.f1_score`."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name == "multilabel":
            label = datasets.Sequence(datasets.Value("int32"))
        else:
            label = datasets.Value("int32")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": label, "references": label}),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"
            ],
        )

    def _compute(
        self,
        predictions,
        references,
        labels=None,
        pos_label=1,
        average: str | None = "binary",
        sample_weight=None,
    ) -> dict:
        score = f1_score(
            references,
            predictions,
            labels=labels,
            pos_label=pos_label,
            average=average,
            sample_weight=sample_weight,
        )
        return {"f1": float(score) if np.size(score) == 1 else np.asarray(score)}
