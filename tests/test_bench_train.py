"""scripts/bench_train.py: argument parsing, the variants' configs (the defaults section's two sides against
plain TrainingArguments), the step clock (plain and peft models, our kind of loop and transformers' Trainer, CUDA
event times), the device description and datasheet peaks, the padding_share measurement and the report, on tiny
or synthetic inputs; and its smallest configuration end to end (slow)."""
from __future__ import annotations

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
    from cli_helpers import load_script

    return load_script("bench_train")


def test_bad_section_is_a_usage_error():
    proc = _run("--sections", "nope", timeout=60)
    assert proc.returncode == 2
    assert "unknown ['nope']" in proc.stderr


def test_sections_and_sizes_parse(bench):
    args = bench.parse_args([])
    assert args.sections == [s for s in bench.SECTIONS if s not in bench.OPT_IN_SECTIONS] == [
        "loop_vs_hf", "defaults", "padding", "precision", "utilisation", "causal_lora", "padding_share"]
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
            "device_info": {"type": "cpu", "name": "Some CPU", "gpus": 0, "cpu_cores": 2, "datasheet": None},
            "worker_threads": [2], "cpu_count": 2, "device": "cpu", "torch": "x", "load_before": "1",
            "load_after": "1"}
    text = bench.render(meta, sections)
    assert "tok/s" in text and " 512 " in text and "ppl 20.50" in text
    assert "causal LoRA ours/HF     = 1.25x [1.20x] tokens/s" in text
    assert "trainer.mixed_precision=auto -> ours bf16, HF bf16" in text
    assert "15.0%" in text and "skipped: not in the mirror /x: a" in text
    assert "MiniLM sections" not in text
    assert text.splitlines()[1] == "device: Some CPU (cpu, 2 cores)"


# ---------------------------------------------------------------------------------------------------------
# Devices and datasheet peaks.
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, gpu, tflops", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 989), ("NVIDIA H100 PCIe", "H100 PCIe", 756),
    ("NVIDIA H100 NVL", "H100 NVL", 835), ("NVIDIA H200", "H200 SXM", 989), ("NVIDIA H200 NVL", "H200 NVL", 835),
    ("NVIDIA A100-SXM4-80GB", "A100", 312), ("NVIDIA A100 80GB PCIe", "A100", 312), ("NVIDIA L40S", "L40S", 362),
    ("NVIDIA L4", "L4", 121), ("NVIDIA A10G", "A10G", 125), ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090", 165),
])
def test_datasheet_peak_of_known_gpus(bench, name, gpu, tflops):
    peak = bench.datasheet_peak(name)
    assert peak["gpu"] == gpu and peak["bf16_dense_flops_per_second"] == pytest.approx(tflops * 1e12)
    assert "NVIDIA datasheets" in peak["source"] and "no sparsity" in peak["source"]


@pytest.mark.parametrize("name", ["NVIDIA L40", "NVIDIA GH200 480GB", "Tesla T4", "NVIDIA GeForce RTX 4090 Laptop GPU",
                                  "AMD EPYC 9R14 96-Core Processor"])
def test_no_datasheet_peak_for_other_devices(bench, name):
    """Whole words: L4 is not L40, H200 is not GH200; anything not in the table has none."""
    assert bench.datasheet_peak(name) is None


def test_cpu_model_name_from_cpuinfo(bench):
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n\n" \
           "processor\t: 1\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n"
    assert bench.cpu_model_name(text) == "AMD EPYC 9R14 96-Core Processor"
    assert bench.cpu_model_name("processor\t: 0\n")  # no model name line (e.g. Arm): platform's answer


def test_describe_device_here(bench):
    import torch

    device = bench.describe_device()
    assert device["name"] and device["cpu_cores"] == __import__("os").cpu_count()
    if not torch.cuda.is_available():
        assert (device["type"], device["gpus"], device["datasheet"]) == ("cpu", 0, None)
        assert bench.device_text(device) == f"{device['name']} (cpu, {device['cpu_cores']} cores)"
    gpu = {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "gpus": 1, "cpu_cores": 16, "datasheet": None}
    assert bench.device_text(gpu) == "NVIDIA H100 80GB HBM3 (cuda: 1 GPU visible, training on GPU 0; 16 CPU cores)"


