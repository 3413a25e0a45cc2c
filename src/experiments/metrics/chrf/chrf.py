"""Corpus chrF / chrF++ computed with the `sacrebleu` package."""

from sacrebleu.metrics import CHRF

from experiments.metrics._shared import CorpusMetric, citation

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


class ChrF(CorpusMetric):
    """Corpus chrF from `sacrebleu.metrics.CHRF.corpus_score`."""

    DESCRIPTION, INPUTS = _DESCRIPTION, _KWARGS_DESCRIPTION
    CITATION = citation("popovic-2015-chrf", "popovic-2017-chrf")
    LINKS = {
        "codebase_urls": ["https://github.com/mjpost/sacreBLEU#chrf--chrf"],
        "reference_urls": ["https://github.com/m-popovic/chrF"],
    }
    SCORER, NAME = CHRF, "chrF"
    RESULT = {"score": float, "char_order": int, "word_order": int, "beta": int}
