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


def _offset(value) -> Optional[int]:
    """A character offset: an int, a whole float (JSON readers may widen a column of ints) or a string of
    digits; None for anything else (a bool, a fraction, null, other text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    return None


def _not_text(column: str, value) -> Optional[str]:
    if not isinstance(value, str):
        return f"column '{column}' holds {_shorten(value)} ({type(value).__name__}), not text"
    if not value.strip():
        return f"column '{column}' is blank; give the {column}'s words"
    return None


def _answers_problem(answers) -> Optional[str]:
    """Why ``answers`` is not SQuAD's {"text": [...], "answer_start": [...]} with one offset per text, or None."""
    shape = 'answers are {"text": [...], "answer_start": [...]}'
    if answers is None:
        return None
    if not isinstance(answers, dict):
        where = " (a CSV cell is always text: give QA rows as JSON lines, dataset=json)" if isinstance(answers, str) \
            else ""
        return f"column 'answers' holds {_shorten(answers)} ({type(answers).__name__}); {shape}{where}"
    texts, starts = answers.get("text"), answers.get("answer_start")
    for key, value in (("text", texts), ("answer_start", starts)):
        if value is not None and not isinstance(value, (list, tuple)):
            return f"answers.{key} is {_shorten(value)}, not a list; {shape}"
    texts, starts = list(texts or []), list(starts or [])
    if len(texts) != len(starts):
        return (f"answers has {len(texts)} text(s) but {len(starts)} answer_start(s); give one character offset "
                f"per answer text")
    for text, start in zip(texts, starts):
        if not isinstance(text, str):
            return f"answers.text holds {_shorten(text)} ({type(text).__name__}), not text"
        if _offset(start) is None:
            return f"answers.answer_start holds {_shorten(start)}, not a whole number of characters"
    return None


def _row_problem(qid, question, context, answers) -> Optional[str]:
    """Why a row cannot be trained on, or None: no usable id, question or context; ``answers`` not in SQuAD's
    shape; no answer (SQuAD v2's unanswerable rows); or the first answer not at its ``answer_start``."""
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or not str(qid).strip():
        return f"column 'id' holds {_shorten(qid)}; give each question an id (text or a whole number)"
    problem = _not_text("question", question) or _not_text("context", context) or _answers_problem(answers)
    if problem:
        return problem
    texts, starts = list((answers or {}).get("text") or []), list((answers or {}).get("answer_start") or [])
    if not texts:
        return ("no answer; extractive QA training needs an answer per row "
                "(drop unanswerable rows, e.g. SQuAD v2's)")
    text, start = texts[0], _offset(starts[0])
    if not text.strip():
        return "the first answer's text is blank; give the answer's words"
    found = context[start:start + len(text)] if 0 <= start <= len(context) else ""
    if found != text:
        return (f"answer {_shorten(text)} is not at answer_start {start} of the context (found {_shorten(found)}); "
                f"fix answer_start or the answer text")
    return None


