"""Hypothesis strategies for a user's own data files (tests/reliability/test_fuzz_inputs.py).

A drawn file is a table (header + rows) written as CSV, TSV, JSON or JSON lines in some encoding, with some
line ending; any cell may be empty, null, whitespace, huge, binary, a number where text is expected or text
where a number is; a header may be duplicated or missing and a row may be ragged or malformed.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hypothesis import strategies as st

FORMATS = ("csv", "tsv", "json", "jsonl")
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252")
WORDS = ("good film", "bad plot", "ok", "naïve café", "日本語のテキスト", "emoji 🙂", "a,b", 'say "hi"', "tab\there",
         "line\nbreak", "\\N", "NULL", "NaN", "#comment")

texts = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=8),  # control bytes, NUL
    st.sampled_from(["", " ", "\t", "\u00a0", "\ufeff"]),
    st.builds(lambda n: "long " * n, st.sampled_from([200, 5000, 40000])),
    st.none(),
    st.integers(min_value=-10 ** 30, max_value=10 ** 30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
labels = st.one_of(
    st.integers(min_value=0, max_value=2),
    st.sampled_from(["pos", "neg", "neutral", "", " ", "0", "1", "1.0", "true"]),
    st.integers(min_value=-10 ** 20, max_value=10 ** 20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 1), max_size=2),
)


@dataclass
class DataFile:
    """A drawn file: how it is written, and the table it holds."""

    format: str
    encoding: str
    newline: str
    header: Optional[List[str]]  # None: no header row
    rows: List[List[Any]]
    broken: Optional[str] = None  # a malformed line added at the end (bad JSON, a ragged CSV row)
    options: Dict[str, Any] = field(default_factory=dict)  # dataset.* settings drawn with the file

    @property
    def suffix(self) -> str:
        return {"jsonl": "jsonl", "json": "json", "tsv": "tsv"}.get(self.format, "csv")

    def write(self, path: Path) -> Path:
        text = _render(self)
        path.write_bytes(text.encode(self.encoding, errors="replace"))
        return path


class _Missing:
    """A cell left out: no key in a JSON record, an empty CSV cell."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


def _cell(value: Any) -> str:
    return "" if value is None or value is MISSING else str(value)


def _render(spec: DataFile) -> str:
    if spec.format in ("csv", "tsv"):
        out = io.StringIO()
        writer = csv.writer(out, delimiter="\t" if spec.format == "tsv" else ",", lineterminator=spec.newline)
        if spec.header is not None:
            writer.writerow(spec.header)
        writer.writerows([[_cell(v) for v in row] for row in spec.rows])
        return out.getvalue() + (spec.broken + spec.newline if spec.broken else "")
    names = spec.header or ["text", "label"]
    records = [{k: _json_value(v) for k, v in zip(names, row) if v is not MISSING} for row in spec.rows]
    if spec.format == "json":
        return json.dumps(records, ensure_ascii=False) + (spec.broken or "")
    lines = [json.dumps(r, ensure_ascii=False) for r in records] + ([spec.broken] if spec.broken else [])
    return spec.newline.join(lines) + spec.newline


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None  # JSON has no NaN
    if isinstance(value, float) and abs(value) == float("inf"):
        return str(value)
    return value


STANDARD = ["text", "label"]
HEADERS = st.one_of(  # mostly the header the config names, so that most drawn files reach the rows
    st.just(STANDARD), st.just(STANDARD), st.just(STANDARD), st.just(STANDARD),
    st.just(["label", "text"]),
    st.just(["text", "text", "label"]),  # duplicated
    st.just(["text", "", "label"]),  # a blank name
    st.just(["Text", "Label"]),  # another spelling
    st.none(),  # no header row
)
ODD_CELL = st.integers(0, 5).map(lambda n: n == 0)  # a cell of an odd file is odd one time in six
BROKEN = st.one_of(st.none(), st.sampled_from(['{"text": ', "x,1,2,3", '"unclosed,0', "\x00\x00", "]"]))


@st.composite
def data_files(draw, max_rows: int = 24) -> DataFile:
    """A file whose rows are mostly fine (so some train) with odd cells, headers and bytes mixed in."""
    header = draw(HEADERS)
    width = len(header) if header else 2
    label_at = header.index("label") if header and "label" in header else width - 1
    n = draw(st.integers(min_value=1, max_value=max_rows))
    odd = draw(st.booleans())
    rows = []
    for i in range(n):
        text = draw(texts) if odd and draw(ODD_CELL) else f"{WORDS[i % 4]} {i}"
        label = draw(labels) if odd and draw(ODD_CELL) else i % 2
        row = [text] * width
        row[label_at] = label
        rows.append(row)
    return DataFile(format=draw(st.sampled_from(FORMATS)), encoding=draw(st.sampled_from(ENCODINGS)),
                    newline=draw(st.sampled_from(["\n", "\r\n", "\r"])), header=header, rows=rows,
                    broken=draw(BROKEN) if odd else None)


READ_OPTIONS = {
    "csv": st.one_of(st.just({}), st.just({}), st.sampled_from([{"sep": "\\t"}, {"header": None}, {"quoting": 3},
                                                   {"sep": ""}, {"sep": ";;"}, {"skiprows": 10 ** 6}, {"nrows": 0},
                                                   {"column_names": ["text", "label"]}, {"bogus_option": 1},
                                                   {"encoding": "no-such-codec"}, {"escapechar": "\\"}])),
    "json": st.one_of(st.just({}), st.just({}), st.sampled_from([{"field": "data"}, {"bogus_option": 1},
                                                    {"encoding": "no-such-codec"}, {"chunksize": 1}])),
}
ODD_DATASET_KEYS = st.fixed_dictionaries({}, optional={
    "text_column": st.sampled_from(["text", "label", "", " ", "missing", "Text"]),
    "label_column": st.sampled_from(["label", "text", "", "Label"]),
    "text_pair_column": st.sampled_from(["text", "label", "nope"]),
    "problem_type": st.just("regression"),
    "label_names": st.sampled_from([["neg", "pos"], ["0", "1"], ["a"], ["pos", "neg", "neutral", "x", "y"]]),
    "validation_fraction": st.sampled_from([1e-9, 0.01, 0.5, 0.99]),
    "max_train_samples": st.sampled_from([1, 2, 10 ** 12]),
    "max_eval_samples": st.sampled_from([1, 10 ** 12]),
    "encoding": st.sampled_from(["utf-8", "latin-1", "utf-16", "ascii"]),
    "split_seed": st.sampled_from([0, 2 ** 32 - 1]),
})
DATASET_KEYS = st.one_of(st.just({}), st.just({}), st.just({}), ODD_DATASET_KEYS)  # mostly the defaults


def model_and_tokenizer(cfg):
    """(model config, tokenizer) of ``cfg.model`` as build_experiment loads them, for in-process fuzzing."""
    from experiments.modeling import load_config, load_tokenizer, resolve

    resolved = resolve(cfg.model, cfg.paths.mirror)
    return (load_config(resolved.path, cfg.model),
            load_tokenizer(resolved.path, cfg.tokenizer, cfg.model, cfg.paths.mirror))


def training_data_of(cfg, model_config, tokenizer):
    """What ``build_experiment`` makes of ``cfg``'s data file: its task's training data (or the one-line error)."""
    from experiments.data.sources import load_raw
    from experiments.train.common import training_task

    task = training_task(cfg)
    task.setup_training(model_config, cfg)
    return task.training_data(load_raw(cfg.dataset, None), tokenizer, cfg)
