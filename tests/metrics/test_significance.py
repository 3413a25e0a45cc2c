"""experiments.metrics.significance against independent computations: each corpus metric recomputed from
summed per-example statistics equals sklearn / scipy / sacrebleu on the same rows (any rows: hypothesis), the
paired bootstrap CI and approximate-randomization p-value equal a plain numpy resampling loop within Monte Carlo
error, McNemar equals statsmodels', and the seed-level comparison and Holm behave as their definitions say."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.metrics import significance as sig

labels_pairs = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=60)


def confusion_stats(pred, ref) -> np.ndarray:
    pred, ref = np.asarray(pred), np.asarray(ref)
    return np.c_[(pred == 1) & (ref == 1), (pred == 1) & (ref == 0), (pred == 0) & (ref == 1),
                 (pred == 0) & (ref == 0)].astype(float)


@given(labels_pairs)
@settings(max_examples=60, deadline=None)
def test_classification_metrics_from_sums_equal_sklearn(pairs):
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    pred, ref = zip(*pairs)
    stats = confusion_stats(pred, ref)
    correct = (np.asarray(pred) == np.asarray(ref)).astype(float)
    assert sig.mean_score(np.c_[correct, np.ones(len(pred))].sum(0)) == pytest.approx(accuracy_score(ref, pred))
    assert sig.binary_f1(stats[:, :3].sum(0)) == pytest.approx(f1_score(ref, pred, zero_division=0))
    assert sig.matthews(stats.sum(0)) == pytest.approx(matthews_corrcoef(ref, pred), abs=1e-12)


@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), min_size=3, max_size=40))
@settings(max_examples=60, deadline=None)
def test_pearson_from_sums_equals_scipy(pairs):
    from scipy.stats import pearsonr

    x, y = map(np.asarray, zip(*pairs))
    if np.ptp(x) < 1e-3 or np.ptp(y) < 1e-3:  # (nearly) constant: r is undefined, ours is 0
        return
    stats = np.c_[x, y, x * x, y * y, x * y, np.ones(len(x))]
    assert sig.pearson(stats.sum(0)) == pytest.approx(pearsonr(x, y).statistic, abs=1e-6)


WORDS = st.sampled_from("the a cat dog sat ran on in mat park today hello world".split())


@given(st.lists(st.tuples(st.lists(WORDS, min_size=1, max_size=9), st.lists(WORDS, min_size=1, max_size=9)),
                min_size=1, max_size=8))
@settings(max_examples=60, deadline=None)
def test_bleu_from_summed_sentence_statistics_equals_sacrebleu(pairs):
    from sacrebleu.metrics import BLEU

    hyps, refs = [" ".join(h) for h, _ in pairs], [" ".join(r) for _, r in pairs]
    scorer = BLEU(smooth_method="none")
    raw = np.array(scorer._extract_corpus_statistics(hyps, [refs]), float)  # [hyp, ref, matches 1-4, totals 1-4]
    stats = np.c_[raw[:, 2:6], raw[:, 6:10], raw[:, 0], raw[:, 1]]
    assert sig.bleu(stats.sum(0)) == pytest.approx(scorer.corpus_score(hyps, [refs]).score, abs=1e-9)


def two_classifiers(n: int, acc_a: float, acc_b: float, seed: int = 1):
    rng = np.random.default_rng(seed)
    correct_a, correct_b = rng.random(n) < acc_a, rng.random(n) < acc_b
    return correct_a, correct_b, np.c_[correct_a, np.ones(n)], np.c_[correct_b, np.ones(n)]


def test_paired_bootstrap_and_randomization_equal_a_numpy_loop():
    correct_a, correct_b, stats_a, stats_b = two_classifiers(300, 0.80, 0.85)
    result = sig.paired(stats_a, stats_b, sig.mean_score, correct_a=correct_a, correct_b=correct_b)

    rng = np.random.default_rng(123)  # the same procedure, written out
    rows = rng.integers(0, 300, (20_000, 300))
    differences = correct_b[rows].mean(1) - correct_a[rows].mean(1)
    assert result.ci95 == pytest.approx(list(np.percentile(differences, [2.5, 97.5])), abs=0.006)
    swap = rng.random((20_000, 300)) < 0.5
    shuffled = np.where(swap, correct_a, correct_b).mean(1) - np.where(swap, correct_b, correct_a).mean(1)
    observed = correct_b.mean() - correct_a.mean()
    p_loop = (np.sum(np.abs(shuffled) >= abs(observed) - 1e-12) + 1) / (len(shuffled) + 1)
    assert result.p_value == pytest.approx(p_loop, abs=0.02)
    assert result.difference == pytest.approx(observed) and result.n_examples == 300
    assert (result.a, result.b) == (pytest.approx(correct_a.mean()), pytest.approx(correct_b.mean()))


def test_mcnemar_equals_statsmodels_exact_test():
    from statsmodels.stats.contingency_tables import mcnemar

    correct_a, correct_b, _, _ = two_classifiers(200, 0.7, 0.8, seed=3)
    table = [[np.sum(correct_a & correct_b), np.sum(correct_a & ~correct_b)],
             [np.sum(~correct_a & correct_b), np.sum(~correct_a & ~correct_b)]]
    assert sig.mcnemar(correct_a, correct_b) == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert sig.mcnemar([True, False], [True, False]) == 1.0  # no discordant pair: nothing tells them apart


def test_verdicts_follow_the_interval_and_the_metric_direction():
    _, _, stats_a, stats_b = two_classifiers(2000, 0.60, 0.90)
    assert sig.paired(stats_a, stats_b, sig.mean_score, resamples=2000).verdict == "B is better"
    assert sig.paired(stats_b, stats_a, sig.mean_score, resamples=2000).verdict == "A is better"
    assert sig.paired(stats_a, stats_b, sig.mean_score, higher_is_better=False,
                      resamples=2000).verdict == "A is better"  # a loss: B's is higher, so worse
    same = sig.paired(stats_a, stats_a, sig.mean_score, resamples=2000)
    assert same.verdict == "not distinguishable at 95 %" and same.ci95 == [0.0, 0.0] and same.p_value == 1.0
    with pytest.raises(ValueError, match="one shape"):
        sig.paired(stats_a, stats_b[:10], sig.mean_score)


def test_over_seeds_welch_beats_probability_and_seeds_needed():
    from scipy.stats import ttest_ind

    a, b = [0.84, 0.85, 0.83, 0.86, 0.845], [0.87, 0.88, 0.86, 0.875, 0.865]
    result = sig.over_seeds(a, b)
    assert result.p_value == pytest.approx(ttest_ind(b, a, equal_var=False).pvalue)
    # P(random B seed beats random A seed), counted pair by pair, ties half
    pairs = [(x, y) for x in a for y in b]
    assert result.p_b_beats_a == pytest.approx(sum((y > x) + 0.5 * (y == x) for x, y in pairs) / len(pairs))
    assert result.verdict == "B is better" and result.ci95[0] > 0
    noisy = sig.over_seeds([0.80, 0.90, 0.85, 0.75], [0.82, 0.92, 0.86, 0.78])
    assert noisy.verdict == "not distinguishable at 95 %"
    assert noisy.seeds_needed > result.seeds_needed >= 2  # more seed noise for a like gap: more seeds needed
    assert sig.over_seeds([0.8, 0.8], [0.8, 0.8]).seeds_needed is None
    assert sig.over_seeds([0.80, 0.79, 0.81], [0.90, 0.91, 0.89]).seeds_needed == 2  # huge gap: the minimum
    with pytest.raises(ValueError, match="2\\+ runs"):
        sig.over_seeds([0.8], [0.9, 0.91])


@pytest.mark.parametrize("gap,spread", [(0.01, 0.01), (0.005, 0.02), (0.03, 0.02)])
def test_seeds_needed_equals_statsmodels_power_where_it_converges(gap, spread):
    from statsmodels.stats.power import TTestIndPower

    rng = np.random.default_rng(0)
    a = rng.normal(0.8, spread, 6)
    b = a + gap  # the same spread, the means `gap` apart
    effect = gap / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    expected = int(np.ceil(TTestIndPower().solve_power(effect_size=effect, alpha=0.05, power=0.8)))
    assert sig.seeds_needed(a, b) == expected


def test_holm_adjusts_in_order_and_never_lowers_a_p_value():
    raw = [0.01, 0.04, 0.03, 0.20]
    adjusted = sig.holm(raw)
    # Holm by hand: sorted p_(i) * (m - i), running maximum, capped at 1
    order = np.argsort(raw)
    by_hand, running = [0.0] * len(raw), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, raw[index] * (len(raw) - rank)))
        by_hand[index] = running
    assert adjusted == pytest.approx(by_hand)
    assert all(adj >= p for adj, p in zip(adjusted, raw)) and sig.holm([]) == []