def test_step_clock_reads_cuda_events(bench, monkeypatch):
    """On CUDA the step ends are the events' times (ms apart), offset to the host clock's first end."""
    import torch

    class Event:
        def __init__(self, ms: float) -> None:
            self.ms = ms

        def elapsed_time(self, end: "Event") -> float:
            return end.ms - self.ms

    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: synced.append(True))
    clock = bench.StepClock(cuda=True)
    clock.step_ends = [100.0, 100.001, 100.002]  # when the steps were queued: not when they ran
    clock._events = [Event(5.0), Event(505.0), Event(1505.0)]
    assert clock.step_times() == pytest.approx([100.0, 100.5, 101.5]) and synced
    clock.batches = [(4, 8)] * 3
    steady = clock.steady()
    assert steady["seconds"] == pytest.approx(1.5) and steady["samples_per_second"] == pytest.approx(8 / 1.5)
    assert bench.StepClock(cuda=False).step_times() == []


# ---------------------------------------------------------------------------------------------------------
# The defaults section: our conf/ defaults vs plain TrainingArguments defaults.
# ---------------------------------------------------------------------------------------------------------

def _bases(bench, tmp_path, *extra: str):
    args = bench.parse_args(["--steps", "5", "--mirror", str(tmp_path), *extra])
    return {"minilm": bench.base_overrides(args, "bbc_news"),
            "defaults": bench.defaults_base_overrides(args, "bbc_news"), "causal": bench.causal_base_overrides(args)}


def test_defaults_ours_keeps_the_config_defaults(bench, tmp_path):
    from experiments.config.validate import compose, to_typed

    bases = _bases(bench, tmp_path)
    assert not [o for o in bases["defaults"] if o.split("=", 1)[0] in bench.LEFT_TO_CONF]
    ours = to_typed(compose(bench.variant_overrides("defaults_ours", bases)))
    plain = to_typed(compose(["dataset=bbc_news"]))  # no overrides of these keys at all
    assert ours.trainer.backend == "accelerate" and ours.model.name == "minilm"
    assert bench.speed_settings(ours) == bench.speed_settings(plain)
    assert (ours.trainer.per_device_batch_size, ours.trainer.max_steps, ours.trainer.save_steps) == (32, 5, 6)
    assert not ours.trainer.save_model and ours.logger.trackers == []


def test_defaults_hf_is_training_arguments_defaults(bench, tmp_path):
    """The HF side, built by hf_trainer.py, holds plain TrainingArguments' default in every field of the table
    (the table itself is the installed transformers' defaults), and every field where it still differs carries
    a note on its effect."""
    from transformers import TrainingArguments

    from experiments.config.validate import compose, to_typed
    from experiments.train.hf_trainer import training_arguments

    hf = to_typed(compose(bench.variant_overrides("defaults_hf", _bases(bench, tmp_path))))
    assert (hf.trainer.backend, hf.collator.name, hf.trainer.per_device_batch_size) == ("hf_trainer", "dynamic", 32)
    ours, plain = training_arguments(hf, tmp_path), TrainingArguments(output_dir=str(tmp_path))
    for field, default, _ in bench.TRAINING_ARGUMENTS_DEFAULTS:
        assert bench._plain(getattr(plain, field)) == default, field
        assert bench._plain(getattr(ours, field)) == default, field
    differences = bench.training_arguments_vs_defaults(hf, tmp_path)
    assert not set(differences) & set(bench.HARNESS_FIELDS)
    assert set(differences) <= set(bench.HF_DIFFERENCE_EFFECTS), "a new difference needs its note"
    for field, values in differences.items():
        assert values["ours"] != values["default"], field
    json.dumps(differences)


def test_plan_runs_for_the_defaults_section(bench, tmp_path, capsys):
    args = bench.parse_args(["--sections", "defaults", "--steps", "3", "--mirror", str(tmp_path)])
    plan = bench.plan_runs(args)
    assert plan["needed"] == ["defaults_ours", "defaults_hf"] and set(plan["bases"]) == {"defaults"}
    assert plan["dataset"] == "bbc_news" and "real MRPC not found" in capsys.readouterr().out  # no MRPC in tmp


