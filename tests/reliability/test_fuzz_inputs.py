"""Fuzzed user data files, property-based: whatever a user's CSV / TSV / JSON / JSON-lines file holds (empty,
null, huge or binary cells, numbers for text, mixed label types, missing or duplicated headers, odd encodings
and line endings), reading and preparing it either gives rows that train, or stops with ONE line naming the
file, split, row, column or key (an ExperimentError), never anything else.

Most examples drive the functions the CLI runs (``load_raw`` + the task's ``training_data``, and inference's
``load_items``) in process; a few run ``run.py`` end to end on drawn files and check the exit code, the
one-line error and that no partial run dir is left. Budget: the hypothesis profile (tests/conftest.py).
"""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from faults import TINY, assert_user_error, changed, run, snapshot
from fuzz_files import DATASET_KEYS, READ_OPTIONS, DataFile, data_files
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from experiments.config.schema import ConfigValueError, DatasetConfig, ModelConfig, TokenizerConfig
from experiments.errors import ExperimentError

MODEL_LIMIT = 512  # MiniLM's positions
MAX_LENGTHS = st.sampled_from([1, 2, 3, 8, 32, 512, 513, 10 ** 6, 2 ** 62])
_names = itertools.count()


def write(spec: DataFile, folder: Path) -> Path:
    return spec.write(folder / f"f{next(_names)}.{spec.suffix}")


def assert_one_line(exc: BaseException, path: Path) -> str:
    """A user error: one line naming the file, or the split / row / column / key it is about."""
    message = str(exc)
    assert isinstance(exc, (ExperimentError, ConfigValueError)), f"{type(exc).__name__}: {message}"
    assert message.strip() and "\n" not in message.strip(), message
    assert "Traceback" not in message
    named = (path.name, "split '", "row ", "column", "dataset.", "tokenizer.")
    assert any(n in message for n in named), f"names no file, row, column or key: {message}"
    return message


def dataset_config(spec: DataFile, path: Path, options: dict, read: dict) -> DatasetConfig:
    loader = "csv" if spec.format in ("csv", "tsv") else "json"
    base = {"sep": "\\t"} if spec.format == "tsv" and "sep" not in read else {}
    options = {"text_column": "text", **options}
    return DatasetConfig(name="fuzz", loader=loader, data_files={"train": str(path)}, read_options={**base, **read},
                         **options)


def prepare(cfg: DatasetConfig, tok_cfg: TokenizerConfig, model_dir: Path):
    """What ``mode=train`` runs for text-classification: the tokenizer (limits fitted), load_raw, training_data."""
    from experiments.data.prepare import build_classification_data
    from experiments.data.sources import load_raw
    from experiments.modeling import load_tokenizer

    tokenizer = load_tokenizer(model_dir, tok_cfg, ModelConfig(name="minilm", name_or_path=str(model_dir)))
    return build_classification_data(load_raw(cfg, None), tokenizer, cfg, tok_cfg)


def assert_trains(data, tok_cfg: TokenizerConfig) -> None:
    """Rows that a model with MODEL_LIMIT positions can take, with labels it was built for."""
    assert len(data.train) > 0 and len(data.eval) > 0
    longest = max(len(ids) for split in (data.train, data.eval) for ids in split["input_ids"])
    assert longest <= MODEL_LIMIT, f"{longest} tokens reach the model (max_length={tok_cfg.max_length})"
    if not data.is_regression:
        assert set(list(data.train["labels"])) <= set(range(data.num_labels))


@st.composite
def cases(draw):
    """A file, the read options for its reader and other dataset.* settings."""
    spec = draw(data_files())
    read = draw(READ_OPTIONS["csv" if spec.format in ("csv", "tsv") else "json"])
    return spec, read, draw(DATASET_KEYS)


def _table(fmt: str, rows: list, encoding: str = "utf-8", header=("text", "label")) -> DataFile:
    return DataFile(fmt, encoding, "\n", list(header) if header else None, rows + [[f"r{i}", i % 2] for i in range(9)])


