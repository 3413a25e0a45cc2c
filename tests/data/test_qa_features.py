"""Extractive-QA training features from real XQuAD-en rows and the real MiniLM tokenizer: windows are the ones
inference reads, and the answer positions point at tokens that read back as the answer."""
from __future__ import annotations

import pytest

from experiments.config.validate import compose, to_typed
from experiments.data.qa import answer_span_coverage, build_qa_features, check_qa_rows, qa_features
from experiments.data.sources import load_raw
from experiments.errors import DataError

XQUAD_ROWS = 1190


@pytest.fixture(scope="module")
def xquad(shared_data):
    """XQuAD-en (<shared>/data/squad/xquad.en.json) through the squad dataset config's loader."""
    split = load_raw(to_typed(compose(["dataset=squad"])).dataset, str(shared_data))["validation"]
    assert len(split) == XQUAD_ROWS
    return split


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir))
    assert tok.is_fast and tok.padding_side == "right"
    return tok


def _reference_windows(tokenizer, split, max_length: int, doc_stride: int):
    """The windows exactly as QuestionAnswering.manual makes them (question first for right padding)."""
    return tokenizer([q.lstrip() for q in split["question"]], list(split["context"]), truncation="only_second",
                     max_length=max_length, stride=min(doc_stride, max_length // 2),
                     return_overflowing_tokens=True, return_offsets_mapping=True)


def _window_holds_answer(offsets, sequence_ids, start_char: int, end_char: int) -> bool:
    context = [offsets[i] for i, s in enumerate(sequence_ids) if s == 1]
    return context[0][0] <= start_char and end_char <= context[-1][1]


def _check_windows(features, split, tokenizer, max_length: int, doc_stride: int) -> float:
    """Every feature against an independent tokenization; returns the share of rows whose answer reads back."""
    reference = _reference_windows(tokenizer, split, max_length, doc_stride)
    samples = reference["overflow_to_sample_mapping"]
    assert len(features) == len(samples)
    assert list(features["input_ids"]) == reference["input_ids"]  # same windows as inference
    assert list(features["token_type_ids"]) == reference["token_type_ids"]
    ids = list(split["id"])
    assert list(features["example_id"]) == [ids[s] for s in samples]
    read_back, answered = set(), set()
    for feature, sample in enumerate(samples):
        start, end = features[feature]["start_positions"], features[feature]["end_positions"]
        answers, context = split[sample]["answers"], split[sample]["context"]
        text = answers["text"][0]
        offsets, sequence_ids = reference["offset_mapping"][feature], reference.sequence_ids(feature)
        start_char = answers["answer_start"][0]
        holds = _window_holds_answer(offsets, sequence_ids, start_char, start_char + len(text))
        if not holds:
            assert (start, end) == (0, 0), f"feature {feature}: answer outside the window but span {start}-{end}"
            continue
        assert 0 < start <= end < len(features[feature]["input_ids"])
        assert sequence_ids[start] == 1 and sequence_ids[end] == 1  # inside the context, not the question
        answered.add(sample)
        if context[offsets[start][0]:offsets[end][1]].strip() == text.strip():
            read_back.add(sample)
    assert answered == set(range(len(split))), "every row needs a window with its answer"
    return len(read_back) / len(split)


def test_xquad_rows_pass_the_check(xquad):
    check_qa_rows(xquad, "validation")


def test_full_windows_cover_the_answers(xquad, tokenizer):
    coverage = answer_span_coverage(xquad, tokenizer, max_length=384, doc_stride=128)
    assert coverage >= 0.99
    features = build_qa_features(xquad, tokenizer, max_length=384, doc_stride=128)
    assert features.column_names == ["input_ids", "attention_mask", "token_type_ids", "start_positions",
                                     "end_positions", "example_id"]
    assert _check_windows(features, xquad, tokenizer, 384, 128) == pytest.approx(coverage)
    assert max(len(ids) for ids in features["input_ids"]) <= 384


def test_short_windows_point_at_cls_when_the_answer_is_elsewhere(xquad, tokenizer):
    coverage = answer_span_coverage(xquad, tokenizer, max_length=128, doc_stride=64)
    assert coverage >= 0.99
    features = build_qa_features(xquad, tokenizer, max_length=128, doc_stride=64)
    assert len(features) > 2 * len(xquad)  # most contexts need several windows
    assert _check_windows(features, xquad, tokenizer, 128, 64) == pytest.approx(coverage)
    starts = list(features["start_positions"])
    assert 0 < starts.count(0) < len(starts)
    assert [e for s, e in zip(starts, features["end_positions"]) if s == 0] == [0] * starts.count(0)


def test_left_padding_tokenizer_puts_context_first_and_pads_to_max_length(xquad, minilm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir), padding_side="left")
    rows = xquad.select(range(200))
    assert answer_span_coverage(rows, tok, max_length=128, doc_stride=64) >= 0.99
    batch = rows[:]
    features = qa_features(batch, tok, max_length=128, doc_stride=64)
    assert {len(ids) for ids in features["input_ids"]} == {128}  # a collator cannot shift the positions
    assert "offset_mapping" not in features and "overflow_to_sample_mapping" not in features
    first = tok.convert_ids_to_tokens(features["input_ids"][0])
    assert first[first.index("[CLS]") + 1] == tok.tokenize(batch["context"][0])[0]  # context first
    cls = tok.cls_token_id
    for ids, start, end in zip(features["input_ids"], features["start_positions"], features["end_positions"]):
        if start:
            assert ids.index(cls) < start <= end < ids.index(tok.sep_token_id)  # inside the context


def _one_row(**changes):
    from datasets import Dataset

    row = {"id": "q-7", "title": "T", "context": "The cat sat on the mat.", "question": "Where did the cat sit?",
           "answers": {"text": ["the mat"], "answer_start": [15]}}
    rows = [dict(row, id="q-0"), dict(row, **changes)]
    return Dataset.from_list(rows)


def test_check_passes_a_good_row():
    check_qa_rows(_one_row(), "train")


@pytest.mark.parametrize("answers, said", [
    ({"text": [], "answer_start": []}, "needs an answer per row"),
    ({"text": ["the mat"], "answer_start": [4]}, "is not at answer_start 4"),
    ({"text": ["the rug"], "answer_start": [15]}, "is not at answer_start 15"),
])
def test_check_names_the_bad_row(answers, said):
    with pytest.raises(DataError) as info:
        check_qa_rows(_one_row(answers=answers), "train")
    message = str(info.value)
    assert "split 'train', row 1 (id 'q-7')" in message and said in message
    assert "\n" not in message


def test_stride_is_capped_at_half_the_window_like_inference(xquad, tokenizer):
    rows = xquad.select(range(100))
    features = qa_features(rows[:], tokenizer, max_length=96, doc_stride=128)
    assert features["input_ids"] == _reference_windows(tokenizer, rows, 96, 128)["input_ids"]  # stride 48


def test_whitespace_around_the_answer_is_not_trained_on(tokenizer):
    rows = _one_row(answers={"text": [" the mat"], "answer_start": [14]})
    check_qa_rows(rows, "train")
    features = qa_features(rows[:], tokenizer, max_length=64, doc_stride=16)
    for ids, start, end in zip(features["input_ids"], features["start_positions"], features["end_positions"]):
        assert tokenizer.convert_ids_to_tokens(ids[start:end + 1]) == ["the", "mat"]
