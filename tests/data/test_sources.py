"""Loaders give the hub's splits and columns from real offline files; bad files fail in one line."""
from __future__ import annotations

import pytest

from experiments.config.validate import compose, to_typed
from experiments.data.prepare import build_classification_data, select_splits, tokenize
from experiments.data.sources import load_raw
from experiments.errors import DataError


def _dataset_cfg(*overrides: str):
    return to_typed(compose(list(overrides))).dataset


GLUE_SIZES = {
    "mrpc": ({"train": 3668, "validation": 408, "test": 1725}, ["sentence1", "sentence2", "label", "idx"]),
    "sst2": ({"train": 67349, "validation": 872, "test": 1821}, ["sentence", "label", "idx"]),
    "rte": ({"train": 2490, "validation": 277, "test": 3000}, ["sentence1", "sentence2", "label", "idx"]),
    "cola": ({"train": 8551, "validation": 1043, "test": 1063}, ["sentence", "label", "idx"]),
    "stsb": ({"train": 5749, "validation": 1500, "test": 1379}, ["sentence1", "sentence2", "label", "idx"]),
}


@pytest.mark.parametrize("name", sorted(GLUE_SIZES))
def test_glue_from_mirror_has_hub_splits_and_columns(shared_data, name):
    sizes, columns = GLUE_SIZES[name]
    raw = load_raw(_dataset_cfg(f"dataset={name}"), str(shared_data))
    assert {k: len(v) for k, v in raw.items()} == sizes
    for split in raw.values():
        assert split.column_names == columns
    assert raw["train"]["idx"][:3] == [0, 1, 2]
    assert set(raw["test"]["label"]) == {-1}


def test_mrpc_matches_the_known_label_counts(shared_data):
    raw = load_raw(_dataset_cfg("dataset=mrpc"), str(shared_data))
    assert sum(raw["train"]["label"]) == 2474 and sum(raw["validation"]["label"]) == 279
    assert raw["train"].features["label"].names == ["not_equivalent", "equivalent"]
    # GLUE-script text (not the hub's PTB-tokenised SentEval copy), BOM stripped from the header.
    assert raw["train"][0]["sentence1"].startswith('Amrozi accused his brother, whom he called "the witness"')


def test_stsb_is_regression_with_float_scores(shared_data):
    raw = load_raw(_dataset_cfg("dataset=stsb"), str(shared_data))
    scores = raw["train"]["label"]
    assert min(scores) == 0.0 and max(scores) == 5.0
    assert sum(scores) / len(scores) == pytest.approx(2.701, abs=1e-3)


def test_mirror_env_variable_is_used(shared_data, monkeypatch):
    monkeypatch.setenv("EXPERIMENTS_MIRROR", str(shared_data))
    cfg = to_typed(compose(["dataset=rte"]))
    assert cfg.paths.mirror == str(shared_data)
    assert len(load_raw(cfg.dataset, cfg.paths.mirror)["validation"]) == 277


def test_glue_offline_without_mirror_names_every_place(monkeypatch, tmp_path):
    monkeypatch.delenv("EXPERIMENTS_MIRROR", raising=False)
    with pytest.raises(DataError) as info:
        load_raw(_dataset_cfg("dataset=mrpc"), str(tmp_path))
    assert "nyu-mll/glue" in str(info.value) and "glue/MRPC" in str(info.value)


def test_bbc_news_from_package_is_balanced_and_stratified():
    cfg = _dataset_cfg("dataset=bbc_news")
    raw = load_raw(cfg, None)
    assert len(raw["train"]) == 2225
    assert raw["train"].features["label"].names == ["business", "entertainment", "politics", "sports", "tech"]
    train, evaluation, names = select_splits(raw, cfg)
    assert len(train) + len(evaluation) == 2225 and len(evaluation) == 445
    share = [evaluation["label"].count(i) / len(evaluation) for i in range(5)]
    whole = [raw["train"]["label"].count(i) / 2225 for i in range(5)]
    assert share == pytest.approx(whole, abs=0.01)