# Each defect the fuzzing found, kept as an explicit case (tokenizer limits, null / numeric / binary text, a
# one-row file, a latin-1 JSON-lines file, UTF-16, text and label the same column, true/false labels, an
# integer label as large as 2**63 - 1, whose 0..N-1 check once built a list that long).
LONG_ROW = _table("csv", [["long " * 2000, 0]])
FOUND = [(LONG_ROW, {}, {}), (_table("jsonl", [[None, 1]]), {}, {}), (_table("csv", [[7, 1], [8, 0]]), {}, {}),
         (_table("jsonl", [[["a"], 1]]), {}, {}), (_table("csv", [], header=None), {}, {}),
         (DataFile("csv", "utf-8", "\n", ["text", "label"], [["one row", 0]]), {}, {}),
         (_table("jsonl", [["naïve café", 0]], "latin-1"), {}, {}), (_table("csv", [["日本", 1]], "utf-16"), {}, {}),
         (_table("csv", []), {}, {"text_column": "label"}), (DataFile("csv", "utf-8", "\n", ["text", "label"], [[f"r{i}", i % 3 == 0] for i in range(9)]), {}, {}),
         (LONG_ROW, {}, {}), (_table("csv", [["huge id", 2 ** 63 - 1]]), {}, {})]


@given(case=cases(), max_length=MAX_LENGTHS, truncation=st.booleans())
@example(case=(LONG_ROW, {}, {}), max_length=64, truncation=False)
@example(case=(LONG_ROW, {}, {}), max_length=2 ** 62, truncation=True)
@example(case=(LONG_ROW, {}, {}), max_length=1, truncation=True)
@example(case=FOUND[1], max_length=32, truncation=True)
@example(case=FOUND[2], max_length=32, truncation=True)
@example(case=FOUND[3], max_length=32, truncation=True)
@example(case=FOUND[4], max_length=32, truncation=True)
@example(case=FOUND[5], max_length=32, truncation=True)
@example(case=FOUND[6], max_length=32, truncation=True)
@example(case=FOUND[7], max_length=32, truncation=True)
@example(case=FOUND[8], max_length=32, truncation=True)
@example(case=FOUND[9], max_length=32, truncation=True)
@example(case=FOUND[11], max_length=3, truncation=False)
def test_training_data_is_rows_or_one_line(case, max_length, truncation, workdir, minilm_dir):
    spec, read, options = case
    path = write(spec, workdir)
    try:
        tok_cfg = TokenizerConfig(max_length=max_length, truncation=truncation)
        result = prepare(dataset_config(spec, path, options, read), tok_cfg, minilm_dir)
    except Exception as exc:  # noqa: BLE001 - the property: nothing but a one-line user error escapes
        event("refused: " + " ".join(assert_one_line(exc, path).replace(str(path), "FILE").split()[:4]))
    else:
        event("trains")
        assert_trains(result, tok_cfg)


