"""experiments.tasks.question_answering, directly: span decoding (the best ``p_start * p_end`` spans no longer
than max_answer_len, in allowed positions only), how rows become questions, contexts and references, the
checks an input passes, that answers are real character spans of the context, the too-long-question errors,
and the SQuAD quality, its per-question rows and the training eval loss."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from task_helpers import assert_one_line, config, make_task

from experiments.errors import DataError
from experiments.metrics.examples import recompute
from experiments.tasks.base import Item
from experiments.tasks.question_answering import QuestionAnswering, decode_spans

NAME = "question-answering"
WORDS = st.sampled_from("ann wrote the book in 1990 and bob read it twice at home on sunday".split())
TEXT = st.lists(WORDS, min_size=1, max_size=25).map(" ".join)
QUESTION = st.lists(WORDS, min_size=1, max_size=6).map(" ".join)
# a context of at least 3 tokens has at least 3 spans: as many as any top_k drawn below 
CONTEXT = st.lists(WORDS, min_size=3, max_size=25).map(" ".join)


def _probabilities(length, seed):
    rng = np.random.default_rng(seed)
    start, end = rng.random(length) + 1e-3, rng.random(length) + 1e-3  # no ties, none zero
    return start / start.sum(), end / end.sum()


def _valid_spans(length, max_answer_len):
    return [(s, e) for s in range(length) for e in range(s, min(length, s + max_answer_len))]


@st.composite
def decodings(draw):
    """(start, end, top_k, max_answer_len, allowed) with top_k at most the number of valid spans."""
    length = draw(st.integers(1, 12))
    max_answer_len = draw(st.integers(1, 6))
    top_k = draw(st.integers(1, len(_valid_spans(length, max_answer_len))))
    allowed = np.array(draw(st.lists(st.booleans(), min_size=length, max_size=length)), dtype=int)
    return (*_probabilities(length, draw(st.integers(0, 2 ** 16))), top_k, max_answer_len, allowed)


@settings(max_examples=80)
@given(case=decodings())
def test_decoded_spans_are_the_best_valid_spans_that_lie_in_allowed_positions(case):
    start, end, top_k, max_answer_len, allowed = case
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, allowed)
    spans = _valid_spans(len(start), max_answer_len)
    best = sorted(spans, key=lambda span: -start[span[0]] * end[span[1]])[:top_k]
    kept = [(s, e) for s, e in best if allowed[s] and allowed[e]]
    assert list(zip(starts.tolist(), ends.tolist())) == kept
    assert scores.tolist() == pytest.approx([start[s] * end[e] for s, e in kept])


def test_asking_for_more_spans_than_exist_returns_only_valid_spans():
    start = end = np.array([0.5, 0.5])  # 3 valid spans: (0, 0), (0, 1), (1, 1)
    starts, ends, _ = decode_spans(start, end, 5, 15, np.array([1, 1]))
    assert all(s <= e for s, e in zip(starts, ends))


def test_asking_for_as_many_spans_as_score_cells_does_not_crash():
    start = end = np.array([0.5, 0.5])
    starts, _, _ = decode_spans(start, end, 4, 15, np.array([1, 1]))
    assert len(starts) == 3


def test_rows_become_a_question_with_its_context():
    task = QuestionAnswering(config(NAME).task)
    assert task.from_text("who?") == {"question": "who?"}
    expected = {"question": "who?", "context": "Ann."}
    assert task.from_record({"question": "who?", "context": "Ann."}) == expected
    assert task.from_record({"q": "who?", "context": "Ann."}, "q") == expected
    assert task.input_text({"question": "who?", "context": "Ann."}) == ["who?", "Ann."]


@given(context=TEXT, as_list=st.booleans(),
       picks=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 12)), min_size=1, max_size=3))
def test_text_answers_point_at_their_first_place_in_the_context(context, picks, as_list):
    texts = [context[a % len(context):a % len(context) + n] for a, n in picks]
    texts = [t for t in texts if t] or [context]
    value = texts if as_list or len(texts) > 1 else texts[0]
    task = QuestionAnswering(config(NAME).task)
    reference = task.reference_from_record({"context": context, "answers": value})
    assert reference["text"] == texts
    assert reference["answer_start"] == [context.find(t) for t in texts]
    assert all(context[s:s + len(t)] == t for s, t in zip(reference["answer_start"], texts))


def test_squad_answers_keep_their_offsets_and_empty_answers_are_no_reference():
    task = QuestionAnswering(config(NAME).task)
    squad = {"text": ("Ann",), "answer_start": ("0",)}
    assert task.reference_from_record({"answers": squad}) == {"text": ["Ann"], "answer_start": [0]}
    assert task.reference_from_record({"answer": "Ann", "context": "Ann wrote."}) == {"text": ["Ann"],
                                                                                      "answer_start": [0]}
    for empty in (None, "", []):
        assert task.reference_from_record({"answers": empty, "context": "x"}) is None
    expected = {"text": ["x"], "answer_start": [0]}
    assert task.reference_from_record({"gold": "x", "context": "x"}, "gold") == expected


@given(question=st.one_of(st.none(), st.text(max_size=6)), context=st.one_of(st.none(), st.text(max_size=6)))
def test_an_input_needs_a_question_and_a_context_or_a_one_line_error(question, context):
    task = QuestionAnswering(config(NAME).task)
    value = {"question": question, "context": context}
    if str(context or "").strip() and str(question or "").strip():
        assert task.check_input(value) == value
        return
    with pytest.raises(DataError) as info:
        task.check_input(value)
    missing = "context" if not str(context or "").strip() else "question"
    assert_one_line(info.value, f"without a {missing}")


def _answer(task, batch):
    import torch

    with torch.no_grad():
        return task.manual([task.check_input(x) for x in batch])


@settings(max_examples=15)
@given(batch=st.lists(st.tuples(QUESTION, CONTEXT), min_size=1, max_size=3), top_k=st.integers(1, 3),
       max_answer_len=st.integers(1, 4), impossible=st.booleans())
def test_answers_are_ranked_spans_of_the_context_no_longer_than_max_answer_len(batch, top_k, max_answer_len,
                                                                               impossible, tiny, tokenizer):
    task = make_task(QuestionAnswering, tiny("qa"), tokenizer, top_k=top_k, max_answer_len=max_answer_len,
                     max_length=32, doc_stride=8, handle_impossible_answer=impossible)
    inputs = [{"question": q, "context": c} for q, c in batch]
    for value, output in zip(inputs, _answer(task, inputs)):
        answers = [output] if top_k == 1 else output
        assert 1 <= len(answers) <= top_k
        assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
        for a in answers:
            if impossible and a["answer"] == "":  # the null answer
                assert (a["start"], a["end"]) == (0, 0)
                continue
            assert a["answer"] and value["context"][a["start"]:a["end"]] == a["answer"]
            assert len(tokenizer(a["answer"], add_special_tokens=False)["input_ids"]) <= max_answer_len
            assert 0 < a["score"] <= 1


def test_a_short_context_with_a_large_top_k_gives_only_real_spans(tiny, tokenizer):
    task = make_task(QuestionAnswering, tiny("qa"), tokenizer, top_k=100, max_length=64)
    [answers] = _answer(task, [{"question": "q?", "context": "a b c"}])
    assert all(a["start"] < a["end"] and a["score"] > 0 for a in answers), answers


def test_top_k_equal_to_the_squared_window_length_still_answers(tiny, tokenizer):
    task = make_task(QuestionAnswering, tiny("qa"), tokenizer, top_k=64, max_length=64)
    assert len(tokenizer("q?", "a b c")["input_ids"]) == 8
    [answers] = _answer(task, [{"question": "q?", "context": "a b c"}])
    assert answers


def test_a_question_longer_than_max_question_len_is_a_one_line_error(tiny, tokenizer):
    task = make_task(QuestionAnswering, tiny("qa"), tokenizer, max_question_len=4, max_length=64)
    with pytest.raises(DataError) as info:
        _answer(task, [{"question": "who wrote the book in 1990?", "context": "Ann wrote it."}])
    assert_one_line(info.value, "task.max_question_len=4")


def test_a_question_that_leaves_the_windows_no_room_is_a_one_line_error(tiny, tokenizer):
    task = make_task(QuestionAnswering, tiny("qa"), tokenizer, max_length=16, doc_stride=8)
    question = "who wrote the book in 1990 and read it"
    with pytest.raises(DataError) as info:
        _answer(task, [{"question": question, "context": "ann wrote the book " * 10}])
    assert_one_line(info.value, "overlap of 8", "task.max_length")


def test_eval_questions_too_long_stop_naming_the_split_row_and_id(tokenizer):
    items = [Item("q1", {"question": "who?"}), Item("q2", {"question": "who wrote the book in 1990 twice?"})]
    task_cfg = config(NAME, max_question_len=4).task
    with pytest.raises(DataError) as info:
        QuestionAnswering._check_question_lengths(items, tokenizer, task_cfg, "dev")
    assert_one_line(info.value, "split 'dev'", "row 1", "q2", "task.max_question_len=4")
    QuestionAnswering._check_question_lengths(items[:1], tokenizer, task_cfg, "dev")


@settings(max_examples=20)
@given(pairs=st.lists(st.tuples(TEXT, st.one_of(st.none(), TEXT)), min_size=1, max_size=6),
       listed=st.booleans())
def test_squad_quality_and_its_rows_agree_and_exact_answers_score_100(pairs, listed):
    task = QuestionAnswering(config(NAME).task)
    outputs = [[{"answer": p}] if listed else {"answer": p} for p, _ in pairs]
    references = [None if r is None else {"text": [r], "answer_start": [0]} for _, r in pairs]
    items = [Item(f"q{n}", {}, r) for n, r in enumerate(references)]
    scores = task.quality(outputs, references)
    found = task.example_rows(items, outputs)
    if all(r is None for r in references):
        assert scores == {} and found is None
        return
    metrics, rows = found
    rows = list(rows)
    assert [row["id"] for row in rows] == [item.id for item in items if item.reference is not None]
    assert recompute(rows, metrics) == pytest.approx(scores)
    exact = task.quality([{"answer": r["text"][0]} for r in references if r], [r for r in references if r])
    assert exact == {"exact_match": 100.0, "f1": 100.0}


@settings(max_examples=30)
@given(rows=st.integers(1, 5), length=st.integers(2, 9), seed=st.integers(0, 2 ** 16))
def test_the_eval_loss_is_the_mean_of_the_start_and_end_cross_entropies(rows, length, seed):
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(rows, length, generator=generator)
    end = torch.randn(rows, length, generator=generator)
    positions = torch.randint(0, length, (2, rows), generator=generator)
    output = type("Output", (), {"start_logits": start, "end_logits": end})()
    got = QuestionAnswering(config(NAME).task).eval_rows(output, {"start_positions": positions[0],
                                                                  "end_positions": positions[1]})
    expected = [(F.cross_entropy(start[i], positions[0, i]) + F.cross_entropy(end[i], positions[1, i])) / 2
                for i in range(rows)]
    assert got["loss"].tolist() == pytest.approx([float(x) for x in expected], rel=1e-5)
