"""Corpus BLEU computed with the `sacrebleu` package."""

import datasets
import evaluate
from sacrebleu.metrics import BLEU

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

_CITATION = """\
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    month = oct,
    year = "2018",
    address = "Belgium, Brussels",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""


def reference_streams(references) -> list[list[str]]:
    """Turn per-prediction references into sacrebleu's per-position reference streams."""
    references = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
    per_prediction = len(references[0])
    if any(len(refs) != per_prediction for refs in references):
        raise ValueError("sacrebleu requires the same number of references for each prediction")
    return [[refs[i] for refs in references] for i in range(per_prediction)]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Sacrebleu(evaluate.Metric):
    """Corpus BLEU from `sacrebleu.metrics.BLEU.corpus_score`."""

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
            codebase_urls=["https://github.com/mjpost/sacreBLEU"],
            reference_urls=["https://github.com/mjpost/sacreBLEU"],
        )

    def _compute(
        self,
        predictions,
        references,
        smooth_method: str = "exp",
        smooth_value: float | None = None,
        force: bool = False,
        lowercase: bool = False,
        tokenize: str | None = None,
        use_effective_order: bool = False,
    ) -> dict:
        bleu = BLEU(
            lowercase=lowercase,
            force=force,
            tokenize=tokenize,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            effective_order=use_effective_order,
        )
        output = bleu.corpus_score(list(predictions), reference_streams(references))
        return {
            "score": float(output.score),
            "counts": list(output.counts),
            "totals": list(output.totals),
            "precisions": list(output.precisions),
            "bp": float(output.bp),
            "sys_len": int(output.sys_len),
            "ref_len": int(output.ref_len),
        }
