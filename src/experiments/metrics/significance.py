"""How sure is "B is better than A"? Paired tests over the same evaluation examples, and comparisons over
seeds, from per-example *sufficient statistics*.

Every corpus-level metric here is a function of sums over examples: accuracy of ``[correct, 1]``, binary F1
of ``[tp, fp, fn]``, MCC of ``[tp, fp, fn, tn]``, Pearson of ``[x, y, x², y², xy, 1]``, BLEU of its n-gram
matches, totals and lengths, and a mean score (ROUGE, SQuAD F1, exact match) of ``[score, 1]``. A resample of
examples is then a weighted sum of the rows, so a corpus metric is recomputed in every resample (not averaged
from per-example values) in one vectorised step, whatever the metric.

The resampling itself is scipy's: :func:`scipy.stats.bootstrap` (paired, percentile interval, as Koehn 2004
and sacrebleu's paired bootstrap) and :func:`scipy.stats.permutation_test` (``permutation_type="samples"``:
paired approximate randomization, Riezler & Maxwell 2005). Both resample *example indices* into a stacked
table of both runs' statistics, because scipy permutes every 1-D slice of a multi-column sample on its own.
Accuracy gets McNemar's exact test (:func:`scipy.stats.binomtest` on the discordant pairs) as a cross-check.
Across seeds: Welch's t-test, a bootstrap CI of the difference of means, the probability that a random seed
of B beats one of A (Mann-Whitney U / (n_A n_B)), Holm's correction (statsmodels) and the seeds a
two-sided t-test would need to tell the observed difference apart (the noncentral t's power).
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

Stats = np.ndarray  # (n_examples, k) per-example sufficient statistics of one metric
FromSums = Callable[[np.ndarray], np.ndarray]  # sums (..., k) -> metric value (...)

ALPHA = 0.05
RESAMPLES = 10_000


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def mean_score(sums: np.ndarray) -> np.ndarray:
    """``[score, 1]``: accuracy, exact match, ROUGE, SQuAD F1, any per-example mean."""
    return _safe_div(sums[..., 0], sums[..., 1])


def binary_f1(sums: np.ndarray) -> np.ndarray:
    """``[tp, fp, fn]``."""
    tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
    return _safe_div(2 * tp, 2 * tp + fp + fn)


def matthews(sums: np.ndarray) -> np.ndarray:
    """``[tp, fp, fn, tn]`` (binary MCC; 0 when a margin is empty, as sklearn)."""
    tp, fp, fn, tn = (sums[..., i] for i in range(4))
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return _safe_div(tp * tn - fp * fn, den)


def pearson(sums: np.ndarray) -> np.ndarray:
    """``[x, y, x², y², xy, 1]``: Pearson's r of predictions x and references y."""
    sx, sy, sxx, syy, sxy, n = (sums[..., i] for i in range(6))
    cov = n * sxy - sx * sy
    return _safe_div(cov, np.sqrt(np.clip(n * sxx - sx ** 2, 0, None) * np.clip(n * syy - sy ** 2, 0, None)))


def bleu(sums: np.ndarray) -> np.ndarray:
    """``[matches_1..4, totals_1..4, hypothesis length, reference length]`` (sacrebleu's corpus BLEU, 0-100,
    no smoothing: a resample without a 4-gram match scores 0, as sacrebleu's ``smooth_method="none"``)."""
    matches, totals = sums[..., 0:4], sums[..., 4:8]
    hyp, ref = sums[..., 8], sums[..., 9]
    with np.errstate(divide="ignore", invalid="ignore"):
        precisions = np.where(totals > 0, matches / np.where(totals > 0, totals, 1), 0.0)
        log_mean = np.where((precisions > 0).all(axis=-1),
                            np.log(np.where(precisions > 0, precisions, 1)).mean(axis=-1), -np.inf)
        brevity = np.where(hyp < ref, 1 - _safe_div(ref, hyp), 0.0)
    return 100 * np.exp(np.minimum(brevity, 0) + log_mean)


def macro_f1(sums: np.ndarray) -> np.ndarray:
    """``[tp, fp, fn]`` of each class in turn: the mean binary F1 over the classes that occur (as predictions
    or references), as sklearn's ``average="macro"`` over the labels present."""
    per_class = sums.reshape(*sums.shape[:-1], -1, 3)
    tp, fp, fn = per_class[..., 0], per_class[..., 1], per_class[..., 2]
    present = (tp + fp + fn) > 0
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    return _safe_div((f1 * present).sum(axis=-1), present.sum(axis=-1))


