"""GLUE benchmark metrics, one config per GLUE task."""

from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from experiments.metrics._shared import BundledMetric, citation, pair_features

_DESCRIPTION = """\
GLUE, the General Language Understanding Evaluation benchmark (https://gluebenchmark.com/), is a collection
of resources for training, evaluating and analyzing natural language understanding systems. Each config
reports the official metrics of one GLUE task.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`, `list` of `float` for `stsb`): Predicted labels or scores.
    references (`list` of `int`, `list` of `float` for `stsb`): Ground truth labels or scores.
Returns, depending on the config:
    accuracy (`float`): Accuracy (every task except `cola` and `stsb`).
    f1 (`float`): Binary F1 (`mrpc`, `qqp`).
    pearson (`float`), spearmanr (`float`): Correlations (`stsb`).
    matthews_correlation (`float`): Matthews correlation (`cola`).
Examples:
    >>> glue = experiments.metrics.load("glue", "mrpc")
    >>> glue.compute(predictions=[0, 1], references=[0, 1])
    {'accuracy': 1.0, 'f1': 1.0}
"""

ACCURACY_AND_F1 = ("mrpc", "qqp")
ACCURACY_ONLY = ("sst2", "rte", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "wnli", "hans")
CONFIGS = ("cola", "stsb", *ACCURACY_AND_F1, *ACCURACY_ONLY)


class Glue(BundledMetric):
    """The official metric(s) of the GLUE task named by the config."""

    DESCRIPTION, INPUTS, CITATION = _DESCRIPTION, _KWARGS_DESCRIPTION, citation("wang2019glue")
    LINKS = {"format": "numpy"}

    def _features(self):
        """Scores for stsb, labels otherwise; checked here because evaluate asks for the info on load."""
        if self.config_name not in CONFIGS:
            raise KeyError(f"unknown GLUE config {self.config_name!r}; select one of: {', '.join(CONFIGS)}")
        return pair_features("float32" if self.config_name == "stsb" else "int64")

    def _compute(self, predictions, references) -> dict[str, float]:
        if self.config_name == "cola":
            return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
        if self.config_name == "stsb":
            return {
                "pearson": float(pearsonr(predictions, references)[0]),
                "spearmanr": float(spearmanr(predictions, references)[0]),
            }
        result = {"accuracy": float(accuracy_score(references, predictions))}
        if self.config_name in ACCURACY_AND_F1:
            result["f1"] = float(f1_score(references, predictions))
        return result