def test_tweet_sentiment_from_package_reads_latin1():
    cfg = _dataset_cfg("dataset=tweet_sentiment")
    raw = load_raw(cfg, None)
    assert len(raw["train"]) == 38158
    train, evaluation, names = select_splits(raw, cfg)
    assert names == ["negative", "neutral", "positive"]
    assert set(train["sentiment"]) == {0, 1, 2}


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_user_csv_with_string_labels_and_carved_validation(tmp_path):
    rows = "\n".join(f"review {i} {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}" for i in range(40))
    train = _write(tmp_path / "train.csv", "review,stars\n" + rows + "\n")
    cfg = _dataset_cfg("dataset=csv", f"dataset.data_files.train={train}", "dataset.text_column=review",
                       "dataset.label_column=stars")
    raw = load_raw(cfg, None)
    tr, ev, names = select_splits(raw, cfg)
    assert names == ["neg", "pos"] and len(tr) == 32 and len(ev) == 8


def test_user_json_lines(tmp_path, minilm_dir):
    from transformers import AutoTokenizer

    lines = "\n".join('{"text": "item %d", "label": %d}' % (i, i % 3) for i in range(30))
    train = _write(tmp_path / "train.jsonl", lines + "\n")
    dev = _write(tmp_path / "dev.jsonl", lines + "\n")
    cfg = to_typed(compose(["dataset=json", f"dataset.data_files.train={train}",
                            f"dataset.data_files.validation={dev}"]))
    data = build_classification_data(load_raw(cfg.dataset, None), AutoTokenizer.from_pretrained(str(minilm_dir)),
                                     cfg.dataset, cfg.tokenizer)
    assert len(data.train) == 30 and len(data.eval) == 30 and data.num_labels == 3
    assert set(data.train.column_names) >= {"input_ids", "attention_mask", "labels"}


@pytest.mark.parametrize("content,needle", [
    ("text,label\n\"unterminated,1\n", "cannot read csv"),
    ("text,label\n", "no data"),
])
def test_malformed_or_empty_csv_is_one_line(tmp_path, content, needle):
    path = _write(tmp_path / "bad.csv", content)
    with pytest.raises(DataError) as info:
        load_raw(_dataset_cfg("dataset=csv", f"dataset.data_files.train={path}"), None)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("content,options", [
    ("text,text,label\na,b,1\nc,d,0\n", []),
    ("\ufefftext\tlabel\tlabel\na\t1\t0\n", ["+dataset.read_options.sep='\\t'"]),
])
def test_a_header_that_names_a_column_twice_is_one_line(tmp_path, content, options):
    path = _write(tmp_path / "dup.csv", content)
    with pytest.raises(DataError) as info:
        load_raw(_dataset_cfg("dataset=csv", f"dataset.data_files.train={path}", *options), None)
    assert str(path) in str(info.value) and "more than once" in str(info.value) and "\n" not in str(info.value)
    renamed = _write(tmp_path / "named.csv", content.replace("text,text", "text,other").replace("label\tlabel", "label\tx"))
    assert len(load_raw(_dataset_cfg("dataset=csv", f"dataset.data_files.train={renamed}", *options), None)["train"]) == content.count("\n") - 1


def test_wrong_column_names_list_the_real_ones(tmp_path):
    path = _write(tmp_path / "t.csv", "body,y\nhello,1\nbye,0\n")
    cfg = _dataset_cfg("dataset=csv", f"dataset.data_files.train={path}")
    with pytest.raises(DataError, match=r"no column\(s\) \['text', 'label'\].*body, y"):
        select_splits(load_raw(cfg, None), cfg)


def test_tokenize_map_is_cached_between_identical_runs(shared_data, minilm_dir):
    from transformers import AutoTokenizer

    cfg = to_typed(compose(["dataset=rte"]))
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    raw = load_raw(cfg.dataset, str(shared_data))
    first = tokenize(raw["validation"], tokenizer, cfg.dataset, cfg.tokenizer, desc="first")
    second = tokenize(raw["validation"], tokenizer, cfg.dataset, cfg.tokenizer, desc="second")
    assert first.cache_files and first.cache_files == second.cache_files
    assert first["input_ids"] == second["input_ids"]
    assert max(len(x) for x in first["input_ids"]) <= cfg.tokenizer.max_length