def matthews_multiclass(sums: np.ndarray) -> np.ndarray:
    """The confusion matrix flattened (``[reference * C + prediction]`` one-hot per example): Gorodkin's
    multi-class MCC, as sklearn's ``matthews_corrcoef``."""
    classes = int(round(np.sqrt(sums.shape[-1])))
    confusion = sums.reshape(*sums.shape[:-1], classes, classes)
    true, predicted = confusion.sum(axis=-1), confusion.sum(axis=-2)
    correct, total = np.trace(confusion, axis1=-2, axis2=-1), confusion.sum(axis=(-2, -1))
    cov_yp = correct * total - (true * predicted).sum(axis=-1)
    cov_pp = total ** 2 - (predicted ** 2).sum(axis=-1)
    cov_yy = total ** 2 - (true ** 2).sum(axis=-1)
    return _safe_div(cov_yp, np.sqrt(np.clip(cov_pp * cov_yy, 0, None)))


def perplexity(sums: np.ndarray) -> np.ndarray:
    """``[summed token loss, tokens]``: exp of the mean token loss (capped at exp(50), as training reports)."""
    return np.exp(np.minimum(mean_score(sums), 50.0))


def bleu_exp(sums: np.ndarray) -> np.ndarray:
    """:func:`bleu`'s statistics with sacrebleu's default ``smooth_method="exp"`` (what the ``sacrebleu`` metric
    reports): an order without a match counts 1 / (2^k total), k the orders without a match so far; 0 when no
    n-gram matches at all or an order has no n-grams."""
    matches, totals = sums[..., 0:4], sums[..., 4:8]
    hyp, ref = sums[..., 8], sums[..., 9]
    unmatched = np.cumsum((matches == 0) & (totals > 0), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precisions = np.where(matches > 0, 100 * _safe_div(matches, totals),
                              _safe_div(np.full_like(totals, 100.0), 2.0 ** unmatched * totals))
        log_mean = np.log(np.where(precisions > 0, precisions, 1)).mean(axis=-1)
        brevity = np.where(hyp < ref, np.where(hyp > 0, np.exp(1 - _safe_div(ref, hyp)), 0.0), 1.0)
    scored = (matches.sum(axis=-1) > 0) & (totals > 0).all(axis=-1)
    return np.where(scored, brevity * np.exp(log_mean), 0.0)


def chrf(sums: np.ndarray, beta: float = 2.0) -> np.ndarray:
    """``[hyp, ref, match]`` per character (then word) n-gram order (sacrebleu's chrF segment statistics):
    precision and recall averaged over the orders both sides have, then F-beta, 0-100 (sacrebleu's CHRF with
    its defaults, ``eps_smoothing=False``)."""
    per_order = sums.reshape(*sums.shape[:-1], -1, 3)
    n_hyp, n_ref, n_match = per_order[..., 0], per_order[..., 1], per_order[..., 2]
    effective = (n_hyp > 0) & (n_ref > 0)
    orders = effective.sum(axis=-1)
    precision = _safe_div((_safe_div(n_match, n_hyp) * effective).sum(axis=-1), orders)
    recall = _safe_div((_safe_div(n_match, n_ref) * effective).sum(axis=-1), orders)
    factor = beta ** 2
    return 100 * _safe_div((1 + factor) * precision * recall, factor * precision + recall)


#: how each per-example statistic becomes a corpus value (the names eval_predictions.jsonl's records use)
STATISTICS: Dict[str, FromSums] = {
    "mean_score": mean_score, "binary_f1": binary_f1, "macro_f1": macro_f1, "matthews": matthews,
    "matthews_multiclass": matthews_multiclass, "pearson": pearson, "bleu": bleu, "bleu_exp": bleu_exp,
    "chrf": chrf, "perplexity": perplexity,
}


@dataclass
class Paired:
    """One metric of two runs on the same examples."""
    a: float
    b: float
    difference: float
    ci95: List[float]
    p_value: float
    test: str
    n_examples: int
    verdict: str
    mcnemar_p: Optional[float] = None

    def as_dict(self) -> Dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def verdict(ci95: Sequence[float], higher_is_better: bool = True) -> str:
    """"B is better" / "A is better" when the 95 % CI of B - A excludes 0, else "not distinguishable at 95 %"."""
    low, high = ci95
    if low > 0 or high < 0:
        b_higher = low > 0
        return "B is better" if b_higher == higher_is_better else "A is better"
    return "not distinguishable at 95 %"


def paired(stats_a: Stats, stats_b: Stats, from_sums: FromSums, *, higher_is_better: bool = True,
           resamples: int = RESAMPLES, seed: int = 0, correct_a: Optional[np.ndarray] = None,
           correct_b: Optional[np.ndarray] = None) -> Paired:
    """B - A on the same ``n`` examples (row i of both is example i): the corpus values, a paired-bootstrap
    95 % CI of the difference, a paired approximate-randomization p-value, and (given per-example correctness)
    McNemar's exact p-value."""
    from scipy import stats as scipy_stats

    stats_a, stats_b = np.asarray(stats_a, float), np.asarray(stats_b, float)
    if stats_a.shape != stats_b.shape or stats_a.ndim != 2 or not len(stats_a):
        raise ValueError(f"paired statistics must be two (n, k) arrays of one shape, got {stats_a.shape} and "
                         f"{stats_b.shape}")
    n = len(stats_a)
    table = np.concatenate([stats_a, stats_b])  # rows 0..n-1: A's examples, n..2n-1: B's

    def value(rows: np.ndarray) -> np.ndarray:  # rows (..., m) indices into table -> metric (...)
        return from_sums(table[rows].sum(axis=-2))

    a_rows, b_rows = np.arange(n), np.arange(n) + n
    difference = float(value(b_rows) - value(a_rows))
    rng = np.random.default_rng(seed)
    ci = scipy_stats.bootstrap((a_rows,), lambda rows, axis=-1: value(rows + n) - value(rows), vectorized=True,
                               paired=False, n_resamples=resamples, method="percentile", confidence_level=0.95,
                               random_state=rng, batch=max(1, 2_000_000 // max(n, 1))).confidence_interval
    test = scipy_stats.permutation_test((a_rows, b_rows), lambda x, y, axis=-1: value(y) - value(x),
                                        permutation_type="samples", vectorized=True, n_resamples=resamples,
                                        alternative="two-sided", random_state=rng,
                                        batch=max(1, 2_000_000 // max(n, 1)))
    low, high = _finite_interval(ci.low, ci.high, difference)
    result = Paired(a=float(value(a_rows)), b=float(value(b_rows)), difference=difference, ci95=[low, high],
                    p_value=float(test.pvalue), test="paired bootstrap CI + approximate randomization",
                    n_examples=n, verdict=verdict([low, high], higher_is_better))
    if correct_a is not None and correct_b is not None:
        result.mcnemar_p = mcnemar(correct_a, correct_b)
    return result


def _finite_interval(low: float, high: float, point: float) -> "tuple[float, float]":
    """scipy gives NaN when every resample agrees (a degenerate distribution): the interval is the point."""
    low, high = float(low), float(high)
    return (point, point) if not (np.isfinite(low) and np.isfinite(high)) else (low, high)


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> float:
    """McNemar's exact test: two-sided binomial p-value of the pairs where exactly one run is right."""
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return 1.0 if only_a + only_b == 0 else float(binomtest(only_b, only_a + only_b, 0.5).pvalue)


@dataclass
class OverSeeds:
    """One metric of two configurations, over their seeds (independent runs)."""
    mean_a: float
    mean_b: float
    difference: float
    ci95: List[float]
    p_value: float
    test: str
    p_b_beats_a: float
    n_a: int
    n_b: int
    seeds_needed: Optional[int]
    verdict: str

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)


def over_seeds(values_a: Sequence[float], values_b: Sequence[float], *, higher_is_better: bool = True,
               resamples: int = RESAMPLES, seed: int = 0, power: float = 0.8) -> OverSeeds:
    """B vs A from one value per seed: difference of means with a bootstrap CI, Welch's test, P(a random seed of
    B beats one of A) (ties count half), and the seeds per configuration a Welch test would need to tell the
    observed difference apart at 95 % with the given power (None when the runs do not vary or do not differ)."""
    from scipy import stats as scipy_stats

    a, b = np.asarray(values_a, float), np.asarray(values_b, float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"comparing over seeds needs 2+ runs per configuration, got {len(a)} and {len(b)}")
    difference = float(b.mean() - a.mean())
    ci = scipy_stats.bootstrap((a, b), lambda x, y, axis=-1: y.mean(axis=axis) - x.mean(axis=axis),
                               vectorized=True, n_resamples=resamples, method="percentile",
                               random_state=np.random.default_rng(seed)).confidence_interval
    low, high = _finite_interval(ci.low, ci.high, difference)
    with warnings.catch_warnings():  # runs that (nearly) agree: scipy warns of precision loss, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        welch = scipy_stats.ttest_ind(b, a, equal_var=False)
    p_value = float(welch.pvalue) if np.isfinite(welch.pvalue) else (1.0 if difference == 0 else 0.0)
    u = scipy_stats.mannwhitneyu(b, a, alternative="two-sided").statistic
    beats = float(u) / (len(a) * len(b))
    if not higher_is_better:
        beats = 1 - beats
    welch_verdict = verdict([low, high], higher_is_better) if p_value < ALPHA else "not distinguishable at 95 %"
    return OverSeeds(mean_a=float(a.mean()), mean_b=float(b.mean()), difference=difference, ci95=[low, high],
                     p_value=p_value, test="Welch t-test + bootstrap CI of the difference of means",
                     p_b_beats_a=beats, n_a=len(a), n_b=len(b), seeds_needed=seeds_needed(a, b, power),
                     verdict=welch_verdict)


def seeds_needed(a: np.ndarray, b: np.ndarray, power: float = 0.8, most: int = 10_000) -> Optional[int]:
    """Runs per configuration for a two-sided t-test at 5 % to detect the observed difference of means with
    ``power``, from the pooled seed variance (None when the runs do not vary or do not differ, or past ``most``).
    The power is the noncentral t's, as statsmodels' TTestIndPower computes it; written here because statsmodels
    returns NaN (and its root finder gives up) when the far tail underflows, which is exactly the case of a
    large difference that needs few seeds."""
    from scipy import stats as scipy_stats

    pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    difference = abs(b.mean() - a.mean())
    if pooled == 0 or difference == 0:
        return None
    n = np.arange(2, most + 1)
    df, shift = 2 * n - 2, (difference / pooled) * np.sqrt(n / 2)
    critical = scipy_stats.t.ppf(1 - ALPHA / 2, df)
    with np.errstate(all="ignore"):
        reached = np.nan_to_num(scipy_stats.nct.sf(critical, df, shift)) + np.nan_to_num(
            scipy_stats.nct.cdf(-critical, df, shift))
    enough = np.flatnonzero(reached >= power)
    return int(n[enough[0]]) if len(enough) else None


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm-adjusted p-values of comparisons made together (statsmodels' multipletests)."""
    from statsmodels.stats.multitest import multipletests

    if not len(p_values):
        return []
    return [float(p) for p in multipletests(list(p_values), alpha=ALPHA, method="holm")[1]]


BEST, WORSE, TIE = "best", "worse", "tie (not distinguishable)"


def against_best(groups: Sequence[Sequence[float]], *, higher_is_better: bool = True) -> List[Optional[Dict]]:
    """Every group of runs (one value per seed) against the best group on the mean, corrected together: per
    group, None when it has fewer than 2 values (or fewer than 2 groups do), else ``{"vs_best": best / worse /
    tie, "difference" (group - best), "ci95", "p_value" (Welch), "p_holm", "p_beats_best", "seeds_needed"}``.
    The one place the sweep summary, the report, the dashboard and compare.py get their verdicts from."""
    replicated = [number for number, values in enumerate(groups) if len(values) >= 2]
    out: List[Optional[Dict]] = [None] * len(groups)
    if len(replicated) < 2:
        return out
    sign = 1.0 if higher_is_better else -1.0
    best = max(replicated, key=lambda number: sign * float(np.mean(groups[number])))
    others = [number for number in replicated if number != best]
    tests = [over_seeds(groups[best], groups[number], higher_is_better=higher_is_better) for number in others]
    out[best] = {"vs_best": BEST, "mean": float(np.mean(groups[best])), "n": len(groups[best])}
    for number, test, p_holm in zip(others, tests, holm([t.p_value for t in tests])):
        worse = p_holm < ALPHA and test.verdict != "not distinguishable at 95 %"
        out[number] = {"vs_best": WORSE if worse else TIE, "mean": test.mean_b, "n": test.n_b,
                       "difference": test.difference, "ci95": test.ci95, "p_value": test.p_value, "p_holm": p_holm,
                       "p_beats_best": test.p_b_beats_a, "seeds_needed": test.seeds_needed}
    return out
