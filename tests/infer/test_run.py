"""infer(cfg, run_dir) end to end: predictions.jsonl, metrics.json "final", quality on real data."""
from __future__ import annotations

import json

import pytest

from experiments import hardware
from experiments.errors import ExperimentError

SPEED_KEYS = {"items_per_second", "tokens_per_second", "latency_p50_ms", "latency_p95_ms", "peak_memory_mb"}


def run(config, tmp_path, *overrides):
    from experiments.infer import infer

    payload = infer(config(*overrides), tmp_path)
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["final"] == payload["final"]
    assert SPEED_KEYS <= set(metrics["final"])
    assert all(isinstance(v, float) for v in metrics["final"].values())
    assert metrics["final"]["items_per_second"] > 0 and metrics["final"]["tokens_per_second"] > 0
    assert metrics["num_items"] == len(predictions)
    return predictions, metrics


def test_text_classification_file_keeps_order_and_scores_labels(config, tiny_models, tmp_path):
    rows = [{"id": f"r{i}", "text": "word " * n, "label": "negative"} for i, n in enumerate([3, 40, 1, 12, 7])]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    out.mkdir()
    predictions, metrics = run(config, out, "task=sentiment-analysis", "model=local",
                               f"model.name_or_path={tiny_models['classifier']}", f"inference.input_file={path}",
                               "inference.batch_size=2", "inference.path=manual")
    assert [p["id"] for p in predictions] == [r["id"] for r in rows]  # length-sorted batches, input order kept
    assert [p["input"] for p in predictions] == [r["text"] for r in rows]
    expected = sum(p["output"]["label"] == "negative" for p in predictions) / len(rows)
    assert metrics["final"]["accuracy"] == pytest.approx(expected)
    assert metrics["num_batches"] == 3 and metrics["implementation"] == "manual"


def test_sst2_validation_split(config, tiny_models, tmp_path, shared_data):
    predictions, metrics = run(config, tmp_path, "task=text-classification", "dataset=sst2", "model=local",
                               f"model.name_or_path={tiny_models['classifier']}", f"paths.mirror={shared_data}",
                               "inference.max_samples=12")
    assert len(predictions) == 12 and metrics["inputs"] == "dataset sst2:validation"
    assert {p["reference"] for p in predictions} <= {0, 1}
    assert 0.0 <= metrics["final"]["accuracy"] <= 1.0 and "f1" in metrics["final"]


def test_question_answering_on_squad(config, tiny_models, tmp_path, shared_data):
    predictions, metrics = run(config, tmp_path, "task=question-answering", "model=local",
                               f"model.name_or_path={tiny_models['qa']}", f"paths.mirror={shared_data}",
                               "inference.max_samples=6", "task.max_length=96", "task.doc_stride=32")
    assert metrics["inputs"] == "dataset squad:validation"
    assert {"exact_match", "f1"} <= set(metrics["final"])
    for p in predictions:
        answer = p["output"]
        assert p["input"]["context"][answer["start"]:answer["end"]] == answer["answer"]  # offsets are real


def test_question_answering_long_context_windows(config, tiny_models):
    """A context far longer than max_length is read window by window; spans come back as offsets."""
    import torch

    from experiments.infer import load_task

    task = load_task(config("task=question-answering", "model=local", f"model.name_or_path={tiny_models['qa']}",
                            "task.max_length=48", "task.doc_stride=16", "task.top_k=3", "task.max_answer_len=4"))
    context = " ".join(f"Sentence {i} mentions the number {i * 7}." for i in range(60))
    item = task.check_input({"question": "Which number?", "context": context})
    encoded = task.ctx.tokenizer(item["question"], context, truncation="only_second", max_length=48, stride=16,
                                 return_overflowing_tokens=True)
    assert len(encoded["input_ids"]) > 5  # several windows
    with torch.inference_mode():
        [answers] = task.manual([item])
    assert len(answers) == 3
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
    for a in answers:
        assert context[a["start"]:a["end"]] == a["answer"] and a["answer"]
        assert len(task.ctx.tokenizer(a["answer"], add_special_tokens=False)["input_ids"]) <= 4


@pytest.mark.parametrize("question_words", [29, 35, 44])
def test_a_question_that_leaves_a_long_context_no_room_is_one_line(config, tiny_models, question_words):
    """A question whose tokens leave the context no more of the window than the overlap: the tokenizer cannot
    advance through a long context (a Rust panic, which no ``except Exception`` catches) -> one line naming it."""
    from experiments.infer import load_task

    task = load_task(config("task=question-answering", "model=local", f"model.name_or_path={tiny_models['qa']}",
                            "task.max_length=48", "task.doc_stride=16", "task.max_question_len=64"))
    question = " ".join(["which"] * question_words) + "?"
    context = " ".join(f"Sentence {i} mentions the number {i * 7}." for i in range(60))
    item = task.check_input({"question": question, "context": context})
    with pytest.raises(ExperimentError, match="leaves the context no more of task.max_length=48"):
        task.manual([item])


def test_summarization_xsum_rouge(config, tiny_models, tmp_path, shared_data):
    predictions, metrics = run(config, tmp_path, "task=summarization", "model=local",
                               f"model.name_or_path={tiny_models['t5']}", f"paths.mirror={shared_data}",
                               "inference.max_samples=3", "task.max_new_tokens=6", "task.max_length=64")
    assert metrics["method"] == "seq2seq" and metrics["implementation"] == "manual"
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum"} <= set(metrics["final"])
    assert set(predictions[0]["output"][0]) == {"summary_text"} and predictions[0]["reference"]