def _summary(bench, name: str, sps: float, accuracy: float, precision: str, **extra):
    """What ``summarise`` gives, with made-up figures."""
    return {"name": name, "label": bench.VARIANT_LABELS[name], "steady_samples_per_second": sps,
            "median_step_samples_per_second": sps * 0.98, "steady_tokens_per_second": sps * 60,
            "reported_samples_per_second": sps * 0.9, "mean_padded_length": 60.0, "eval_accuracy": accuracy,
            "eval_perplexity": None, "mixed_precision": [precision], "reported_flops_per_second": None,
            "steady_flops_per_second_6n": None, "attention_flops_fraction": None, "flop_count_check": None, **extra}


def _meta(**extra):
    return {"steps": 10, "repeats": 1, "dataset": "mrpc", "batch_size": 32, "max_train_samples": None,
            "max_eval_samples": 200, "causal_batch_size": 8, "threads": 2, "worker_threads": [2], "cpu_count": 2,
            "device": "cpu", "torch": "x", "load_before": "1", "load_after": "1", **extra}


def test_defaults_section_and_its_report(bench):
    differences = {"logging_nan_inf_filter": {"ours": False, "default": True},
                   "made_up_field": {"ours": 1, "default": 2}}
    runs = {"defaults_ours": _summary(bench, "defaults_ours", 150.0, 0.7123, "bf16",
                                      settings={"trainer.mixed_precision": "auto", "trainer.group_by_length": True},
                                      resolved={"mixed_precision": "bf16", "optimizer": "adamw (fused)",
                                                "device": "CPU (2 cores)"}),
            "defaults_hf": _summary(bench, "defaults_hf", 100.0, 0.7, "no",
                                    settings={"trainer.mixed_precision": "no", "trainer.group_by_length": False},
                                    training_arguments_vs_defaults=differences)}
    section = bench.build_sections(["defaults"], runs, None, {})["defaults"]
    assert section["ratio"] == pytest.approx(1.5) and section["ratio_median_step"] == pytest.approx(1.5)
    assert section["samples_per_second"] == {"ours": 150.0, "hf": 100.0}
    assert section["eval_accuracy"] == {"ours": 0.7123, "hf": 0.7}
    found = section["hf_vs_training_arguments_defaults"]
    assert found["logging_nan_inf_filter"]["effect"] == bench.HF_DIFFERENCE_EFFECTS["logging_nan_inf_filter"]
    assert found["made_up_field"] == {"ours": 1, "default": 2, "effect": "not annotated"}
    json.dumps(section)  # --json keeps it machine-readable

    text = bench.render(_meta(base_overrides={"defaults": []}), {"defaults": section})
    assert "accelerate loop, our config defaults" in text and "HF Trainer, TrainingArguments defaults" in text
    assert "our/HF defaults         = 1.50x [1.50x]" in text
    assert ("ours 150.0 samples/s, eval accuracy 0.7123, mixed_precision auto -> bf16, group_by_length true; "
            "HF 100.0 samples/s, eval accuracy 0.7000, fp32") in text
    assert "ours resolved: mixed_precision=bf16, optimizer=adamw (fused)\n" in text  # the device is printed on top
    assert "logging_nan_inf_filter=False (default True): the default checks every step's loss" in text
    assert "made_up_field=1 (default 2): not annotated" in text
    assert "defaults: ours = the MiniLM base less trainer.mixed_precision" in text
    runs["defaults_hf"]["training_arguments_vs_defaults"] = {}
    text = bench.render(_meta(base_overrides={"defaults": []}),
                        {"defaults": bench.build_sections(["defaults"], runs, None, {})["defaults"]})
    assert "the HF side's TrainingArguments equal plain TrainingArguments()" in text


def _utilisation_runs(bench):
    flops = {"reported_flops_per_second": 2e12, "steady_flops_per_second_6n": 2.5e12,
             "attention_flops_fraction": 0.05, "flop_count_check": 1.0}
    return {"ours": _summary(bench, "ours", 100.0, 0.7, "no", **flops),
            "ours_bf16": _summary(bench, "ours_bf16", 150.0, 0.7, "bf16",
                                  **{**flops, "reported_flops_per_second": 5e12})}


