"""Input files, command-line inputs and their one-line errors."""
import pytest

from experiments.errors import DataError, ExperimentError
from experiments.infer.inputs import load_items, read_records


def test_txt_jsonl_csv_files(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\n second \n")
    (tmp_path / "b.jsonl").write_text('{"text": "x", "label": "positive"}\n{"text": "y"}\n')
    (tmp_path / "c.csv").write_text("question,context\nwho?,Ann did.\n")
    assert read_records(tmp_path / "a.txt") == ["first line", "second"]
    assert read_records(tmp_path / "b.jsonl") == [{"text": "x", "label": "positive"}, {"text": "y"}]
    assert read_records(tmp_path / "c.csv") == [{"question": "who?", "context": "Ann did."}]


@pytest.mark.parametrize("content, message", [("", "is empty"), ("  \n\n", "is empty"),
                                              ('{"text": 1}\n{oops\n', "line 2: invalid JSON")])
def test_bad_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "inputs.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        read_records(path)
    assert "\n" not in str(info.value)


def test_unknown_file_type(tmp_path):
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(DataError, match="unknown type"):
        read_records(tmp_path / "x.xml")


def _items(config, *overrides):
    from experiments.tasks.registry import task_class

    cfg = config(*overrides)
    task = task_class(cfg.task.name)(cfg.task)
    return load_items(task, cfg)


def test_command_line_inputs_with_references_and_ids(config, tmp_path):
    items, _, source = _items(config, "task=text-classification",
                              "inference.inputs=[{text: good film, label: positive, id: a1},plain text]")
    assert source == "command line"
    assert [(i.id, i.input, i.reference) for i in items] == [("a1", "good film", "positive"), ("1", "plain text", None)]


def test_question_answering_without_context_is_rejected(config):
    with pytest.raises(DataError, match="without a context"):
        _items(config, "task=question-answering", "inference.inputs=[Who wrote it?]")


def test_fill_mask_without_mask_is_rejected(config):
    with pytest.raises(DataError, match="no mask token"):
        _items(config, "task=fill-mask", "inference.inputs=[no mask here]")


def test_empty_input_file_via_config(config, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ExperimentError, match="empty"):
        _items(config, "task=text-classification", f"inference.input_file={empty}")


def test_unknown_task_is_a_config_error():
    from experiments.config.validate import check_overrides

    with pytest.raises(ExperimentError, match="unknown task option 'summarise'"):
        check_overrides(["mode=infer", "task=summarise"])
    with pytest.raises(ExperimentError, match="task.name"):
        check_overrides(["mode=infer", "task.name=ner"])
