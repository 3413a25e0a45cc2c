"""experiments.tasks.zero_shot, directly: which label of an NLI model is entailment, which Auto class each
method loads, where the candidate labels come from, how NLI logits become per-label scores (one softmax over
the labels, or independent entailment probabilities), the ranked result, and the embedding method's cosine
scores with its label vectors computed once."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from task_helpers import assert_one_line, config, make_task

from experiments.errors import ExperimentError
from experiments.tasks.base import Item
from experiments.tasks.features import pool
from experiments.tasks.zero_shot import ZeroShotClassification, entailment_id

NAME = "zero-shot-classification"
CLASS_NAMES = st.lists(st.sampled_from(["entailment", "Entailed", "ENTAIL", "neutral", "contradiction",
                                        "sport", "not_entailment", "LABEL_0"]), min_size=1, max_size=4,
                       unique=True)
WORDS = st.sampled_from("i cooked pasta the striker scored twice in final rain fell all day".split())
SENTENCE = st.lists(WORDS, min_size=1, max_size=10).map(" ".join)
CANDIDATES = st.lists(st.sampled_from(["food", "sport", "weather", "politics", "film"]), min_size=1,
                      max_size=4, unique=True)


def _model_config(names):
    return SimpleNamespace(label2id={n: i for i, n in enumerate(names)}, id2label=dict(enumerate(names)))


@given(names=CLASS_NAMES)
def test_the_entailment_label_is_the_first_whose_name_starts_with_entail(names):
    expected = next((i for i, n in enumerate(names) if n.lower().startswith("entail")), -1)
    assert entailment_id(_model_config(names)) == expected


@pytest.mark.parametrize("method, auto", [(None, "AutoModelForSequenceClassification"),
                                          ("nli", "AutoModelForSequenceClassification"),
                                          ("embedding", "AutoModel")])
def test_each_method_loads_its_auto_class(method, auto):
    cfg = config(NAME, method=method)
    assert ZeroShotClassification(cfg.task).choose_auto_class(None, cfg.task) == auto


@pytest.mark.parametrize("method", ["seq2seq", "causal"])
def test_a_generation_method_is_a_one_line_error(method):
    cfg = config(NAME, method=method)
    with pytest.raises(ExperimentError) as info:
        ZeroShotClassification(cfg.task).choose_auto_class(None, cfg.task)
    assert_one_line(info.value, f"task.method={method}", "nli or embedding")


@given(names=CLASS_NAMES)
def test_an_nli_model_needs_an_entailment_label_the_embedding_method_does_not(names):
    model = SimpleNamespace(config=_model_config(names))
    task = ZeroShotClassification(config(NAME).task)
    task.check_model(model, None, config(NAME, method="embedding").task)
    if entailment_id(model.config) >= 0:
        task.check_model(model, None, config(NAME).task)
        return
    with pytest.raises(ExperimentError) as info:
        task.check_model(model, None, config(NAME).task)
    assert_one_line(info.value, "'entailment' label", f"[{', '.join(names)}]")


@given(candidates=st.lists(st.text(min_size=1, max_size=5), max_size=3),
       names=st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=5), max_size=3)))
def test_candidate_labels_win_over_the_dataset_label_names(candidates, names):
    task = ZeroShotClassification(config(NAME, candidate_labels=candidates).task)
    task.label_names = names
    expected = candidates or names
    if expected:
        assert task.labels == list(expected)
        return
    with pytest.raises(ExperimentError) as info:
        _ = task.labels
    assert_one_line(info.value, "task.candidate_labels")


@given(scores=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=6), text=st.text(max_size=10))
def test_the_result_ranks_the_labels_by_score_keeping_each_label_s_score(scores, text):
    labels = [f"label {n}" for n in range(len(scores))]
    task = ZeroShotClassification(config(NAME, candidate_labels=labels).task)
    result = task._result(text, scores)
    assert result["sequence"] == text and sorted(result["labels"]) == sorted(labels)
    assert result["scores"] == sorted(scores, reverse=True)
    for label, score in zip(result["labels"], result["scores"]):
        assert scores[labels.index(label)] == score


@settings(max_examples=50)
@given(texts=st.integers(1, 4), labels=st.integers(1, 5), entail=st.integers(0, 2), multi=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_nli_scores_are_a_softmax_over_labels_or_one_entailment_probability_each(texts, labels, entail, multi,
                                                                                 seed):
    import torch

    names = ["neutral", "contradiction", "other"]
    names[entail] = "entailment"
    logits = torch.randn(texts, labels, 3, generator=torch.Generator().manual_seed(seed)) * 3
    candidates = [f"c{n}" for n in range(labels)]
    task = make_task(ZeroShotClassification, SimpleNamespace(config=_model_config(names)), None,
                     candidate_labels=candidates, multi_label=multi)
    scores = task._nli_scores(logits)
    assert len(scores) == texts and all(len(row) == labels for row in scores)
    contradiction = 2 if entail == 0 else 0  # the last class when entailment is the first, else the first
    for t, row in enumerate(scores):
        if multi or labels == 1:  # entailment against contradiction, per label
            expected = [1 / (1 + math.exp(float(logits[t, n, contradiction] - logits[t, n, entail])))
                        for n in range(labels)]
        else:  # entailment logits against each other
            expected = torch.softmax(logits[t, :, entail], dim=-1).tolist()
            assert sum(row) == pytest.approx(1.0, abs=1e-5)
        assert row == pytest.approx(expected, abs=1e-5)


@settings(max_examples=30)
@given(texts=st.lists(SENTENCE, min_size=1, max_size=4), candidates=CANDIDATES)
def test_nli_costs_one_pair_per_candidate_label_and_embedding_one_text(texts, candidates, tokenizer):
    nli = make_task(ZeroShotClassification, None, tokenizer, candidate_labels=candidates)
    embedding = make_task(ZeroShotClassification, None, tokenizer, candidate_labels=candidates,
                          method="embedding")
    single = [len(tokenizer(t)["input_ids"]) for t in texts]
    assert embedding.token_costs(texts) == single
    assert nli.token_costs(texts) == [cost * len(candidates) for cost in single]


def _classify(task, batch):
    import torch

    with torch.no_grad():
        return task.manual(batch)


@settings(max_examples=12)
@given(batch=st.lists(SENTENCE, min_size=1, max_size=4), candidates=CANDIDATES)
def test_nli_ranks_every_candidate_whatever_batch_a_text_is_in(batch, candidates, tiny, tokenizer):
    task = make_task(ZeroShotClassification, tiny("nli"), tokenizer, candidate_labels=candidates,
                     max_length=48)
    for text, result in zip(batch, _classify(task, batch)):
        assert result["sequence"] == text and sorted(result["labels"]) == sorted(candidates)
        assert result["scores"] == sorted(result["scores"], reverse=True)
        # one softmax over the labels (a single label: its own entailment probability)
        if len(candidates) > 1:
            assert sum(result["scores"]) == pytest.approx(1.0, abs=1e-5)
        assert all(0 <= score <= 1 for score in result["scores"])
        [alone] = _classify(task, [text])
        assert dict(zip(alone["labels"], alone["scores"])) == pytest.approx(
            dict(zip(result["labels"], result["scores"])), abs=1e-5)


def test_embedding_scores_are_cosines_to_label_vectors_computed_once(tiny, tokenizer):
    import torch

    candidates = ["food", "sport", "weather"]
    task = make_task(ZeroShotClassification, tiny("mlm").bert, tokenizer, candidate_labels=candidates,
                     method="embedding", hypothesis_template="This text is about {}.")
    batch = ["i cooked pasta", "the striker scored twice in the final"]
    first = _classify(task, batch)
    assert list(task.ctx.extra) == ["label_vectors/hidden_manual"]
    vectors = task.ctx.extra["label_vectors/hidden_manual"]
    assert vectors.shape == (3, 32)
    # a recomputation would replace this object
    task.ctx.extra["label_vectors/hidden_manual"] = vectors.clone()
    kept = task.ctx.extra["label_vectors/hidden_manual"]
    again = _classify(task, batch[:1])
    assert task.ctx.extra["label_vectors/hidden_manual"] is kept
    assert again[0]["labels"] == first[0]["labels"]
    assert again[0]["scores"] == pytest.approx(first[0]["scores"])
    with torch.no_grad():
        encoded = tokenizer([f"This text is about {c}." for c in candidates] + batch, padding=True,
                            return_tensors="pt")
        hidden = tiny("mlm").bert(**encoded)[0]
    pooled = [pool(h[m.bool()], "mean", True) for h, m in zip(hidden, encoded["attention_mask"])]
    for n, result in enumerate(first):
        cosines = {c: float(pooled[3 + n] @ pooled[i]) for i, c in enumerate(candidates)}
        assert dict(zip(result["labels"], result["scores"])) == pytest.approx(cosines, abs=1e-5)
        assert all(-1 - 1e-6 <= s <= 1 + 1e-6 for s in result["scores"])


def test_quality_and_rows_score_the_top_label_against_the_references():
    from experiments.metrics.examples import recompute

    task = ZeroShotClassification(config(NAME, candidate_labels=["food", "sport"]).task)
    task.label_names = ["food", "sport"]
    outputs = [{"labels": ["food", "sport"]}, {"labels": ["sport", "food"]}, {"labels": ["food", "sport"]}]
    references = [0, "SPORT", "sport"]
    scores = task.quality(outputs, references)
    assert scores["accuracy"] == pytest.approx(2 / 3)
    metrics, rows = task.example_rows([Item(str(n), "t", r) for n, r in enumerate(references)], outputs)
    assert recompute(list(rows), metrics) == pytest.approx(scores)