def test_utilisation_mfu_against_the_datasheet_peak(bench):
    device = {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "gpus": 1, "cpu_cores": 16,
              "datasheet": bench.datasheet_peak("NVIDIA H100 80GB HBM3")}
    peaks = {"fp32": 50e12, "bf16": 700e12}
    section = bench.build_sections(["utilisation"], _utilisation_runs(bench), peaks, {}, device=device,
                                   matmul_size=8192)["utilisation"]
    fp32, bf16 = section["utilisation"]["fp32"], section["utilisation"]["bf16"]
    assert fp32["utilisation_reported"] == pytest.approx(2e12 / 50e12) and fp32["matmul_size"] == 8192
    assert fp32["mfu_reported"] == pytest.approx(2 / 989) and bf16["mfu_reported"] == pytest.approx(5 / 989)
    assert fp32["mfu_steady"] == pytest.approx(2.5 / 989)
    assert section["measured_bf16_matmul_of_datasheet"] == pytest.approx(700 / 989) and section["mfu_note"] is None
    text = "\n".join(bench.render_utilisation(section))
    assert "of a 8192x8192 fp32 matmul at 50.0 TFLOP/s" in text
    assert "MFU bf16                = 0.51% of the H100 SXM bf16 datasheet peak 989.0 TFLOP/s (steady 0.25%)" in text
    assert "measured bf16 matmul peak 700.0 TFLOP/s = 70.8% of it (NVIDIA datasheets" in text


@pytest.mark.parametrize("device, note", [
    ({"type": "cpu", "name": "AMD EPYC", "gpus": 0, "cpu_cores": 2, "datasheet": None},
     "no datasheet peak applies to a CPU (AMD EPYC)"),
    ({"type": "cuda", "name": "Tesla T4", "gpus": 1, "cpu_cores": 8, "datasheet": None},
     "no datasheet peak known for Tesla T4"),
])
def test_utilisation_without_a_datasheet_peak(bench, device, note):
    peaks = {"fp32": 190e9, "bf16": 600e9}
    section = bench.build_sections(["utilisation"], _utilisation_runs(bench), peaks, {}, device=device)["utilisation"]
    assert section["datasheet"] is None and section["utilisation"]["fp32"]["mfu_reported"] is None
    assert section["mfu_note"].startswith(note)
    text = "\n".join(bench.render_utilisation(section))
    assert "of a 2048x2048 fp32 matmul at 190.0 GFLOP/s" in text and "MFU fp32" not in text
    assert f"MFU: {note}" in text and "utilisation above is against the measured matmul peak" in text


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


@pytest.mark.parametrize("rates, expected", [
    # fp32 sdpa, fp32 eager, bf16 sdpa, bf16 eager -> mixed_precision, attention_half_training, attention
    ((100.0, 90.0, 160.0, 200.0), ("bf16", "eager", "sdpa")),
    ((100.0, 104.0, 103.0, 90.0), ("no", "sdpa", "sdpa")),  # within the margin: the conservative value stays
    ((100.0, 120.0, 50.0, 60.0), ("no", "eager", "eager")),
])
def test_choices_section_picks_an_alternative_only_where_it_beats_the_margin(bench, tmp_path, rates, expected):
    from experiments import hardware

    names = bench.SECTION_VARIANTS["choices"]
    runs = {name: _summary(bench, name, rate, 0.7, "no") for name, rate in zip(names, rates)}
    section = bench.build_sections(["choices"], runs, None, {})["choices"]
    decisions = section["decisions"]
    assert (decisions["mixed_precision"]["choice"], decisions["attention_half_training"]["choice"],
            decisions["attention"]["choice"]) == expected
    assert section["hardware"] == hardware.hardware_class("cpu")
    assert decisions["attention"]["ratio"] == pytest.approx(rates[1] / rates[0])

    table = tmp_path / "hardware_table.yaml"
    table.write_text(hardware.TABLE_PATH.read_text())
    section["hardware"] = "cpu-made-up"
    meta = _meta(device_name="Made-up CPU", device_info={"type": "cpu", "name": "Made-up CPU", "cpu_cores": 2})
    bench.record_choices(section, meta, "scripts/bench_train.py --sections choices --record", table)
    assert table.read_text().startswith(hardware.TABLE_PATH.read_text().split("\nmargin:")[0])  # comments kept
    written = hardware.load_table(table)
    assert written["classes"]["cpu-amx"] == hardware.load_table()["classes"]["cpu-amx"]  # the others untouched
    entry = written["classes"]["cpu-made-up"]["measured"]["mixed_precision"]
    assert entry["choice"] == expected[0] and entry["machine"].startswith("Made-up CPU")
    assert entry["command"].endswith("--record") and "MiniLM on mrpc, batch 32" in entry["figures"]
    text = bench.render(_meta(base_overrides={"minilm": []}), {"choices": section})
    assert f"mixed_precision         = {expected[0]}" in text


