"""experiments.tasks.classification, directly: which scores the logits become, how rows become single texts
or text pairs, that a batch's make-up (lengths, singles mixed with pairs) never changes an input's label or
score, and how evaluation logits become predictions, per-example losses, metrics and eval_predictions rows."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from task_helpers import assert_one_line, config, make_task

from experiments.data.prepare import ClassificationData
from experiments.errors import DataError
from experiments.metrics.examples import recompute
from experiments.tasks.base import Item
from experiments.tasks.classification import SentimentAnalysis, TextClassification, scores_function

WORDS = st.sampled_from("the film was good bad long dull great plot acting it rains street is wet".split())
SENTENCE = st.lists(WORDS, min_size=1, max_size=12).map(" ".join)
INPUT = st.one_of(SENTENCE, st.builds(lambda a, b: {"text": a, "text_pair": b}, SENTENCE, SENTENCE))


@given(problem=st.sampled_from([None, "single_label_classification", "multi_label_classification",
                                 "regression"]), num_labels=st.integers(1, 6))
def test_scores_are_none_for_regression_sigmoid_for_multi_label_or_one_logit_else_softmax(problem,
                                                                                          num_labels):
    model_config = SimpleNamespace(num_labels=num_labels, problem_type=problem)
    expected = ("none" if problem == "regression" else
                "sigmoid" if problem == "multi_label_classification" or num_labels == 1 else "softmax")
    assert scores_function(model_config) == expected


@given(text=st.text(max_size=10), pair=st.one_of(st.none(), st.just(""), st.text(min_size=1, max_size=10)),
       column=st.sampled_from([None, "sentence", "text"]))
def test_a_row_with_a_text_pair_is_a_pair_input_else_its_text(text, pair, column):
    row = {column or "text": text} if pair is None else {column or "text": text, "text_pair": pair}
    task = TextClassification(config("text-classification").task)
    got = task.from_record(row, column)
    assert got == ({"text": text, "text_pair": pair} if pair else text)


@given(value=st.dictionaries(st.sampled_from(["text", "text_pair", "label", "extra"]),
                             st.one_of(st.text(max_size=8), st.integers()), max_size=4))
def test_a_pair_input_is_text_and_text_pair_as_strings_or_a_one_line_error(value):
    task = TextClassification(config("text-classification").task)
    good = not set(value) - {"text", "text_pair"} and str(value.get("text", "")).strip()
    if good:
        expected = {"text": str(value["text"]), "text_pair": str(value.get("text_pair", ""))}
        assert task.check_input(value) == expected
        return
    with pytest.raises(DataError) as info:
        task.check_input(value)
    assert_one_line(info.value, "needs keys text and text_pair")


def test_top_label_reads_a_ranked_list_or_one_result():
    assert TextClassification.top_label({"label": "a", "score": 0.6}) == "a"
    assert TextClassification.top_label([{"label": "b", "score": 0.7}, {"label": "a", "score": 0.3}]) == "b"


def _classify(task, batch):
    import torch

    with torch.no_grad():
        return task.manual([task.check_input(x) for x in batch])


@settings(max_examples=15)
@given(batch=st.lists(INPUT, min_size=1, max_size=5))
def test_an_input_gets_the_same_label_and_score_whatever_batch_it_is_in(batch, tiny, tokenizer):
    task = make_task(TextClassification, tiny("classifier"), tokenizer, max_length=32)
    together = _classify(task, batch)
    for value, result in zip(batch, together):
        [alone] = _classify(task, [value])
        assert result["label"] == alone["label"]
        assert result["score"] == pytest.approx(alone["score"], abs=1e-5)
        assert result["label"] in ("negative", "positive") and 0.5 <= result["score"] <= 1.0


@settings(max_examples=10)
@given(batch=st.lists(INPUT, min_size=1, max_size=4))
def test_top_k_ranks_every_label_by_a_softmax_that_sums_to_one(batch, tiny, tokenizer):
    task = make_task(SentimentAnalysis, tiny("classifier"), tokenizer, top_k=5)
    top = make_task(SentimentAnalysis, tiny("classifier"), tokenizer)
    for ranked, best in zip(_classify(task, batch), _classify(top, batch)):
        assert sorted(r["label"] for r in ranked) == ["negative", "positive"]  # top_k beyond the labels: all
        scores = [r["score"] for r in ranked]
        assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-6)
        assert ranked[0]["label"] == best["label"] and ranked[0]["score"] == pytest.approx(best["score"])


def test_reference_ids_are_scored_through_the_dataset_label_names():
    task = TextClassification(config("text-classification").task)
    task.label_names = ["negative", "positive"]
    outputs = [{"label": "positive"}, [{"label": "NEGATIVE"}], {"label": "LABEL_1"}, {"label": "positive"}]
    scores = task.quality(outputs, [1, 0, 0, None])
    assert scores["accuracy"] == pytest.approx(2 / 3)
    items = [Item(f"r{n}", "text", reference) for n, reference in enumerate([1, 0, 0, None])]
    metrics, rows = task.example_rows(items, outputs)
    rows = list(rows)
    assert [row["id"] for row in rows] == ["r0", "r1", "r2"]
    assert [(row["prediction"], row["reference"]) for row in rows] == [("positive", "positive"),
                                                                         ("negative", "negative"),
                                                                         ("positive", "negative")]
    assert recompute(rows, metrics) == pytest.approx(scores)


def test_no_reference_no_quality_and_no_rows():
    task = TextClassification(config("text-classification").task)
    assert task.quality([{"label": "a"}], [None]) == {}
    assert task.example_rows([Item("0", "text")], [{"label": "a"}]) is None


LOGITS = st.tuples(st.integers(1, 6), st.integers(2, 5), st.integers(0, 2 ** 16))


def _logits(shape):
    import torch

    rows, labels, seed = shape
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, labels, generator=generator) * 4
    return logits, torch.randint(0, labels, (rows,), generator=generator)


@settings(max_examples=30)
@given(shape=LOGITS)
def test_eval_predictions_are_the_argmax_and_losses_the_per_example_cross_entropy(shape):
    import torch.nn.functional as F

    logits, labels = _logits(shape)
    data = ClassificationData(None, None, None, logits.shape[1], False)
    task = TextClassification(config("text-classification").task)
    predictions, losses = task.eval_outputs(logits, labels, data)
    assert predictions.tolist() == logits.argmax(-1).tolist()
    assert losses.shape == labels.shape
    assert float(losses.mean()) == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-5)


@settings(max_examples=30)
@given(shape=LOGITS)
def test_regression_predictions_are_the_scores_and_losses_the_squared_errors(shape):
    import torch

    logits, _ = _logits(shape)
    logits = logits[:, :1]
    targets = torch.linspace(0, 5, logits.shape[0])
    data = ClassificationData(None, None, None, 1, True)
    task = TextClassification(config("text-classification").task)
    predictions, losses = task.eval_outputs(logits, targets, data)
    assert predictions.tolist() == logits[:, 0].tolist()
    assert losses.tolist() == pytest.approx(((logits[:, 0] - targets) ** 2).tolist(), rel=1e-5)


@settings(max_examples=30)
@given(shape=LOGITS)
def test_eval_metrics_pass_the_gathered_predictions_to_the_metric_and_average_the_loss(shape):
    logits, labels = _logits(shape)
    task = TextClassification(config("text-classification").task)
    task.data = ClassificationData(None, None, None, logits.shape[1], False)
    rows = task.eval_rows(type("Output", (), {"logits": logits})(), {"labels": labels})
    seen = []

    def compute(predictions, references):
        seen.append((predictions, references))
        return {"accuracy": sum(p == r for p, r in zip(predictions, references)) / len(references)}

    scores = task.eval_metrics(rows, compute)
    assert seen == [(logits.argmax(-1).tolist(), labels.tolist())]
    assert scores["loss"] == pytest.approx(float(rows["loss"].mean()))
    assert scores["accuracy"] == pytest.approx(float((logits.argmax(-1) == labels).float().mean()))


@settings(max_examples=30)
@given(shape=LOGITS, named=st.booleans(), with_ids=st.booleans())
def test_eval_records_show_label_names_and_recompute_accuracy_and_loss(shape, named, with_ids):
    import torch

    logits, labels = _logits(shape)
    classes = logits.shape[1]
    names = [f"class {c}" for c in range(classes)] if named else None
    ids = [f"ex{n}" for n in range(len(labels))] if with_ids else None
    data = ClassificationData(None, None, names, classes, False, ids)
    columns = {"prediction": logits.argmax(-1), "label": labels, "loss": torch.rand(len(labels))}
    accuracy = float((columns["prediction"] == labels).float().mean())
    cfg = config("text-classification")
    scores = {"accuracy": accuracy, "loss": 0.0}
    records = TextClassification(cfg.task).eval_records(columns, scores, data, cfg)
    rows = list(records.rows)
    assert [row["id"] for row in rows] == (ids or [str(n) for n in range(len(labels))])
    shown = (lambda i: names[i]) if named else (lambda i: i)
    assert [row["reference"] for row in rows] == [shown(i) for i in labels.tolist()]
    assert [row["prediction"] for row in rows] == [shown(i) for i in columns["prediction"].tolist()]
    values = recompute(rows, records.metrics)
    assert values["accuracy"] == pytest.approx(accuracy)
    assert values["loss"] == pytest.approx(float(columns["loss"].mean()))
    assert records.prefix == "eval_" and records.eval_set == "toy:validation"
