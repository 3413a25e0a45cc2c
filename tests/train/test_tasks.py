"""Every task family trains: a tiny random model learns a few steps on real data and its loss falls;
tasks a model cannot do stop before training with one line; a trained QA model answers through mode=infer."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

COMMON = ["model=local", "trainer.epochs=1", "trainer.per_device_batch_size=8", "trainer.lr=2e-3",
          "trainer.warmup_ratio=0.0", "trainer.log_every_n_steps=1", "trainer.eval_before_training=true",
          "trainer.eval_generate_samples=4", "dataset.max_eval_samples=16", "tokenizer.max_length=64",
          "logger=csv", "trainer.mixed_precision=no"]

FAMILIES = {
    # extractive QA: windows with answer spans; eval = SQuAD EM / F1 by the inference span decoding
    "question-answering": ("qa", ["task=question-answering", "dataset=squad", "dataset.train_split=validation",
                                  "dataset.eval_split=null", "dataset.split_by=title", "dataset.max_train_samples=96",
                                  "task.max_length=128", "task.doc_stride=48"], "eval_f1"),
    # the same with LoRA: adapters on the attention, the new span head trained in full (modules_to_save)
    "question-answering-lora": ("qa", ["task=question-answering", "dataset=squad", "dataset.train_split=validation",
                                       "dataset.eval_split=null", "dataset.split_by=title",
                                       "dataset.max_train_samples=96", "task.max_length=128", "task.doc_stride=48",
                                       "peft=lora", "peft.r=4"], "eval_f1"),
    # seq2seq: text_target labels; eval = ROUGE of generated summaries
    "summarization-seq2seq": ("t5", ["task=summarization", "dataset=xsum", "dataset.train_split=test",
                                     "dataset.eval_split=null", "dataset.max_train_samples=96",
                                     "task.max_length=64", "task.max_new_tokens=8"], "eval_rouge1"),
    # causal prompt -> target with the prompt's labels masked; eval = BLEU / chrF of generated translations
    "translation-causal": ("gpt2", ["task=translation", "dataset=multi30k", "dataset.train_split=validation",
                                    "dataset.eval_split=test", "dataset.max_train_samples=96",
                                    "task.max_new_tokens=8"], "eval_chrf"),
    # causal LM on raw text blocks; eval = perplexity
    "text-generation-blocks": ("gpt2", ["task=text-generation", "dataset=bbc_news", "dataset.max_train_samples=24",
                                        "task.max_length=64"], "eval_perplexity"),
    # masked LM; eval = perplexity on masks drawn once
    "fill-mask": ("mlm", ["task=fill-mask", "dataset=bbc_news", "dataset.max_train_samples=24",
                          "task.max_length=64"], "eval_perplexity"),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_task_family_trains_and_its_loss_falls(family, tiny_models, shared_data, tmp_path):
    from experiments.config.validate import compose, to_typed
    from experiments.train import train

    model, overrides, metric = FAMILIES[family]
    run_dir = tmp_path / family
    cfg = to_typed(compose([*COMMON, *overrides, f"model.name_or_path={tiny_models[model]}",
                            f"paths.mirror={shared_data}", f"paths.output_dir={run_dir}"]))
    metrics = train(cfg, run_dir)
    before, after = metrics["history"][0], metrics["history"][-1]
    assert before["step"] == 0 and after["step"] == metrics["final"]["global_step"] >= 3
    assert after["eval_loss"] < before["eval_loss"] - 0.05, (before, after)
    assert metric in after and metric in metrics["final"]
    assert metrics["task"] == cfg.task.name and metrics["peft"] == cfg.peft.name
    if cfg.peft.name == "none":
        assert metrics["trainable_params"] == metrics["total_params"] > 0
    else:
        assert 0 < metrics["trainable_params"] < metrics["total_params"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["best"]["metric"] == metrics["best"]["metric"]
    assert (run_dir / "last" / "model.safetensors").exists()


def test_summarization_with_an_encoder_only_model_stops_in_one_line(cli, tmp_path, shared_data):
    result = cli("task=summarization", "model=minilm", "dataset=xsum", f"paths.mirror={shared_data}",
                 f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: task=summarization needs a model that generates") and "encoder-only" in last
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_fill_mask_without_an_mlm_head_and_no_new_head_allowed_stops_in_one_line(cli, tmp_path):
    result = cli("task=fill-mask", "model=minilm", "dataset=bbc_news", "model.allow_new_head=false",
                 "dataset.max_train_samples=16", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "has no trained masked-LM head" in last and "model.allow_new_head" in last
    assert "Traceback" not in result.stderr


def test_qa_rows_without_answers_stop_in_one_line(cli, tmp_path, shared_data):
    rows = {"data": [{"title": "t", "paragraphs": [{"context": "Ann wrote it in 1990.", "qas": [
        {"id": "q1", "question": "Who wrote it?", "answers": [{"text": "Ann", "answer_start": 0}]},
        {"id": "q2", "question": "Why?", "answers": []}]}]}]}
    path = tmp_path / "qa.json"
    path.write_text(json.dumps(rows))
    result = cli("task=question-answering", "model=minilm", "dataset=squad", f"dataset.data_files.train={path}",
                 f"dataset.data_files.validation={path}", "dataset.train_split=train", f"paths.mirror={shared_data}",
                 f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "row 1" in last and "q2" in last and "no answer" in last
    assert "Traceback" not in result.stderr


def test_a_trained_qa_model_answers_through_mode_infer(cli, tiny_models, shared_data, tmp_path):
    """The chain: train QA here, then `mode=infer task=question-answering model=local` on its best/."""
    run = tmp_path / "qa"
    trained = cli(*COMMON, *FAMILIES["question-answering"][1], f"model.name_or_path={tiny_models['qa']}",
                  f"paths.mirror={shared_data}", f"hydra.run.dir={run}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    inferred = cli("mode=infer", "task=question-answering", "model=local", f"model.name_or_path={run}/best",
                   f"paths.mirror={shared_data}", "inference.max_samples=12", "inference.progress=false",
                   f"hydra.run.dir={tmp_path}/infer")
    assert inferred.returncode == 0, inferred.stderr[-3000:]
    metrics = json.loads((tmp_path / "infer" / "metrics.json").read_text())
    assert {"exact_match", "f1"} <= set(metrics["final"]) or {"eval_exact_match", "eval_f1"} <= set(metrics["final"])
    rows = [json.loads(line) for line in (tmp_path / "infer" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all("answer" in json.dumps(r) for r in rows)