def check_qa_rows(split, split_name: str) -> None:
    """Every row has an id no other row of the split has, a question, a context and an answer, and its first
    answer's text is at its ``answer_start``; else one-line DataError naming the split, row and id."""
    missing = [c for c in QA_COLUMNS if c not in split.column_names]
    if missing:
        raise DataError(f"split '{split_name}' has no column(s) {missing} (columns: {', '.join(split.column_names)}); "
                        f"extractive QA needs {', '.join(QA_COLUMNS)}")
    seen: Dict = {}
    rows = zip(split["id"], split["question"], split["context"], split["answers"])
    for row, (qid, question, context, answers) in enumerate(rows):
        problem = _row_problem(qid, question, context, answers)
        if problem:
            raise DataError(f"split '{split_name}', row {row} (id {_shorten(qid)}): {problem}")
        if qid in seen:
            raise DataError(f"split '{split_name}', row {row}: id {_shorten(qid)} is row {seen[qid]}'s too; ids "
                            f"name the questions in predictions and per-example records (merge the two rows' "
                            f"answers or give one a new id)")
        seen[qid] = row


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
    window's context does not hold all of them, or no token does (characters the tokenizer drops, such as
    control or zero-width ones: the span would be the words around them)."""
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
    while start <= end and offsets[start][1] <= start_char:  # ends before the answer: its first characters
        start += 1                                            # are ones the tokenizer dropped
    while end >= start and offsets[end][0] >= end_char:
        end -= 1
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


def _check_room(split, tokenizer, where: str, *, max_length: int, doc_stride: int, batch_size: int = 1024):
    """Stop, naming the row, where a question leaves a long context no more tokens of the window than the
    windows overlap by: the tokenizer could not advance through the context (a Rust panic, or a truncation
    error, instead of one line)."""
    stride = min(doc_stride, max_length // 2)
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    for begin in range(0, len(split), batch_size):
        batch = split[begin:begin + batch_size]
        questions = [q.lstrip() for q in batch["question"]]
        lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
        tight = [i for i, n in enumerate(lengths) if budget - n <= stride]
        if not tight:
            continue
        contexts = tokenizer([batch["context"][i] for i in tight], add_special_tokens=False,
                             verbose=False)["input_ids"]  # lengths only: a context past the model is windowed
        for i, context in zip(tight, contexts):
            if lengths[i] + len(context) > budget:
                raise DataError(f"{where}, row {begin + i} (id {_shorten(batch['id'][i])}): the question's "
                                f"{lengths[i]} tokens leave {max(budget - lengths[i], 0)} of task.max_length="
                                f"{max_length} for the context, not more than the windows' overlap of {stride} "
                                f"(task.doc_stride, capped at half of max_length); shorten the question or raise "
                                f"task.max_length")


def _check_answers_held(split, features, tokenizer, where: str, *, max_length: int, doc_stride: int) -> None:
    """Stop, naming the row, where no window holds the row's whole first answer as tokens: it would be trained
    on as "no answer here" in every window of its context."""
    held = {qid for qid, start in zip(features["example_id"], features["start_positions"]) if start > 0}
    for row, (qid, answers) in enumerate(zip(split["id"], split["answers"])):
        if qid in held:
            continue
        text = answers["text"][0]
        if not tokenizer(text.strip(), add_special_tokens=False, verbose=False)["input_ids"]:
            raise DataError(f"{where}, row {row} (id {_shorten(qid)}): the tokenizer drops every character of the "
                            f"answer {_shorten(text)} (control or zero-width characters); give the answer's words")
        raise DataError(f"{where}, row {row} (id {_shorten(qid)}): no window of task.max_length={max_length} "
                        f"tokens (overlapping by {min(doc_stride, max_length // 2)}, task.doc_stride) holds the "
                        f"whole answer {_shorten(text)}; raise task.doc_stride or task.max_length, or shorten the "
                        f"answer")


def build_qa_features(split, tokenizer, *, max_length: int, doc_stride: int, num_proc: int = 1, desc: str = "",
                      split_name: str = ""):
    """``Dataset.map(qa_features, batched=True)``: one row per window; the raw columns are dropped. Rows are
    not checked here: call :func:`check_qa_rows` first. Stops in one line naming the row (in ``split_name``,
    else ``desc``) whose question leaves no room to window its context, or whose answer no window holds."""
    where = f"split '{split_name}'" if split_name else desc or "QA rows"
    _check_room(split, tokenizer, where, max_length=max_length, doc_stride=doc_stride)
    procs = num_proc if num_proc > 1 and len(split) >= 2 * num_proc else None
    features = split.map(qa_features, batched=True, num_proc=procs, remove_columns=split.column_names,
                         fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "doc_stride": doc_stride},
                         desc=desc or None)
    _check_answers_held(split, features, tokenizer, where, max_length=max_length, doc_stride=doc_stride)
    return features


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
