"""Extractive question answering: rows {id, question, context, answers} -> training features.

The Hugging Face course's ``prepare_train_features``: each context is split into windows of ``max_length``
tokens overlapping by ``doc_stride`` and every window becomes one feature whose ``start_positions`` /
``end_positions`` are the token indices of the row's first answer, or 0 (the CLS token, where inference
reads its "no answer" score) when the window does not hold the whole answer. Windows are tokenized exactly
as inference does (``tasks/question_answering.py``, ``manual``), so a model learns on the inputs it is
later asked about.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from experiments.errors import DataError

QA_COLUMNS = ("id", "context", "question", "answers")


def _shorten(value: str, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _row_problem(context: str, answers: Dict) -> Optional[str]:
    """Why a row cannot be trained on (no answer, or the first answer is not where it says), or None."""
    texts, starts = list(answers.get("text") or []), list(answers.get("answer_start") or [])
    if not texts:
        return ("no answer; extractive QA training needs an answer per row "
                "(drop unanswerable rows, e.g. SQuAD v2's)")
    if not starts:
        return f"answer {_shorten(texts[0])} has no answer_start; give its character offset in the context"
    text, start = texts[0], int(starts[0])
    if not text.strip():
        return "the first answer's text is blank; give the answer's words"
    found = context[start:start + len(text)] if start >= 0 else ""
    if found != text:
        return (f"answer {_shorten(text)} is not at answer_start {start} of the context (found {_shorten(found)}); "
                f"fix answer_start or the answer text")
    return None


def check_qa_rows(split, split_name: str) -> None:
    """Every row has an answer and its first answer's text is at its ``answer_start``; else one-line DataError."""
    missing = [c for c in QA_COLUMNS if c not in split.column_names]
    if missing:
        raise DataError(f"split '{split_name}' has no column(s) {missing} (columns: {', '.join(split.column_names)}); "
                        f"extractive QA needs {', '.join(QA_COLUMNS)}")
    rows = zip(split["id"], split["context"], split["answers"])
    for row, (qid, context, answers) in enumerate(rows):
        problem = _row_problem(context, answers or {})
        if problem:
            raise DataError(f"split '{split_name}', row {row} (id {qid!r}): {problem}")


def _encode(tokenizer, questions: List[str], contexts: List[str], *, max_length: int, doc_stride: int,
            padding=False):
    """Windows as inference makes them: question first (truncate the context) when the tokenizer pads on the
    right, else context first; overlapping by ``min(doc_stride, max_length // 2)``; with offsets."""
    question_first = tokenizer.padding_side == "right"
    questions = [q.lstrip() for q in questions]
    return tokenizer(questions if question_first else contexts, contexts if question_first else questions,
                     truncation="only_second" if question_first else "only_first", max_length=max_length,
                     stride=min(doc_stride, max_length // 2), return_overflowing_tokens=True,
                     return_offsets_mapping=True, padding=padding)


def _answer_chars(answers: Dict) -> Tuple[int, int]:
    """[start, end) characters of the first answer, without whitespace around its text."""
    text, start = answers["text"][0], int(answers["answer_start"][0])
    start += len(text) - len(text.lstrip())
    return start, start + len(text.strip())


def _answer_tokens(offsets: List, sequence_ids: List, context_index: int, start_char: int,
                   end_char: int) -> Tuple[int, int]:
    """(start, end) token indices of the characters [start_char, end_char) in one window; (0, 0) when the
    window's context does not hold all of them."""
    context_tokens = [i for i, s in enumerate(sequence_ids) if s == context_index]
    if not context_tokens:
        return 0, 0
    first, last = context_tokens[0], context_tokens[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return 0, 0
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    start, end = start - 1, end + 1
    return (start, end) if start <= end else (0, 0)


def qa_features(batch: dict, tokenizer, *, max_length: int, doc_stride: int) -> dict:
    """``Dataset.map(batched=True)``: rows -> one feature per window with input_ids, attention_mask,
    [token_type_ids], start_positions, end_positions and example_id (the row's id).

    Tokenizers that pad on the left are padded to ``max_length`` here: a collator padding them later would
    shift every token index and with it the answer positions.
    """
    left = tokenizer.padding_side != "right"
    encoded = _encode(tokenizer, batch["question"], batch["context"], max_length=max_length,
                      doc_stride=doc_stride, padding="max_length" if left else False)
    sample_of = encoded.pop("overflow_to_sample_mapping")
    offsets = encoded.pop("offset_mapping")
    context_index = 0 if left else 1
    starts, ends, example_ids = [], [], []
    for feature, sample in enumerate(sample_of):
        start_char, end_char = _answer_chars(batch["answers"][sample])
        start, end = _answer_tokens(offsets[feature], encoded.sequence_ids(feature), context_index,
                                    start_char, end_char)
        starts.append(start)
        ends.append(end)
        example_ids.append(batch["id"][sample])
    out = {key: encoded[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded}
    out.update(start_positions=starts, end_positions=ends, example_id=example_ids)
    return out


def build_qa_features(split, tokenizer, *, max_length: int, doc_stride: int, num_proc: int = 1, desc: str = ""):
    """``Dataset.map(qa_features, batched=True)``: one row per window; the raw columns are dropped. Rows are
    not checked here: call :func:`check_qa_rows` first."""
    procs = num_proc if num_proc > 1 and len(split) >= 2 * num_proc else None
    return split.map(qa_features, batched=True, num_proc=procs, remove_columns=split.column_names,
                     fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "doc_stride": doc_stride},
                     desc=desc or None)


def answer_span_coverage(split, tokenizer, *, max_length: int, doc_stride: int, batch_size: int = 256) -> float:
    """Share of rows whose first answer is a token span in at least one window that reads back (through the
    offsets) as exactly the answer text, whitespace around it aside."""
    if len(split) == 0:
        return 0.0
    context_index = 1 if tokenizer.padding_side == "right" else 0
    covered = 0
    for begin in range(0, len(split), batch_size):
        batch = split[begin:begin + batch_size]
        encoded = _encode(tokenizer, batch["question"], batch["context"], max_length=max_length,
                          doc_stride=doc_stride)
        hits = set()
        for feature, sample in enumerate(encoded["overflow_to_sample_mapping"]):
            offsets = encoded["offset_mapping"][feature]
            start, end = _answer_tokens(offsets, encoded.sequence_ids(feature), context_index,
                                        *_answer_chars(batch["answers"][sample]))
            if start == 0:
                continue
            span = batch["context"][sample][offsets[start][0]:offsets[end][1]]
            if span.strip() == batch["answers"][sample]["text"][0].strip():
                hits.add(sample)
        covered += len(hits)
    return covered / len(split)
