"""Corpus BLEU computed with the `sacrebleu` package."""

from sacrebleu.metrics import BLEU

from experiments.metrics._shared import CorpusMetric, citation

_DESCRIPTION = """\
SacreBLEU provides hassle-free computation of shareable, comparable and reproducible BLEU scores: it
applies its own standard tokenisation to detokenised text. This module reports corpus-level BLEU with
its n-gram statistics.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): Detokenised hypotheses.
    references (`list` of `list` of `str`): The references of each prediction; every prediction needs the
        same number of references. A flat `list` of `str` means one reference per prediction.
    smooth_method (`str`, defaults to `"exp"`): One of `"none"`, `"floor"`, `"add-k"`, `"exp"`.
    smooth_value (`float`, defaults to `None`): The value for `"floor"` / `"add-k"` smoothing.
    force (`bool`, defaults to `False`): Do not warn about input that looks tokenised.
    lowercase (`bool`, defaults to `False`): Lower-case before scoring.
    tokenize (`str`, defaults to `None`): A sacrebleu tokeniser name (`"13a"` unless given).
    use_effective_order (`bool`, defaults to `False`): Skip n-gram orders without matches (sentence BLEU).
Returns:
    score (`float`): BLEU, in [0, 100].
    counts (`list` of `int`): Matched n-grams per order.
    totals (`list` of `int`): Hypothesis n-grams per order.
    precisions (`list` of `float`): n-gram precisions, in percent.
    bp (`float`): Brevity penalty.
    sys_len (`int`): Hypothesis length in tokens.
    ref_len (`int`): Effective reference length in tokens.
Examples:
    >>> bleu = experiments.metrics.load("sacrebleu")
    >>> text = "hello there general kenobi"
    >>> result = bleu.compute(predictions=[text], references=[[text]])
    >>> round(result["score"], 2)
    100.0
"""

SACREBLEU_URL = "https://github.com/mjpost/sacreBLEU"


class Sacrebleu(CorpusMetric):
    """Corpus BLEU from `sacrebleu.metrics.BLEU.corpus_score`."""

    DESCRIPTION, INPUTS, CITATION = _DESCRIPTION, _KWARGS_DESCRIPTION, citation("post-2018-call")
    LINKS = {"codebase_urls": [SACREBLEU_URL], "reference_urls": [SACREBLEU_URL]}
    SCORER, NAME = BLEU, "sacrebleu"
    RESULT = {
        "score": float,
        "counts": list,
        "totals": list,
        "precisions": list,
        "bp": float,
        "sys_len": int,
        "ref_len": int,
    }

    def _compute(self, predictions, references, use_effective_order: bool = False, **options) -> dict:
        """Keeps the `use_effective_order` name of evaluate's hub module for BLEU's `effective_order`."""
        return super()._compute(predictions, references, effective_order=use_effective_order, **options)