@given(spec=data_files(max_rows=6))
@settings(max_examples=max(10, settings.default.max_examples // 2))
def test_clean_files_in_any_encoding_train(spec, workdir, minilm_dir):
    """A well-formed table trains whatever its format, byte-order mark or line ending (or says which encoding
    to set, for a file that is not UTF-8 and has no BOM)."""
    spec = dataclasses.replace(spec, header=["text", "label"], broken=None,
                               rows=[[f"row {i} text", i % 2] for i in range(max(4, len(spec.rows)))])
    path = write(spec, workdir)
    cfg = dataset_config(spec, path, {}, {})
    data = prepare(cfg, TokenizerConfig(max_length=32), minilm_dir)
    assert data.num_labels == 2 and len(data.train) + len(data.eval) == len(spec.rows)


@pytest.fixture(scope="module")
def infer_config():
    from experiments.config.validate import compose, to_typed

    return to_typed(compose(["mode=infer", "task=text-classification", "dataset=sst2"]))


@given(spec=data_files(max_rows=8), column=st.sampled_from([None, "text", "label", "nope"]))
def test_inference_input_file_is_items_or_one_line(spec, column, workdir, infer_config):
    """``inference.input_file=<csv/tsv/json/jsonl>``: the items a run would predict, or one line."""
    from experiments.infer.inputs import load_items
    from experiments.tasks.classification import TextClassification

    path = write(spec, workdir)
    inference = dataclasses.replace(infer_config.inference, inputs=None, input_file=str(path), text_column=column)
    cfg = dataclasses.replace(infer_config, inference=inference)
    try:
        items, _, _ = load_items(TextClassification(cfg.task), cfg)
    except Exception as exc:  # noqa: BLE001
        message = str(exc)
        assert isinstance(exc, ExperimentError), f"{type(exc).__name__}: {message}"
        assert "\n" not in message.strip() and ("input" in message or path.name in message), message
        event("refused: " + " ".join(message.replace(str(path), "FILE").split()[:3]))
    else:
        event("items")
        assert items and all(isinstance(i.input, (str, dict)) for i in items)


# --- end to end: run.py on drawn files (a few examples; each is a real process) -----------------------------

CLI_OVERRIDES = st.sampled_from([[], ["tokenizer.max_length=100000"], ["tokenizer.truncation=false"],
                                 ["dataset.validation_fraction=0.01"], ["collator=static"],
                                 ["dataset.text_column=label"], ["+dataset.read_options.header=null"]])


@pytest.mark.slow
@given(spec=data_files(max_rows=12), extra=CLI_OVERRIDES)
@settings(max_examples=max(3, settings.default.max_examples // 30))
def test_cli_trains_or_stops_in_one_line(spec, extra, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-cli")
    path = write(spec, folder)
    dataset = ["dataset=csv"] if spec.format in ("csv", "tsv") else ["dataset=json"]
    if spec.format == "tsv":
        dataset.append("+dataset.read_options.sep='\\t'")
    before = snapshot(folder)
    result = run(*TINY, *dataset, f"dataset.data_files.train={path}", *extra, f"hydra.run.dir={folder}/run",
                 cwd=folder, timeout=300)
    if result.returncode == 0:
        assert (folder / "run" / "metrics.json").is_file(), result.stderr[-2000:]
        assert not changed(before, snapshot(folder), allowed=["run"])
        return
    assert_user_error(result)
    assert not (folder / "run").exists(), "a partly written run dir was left behind"
    assert not changed(before, snapshot(folder))


@pytest.mark.parametrize("index", [2, 7, 9])
def test_found_inputs_that_are_honoured_train(index, workdir, minilm_dir):
    """Numbers in the text column are read as text, UTF-16 by its byte-order mark, true/false as two classes."""
    spec, read, options = FOUND[index]
    data = prepare(dataset_config(spec, write(spec, workdir), options, read), TokenizerConfig(max_length=32),
                   minilm_dir)
    assert data.num_labels == 2 and len(data.train) + len(data.eval) == len(spec.rows)


@pytest.mark.parametrize("index, needles", [
    (0, ["more than the model takes (512)", "tokenizer.truncation=true"]), (1, ["split 'train', column 'text', row 0", "empty text"]),
    (3, ["row 0", "list value"]), (5, ["1 row(s)", "dataset.validation_fraction"]),
    (6, ["not UTF-8", "byte 12", "dataset.encoding"]), (8, ["label cannot be the text"]),
    (10, ["tokenizer.max_length=1", "special tokens"])])
def test_found_inputs_that_are_refused_name_where(index, needles, workdir, minilm_dir):
    spec, read, options = FOUND[index]
    path = write(spec, workdir)
    with pytest.raises(ExperimentError) as info:
        tok_cfg = TokenizerConfig(max_length=1 if index == 10 else 64, truncation=index != 0)
        prepare(dataset_config(spec, path, options, read), tok_cfg, minilm_dir)
    message = assert_one_line(info.value, path)
    assert all(n in message for n in needles), message
