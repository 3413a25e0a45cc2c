"""scripts/bench_train.py: argument parsing, the variants' configs, the step clock (plain and peft models, our
kind of loop and transformers' Trainer), the padding_share measurement and the report, on tiny inputs; and its
smallest configuration end to end (slow)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench_train.py"


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bad_section_is_a_usage_error():
    proc = _run("--sections", "nope", timeout=60)
    assert proc.returncode == 2
    assert "unknown ['nope']" in proc.stderr


def test_sections_and_sizes_parse(bench):
    args = bench.parse_args([])
    assert args.sections == list(bench.SECTIONS)
    assert {"causal_lora", "padding_share"} <= set(args.sections)
    assert (args.causal_batch_size, args.share_batches) == (8, 20)
    args = bench.parse_args(["--sections", "causal_lora, padding_share", "--causal-batch-size", "4"])
    assert args.sections == ["causal_lora", "padding_share"] and args.causal_batch_size == 4
    for bad in (["--causal-batch-size", "0"], ["--share-batches", "0"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_causal_variants_compose_to_the_same_config_but_the_backend(bench, tmp_path):
    from experiments.config.validate import compose, to_typed

    args = bench.parse_args(["--steps", "5", "--causal-batch-size", "4", "--mirror", str(tmp_path)])
    bases = {"minilm": bench.base_overrides(args, "bbc_news"), "causal": bench.causal_base_overrides(args)}
    typed = {v: to_typed(compose(bench.variant_overrides(v, bases)))
             for v in bench.SECTION_VARIANTS["causal_lora"]}
    ours, hf = typed["causal_ours"], typed["causal_hf"]
    assert (ours.trainer.backend, hf.trainer.backend) == ("accelerate", "hf_trainer")
    for cfg in (ours, hf):
        assert (cfg.model.name, cfg.task.name, cfg.peft.name) == ("smollm2", "text-generation", "lora")
        assert (cfg.trainer.max_steps, cfg.trainer.per_device_batch_size) == (5, 4)
        assert cfg.trainer.mixed_precision == "auto"
        assert cfg.trainer.save_steps == 6 and not cfg.trainer.save_model and not cfg.trainer.eval_before_training
        assert cfg.dataset.max_eval_samples == bench.CAUSAL_EVAL_SAMPLES
        assert cfg.logger.trackers == []
    # The MiniLM sections keep their own base.
    minilm = to_typed(compose(bench.variant_overrides("ours", bases)))
    assert (minilm.model.name, minilm.peft.name, minilm.trainer.mixed_precision) == ("minilm", "none", "no")


def _tiny_llama(peft: bool):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True))
    if peft:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                 task_type="CAUSAL_LM"))
    return model


def _batch(rows: int = 4, length: int = 8):
    import torch

    ids = torch.randint(0, 64, (rows, length))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


@pytest.mark.parametrize("peft", [False, True])
def test_step_clock_counts_one_forward_per_step(bench, peft):
    """A peft model passes ``labels`` down three nested calls; only the outermost one is counted."""
    import torch

    model = _tiny_llama(peft)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    with bench.StepClock() as clock:
        for _ in range(3):
            model(**_batch()).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.eval()
        with torch.no_grad():
            model(**_batch())  # evaluation: not counted
    steady = clock.steady()
    assert steady["steps_seen"] == steady["forwards_seen"] == 3
    assert steady["samples"] == 8 and steady["tokens"] == 64 and steady["tokens_per_second"] > 0
    assert clock.model_class == ("PeftModelForCausalLM" if peft else "LlamaForCausalLM")
    names = dict(model.named_parameters())
    assert clock.model_shape == {"layers": 2, "hidden": 16,
                                 "non_embedding_params": sum(p.numel() for n, p in names.items() if "embed" not in n)}
    assert not any("embed" in n for n in names if "lm_head" in n)  # tied head: listed once, as embed_tokens


def test_step_clock_sees_the_trainer_train_a_peft_model(bench, tmp_path):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    data = Dataset.from_dict({k: v.tolist() for k, v in _batch(rows=8).items()})
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2, report_to=[],
                             save_strategy="no", eval_strategy="no", use_cpu=True, disable_tqdm=True,
                             logging_steps=100)
    trainer = Trainer(model=_tiny_llama(peft=True), args=args, train_dataset=data)
    with bench.StepClock() as clock:
        trainer.train()
    steady = clock.steady()
    assert steady["steps_seen"] == steady["forwards_seen"] == 3
    assert steady["samples"] == 4 and clock.model_class == "PeftModelForCausalLM"


def test_non_embedding_params_of_bert_is_the_loops_count(bench):
    """For MiniLM (BERT) the estimate keeps its meaning: "embed" drops exactly the ``embeddings.*`` tables."""
    from transformers import BertConfig, BertForSequenceClassification

    from experiments.train.loop import _non_embedding_params

    model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32))
    assert bench.non_embedding_params(model) == _non_embedding_params(model)


def test_label_share(bench):
    import torch

    ids = torch.zeros(2, 4, dtype=torch.long)
    assert bench.label_share([{"input_ids": ids, "labels": torch.tensor([[-100, -100, 5, 6], [-100, 7, 8, -100]])}]) \
        == pytest.approx(0.5)
    assert bench.label_share([{"input_ids": ids, "labels": torch.tensor([0, 1])}]) is None  # one label per row
    assert bench.label_share([{"input_ids": ids}]) is None


def test_padding_share_family_without_its_data_is_skipped(bench, tmp_path):
    rows = bench.padding_share_rows(str(tmp_path), 2, families=bench.SHARE_FAMILIES[:1], progress=False)
    assert rows[0]["skipped"].startswith(f"not in the mirror {tmp_path}: glue/MRPC/train.tsv")


def test_padding_share_of_packaged_text(bench, tmp_path):
    """Fill-mask blocks (no padding, ~15 % masked) and classification with dynamic padding, on BBC news."""
    families = [
        {"family": "fill-mask", "config": "tiny", "needs": [],
         "overrides": ["model=minilm", "task=fill-mask", "dataset=bbc_news", "task.max_length=64",
                       "dataset.max_train_samples=40", "dataset.max_eval_samples=8", "trainer.per_device_batch_size=8"]},
        {"family": "text-classification", "config": "tiny", "needs": [],
         "overrides": ["model=minilm", "dataset=bbc_news", "tokenizer.max_length=64", "dataset.max_train_samples=32",
                       "dataset.max_eval_samples=8", "trainer.per_device_batch_size=8"]},
    ]
    mlm, cls = bench.padding_share_rows(str(tmp_path), 2, families=families, progress=False)
    assert (mlm["task"], mlm["batches"], mlm["batch_size"], mlm["mean_padded_length"]) == ("fill-mask", 2, 8, 64)
    assert mlm["padding_share"] == 0.0 and 0.05 < mlm["label_token_share"] < 0.3
    assert (cls["task"], cls["rows"]) == ("text-classification", 16)
    assert cls["label_token_share"] is None and 0.0 <= cls["padding_share"] < 1.0
    assert cls["mean_padded_length"] <= 64


def test_report_shows_tokens_per_second_and_the_shares(bench):
    def row(name, sps, tps, **extra):
        return {"label": bench.VARIANT_LABELS[name], "steady_samples_per_second": sps,
                "median_step_samples_per_second": sps, "steady_tokens_per_second": tps,
                "reported_samples_per_second": sps, "mean_padded_length": 256.0, "eval_accuracy": None, **extra}

    sections = {
        "causal_lora": {"rows": [row("causal_ours", 2.0, 512.0, eval_perplexity=20.5),
                                 row("causal_hf", 1.6, 409.6, eval_perplexity=20.7)],
                        "ratio": 1.25, "ratio_median_step": 1.2,
                        "mixed_precision": {"setting": "auto", "ours": ["bf16"], "hf": ["bf16"]}},
        "padding_share": {"families": [
            {"family": "fill-mask", "config": "MiniLM", "batch_size": 32, "batches": 20, "mean_padded_length": 128.0,
             "padding_share": 0.0, "label_token_share": 0.15},
            {"family": "translation", "config": "SmolLM2", "skipped": "not in the mirror /x: a"}]},
    }
    meta = {"steps": 10, "repeats": 1, "base_overrides": {"causal": []}, "causal_batch_size": 8, "threads": 2,
            "worker_threads": [2], "cpu_count": 2, "device": "cpu", "torch": "x", "load_before": "1",
            "load_after": "1"}
    text = bench.render(meta, sections)
    assert "tok/s" in text and " 512 " in text and "ppl 20.50" in text
    assert "causal LoRA ours/HF     = 1.25x [1.20x] tokens/s" in text
    assert "trainer.mixed_precision=auto -> ours bf16, HF bf16" in text
    assert "15.0%" in text and "skipped: not in the mirror /x: a" in text
    assert "MiniLM sections" not in text


@pytest.mark.slow
def test_smallest_loop_vs_hf_run(tmp_path: Path, shared_data: Path):
    out = tmp_path / "bench.json"
    proc = _run("--steps", "2", "--sections", "loop_vs_hf", "--max-train-samples", "64", "--max-eval-samples", "32",
                "--threads", "2", "--mirror", str(shared_data), "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The printed table: both rows, the thread count and the ratio line.
    assert "torch.set_num_threads(2)" in proc.stdout
    assert "accelerate loop, dynamic, fp32" in proc.stdout
    assert "HF Trainer, dynamic, fp32" in proc.stdout
    assert "ours/HF" in proc.stdout

    result = json.loads(out.read_text())
    assert result["meta"]["dataset"] == "mrpc"
    assert result["meta"]["worker_threads"] == [2]
    section = result["sections"]["loop_vs_hf"]
    assert [row["name"] for row in section["rows"]] == ["ours", "hf"]
    for row in section["rows"]:
        assert row["steady_samples_per_second"] > 0
        assert row["reported_samples_per_second"] > 0
        assert 0.0 <= row["eval_accuracy"] <= 1.0
        run = row["runs"][0]
        assert run["steady"]["steps_seen"] == 2 and run["steady"]["samples"] == 32  # step 2 of batch 32
    assert section["ratio"] > 0
    # The loop's own FLOP count equals 6 x non-embedding params x the tokens the clock counted.
    assert section["rows"][0]["flop_count_check"] == pytest.approx(1.0, rel=1e-6)