def test_translation_multi30k_bleu_chrf(config, tiny_models, tmp_path, shared_data):
    from experiments.infer import load_task

    predictions, metrics = run(config, tmp_path, "task=translation", "model=local",
                               f"model.name_or_path={tiny_models['t5']}", f"paths.mirror={shared_data}",
                               "inference.max_samples=4", "task.max_new_tokens=6")
    assert {"bleu", "chrf"} <= set(metrics["final"])
    assert predictions[0]["input"].startswith("Eine") is False and predictions[0]["reference"]
    task = load_task(config("task=translation", "model=local", f"model.name_or_path={tiny_models['t5']}"))
    assert task.prefix() == "translate English to German: "  # T5's prefix for en -> de


def test_fill_mask_and_generation_runs(config, tiny_models, tmp_path):
    (tmp_path / "a").mkdir()
    predictions, metrics = run(config, tmp_path / "a", "task=fill-mask", "model=local",
                               f"model.name_or_path={tiny_models['mlm']}", "inference.inputs=['Hello [MASK] world.']")
    assert len(predictions[0]["output"]) == 5 and "accuracy" not in metrics["final"]
    (tmp_path / "b").mkdir()
    predictions, metrics = run(config, tmp_path / "b", "task=text-generation", "model=local",
                               f"model.name_or_path={tiny_models['gpt2']}", "task.max_new_tokens=4",
                               "inference.inputs=[once upon a time,hi]")
    assert metrics["implementation"] == "pipeline" and predictions[1]["output"][0]["generated_text"]


@pytest.mark.parametrize("path", ["pipeline", "manual"])
def test_generation_reports_tokens_per_second_and_time_to_first_token_per_batch(config, tiny_models, tmp_path,
                                                                               path):
    inputs = "inference.inputs=[once upon a time there was,hi,a much longer prompt than the others here,ok]"
    predictions, metrics = run(config, tmp_path, "task=text-generation", "model=local", f"inference.path={path}",
                               f"model.name_or_path={tiny_models['gpt2']}", "task.max_new_tokens=5",
                               "task.min_new_tokens=5", "inference.batch_size=2", inputs)
    batches = metrics["generation_batches"]
    assert [b["size"] for b in batches] == [2, 2] and len(batches) == metrics["num_batches"]
    for row in batches:  # the first token comes after the prompt's forward pass, before the batch ends
        assert 0 < row["time_to_first_token_s"] < row["seconds"]
        assert row["generated_tokens"] > 0 and row["tokens_per_second"] == pytest.approx(
            row["generated_tokens"] / row["seconds"])
    final = metrics["final"]
    generated = sum(b["generated_tokens"] for b in batches)
    assert final["generated_tokens_per_second"] == pytest.approx(generated / final["total_seconds"])
    assert 0 < final["time_to_first_token_p50_ms"] <= final["time_to_first_token_p95_ms"]
    assert metrics["speed"] == {"dtype": _auto_dtype(), "attn_implementation": "sdpa", "compile": False,
                                "hardware": hardware.cpu_class(),
                                "basis": {"dtype": hardware.table_choice("inference_dtype", "cpu").basis,
                                          "attn_implementation": hardware.table_choice("attention", "cpu").basis,
                                          "compile": hardware.table_choice("compile", "cpu").basis}}


def _auto_dtype() -> str:
    import torch

    return hardware.inference_dtype("auto", torch.device("cpu"))


def test_zero_shot_uses_dataset_label_names(config, tiny_models, tmp_path):
    rows = [{"text": "goal!", "label": "sport"}, {"text": "vote", "label": "politics"}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "run").mkdir()
    predictions, metrics = run(config, tmp_path / "run", "task=zero-shot-classification", "model=local",
                               f"model.name_or_path={tiny_models['nli']}", f"inference.input_file={path}",
                               "task.candidate_labels=[sport,politics]")
    assert sorted(predictions[0]["output"]["labels"]) == ["politics", "sport"]
    assert "accuracy" in metrics["final"]


@pytest.mark.parametrize("overrides, message", [
    (["task=fill-mask", "model=minilm", "inference.inputs=['a [MASK] b']"], "has no masked-LM head"),
    (["task=text-classification", "model=minilm", "inference.inputs=[good]"], "has no sequence-classification head"),
    (["task=zero-shot-classification", "model=local", "inference.inputs=[a]", "task.candidate_labels=[x,y]"],
     "'entailment' label"),
    (["task=zero-shot-classification", "model=minilm", "inference.inputs=[a]"], "needs task.candidate_labels"),
    (["task=question-answering", "model=minilm", "inference.inputs=[{question: who?}]"], "without a context"),
    (["task=summarization", "model=minilm", "task.method=seq2seq", "inference.inputs=[a]"],
     "needs an encoder-decoder model"),
])
def test_unusable_model_or_input_is_a_one_line_error(config, tiny_models, tmp_path, overrides, message):
    from experiments.infer import infer

    overrides = [o if o != "model=local" else f"model.name_or_path={tiny_models['no_entailment']}"
                 for o in overrides]
    if any(o.startswith("model.name_or_path") for o in overrides):
        overrides.append("model=local")
    with pytest.raises(ExperimentError, match=message) as info:
        infer(config(*overrides), tmp_path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "metrics.json").exists()
