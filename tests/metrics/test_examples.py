"""Per-example records (experiments.metrics.examples): every metric recomputed from the rows' summed
statistics equals the metric module on the same predictions (classification incl. GLUE MRPC F1, CoLA MCC,
STS-B Pearson and MSE, macro F1, SQuAD EM/F1, BLEU/chrF with sacrebleu's defaults, ROUGE); the file is
written whole and read back, a damaged line stops in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.metrics import significance as sig
from experiments.metrics.examples import (
    EVAL_PREDICTIONS_FILE,
    ExampleRecords,
    label_metrics,
    label_rows,
    read_rows,
    recompute,
    rouge_stats,
    squad_stats,
    translation_stats,
    write_records,
)

WORDS = st.sampled_from("the a cat dog sat ran on in mat park today hello world".split())
SENTENCES = st.lists(st.tuples(st.lists(WORDS, min_size=0, max_size=9), st.lists(WORDS, min_size=1, max_size=9)),
                     min_size=1, max_size=8)


@given(SENTENCES)
@settings(max_examples=80, deadline=None)
def test_smoothed_bleu_and_chrf_from_sums_equal_sacrebleu_defaults(pairs):
    from sacrebleu.metrics import BLEU, CHRF

    hyps, refs = [" ".join(h) for h, _ in pairs], [" ".join(r) for _, r in pairs]
    rows = list(translation_stats(hyps, refs))
    bleu = np.array([row["bleu"] for row in rows], float).sum(0)
    chrf = np.array([row["chrf"] for row in rows], float).sum(0)
    assert sig.bleu_exp(bleu) == pytest.approx(BLEU().corpus_score(hyps, [refs]).score, abs=1e-9)
    assert sig.chrf(chrf) == pytest.approx(CHRF().corpus_score(hyps, [refs]).score, abs=1e-9)


@pytest.mark.filterwarnings("ignore:A single label")
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=60))
@settings(max_examples=60, deadline=None)
def test_multiclass_f1_and_mcc_from_sums_equal_sklearn(pairs):
    from sklearn.metrics import f1_score, matthews_corrcoef

    pred, ref = zip(*pairs)
    metrics = {"f1_macro": {"statistic": "macro_f1", "classes": [0, 1, 2, 3]},
               "matthews_correlation": {"statistic": "matthews_multiclass", "classes": [0, 1, 2, 3]}}
    rows = list(label_rows([str(i) for i in range(len(pred))], pred, ref, metrics))
    values = recompute(rows, metrics)
    assert values["f1_macro"] == pytest.approx(f1_score(ref, pred, average="macro", zero_division=0))
    assert values["matthews_correlation"] == pytest.approx(matthews_corrcoef(ref, pred), abs=1e-12)


CLASSIFICATION = [  # (dataset.metric, its config, num_labels, regression)
    ("glue", "mrpc", 2, False), ("glue", "cola", 2, False), ("glue", "stsb", 1, True), ("accuracy", None, 4, False),
    ("matthews_correlation", None, 3, False), (None, None, 2, False), ("glue", "sst2", 2, False),
]


@pytest.mark.parametrize("metric,config,num_labels,regression", CLASSIFICATION)
def test_classification_metrics_recomputed_from_rows_equal_the_metric_modules(metric, config, num_labels,
                                                                              regression):
    from experiments.metrics import for_classification

    rng = np.random.default_rng(7)
    n = 120
    if regression:
        refs = rng.uniform(0, 5, n).astype(np.float32)
        preds = (refs + rng.normal(0, 1.2, n)).astype(np.float32)
    else:
        refs = rng.integers(0, num_labels, n)
        preds = np.where(rng.random(n) < 0.7, refs, rng.integers(0, num_labels, n))
    expected = for_classification(metric, config, num_labels, regression)(preds.tolist(), refs.tolist())
    classes = list(range(num_labels))
    metrics, skipped = label_metrics(expected, classes, regression)
    rows = list(label_rows([str(i) for i in range(n)], preds.tolist(), refs.tolist(), metrics))
    values = recompute(rows, metrics)
    assert set(values) | set(skipped) == set(expected)
    for name, value in values.items():
        assert value == pytest.approx(expected[name], rel=1e-6, abs=1e-9), name
    assert set(skipped) <= {"spearmanr"}


def test_squad_rouge_and_translation_rows_recompute_the_task_metrics():
    from experiments import metrics

    hyps = ["the cat sat on the mat", "a dog ran", "hello world today", "in the park", ""]
    refs = ["the cat sat on a mat", "the dog ran in the park", "hello world", "park", "the mat"]
    squad = metrics.load("squad").compute(
        predictions=[{"id": str(i), "prediction_text": h} for i, h in enumerate(hyps)],
        references=[{"id": str(i), "answers": {"text": [r, "x"], "answer_start": [0, 0]}} for i, r in enumerate(refs)])
    rows = [{"id": str(i), "stats": squad_stats(h, [r, "x"])} for i, (h, r) in enumerate(zip(hyps, refs))]
    spec = {"exact_match": {"statistic": "mean_score"}, "f1": {"statistic": "mean_score"}}
    assert recompute(rows, spec) == pytest.approx(squad)
    rouge = metrics.load("rouge").compute(predictions=hyps, references=refs)
    types = list(rouge)
    rows = [{"id": str(i), "stats": s} for i, s in enumerate(rouge_stats(hyps, refs, types))]
    assert recompute(rows, {t: {"statistic": "mean_score"} for t in types}) == pytest.approx(rouge)
    bleu = metrics.load("sacrebleu").compute(predictions=hyps, references=refs)["score"]
    chrf = metrics.load("chrf").compute(predictions=hyps, references=refs)["score"]
    rows = [{"id": str(i), "stats": s} for i, s in enumerate(translation_stats(hyps, refs, chunk=2))]
    values = recompute(rows, {"bleu": {"statistic": "bleu_exp"}, "chrf": {"statistic": "chrf"}})
    assert values == pytest.approx({"bleu": bleu, "chrf": chrf})


def test_records_are_streamed_whole_and_read_back(tmp_path):
    from experiments.errors import DataError

    metrics = {"accuracy": {"statistic": "mean_score", "higher_is_better": True}}
    rows = label_rows(["a", "b", "c"], [1, 0, 1], [1, 1, 1], metrics, shown=lambda v: ["neg", "pos"][v])
    entry = write_records(tmp_path, ExampleRecords("toy:validation", metrics, rows))
    assert entry["examples"] == 3 and entry["eval_set"] == "toy:validation" and entry["metrics"] == metrics
    assert [p.name for p in tmp_path.iterdir()] == [EVAL_PREDICTIONS_FILE]  # no temporary file left behind
    back = list(read_rows(tmp_path / EVAL_PREDICTIONS_FILE))
    assert back[1] == {"id": "b", "prediction": "neg", "reference": "pos", "stats": {"accuracy": [0.0, 1]}}
    assert recompute(back, metrics) == {"accuracy": pytest.approx(2 / 3)}
    (tmp_path / EVAL_PREDICTIONS_FILE).write_text(json.dumps(back[0]) + "\n{not json\n")
    with pytest.raises(DataError, match="line 2"):
        list(read_rows(tmp_path / EVAL_PREDICTIONS_FILE))
