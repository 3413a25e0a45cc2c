"""Label faults in the user's own files: every split's labels are checked before training, and a bad
one stops the run in one line naming the split, row and value (exit 2, run dir removed)."""
from __future__ import annotations

import json

import pytest
from faults import TINY, assert_user_error, run, snapshot

TEXTS = ["good film", "bad film", "great plot", "dull plot", "fine acting", "poor acting", "nice", "awful"]


def _csv(path, labels, header="text,label"):
    rows = [f"{TEXTS[i % len(TEXTS)]} {i},{label}" for i, label in enumerate(labels)]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _files(tmp_path, train, validation=None):
    args = ["dataset=csv", f"dataset.data_files.train={_csv(tmp_path / 'train.csv', train)}"]
    if validation is not None:
        args.append(f"dataset.data_files.validation={_csv(tmp_path / 'dev.csv', validation)}")
    return args


def _refused(tmp_path, args, *needles):
    before = snapshot(tmp_path)
    result = run(*TINY, *args, cwd=tmp_path)
    assert_user_error(result, *needles)
    assert snapshot(tmp_path) == before  # no run dir left behind


def test_train_file_only_with_integer_labels_holds_out_a_stratified_split(tmp_path):
    """The documented hold-out path (it used to crash in stratification)."""
    result = run(*TINY, *_files(tmp_path, [0, 1] * 20), f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_train_samples"] == 16 and metrics["num_eval_samples"] == 8


def test_validation_label_the_train_split_never_saw(tmp_path):
    _refused(tmp_path, _files(tmp_path, [0, 1] * 10, [0, 1, 2, 1]),
             "split 'validation'", "row 2", "label 2", "train split")


def test_string_validation_label_the_train_split_never_saw(tmp_path):
    _refused(tmp_path, _files(tmp_path, ["pos", "neg"] * 10, ["pos", "neutral"]),
             "split 'validation'", "row 1", "'neutral'")


def test_label_outside_label_names(tmp_path):
    _refused(tmp_path, [*_files(tmp_path, [0, 1, 2] * 6), "dataset.label_names=[neg,pos]"],
             "split 'train'", "row 2", "label 2", "dataset.label_names")


def test_string_label_outside_label_names(tmp_path):
    _refused(tmp_path, [*_files(tmp_path, ["neg", "pos", "meh"] * 6), "dataset.label_names=[neg,pos]"],
             "row 2", "'meh'", "dataset.label_names")


def test_integer_labels_with_a_gap_would_make_phantom_classes(tmp_path):
    _refused(tmp_path, _files(tmp_path, [0, 1, 7] * 6), "integer labels are [0, 1, 7]", "dataset.label_names")


def test_negative_labels(tmp_path):
    _refused(tmp_path, _files(tmp_path, [0, 1, -1] * 6), "[-1, 0, 1]")


def test_empty_label(tmp_path):
    _refused(tmp_path, _files(tmp_path, [0, 1, "", 1] * 5), "split 'train'", "row 2", "empty label")


def test_fractional_label_for_classification(tmp_path):
    _refused(tmp_path, _files(tmp_path, [0, 1, 0.5, 1] * 5), "row 2", "problem_type=regression")


def test_non_numeric_regression_target(tmp_path):
    _refused(tmp_path, [*_files(tmp_path, ["0.5", "1.5", "high"] * 6), "dataset.problem_type=regression"],
             "row 2", "'high'", "not a number")


def test_missing_label_column(tmp_path):
    _refused(tmp_path, [*_files(tmp_path, [0, 1] * 10), "dataset.label_column=stars"], "no column(s) ['stars']")


@pytest.mark.parametrize("labels", [[0, 1] * 10, ["neg", "pos"] * 10])
def test_labels_that_are_right_train(tmp_path, labels):
    result = run(*TINY, *_files(tmp_path, labels, labels[:6]), f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_glue_data_files_override_reads_exactly_those_files(tmp_path, shared_data):
    """`dataset=mrpc dataset.data_files.train=…/dev.tsv` trains on dev.tsv's 408 rows, not the mirror's train."""
    result = run(*TINY, "dataset=mrpc", f"paths.mirror={shared_data}", "dataset.max_train_samples=null",
                 "dataset.max_eval_samples=null", "trainer.limit_eval_batches=1",
                 f"dataset.data_files.train={shared_data}/glue/MRPC/dev.tsv", f"hydra.run.dir={tmp_path}/run",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_train_samples"] + metrics["num_eval_samples"] == 408


def test_data_files_on_a_loader_that_reads_its_own_files_is_refused(tmp_path):
    _refused(tmp_path, ["dataset.data_files.train=mine.csv"], "dataset.data_files is set", "bbc_news")
