"""peft=lora: what a run saves (adapter + merged model, reloading to the same logits), inference on both
forms, both backends, and a real SmolLM2 run. (SIGKILL resume and 2 processes = 1 process with LoRA:
test_resume.py and test_ddp.py.)"""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

TINY_CAUSAL = ["model=local", "trainer.epochs=1", "trainer.per_device_batch_size=8", "trainer.lr=2e-3",
               "trainer.log_every_n_steps=1", "dataset.max_eval_samples=16", "tokenizer.max_length=64",
               "logger=csv", "peft=lora", "peft.target_modules=[c_attn]", "trainer.mixed_precision=no"]
TRANSLATION = ["task=translation", "dataset=multi30k", "dataset.train_split=validation", "dataset.eval_split=test",
               "dataset.max_train_samples=48", "task.max_new_tokens=8", "trainer.eval_generate_samples=4"]


def _logits(model, tokenizer):
    import torch

    batch = tokenizer(["A man is riding a bike.", "Two dogs play in the snow."], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits.float()


@pytest.fixture(scope="module")
def translation_runs(tmp_path_factory, tiny_models, shared_data):
    """Tiny GPT-2 + LoRA trained on Multi30k prompts, once saved merged (+ adapter) and once adapter-only."""
    from cli_helpers import run_cli

    root = tmp_path_factory.mktemp("lora")
    runs = {}
    for name, extra in (("merged", []), ("adapter_only", ["peft.merge=false"])):
        result = run_cli(*TINY_CAUSAL, *TRANSLATION, *extra, f"model.name_or_path={tiny_models['gpt2']}",
                         f"paths.mirror={shared_data}", f"hydra.run.dir={root / name}")
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = root / name
    return runs


def test_lora_run_records_trainable_and_total_parameters(translation_runs):
    metrics = json.loads((translation_runs["merged"] / "metrics.json").read_text())
    assert metrics["peft"] == "lora" and metrics["task"] == "translation"
    assert 0 < metrics["trainable_params"] < metrics["total_params"] / 20
    assert {"eval_bleu", "eval_chrf", "eval_loss", "eval_perplexity"} <= set(metrics["final"])
    assert "parameters train" in (translation_runs["merged"] / "run.log").read_text()


def test_best_holds_a_merged_model_and_its_adapter_with_identical_logits(translation_runs, tiny_models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from experiments.adapters import load_adapter, saved_adapter

    best = translation_runs["merged"] / "best"
    assert (best / "model.safetensors").exists() and not (best / "adapter_config.json").exists()
    assert (best / "adapter" / "adapter_model.safetensors").exists()
    assert saved_adapter(best / "adapter")["name_or_path"] == str(tiny_models["gpt2"])
    tokenizer = AutoTokenizer.from_pretrained(str(best))
    merged = AutoModelForCausalLM.from_pretrained(str(best)).eval()  # plain from_pretrained, no peft
    base = AutoModelForCausalLM.from_pretrained(str(tiny_models["gpt2"]))
    adapted = load_adapter(base, best / "adapter").eval()
    original = AutoModelForCausalLM.from_pretrained(str(tiny_models["gpt2"])).eval()
    assert not _logits(merged, tokenizer).allclose(_logits(original, tokenizer), atol=1e-4)  # it did train
    assert _logits(merged, tokenizer).allclose(_logits(adapted, tokenizer), atol=1e-5)


def test_adapter_only_run_saves_no_merged_weights(translation_runs):
    best = translation_runs["adapter_only"] / "best"
    assert (best / "adapter_config.json").exists() and (best / "base_model.json").exists()
    assert not (best / "model.safetensors").exists()


@pytest.mark.parametrize("form", ["merged", "adapter", "adapter_only"])
def test_mode_infer_translates_with_either_saved_form(form, translation_runs, shared_data, cli, tmp_path):
    folder = {"merged": translation_runs["merged"] / "best", "adapter": translation_runs["merged"] / "best" / "adapter",
              "adapter_only": translation_runs["adapter_only"] / "best"}[form]
    result = cli("mode=infer", "task=translation", "model=local", f"model.name_or_path={folder}",
                 f"paths.mirror={shared_data}", "inference.max_samples=4", "task.max_new_tokens=8",
                 "inference.progress=false", f"hydra.run.dir={tmp_path}/infer")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "infer" / "metrics.json").read_text())
    assert metrics["num_items"] == 4 and "bleu" in json.dumps(metrics["final"])
    if form != "merged":
        assert "LoRA adapter" in (tmp_path / "infer" / "run.log").read_text()


def test_hf_trainer_backend_trains_a_causal_lm_with_lora(cli, tiny_models, tmp_path):
    result = cli(*TINY_CAUSAL, "trainer=hf_trainer", "task=text-generation", "dataset=bbc_news",
                 "dataset.max_train_samples=16", f"model.name_or_path={tiny_models['gpt2']}",
                 "trainer.save_steps=1000", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["backend"] == "hf_trainer" and metrics["peft"] == "lora"
    assert metrics["trainable_params"] < metrics["total_params"] and metrics["final"]["eval_perplexity"] > 1
    assert (tmp_path / "run" / "last" / "adapter" / "adapter_model.safetensors").exists()


def test_real_smollm2_lora_lowers_its_loss_in_a_few_steps(cli, tmp_path):
    """SmolLM2-135M-Instruct from the packaged GGUF, LoRA on BBC news text blocks; saved merged model loads
    with plain from_pretrained."""
    from transformers import AutoModelForCausalLM

    result = cli("experiment=bbc_smollm2_clm", "dataset.max_train_samples=6", "dataset.max_eval_samples=3",
                 "task.max_length=64", "trainer.max_steps=5", "trainer.per_device_batch_size=4",
                 "trainer.lr=2e-3", "trainer.log_every_n_steps=1", "trainer.save_steps=100",
                 f"hydra.run.dir={tmp_path}/run", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    before, after = metrics["history"][0], metrics["history"][-1]
    assert before["step"] == 0 and after["step"] == 5
    assert after["eval_loss"] < before["eval_loss"], (before, after)
    assert metrics["model_source"].startswith("package:")
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "run" / "best"))
    assert model.config.model_type == "llama"
