"""ROUGE scores for summarisation, computed with Google's `rouge_score` package."""

import numpy as np
from rouge_score import rouge_scorer

from experiments.metrics._shared import BundledMetric, citation, text_features
from experiments.metrics.examples import DEFAULT_ROUGE_TYPES

_DESCRIPTION = """\
ROUGE (Recall-Oriented Understudy for Gisting Evaluation) compares generated text against one or more
references by n-gram (rouge1, rouge2) and longest-common-subsequence (rougeL; rougeLsum splits on
newlines, so put one sentence per line) overlap. This module reports F-measures and, by default, their
mean over the examples. Scoring is case-insensitive and tokenisation keeps only ASCII letters and digits
unless a custom tokenizer is given.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): Generated texts.
    references (`list` of `str` or `list` of `list` of `str`): One reference, or several, per prediction;
        with several, each prediction scores its best-matching reference.
    rouge_types (`list` of `str`, defaults to `["rouge1", "rouge2", "rougeL", "rougeLsum"]`): Types to
        compute; any `rougeN` with N in 1..9 is valid.
    use_aggregator (`bool`, defaults to `True`): Return the mean F-measure over examples; with `False`,
        return one F-measure per example.
    use_stemmer (`bool`, defaults to `False`): Apply the Porter stemmer to strip word suffixes.
    tokenizer (`callable`, defaults to `None`): A function mapping a string to a list of tokens.
Returns:
    One entry per rouge type: a `float` (aggregated) or a `list` of `float`.
Examples:
    >>> rouge = experiments.metrics.load("rouge")
    >>> texts = ["hello there", "general kenobi"]
    >>> rouge.compute(predictions=texts, references=texts)
    {'rouge1': 1.0, 'rouge2': 1.0, 'rougeL': 1.0, 'rougeLsum': 1.0}
"""

class _CallableTokenizer:
    """Adapts a plain `str -> list[str]` function to the `tokenize` interface `rouge_score` expects."""

    def __init__(self, tokenize_fn):
        self.tokenize_fn = tokenize_fn

    def tokenize(self, text: str) -> list[str]:
        return self.tokenize_fn(text)


class Rouge(BundledMetric):
    """ROUGE F-measures from `rouge_score.rouge_scorer.RougeScorer`."""

    DESCRIPTION, INPUTS, CITATION = _DESCRIPTION, _KWARGS_DESCRIPTION, citation("lin-2004-rouge")
    LINKS = {
        "codebase_urls": ["https://github.com/google-research/google-research/tree/master/rouge"],
        "reference_urls": ["https://en.wikipedia.org/wiki/ROUGE_(metric)"],
    }
    FEATURES = text_features()

    def _compute(
        self,
        predictions,
        references,
        rouge_types=None,
        use_aggregator: bool = True,
        use_stemmer: bool = False,
        tokenizer=None,
    ) -> dict:
        rouge_types = list(rouge_types or DEFAULT_ROUGE_TYPES)
        if tokenizer is not None:
            tokenizer = _CallableTokenizer(tokenizer)
        scorer = rouge_scorer.RougeScorer(
            rouge_types=rouge_types, use_stemmer=use_stemmer, tokenizer=tokenizer
        )
        per_example = []
        for prediction, reference in zip(predictions, references, strict=True):
            if isinstance(reference, str):
                per_example.append(scorer.score(reference, prediction))
            else:
                per_example.append(scorer.score_multi(reference, prediction))
        fmeasures = {key: [float(score[key].fmeasure) for score in per_example] for key in rouge_types}
        if use_aggregator:
            return {key: float(np.mean(values)) for key, values in fmeasures.items()}
        return fmeasures
