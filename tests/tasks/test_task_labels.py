"""experiments.tasks.labels, directly: how a label id, its name and a model's generic ``LABEL_k`` become one
comparable form, and that the classification quality (accuracy, macro F1) and its per-example rows score the
labels as that form says, for any label set."""
from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from experiments.metrics.examples import recompute
from experiments.tasks.base import Item
from experiments.tasks.labels import classification_quality, label_name_rows, normalise

GENERIC = re.compile(r"^label_\d+$", re.IGNORECASE)
# a dataset's label names: any text without surrounding whitespace that is not itself a generic LABEL_k
NAME = st.text(min_size=1, max_size=12).filter(lambda s: s == s.strip() and not GENERIC.match(s))
NAMES = st.lists(NAME, min_size=1, max_size=6)

# one of a few classes, written as a user or a model might: any case, stray whitespace around it
BASE = ["positive", "negative", "neutral", "mixed"]
SPELLED = st.builds(lambda name, upper, pad: pad + (name.upper() if upper else name) + pad,
                    st.sampled_from(BASE), st.booleans(), st.sampled_from(["", " ", "\t", "  "]))
PAIRS = st.lists(st.tuples(SPELLED, st.one_of(st.none(), SPELLED)), min_size=1, max_size=20)


@given(names=NAMES, data=st.data())
def test_an_id_its_name_and_its_generic_label_normalise_alike(names, data):
    index = data.draw(st.integers(0, len(names) - 1))
    expected = names[index].lower()
    assert normalise(index, names) == expected
    assert normalise(names[index], names) == expected
    assert normalise(f"LABEL_{index}", names) == expected
    assert normalise(f" label_{index} ", names) == expected


@given(names=NAMES)
def test_booleans_are_the_ids_zero_and_one(names):
    assume(len(names) >= 2)
    assert normalise(False, names) == names[0].lower()
    assert normalise(True, names) == names[1].lower()


@given(names=st.one_of(st.none(), NAMES), offset=st.integers(0, 1000))
def test_ids_outside_the_names_stay_themselves(names, offset):
    beyond = len(names or []) + offset
    assert normalise(beyond, names) == str(beyond)
    assert normalise(f"LABEL_{beyond}", names) == f"label_{beyond}"
    assert normalise(-1 - offset, names) == str(-1 - offset)


@given(text=st.text(max_size=20))
def test_without_names_a_label_is_its_stripped_lower_case_text(text):
    assert normalise(text) == text.strip().lower()


def test_an_id_and_its_name_agree_when_the_name_has_surrounding_whitespace():
    names = [" positive", "negative "]
    assert normalise(0, names) == normalise(names[0], names)
    assert normalise(1, names) == normalise(names[1], names)


def _expected(pairs):
    scored = [(normalise(p), normalise(r)) for p, r in pairs if r is not None]
    return scored, sum(p == r for p, r in scored) / len(scored) if scored else None


@settings(max_examples=40)
@given(pairs=PAIRS)
def test_accuracy_is_the_share_of_labels_equal_after_normalising(pairs):
    from sklearn.metrics import f1_score

    scores = classification_quality([p for p, _ in pairs], [r for _, r in pairs])
    scored, accuracy = _expected(pairs)
    if not scored:
        assert scores == {}
        return
    assert set(scores) == {"accuracy", "f1"}
    assert scores["accuracy"] == pytest.approx(accuracy)
    truth, predicted = [r for _, r in scored], [p for p, _ in scored]
    assert scores["f1"] == pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0))


@settings(max_examples=30)
@given(pairs=PAIRS)
def test_items_without_a_reference_do_not_count(pairs):
    kept = [(p, r) for p, r in pairs if r is not None]
    assume(kept)
    with_none = classification_quality([p for p, _ in pairs], [r for _, r in pairs])
    without = classification_quality([p for p, _ in kept], [r for _, r in kept])
    assert with_none == pytest.approx(without)


@settings(max_examples=30)
@given(labels=st.lists(SPELLED, min_size=1, max_size=12), recase=st.booleans())
def test_predictions_equal_to_the_references_score_one_whatever_their_spelling(labels, recase):
    predicted = [label.strip().upper() if recase else label.strip().lower() for label in labels]
    assert classification_quality(predicted, labels) == {"accuracy": 1.0, "f1": 1.0}


@settings(max_examples=30)
@given(names=st.lists(st.sampled_from(BASE), min_size=2, max_size=4, unique=True), data=st.data())
def test_reference_ids_are_scored_against_predicted_names(names, data):
    ids = data.draw(st.lists(st.integers(0, len(names) - 1), min_size=1, max_size=12))
    predicted = data.draw(st.lists(st.integers(0, len(names) - 1), min_size=len(ids), max_size=len(ids)))
    # as a model may spell its predictions: upper-case names, generic LABEL_k
    shown = [names[i].upper() if n % 2 else f"LABEL_{i}" for n, i in enumerate(predicted)]
    scores = classification_quality(shown, ids, names)
    assert scores["accuracy"] == pytest.approx(sum(p == r for p, r in zip(predicted, ids)) / len(ids))


def test_label_name_rows_of_nothing_scored_is_none():
    assert label_name_rows([], lambda output: output["label"], None) is None


@settings(max_examples=40)
@given(pairs=st.lists(st.tuples(SPELLED, SPELLED), min_size=1, max_size=20))
def test_label_rows_recompute_the_quality_they_stand_for(pairs):
    scored = [(Item(f"id{n}", "text", r), {"label": p}, r) for n, (p, r) in enumerate(pairs)]
    metrics, rows = label_name_rows(scored, lambda output: output["label"], None)
    rows = list(rows)
    assert [row["id"] for row in rows] == [f"id{n}" for n in range(len(pairs))]
    shown = [(row["prediction"], row["reference"]) for row in rows]
    assert shown == [(normalise(p), normalise(r)) for p, r in pairs]
    assert metrics["f1"]["classes"] == sorted({normalise(x) for pair in pairs for x in pair})
    expected = classification_quality([p for p, _ in pairs], [r for _, r in pairs])
    assert recompute(rows, metrics) == pytest.approx(expected)
