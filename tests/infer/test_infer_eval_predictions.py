"""mode=infer with references writes eval_predictions.jsonl: one row per scored item with the item's id, and
every quality metric recomputed from the rows equals metrics.json's; inputs without references write none."""
from __future__ import annotations

import json

import pytest

from experiments.metrics.examples import EVAL_PREDICTIONS_FILE, read_rows, recompute

CASES = {  # task overrides, the tiny model, the metrics recorded
    "text-classification": (["task=text-classification", "dataset=mrpc", "inference.max_samples=16"], "classifier",
                            {"accuracy", "f1"}),
    "question-answering": (["task=question-answering", "inference.max_samples=6", "task.max_length=96",
                            "task.doc_stride=32"], "qa", {"exact_match", "f1"}),
    "summarization": (["task=summarization", "inference.max_samples=3", "task.max_new_tokens=6", "task.max_length=64"],
                      "t5", {"rouge1", "rouge2", "rougeL", "rougeLsum"}),
    "translation": (["task=translation", "inference.max_samples=4", "task.max_new_tokens=6"], "t5", {"bleu", "chrf"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_quality_metrics_recompute_from_the_records(config, tiny_models, tmp_path, shared_data, case):
    from experiments.infer import infer

    overrides, model, names = CASES[case]
    payload = infer(config(*overrides, "model=local", f"model.name_or_path={tiny_models[model]}",
                           f"paths.mirror={shared_data}"), tmp_path)
    entry = payload["eval_predictions"]
    assert json.loads((tmp_path / "metrics.json").read_text())["eval_predictions"] == entry
    rows = list(read_rows(tmp_path / EVAL_PREDICTIONS_FILE))
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [p["id"] for p in predictions] and entry["examples"] == len(rows)
    assert entry["eval_set"] == payload["inputs"].removeprefix("dataset ") and entry["metric_prefix"] == ""
    assert set(entry["metrics"]) == names
    for name, value in recompute(rows, entry["metrics"]).items():
        assert value == pytest.approx(payload["final"][name], rel=1e-9, abs=1e-9), name


def test_inputs_without_references_write_no_records(config, tiny_models, tmp_path):
    from experiments.infer import infer

    path = tmp_path / "in.txt"
    path.write_text("a fine day\nan awful day\n")
    out = tmp_path / "run"
    out.mkdir()
    payload = infer(config("task=text-classification", "model=local", f"model.name_or_path={tiny_models['classifier']}",
                           f"inference.input_file={path}"), out)
    assert "eval_predictions" not in payload and not (out / EVAL_PREDICTIONS_FILE).exists()