def test_record_needs_the_choices_section(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--sections", "precision", "--record"])


def test_check_fails_on_each_ratio_below_its_target_and_ignores_skipped_sections(bench, monkeypatch):
    from experiments import hardware

    monkeypatch.setattr(hardware, "mixed_precision", lambda value: "bf16")
    util = {"utilisation": {"bf16": {"utilisation_steady": 0.6}, "fp32": {"utilisation_steady": 0.1}}}
    sections = {"defaults": {"ratio": 2.3}, "loop_vs_hf": {"ratio": 1.01}, "causal_lora": {"skipped": "no GGUF"},
                "utilisation": util}
    assert bench.check_targets(sections) == []
    sections["defaults"]["ratio"], sections["loop_vs_hf"]["ratio"] = 1.99, None
    util["utilisation"]["bf16"]["utilisation_steady"] = 0.11
    failures = bench.check_targets(sections)
    assert [f.split(":")[0] for f in failures] == ["defaults", "loop_vs_hf", "utilisation"]
    assert "bf16 training at 11 %" in failures[2]
    monkeypatch.setattr(hardware, "mixed_precision", lambda value: "no")  # fp32 is what the defaults train in
    assert "fp32 training at 10 %" in bench.check_targets(sections)[2]


@pytest.mark.parametrize("op, expected", [
    ("aten::addmm", "matmul"), ("aten::mm", "matmul"), ("aten::bmm", "matmul"), ("aten::_fused_adamw_", "optimizer"),
    ("aten::native_layer_norm_backward", "normalisation"), ("aten::_scaled_dot_product_flash_attention_for_cpu",
                                                            "attention"),
    ("aten::_softmax_backward_data", "attention"), ("aten::gelu_backward", "activation"),
    ("aten::_to_copy", "copies and casts"), ("aten::to", "copies and casts"), ("aten::add_", "elementwise"),
    ("aten::mul", "elementwise"), ("aten::embedding_dense_backward", "embedding"), ("aten::topk", "other"),
    ("aten::nll_loss_forward", "loss"), ("aten::bernoulli_", "dropout masks"), ("aten::native_dropout", "dropout masks"),
])
def test_op_classes(bench, op, expected):
    assert bench.op_class(op) == expected


def test_profile_section_reports_each_op_class_share(bench):
    profile = {"steps": 8, "op_seconds": 4.0,
               "classes": {"matmul": {"seconds": 3.0, "share": 0.75}, "optimizer": {"seconds": 1.0, "share": 0.25}},
               "top_ops": [{"op": "aten::addmm", "seconds": 2.0, "share": 0.5}]}
    runs = {"profile_defaults": _summary(bench, "profile_defaults", 100.0, 0.7, "bf16", profile=profile,
                                         resolved={"mixed_precision": "bf16"})}
    section = bench.build_sections(["profile"], runs, None, {})["profile"]
    assert section["profile"] == profile and section["resolved"] == {"mixed_precision": "bf16"}
    text = bench.render(_meta(base_overrides={"defaults": []}), {"profile": section})
    assert "matmul              75.0 %" in text and "top ops: addmm 50.0 %" in text
    assert bench.plan_runs(bench.parse_args(["--sections", "profile"]))["bases"].keys() == {"defaults"}


@pytest.mark.slow
def test_smallest_profile_run_accounts_for_the_op_time_by_class(tmp_path: Path, shared_data: Path):
    out = tmp_path / "bench.json"
    proc = _run("--steps", "4", "--sections", "profile", "--max-train-samples", "128", "--max-eval-samples", "32",
                "--mirror", str(shared_data), "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    profile = json.loads(out.read_text())["sections"]["profile"]["profile"]
    assert profile["steps"] == 2 and profile["op_seconds"] > 0
    shares = {label: c["share"] for label, c in profile["classes"].items()}
    assert sum(shares.values()) == pytest.approx(1.0) and shares["matmul"] > 0.1 and shares["optimizer"] > 0
    assert "profile of our defaults over 2 steps" in proc.stdout
