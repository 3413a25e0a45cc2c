"""Corpus chrF / chrF++ computed with the `sacrebleu` package."""

import datasets
import evaluate
from sacrebleu.metrics import CHRF

_DESCRIPTION = """\
chrF is a character n-gram F-score for machine translation; chrF++ (word_order=2) adds word n-grams,
which correlates better with human judgements. This module reports the corpus-level score from
sacrebleu's implementation.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): Hypotheses.
    references (`list` of `list` of `str`): The references of each prediction; every prediction needs the
        same number of references. A flat `list` of `str` means one reference per prediction.
    char_order (`int`, defaults to 6): Character n-gram order.
    word_order (`int`, defaults to 0): Word n-gram order; 2 gives chrF++.
    beta (`int`, defaults to 2): Recall is weighted `beta` times as much as precision.
    lowercase (`bool`, defaults to `False`): Lower-case before scoring.
    whitespace (`bool`, defaults to `False`): Keep whitespace when extracting character n-grams.
    eps_smoothing (`bool`, defaults to `False`): Use the epsilon smoothing of the reference chrF++.py,
        NLTK and Moses instead of sacrebleu's effective-order smoothing.
Returns:
    score (`float`): chrF(++), in [0, 100].
    char_order (`int`), word_order (`int`), beta (`int`): The settings used.
Examples:
    >>> chrf = experiments.metrics.load("chrf")
    >>> chrf.compute(predictions=["the cat sat"], references=[["the cat sat"]])
    {'score': 100.0, 'char_order': 6, 'word_order': 0, 'beta': 2}
"""

_CITATION = """\
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    month = sep,
    year = "2015",
    address = "Lisbon, Portugal",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W15-3049",
    pages = "392--395",
}
@inproceedings{popovic-2017-chrf,
    title = "chr{F}++: words helping character n-grams",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Second Conference on Machine Translation",
    month = sep,
    year = "2017",
    address = "Copenhagen, Denmark",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W17-4770",
    pages = "612--618",
}
"""


def reference_streams(references) -> list[list[str]]:
    """Turn per-prediction references into sacrebleu's per-position reference streams."""
    references = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
    per_prediction = len(references[0])
    if any(len(refs) != per_prediction for refs in references):
        raise ValueError("chrF requires the same number of references for each prediction")
    return [[refs[i] for refs in references] for i in range(per_prediction)]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ChrF(evaluate.Metric):
    """Corpus chrF from `sacrebleu.metrics.CHRF.corpus_score`."""

    def _info(self) -> evaluate.MetricInfo:
        text = datasets.Value("string", id="sequence")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # Single-reference inputs are tried first, then lists of references.
            features=[
                datasets.Features({"predictions": text, "references": text}),
                datasets.Features(
                    {"predictions": text, "references": datasets.Sequence(text, id="references")}
                ),
            ],
            codebase_urls=["https://github.com/mjpost/sacreBLEU#chrf--chrf"],
            reference_urls=["https://github.com/m-popovic/chrF"],
        )

    def _compute(
        self,
        predictions,
        references,
        char_order: int = CHRF.CHAR_ORDER,
        word_order: int = CHRF.WORD_ORDER,
        beta: int = CHRF.BETA,
        lowercase: bool = False,
        whitespace: bool = False,
        eps_smoothing: bool = False,
    ) -> dict:
        chrf = CHRF(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        output = chrf.corpus_score(list(predictions), reference_streams(references))
        return {
            "score": float(output.score),
            "char_order": int(output.char_order),
            "word_order": int(output.word_order),
            "beta": int(output.beta),
        }
