#!/usr/bin/env python
"""Fine-tuning benchmark: eight comparisons measured side by side in one run.

Sections (``--sections``, default all but ``choices``):

* ``loop_vs_hf``   samples/s of our Accelerate loop (``trainer=accelerate``) vs transformers' Trainer
                   (``trainer=hf_trainer``) on the same config.
* ``defaults``     our defaults vs HF Trainer defaults: samples/s (``steady``) and eval accuracy of our loop at the
                   framework's config defaults (``defaults_base_overrides``: the MiniLM base less its precision,
                   grouping, collator and tokenizer-length keys, so ``trainer.mixed_precision``,
                   ``trainer.group_by_length``, ``trainer.compile``, attention, optimizer settings, collator and
                   tokenizer are whatever conf/ says), vs the Trainer set to what plain transformers does by
                   default (``TRAINING_ARGUMENTS_DEFAULTS``: fp32, random batches, no torch.compile, lr 5e-5, no
                   weight decay, no warm-up, eval batch 8; ``TRANSFORMERS_DEFAULTS``: SDPA attention, dynamic
                   padding as the Trainer's default ``DataCollatorWithPadding``). Both at batch ``--batch-size``
                   (32), on the MiniLM base's data, with the bench's harness keys (``HARNESS_FIELDS``: step count,
                   logging once, no checkpoint inside the timed steps). What ``hf_trainer.py`` fixes and no config
                   key undoes is found at run time (``training_arguments_vs_defaults``: its TrainingArguments
                   against plain ``TrainingArguments()``, field by field) and printed with the section, with
                   ``HF_DIFFERENCE_EFFECTS``' note on each. At the time of writing: ``logging_nan_inf_filter`` is
                   off (the default checks every step's loss, a host sync per step on a GPU); evaluation every
                   epoch, not never (inside the timed steps only if ``--steps`` passes an epoch);
                   ``average_tokens_across_devices=False`` and ``data_seed`` = the seed (no effect on speed here);
                   and ``use_cpu`` where there is no GPU. The optimizer follows our loop's (fused AdamW where
                   torch has it, as TrainingArguments' default ``adamw_torch_fused``); where it is not fused, that
                   shows as an ``optim`` difference.
* ``padding``      dynamic padding + length-grouped batches vs static padding to 128 on real MRPC
                   (skipped, with the reason printed, when the mirror has no ``glue/MRPC``).
* ``precision``    bf16 autocast vs fp32, with the eval accuracy of each.
* ``utilisation``  achieved training FLOP/s (``metrics.json`` ``final.train_flops_per_second``) as a
                   fraction of a square matmul peak of the same precision, measured in the same run (2048 on CPU,
                   8192 on a GPU, where 2048 is too short to time); and MFU: the same FLOP/s as a fraction of the
                   GPU's dense bf16 datasheet peak (``GPU_BF16_DENSE_TFLOPS``, NVIDIA datasheets, no sparsity),
                   with the measured bf16 matmul peak beside it. On a CPU or a GPU the table lacks, no datasheet
                   peak applies and only the measured-matmul utilisation is shown.
* ``causal_lora``  tokens/s of a causal-LM LoRA fine-tune of SmolLM2-135M-Instruct (``experiment=bbc_smollm2_clm``:
                   BBC news in 256-token blocks, LoRA r=16 on q/k/v/o), our loop vs transformers' Trainer with
                   peft, same config; ``trainer.mixed_precision=auto`` (the preset's default) for both, the
                   precision it resolved to printed beside the ratio.
* ``choices``      (not in the default set) the training decisions of ``experiments/hardware_table.yaml`` on this
                   machine: fp32 and bf16 autocast, each with SDPA and eager attention; each decision's winner
                   is the alternative where it ran the table's ``margin`` faster, else the conservative value.
                   ``--record`` writes the winners into the table under this machine's kind
                   (``hardware.hardware_class``), with the machine, the date, the command and the figures.
* ``padding_share`` no training: share of padded positions (``attention_mask == 0``) and of loss-bearing label
                   tokens (``labels != -100``, LM families) in the first ``--share-batches`` shuffled train
                   batches of each task family, built by the task objects (``build_experiment``) and collated by
                   the task's own collator. Families whose data the mirror lacks are skipped, the reason printed.

The first five sections share a MiniLM base (``base_overrides``; ``defaults`` leaves some of its keys to
conf/); ``causal_lora`` has its own (``causal_base_overrides``). Every variant is composed the way the CLI does
(``compose(overrides)`` then ``to_typed``) and handed to the backend's ``run(typed, run_dir)``. Each variant runs
in its own fresh process (with the same ``torch.set_num_threads``): one process cannot hold two Accelerate states
with different mixed precision, and a fresh process gives every variant the same start. Variants are interleaved
(A B C A B C ...) when ``--repeats`` > 1, so drift on a shared CPU spreads over all of them; the median is
reported.

Two speed figures per run:

* ``steady``    samples/s over optimizer steps 2..N: the first step (lazy allocations, kernel selection)
                is excluded. Measured with PyTorch's global optimizer-step and module-forward hooks, so
                both backends are timed by the same clock over the same span (data loading + forward +
                backward + optimizer step), and the samples/tokens of each step are counted exactly.
* ``reported``  the backend's own ``final.train_samples_per_second``: both count the time inside
                training steps (evaluations and checkpoint saves left out), the first step included;
                ratios use ``steady``.

Devices: the script runs unchanged on a CUDA machine (both backends then train on the GPU). The device is
printed first and recorded in ``--json`` (``meta.device_info``: the GPU's name, or the CPU's model from
/proc/cpuinfo, with the core count). On CUDA the work is asynchronous, so every timed boundary waits for the
GPU: the matmul peak synchronizes around each timed round, and the step clock times each step's end with a CUDA
event recorded behind the step's kernels, read after a synchronize (``StepClock.step_times``).

Examples::

    python scripts/bench_train.py --steps 10                         # quick: ~3-5 min on 2 cores
    python scripts/bench_train.py --steps 40 --repeats 2 --json bench.json
    python scripts/bench_train.py --steps 2 --sections loop_vs_hf --max-train-samples 64
    python scripts/bench_train.py --sections defaults --steps 20 --json defaults.json
    python scripts/bench_train.py --sections causal_lora,padding_share --steps 10
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("loop_vs_hf", "defaults", "padding", "precision", "utilisation", "causal_lora", "padding_share",
            "choices", "profile")
OPT_IN_SECTIONS = ("choices", "profile")  # not in the default set
STATIC_LENGTH = 128
MATMUL_SIZE = 2048  # the matmul peak's size on CPU
MATMUL_SIZE_CUDA = 8192  # on a GPU: a 2048 matmul takes tens of microseconds, too short to time against launches
CAUSAL_PRESET = "bbc_smollm2_clm"
CAUSAL_EVAL_SAMPLES = 8  # held-out blocks for the final eval of causal_lora (after the timed steps)
IGNORE_INDEX = -100  # experiments.data.lm.IGNORE_INDEX: labels the loss skips


# ----------------------------------------------------------------------------------------------------------
# The defaults section: what each side leaves to its defaults.
# ----------------------------------------------------------------------------------------------------------

# The MiniLM base's keys that the ``defaults`` section leaves to conf/ on our side.
LEFT_TO_CONF = ("trainer.mixed_precision", "trainer.group_by_length", "collator", "tokenizer.max_length")

# Plain transformers.TrainingArguments defaults and the override that gives each through hf_trainer.py's
# training_arguments: (TrainingArguments field, its default, override). tests/test_bench_train.py checks them
# against the installed transformers. Not mirrored: per_device_train_batch_size (8): the section compares at 32.
TRAINING_ARGUMENTS_DEFAULTS = [
    ("bf16", False, "trainer.mixed_precision=no"),
    ("fp16", False, "trainer.mixed_precision=no"),
    ("train_sampling_strategy", "random", "trainer.group_by_length=false"),
    ("torch_compile", False, "trainer.compile=false"),
    ("learning_rate", 5e-5, "trainer.lr=5e-5"),
    ("weight_decay", 0.0, "trainer.weight_decay=0.0"),
    ("warmup_steps", 0, "trainer.warmup_steps=0"),
    ("warmup_steps", 0, "trainer.warmup_ratio=0.0"),  # hf_trainer.py passes warmup_steps or warmup_ratio
    ("lr_scheduler_type", "linear", "trainer.scheduler=linear"),
    ("max_grad_norm", 1.0, "trainer.max_grad_norm=1.0"),
    ("per_device_eval_batch_size", 8, "trainer.per_device_eval_batch_size=8"),
    ("gradient_accumulation_steps", 1, "trainer.gradient_accumulation_steps=1"),
    ("dataloader_num_workers", 0, "trainer.dataloader_num_workers=0"),
    ("seed", 42, "trainer.seed=42"),
]
# Plain transformers outside TrainingArguments: from_pretrained's attention (SDPA) and, given a tokenizer, the
# Trainer's DataCollatorWithPadding (dynamic padding).
TRANSFORMERS_DEFAULTS = ["model.attn_implementation=sdpa", "collator=dynamic"]

# TrainingArguments fields the bench itself sets, for every section: not differences of the HF side's defaults.
HARNESS_FIELDS = ("output_dir", "per_device_train_batch_size", "max_steps", "logging_steps", "save_steps",
                  "save_total_limit")

# What each difference hf_trainer.py may fix (no config key undoes it) does to the comparison. The run records
# the differences it finds (``training_arguments_vs_defaults``) and prints them with these notes.
HF_DIFFERENCE_EFFECTS = {
    "optim": "the default adamw_torch_fused is one fused kernel, usually a few percent faster",
    "logging_nan_inf_filter": "the default checks every step's loss for nan/inf: a host sync per step on a GPU "
                              "(next to nothing on CPU), which the HF side here does not pay",
    "eval_strategy": "evaluation lands inside the timed steps only if --steps passes an epoch (~115 steps of full "
                     "MRPC at batch 32); our loop evaluates every epoch too",
    "do_eval": "follows eval_strategy",
    "average_tokens_across_devices": "no effect on one process",
    "data_seed": "None falls back to the seed: the same batches",
    "use_cpu": "set where there is no GPU, where plain TrainingArguments falls back to the CPU anyway",
    "dataloader_pin_memory": "follows use_cpu: pinned memory only speeds copies to a GPU",
}

# ----------------------------------------------------------------------------------------------------------
# Devices: what the run trains on, and the datasheet peak MFU is measured against.
# ----------------------------------------------------------------------------------------------------------

DATASHEET_SOURCE = "NVIDIA datasheets: dense bf16 tensor-core peak (no sparsity)"

# (GPU, pattern searched in torch.cuda.get_device_name(), case-insensitive, dense bf16 TFLOP/s). The first match
# wins, so the more specific names come first; the patterns match whole words, so "L4" does not match "L40S" and
# "H200" not "GH200". A10G (AWS G5) has no datasheet of its own: the A10's figure.
GPU_BF16_DENSE_TFLOPS = [
    ("H100 PCIe", r"\bH100\b.*\bPCIe\b", 756.0),
    ("H100 NVL", r"\bH100\b.*\bNVL\b", 835.0),
    ("H100 SXM", r"\bH100\b", 989.0),
    ("H200 NVL", r"\bH200\b.*\bNVL\b", 835.0),
    ("H200 SXM", r"\bH200\b", 989.0),
    ("A100", r"\bA100\b", 312.0),
    ("L40S", r"\bL40S\b", 362.0),
    ("L4", r"\bL4\b", 121.0),
    ("A10G", r"\bA10G\b", 125.0),
    ("A10", r"\bA10\b", 125.0),
    ("GeForce RTX 4090", r"\bRTX 4090\s*$", 165.0),
]


def datasheet_peak(device_name: str) -> Optional[Dict[str, Any]]:
    """The GPU's dense bf16 datasheet peak, or None when the table has no entry for the name."""
    for gpu, pattern, tflops in GPU_BF16_DENSE_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return {"gpu": gpu, "bf16_dense_flops_per_second": tflops * 1e12, "source": DATASHEET_SOURCE}
    return None


def cpu_model_name(cpuinfo: str) -> str:
    """The first ``model name`` in /proc/cpuinfo's text; else what ``platform`` knows."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_device() -> Dict[str, Any]:
    """What the backends train on: the GPU (by name) when CUDA is available, else the CPU model; the core count,
    and the datasheet peak that applies (GPUs in GPU_BF16_DENSE_TFLOPS only)."""
    import torch

    cores = os.cpu_count()
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return {"type": "cuda", "name": name, "gpus": torch.cuda.device_count(), "cpu_cores": cores,
                "datasheet": datasheet_peak(name)}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    return {"type": "cpu", "name": cpu_model_name(cpuinfo), "gpus": 0, "cpu_cores": cores, "datasheet": None}


def device_text(device: Dict[str, Any]) -> str:
    if device["type"] == "cuda":
        gpus = f"{device['gpus']} GPU{'s' if device['gpus'] != 1 else ''}"
        return f"{device['name']} (cuda: {gpus} visible, training on GPU 0; {device['cpu_cores']} CPU cores)"
    return f"{device['name']} (cpu, {device['cpu_cores']} cores)"


# ----------------------------------------------------------------------------------------------------------
# Variants: name -> overrides on top of its base (VARIANT_BASE; default the MiniLM base).
# ----------------------------------------------------------------------------------------------------------

VARIANT_OVERRIDES: Dict[str, List[str]] = {
    "ours": ["trainer=accelerate"],
    "hf": ["trainer=hf_trainer"],
    "ours_bf16": ["trainer=accelerate", "trainer.mixed_precision=bf16"],
    "dynamic_grouped": ["trainer=accelerate", "trainer.group_by_length=true"],
    "static128": ["trainer=accelerate", "collator=static", f"tokenizer.max_length={STATIC_LENGTH}"],
    "causal_ours": ["trainer=accelerate"],
    "causal_hf": ["trainer=hf_trainer"],
    "defaults_ours": ["trainer=accelerate"],
    "defaults_hf": ["trainer=hf_trainer", *TRANSFORMERS_DEFAULTS,
                    *dict.fromkeys(override for _, _, override in TRAINING_ARGUMENTS_DEFAULTS)],
    "profile_defaults": ["trainer=accelerate"],
    **{f"choice_{precision}_{attention}": ["trainer=accelerate", f"trainer.mixed_precision={setting}",
                                           f"model.attn_implementation={attention}"]
       for precision, setting in (("fp32", "no"), ("bf16", "bf16")) for attention in ("sdpa", "eager")},
}

VARIANT_LABELS = {
    "ours": "accelerate loop, dynamic, fp32",
    "hf": "HF Trainer, dynamic, fp32",
    "ours_bf16": "accelerate loop, dynamic, bf16",
    "dynamic_grouped": "accelerate loop, dynamic + group_by_length, fp32",
    "static128": f"accelerate loop, static {STATIC_LENGTH}, fp32",
    "causal_ours": "accelerate loop, SmolLM2 + LoRA, 256-token blocks",
    "causal_hf": "HF Trainer + peft, SmolLM2 + LoRA, 256-token blocks",
    "defaults_ours": "accelerate loop, our config defaults",
    "defaults_hf": "HF Trainer, TrainingArguments defaults (fp32)",
    "profile_defaults": "accelerate loop, our config defaults, under torch.profiler",
    **{f"choice_{precision}_{attention}": f"accelerate loop, {precision}, {attention} attention"
       for precision in ("fp32", "bf16") for attention in ("sdpa", "eager")},
}

# Which base a variant's overrides go on top of (see variant_overrides).
VARIANT_BASE = {"causal_ours": "causal", "causal_hf": "causal", "defaults_ours": "defaults",
                "defaults_hf": "defaults", "profile_defaults": "defaults"}
MINILM_BASES = ("minilm", "defaults")  # the bases on MRPC (or their stand-in when the mirror lacks it)

SECTION_VARIANTS = {
    "loop_vs_hf": ["ours", "hf"],
    "padding": ["static128", "ours", "dynamic_grouped"],
    "precision": ["ours", "ours_bf16"],
    "utilisation": ["ours", "ours_bf16"],
    "causal_lora": ["causal_ours", "causal_hf"],
    "defaults": ["defaults_ours", "defaults_hf"],
    "profile": ["profile_defaults"],
    "choices": ["choice_fp32_sdpa", "choice_fp32_eager", "choice_bf16_sdpa", "choice_bf16_eager"],
    "padding_share": [],  # no training: measured in this process (padding_share_rows)
}


def base_overrides(args: argparse.Namespace, dataset: str) -> List[str]:
    """What every variant shares: model, data, batch, steps, seed; no trackers, no saved model."""
    overrides = [
        "model=minilm",
        f"dataset={dataset}",
        "collator=dynamic",
        "logger=none",
        f"paths.mirror={args.mirror}",
        f"tokenizer.max_length={STATIC_LENGTH}",
        "trainer.save_model=false",
        f"trainer.max_steps={args.steps}",
        f"trainer.per_device_batch_size={args.batch_size}",
        "trainer.gradient_accumulation_steps=1",
        "trainer.mixed_precision=no",
        "trainer.group_by_length=false",
        f"trainer.log_every_n_steps={args.steps}",
        # No resumable checkpoint inside the run (our loop then skips save_state; the Trainer still saves
        # once at the end, after its last optimizer step, so outside the steady window).
        f"trainer.save_steps={args.steps + 1}",
        "trainer.seed=42",
    ]
    if args.max_train_samples:
        overrides.append(f"dataset.max_train_samples={args.max_train_samples}")
    if args.max_eval_samples:
        overrides.append(f"dataset.max_eval_samples={args.max_eval_samples}")
    return overrides


def defaults_base_overrides(args: argparse.Namespace, dataset: str) -> List[str]:
    """The ``defaults`` base: the MiniLM base without the keys in LEFT_TO_CONF, so our side trains at conf/'s
    defaults for them; the harness keys (model, data, batch, steps, seed, no trackers, no saved model, one forward
    per step for the clock) stay."""
    return [o for o in base_overrides(args, dataset) if o.split("=", 1)[0] not in LEFT_TO_CONF]


def causal_base_overrides(args: argparse.Namespace) -> List[str]:
    """The causal_lora base: the bbc_smollm2_clm preset (SmolLM2-135M-Instruct GGUF, LoRA r=16 on q/k/v/o,
    256-token blocks of BBC news) with the bench's steps, batch and seed; no trackers, no saved model, no
    step-0 eval, a small final eval. Precision: ``auto`` (the preset's default) for both backends."""
    overrides = [
        f"experiment={CAUSAL_PRESET}",
        "logger=none",
        f"paths.mirror={args.mirror}",
        "trainer.save_model=false",
        "trainer.eval_before_training=false",
        f"trainer.max_steps={args.steps}",
        f"trainer.per_device_batch_size={args.causal_batch_size}",
        f"trainer.per_device_eval_batch_size={CAUSAL_EVAL_SAMPLES}",
        "trainer.gradient_accumulation_steps=1",
        "trainer.mixed_precision=auto",
        "trainer.group_by_length=false",
        f"trainer.log_every_n_steps={args.steps}",
        f"trainer.save_steps={args.steps + 1}",  # as the MiniLM base: no checkpoint inside the steady window
        "trainer.seed=42",
        f"dataset.max_eval_samples={CAUSAL_EVAL_SAMPLES}",
    ]
    if args.max_train_samples:
        overrides.append(f"dataset.max_train_samples={args.max_train_samples}")
    return overrides


def base_of(variant: str) -> str:
    return VARIANT_BASE.get(variant, "minilm")


def variant_overrides(variant: str, bases: Dict[str, List[str]]) -> List[str]:
    """The variant's full override list: its base, then its own overrides (later ones win)."""
    return bases[base_of(variant)] + VARIANT_OVERRIDES[variant]


# ----------------------------------------------------------------------------------------------------------
# Worker: one variant in this (fresh) process.
# ----------------------------------------------------------------------------------------------------------

def non_embedding_params(model) -> int:
    """Parameters every token pays 6 FLOPs each for (forward + backward): all but the embedding tables, whose
    names contain "embed" (BERT ``embeddings.*``: the same count as the loop's estimate; Llama
    ``embed_tokens``, which the loop's "embeddings" test misses). A tied LM head shares the embedding's tensor
    and is listed once, under ``embed_tokens``, so it is left out too (as in Kaplan et al.'s N). Under LoRA
    the frozen weights get no weight gradients (~4N, not 6N, per token): the 6N figure is an upper bound."""
    return sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)


class StepClock:
    """Times every optimizer step and counts the samples/tokens of every training forward pass.

    Uses PyTorch's global hooks, so it sees any backend without touching its code: the optimizer-step
    post-hook gives the end time of each step; the module forward hooks pick the outermost module call
    (nesting depth 0) in training mode that receives ``labels`` and record the batch shape. Outermost,
    because a peft model passes ``labels`` down: ``PeftModelForCausalLM`` -> ``LoraModel`` ->
    ``LlamaForCausalLM`` are three labelled calls per step, of which only the first is the model call.

    On CUDA (``cuda=None``: whenever CUDA is available) the hook also records a CUDA event on the current stream,
    behind the step's kernels; ``step_times`` reads the events after a synchronize (see there).
    """

    def __init__(self, cuda: Optional[bool] = None) -> None:
        self.cuda = cuda
        self._events: List[Any] = []  # CUDA: one timing event per optimizer step
        self.step_ends: List[float] = []  # host clock at each optimizer step's hook
        self.batches: List[tuple] = []  # (batch size, padded sequence length) per training forward
        self.model_shape: Optional[Dict[str, int]] = None
        self.model_class: Optional[str] = None  # the class of the module whose calls were counted
        self._handles: List[Any] = []
        self._depth = 0  # module calls in progress

    def __enter__(self) -> "StepClock":
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
        from torch.optim.optimizer import register_optimizer_step_post_hook

        if self.cuda is None:
            import torch

            self.cuda = torch.cuda.is_available()
        self._handles = [register_optimizer_step_post_hook(self._on_step),
                         register_module_forward_pre_hook(self._on_enter),
                         register_module_forward_hook(self._on_forward, with_kwargs=True)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()

    def _on_step(self, optimizer, args, kwargs) -> None:
        self.step_ends.append(time.perf_counter())
        if self.cuda:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._events.append(event)

    def step_times(self) -> List[float]:
        """End time (s) of every optimizer step. On CUDA the hook runs when the step's kernels are queued, not
        done, so the host clock would time their launch: there each end is the CUDA event recorded behind the
        step's kernels, read once after a ``torch.cuda.synchronize()`` (offset to the host clock's first end).
        No synchronize per step: the clock does not stall the pipelining it measures."""
        if not self._events:
            return list(self.step_ends)
        import torch

        torch.cuda.synchronize()
        first = self._events[0]
        return [self.step_ends[0] + first.elapsed_time(event) / 1e3 for event in self._events]

    def _on_enter(self, module, args) -> None:
        self._depth += 1

    def _on_forward(self, module, args, kwargs, output) -> None:
        self._depth -= 1
        if self._depth > 0 or not module.training or "labels" not in kwargs or kwargs.get("input_ids") is None:
            return
        batch, length = kwargs["input_ids"].shape[:2]
        self.batches.append((int(batch), int(length)))
        if self.model_shape is None:
            config = getattr(module, "config", None)
            self.model_class = type(module).__name__
            self.model_shape = {
                "non_embedding_params": non_embedding_params(module),
                "layers": int(getattr(config, "num_hidden_layers", 0) or 0),
                "hidden": int(getattr(config, "hidden_size", 0) or 0),
            }

    def steady(self) -> Dict[str, Any]:
        """Throughput over steps 2..N (step 1 is warm-up), from the same clock for every backend."""
        shape = self.model_shape or {"non_embedding_params": 0, "layers": 0, "hidden": 0}
        ends = self.step_times()
        steps = len(ends)
        out: Dict[str, Any] = {"steps_seen": steps, "forwards_seen": len(self.batches)}
        if steps < 2 or len(self.batches) != steps:
            return out  # needs >= 2 steps and one forward per step (gradient accumulation 1)
        window = self.batches[1:]
        seconds = ends[-1] - ends[0]
        samples = sum(b for b, _ in window)
        tokens = sum(b * s for b, s in window)
        # 6 x non-embedding params x tokens: forward 2 FLOPs per weight per token, backward 4.
        flops_6n = 6.0 * shape["non_embedding_params"] * tokens
        # What 6N leaves out: the attention score and value matmuls (QK^T and AV, 4*s*d FLOPs per token per
        # layer forward, x3 with backward), which grow with the padded length s.
        flops_attention = 12.0 * shape["layers"] * shape["hidden"] * sum(b * s * s for b, s in window)
        out.update({
            "seconds": seconds,
            "samples": samples,
            "tokens": tokens,
            "samples_per_second": samples / seconds,
            # Robust to bursts of load from other processes on a shared CPU: the median step's rate.
            "samples_per_second_median_step": statistics.median(
                b / (t1 - t0) for (b, _), t0, t1 in zip(window, ends, ends[1:])),
            "tokens_per_second": tokens / seconds,
            "tokens_per_second_median_step": statistics.median(
                b * s / (t1 - t0) for (b, s), t0, t1 in zip(window, ends, ends[1:])),
            "flops_per_second_6n": flops_6n / seconds,
            "attention_flops_fraction": flops_attention / flops_6n if flops_6n else 0.0,
            "mean_padded_length": tokens / samples,
            "step_seconds": [b - a for a, b in zip(ends, ends[1:])],
        })
        return out

    def total_tokens(self) -> int:
        return sum(b * s for b, s in self.batches)


# The profile section: where a training step's time goes, per class of operator (torch.profiler's self CPU time
# of every aten op over steps 3..N, warm-up excluded), first pattern that matches an op's name wins.
PROFILED = ("profile_defaults",)
OP_CLASSES = (
    ("normalisation", ("layer_norm", "rms_norm")),
    ("optimizer", ("adam", "_foreach_", "clip_grad", "linalg_vector_norm")),
    ("attention", ("scaled_dot_product", "flash_attention", "_efficient_attention", "softmax")),
    ("matmul", ("mm", "addmm", "bmm", "matmul", "linear", "mkldnn")),
    ("activation", ("gelu", "tanh", "relu", "silu")),
    ("loss", ("cross_entropy", "nll_loss", "log_softmax")),
    ("embedding", ("embedding", "index_select")),
    ("dropout masks", ("bernoulli", "native_dropout", "dropout")),
    ("copies and casts", ("copy_", "_to_copy", "to", "clone", "contiguous", "cat", "fill_", "zero_", "empty")),
    ("elementwise", ("add", "mul", "div", "sub", "where", "masked_fill", "sum", "mean", "rsub")),
)


def op_class(name: str) -> str:
    """An aten op's class: a pattern of 4+ letters anywhere in its name, a shorter one as the whole name or its
    stem (``add``, ``add_``, ``add_backward``)."""
    bare = name.split("::")[-1]

    def matches(part: str) -> bool:
        return part in bare if len(part) > 3 else bare == part or bare.startswith(part + "_")

    return next((label for label, parts in OP_CLASSES if any(matches(part) for part in parts)), "other")


class OpProfile:
    """torch.profiler over optimizer steps 3..N of a run (advanced by a global optimizer-step hook, like
    StepClock), when ``enabled``; :meth:`summary` is the self CPU time per op class and the top ops."""

    def __init__(self, steps: int, enabled: bool) -> None:
        self.enabled = enabled and steps >= 3
        self.steps, self._profiler, self._handle, self._started = steps, None, None, 0.0

    def __enter__(self) -> "OpProfile":
        if self.enabled:
            from torch.optim.optimizer import register_optimizer_step_post_hook
            from torch.profiler import ProfilerActivity, profile, schedule

            self._profiler = profile(activities=[ProfilerActivity.CPU],
                                     schedule=schedule(wait=1, warmup=1, active=self.steps - 2, repeat=1))
            self._profiler.__enter__()
            self._handle = register_optimizer_step_post_hook(self._on_step)
        return self

    def _on_step(self, *args: Any) -> None:
        self._profiler.step()

    def __exit__(self, *exc: Any) -> None:
        if self._profiler is not None:
            self._handle.remove()
            self._profiler.__exit__(*exc)

    def summary(self) -> Optional[Dict[str, Any]]:
        if self._profiler is None:
            return None
        ops = [(e.key, e.self_cpu_time_total / 1e6) for e in self._profiler.key_averages() if e.key.startswith("aten::")]
        total = sum(seconds for _, seconds in ops) or 1.0
        classes: Dict[str, float] = {}
        for name, seconds in ops:
            classes[op_class(name)] = classes.get(op_class(name), 0.0) + seconds
        ranked = sorted(classes.items(), key=lambda item: -item[1])
        return {"steps": self.steps - 2, "op_seconds": total,
                "classes": {label: {"seconds": secs, "share": secs / total} for label, secs in ranked},
                "top_ops": [{"op": name, "seconds": secs, "share": secs / total}
                            for name, secs in sorted(ops, key=lambda item: -item[1])[:12]]}


def speed_settings(typed) -> Dict[str, Any]:
    """The composed config's keys that the defaults section compares (as set, before ``auto`` resolves)."""
    t = typed.trainer
    return {"trainer.mixed_precision": t.mixed_precision, "trainer.group_by_length": t.group_by_length,
            "trainer.compile": getattr(t, "compile", None),
            "model.attn_implementation": getattr(typed.model, "attn_implementation", None),
            "collator": typed.collator.name, "tokenizer.max_length": typed.tokenizer.max_length,
            "trainer.lr": t.lr, "trainer.weight_decay": t.weight_decay, "trainer.warmup_ratio": t.warmup_ratio,
            "trainer.warmup_steps": t.warmup_steps, "trainer.scheduler": t.scheduler,
            "trainer.per_device_eval_batch_size": t.per_device_eval_batch_size,
            "trainer.dataloader_num_workers": t.dataloader_num_workers}


def training_arguments_vs_defaults(typed, run_dir: Path) -> Dict[str, Dict[str, Any]]:
    """Every field where the TrainingArguments hf_trainer.py builds for this config differ from plain
    ``TrainingArguments()``: ``{field: {"ours": value, "default": value}}`` (the harness fields left out)."""
    import dataclasses

    from transformers import TrainingArguments

    from experiments.train.hf_trainer import training_arguments

    ours, plain = training_arguments(typed, run_dir), TrainingArguments(output_dir=str(run_dir))
    differences = {}
    for field in dataclasses.fields(TrainingArguments):
        mine, default = _plain(getattr(ours, field.name, None)), _plain(getattr(plain, field.name, None))
        if mine != default and field.name not in HARNESS_FIELDS:
            differences[field.name] = {"ours": mine, "default": default}
    return differences


def _plain(value: Any) -> Any:
    """A JSON-ready form: enums as their value, other objects as text."""
    value = getattr(value, "value", value)
    return value if value is None or isinstance(value, (str, int, float, bool, list, dict)) else str(value)


def run_worker(spec_path: Path) -> int:
    """Run one variant (spec: name, overrides, threads, run_dir, out) and write its result as JSON."""
    spec = json.loads(spec_path.read_text())
    import torch

    torch.set_num_threads(int(spec["threads"]))
    from experiments.config.validate import compose, to_typed

    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    from experiments.train import train  # the same backend dispatch as `python run.py`

    typed = to_typed(compose(spec["overrides"], output_dir=str(run_dir)))
    wall = time.perf_counter()
    with StepClock() as clock, OpProfile(typed.trainer.max_steps, spec["name"] in PROFILED) as profile:
        payload = train(typed, run_dir)
    wall = time.perf_counter() - wall
    final = payload.get("final", {})
    result = {
        "name": spec["name"],
        "overrides": spec["overrides"],
        "backend": payload.get("backend"),
        "mixed_precision": payload.get("mixed_precision"),
        "torch_threads": torch.get_num_threads(),
        "wall_s": wall,
        "num_train_samples": payload.get("num_train_samples"),
        "num_eval_samples": payload.get("num_eval_samples"),
        "reported": {k: final.get(k) for k in ("train_samples_per_second", "train_runtime_s",
                                               "train_flops_per_second", "global_step", "train_loss")},
        "eval": {k: v for k, v in final.items() if k.startswith("eval_") and "runtime" not in k
                 and "per_second" not in k},
        "settings": speed_settings(typed),
        "resolved": payload.get("speed"),  # the run record's speed choices (auto resolved), where it has them
        "training_arguments_vs_defaults": (training_arguments_vs_defaults(typed, run_dir)
                                           if typed.trainer.backend == "hf_trainer" else None),
        "steady": clock.steady(),
        "model_shape": clock.model_shape,
        "model_class": clock.model_class,
        "total_tokens": clock.total_tokens(),
        "profile": profile.summary(),
    }
    Path(spec["out"]).write_text(json.dumps(result, indent=2))
    return 0


# ----------------------------------------------------------------------------------------------------------
# Parent: matmul peaks, orchestration, table.
# ----------------------------------------------------------------------------------------------------------

def training_device() -> str:
    """Where the backends train: Accelerate and the Trainer both take the GPU when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def matmul_size(device: str) -> int:
    return MATMUL_SIZE_CUDA if device == "cuda" else MATMUL_SIZE


def matmul_peak(threads: int, size: Optional[int] = None, seconds: float = 2.0) -> Dict[str, float]:
    """FLOP/s of a size x size matmul (default ``matmul_size`` of the device) in fp32 and bf16 on ``threads``
    threads (best of timed rounds), on the device the training runs on. On CUDA each timed round starts and
    ends with a ``torch.cuda.synchronize()``, so it times the kernels, not their launch."""
    import torch

    torch.set_num_threads(threads)
    device = training_device()
    size = size or matmul_size(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(size, size, dtype=dtype, device=device)
        b = torch.randn(size, size, dtype=dtype, device=device)
        for _ in range(2):
            a @ b
        sync()
        best, spent = 0.0, 0.0
        while spent < seconds:
            tic = time.perf_counter()
            for _ in range(3):
                a @ b
            sync()
            elapsed = time.perf_counter() - tic
            spent += elapsed
            best = max(best, 3 * 2.0 * size ** 3 / elapsed)
        peaks[name] = best
        del a, b
    if device == "cuda":
        torch.cuda.empty_cache()  # the workers train on the same GPU
    return peaks


def run_variant(name: str, overrides: List[str], threads: int, workdir: Path, index: int) -> Dict[str, Any]:
    """One variant in a fresh process; its run dir is removed afterwards (checkpoints are large)."""
    run_dir = workdir / f"{index:02d}-{name}"
    spec = {"name": name, "overrides": overrides, "threads": threads, "run_dir": str(run_dir),
            "out": str(workdir / f"{index:02d}-{name}.json")}
    spec_path = workdir / f"{index:02d}-{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               TOKENIZERS_PARALLELISM="false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)],
                          env=env, cwd=str(REPO), capture_output=True, text=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"variant '{name}' failed (exit {proc.returncode}):\n{tail}")
    return json.loads(Path(spec["out"]).read_text())


def median_or_none(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(present) if present else None


def summarise(name: str, repeats: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Median over repeats of the figures the table shows."""
    steady = [r["steady"] for r in repeats]
    return {
        "name": name,
        "label": VARIANT_LABELS[name],
        "repeats": len(repeats),
        "torch_threads": sorted({r["torch_threads"] for r in repeats}),
        "steady_samples_per_second": median_or_none([s.get("samples_per_second") for s in steady]),
        "steady_samples_per_second_each": [s.get("samples_per_second") for s in steady],
        "median_step_samples_per_second": median_or_none([s.get("samples_per_second_median_step") for s in steady]),
        "steady_tokens_per_second": median_or_none([s.get("tokens_per_second") for s in steady]),
        "steady_tokens_per_second_each": [s.get("tokens_per_second") for s in steady],
        "median_step_tokens_per_second": median_or_none([s.get("tokens_per_second_median_step") for s in steady]),
        "steady_flops_per_second_6n": median_or_none([s.get("flops_per_second_6n") for s in steady]),
        "attention_flops_fraction": median_or_none([s.get("attention_flops_fraction") for s in steady]),
        "mean_padded_length": median_or_none([s.get("mean_padded_length") for s in steady]),
        "reported_samples_per_second": median_or_none([r["reported"]["train_samples_per_second"] for r in repeats]),
        "reported_flops_per_second": median_or_none([r["reported"]["train_flops_per_second"] for r in repeats]),
        "eval_accuracy": median_or_none([r["eval"].get("eval_accuracy") for r in repeats]),
        "eval_perplexity": median_or_none([r["eval"].get("eval_perplexity") for r in repeats]),
        "mixed_precision": sorted({str(r["mixed_precision"]) for r in repeats}),
        "eval": repeats[-1]["eval"],
        "settings": repeats[-1].get("settings"),
        "resolved": repeats[-1].get("resolved"),
        "training_arguments_vs_defaults": repeats[-1].get("training_arguments_vs_defaults"),
        "flop_count_check": flop_count_check(repeats[-1]),
        "profile": repeats[-1].get("profile"),
        "runs": repeats,
    }


# Is the loop's ``train_flops_per_second`` (6 x non-embedding params x tokens / train time) sound? Checked:
# * 6N per token is the weight-matmul cost of a dense transformer: 2N forward, 4N backward (grads w.r.t.
#   inputs and weights). Excluding the embedding tables is right: a lookup is a gather, not a matmul.
# * It leaves out the attention score/value matmuls (12 x layers x hidden x s per token, fwd + bwd): the run
#   prints that share; for MiniLM on MRPC (s ~ 80, hidden 384, N ~ 10.8M) it is ~3-6 %, so 6N under-counts
#   slightly. The pooler (one token per sequence) is counted for every token: ~1.4 % over-count. These
#   nearly cancel; the estimate is sound to a few percent.
# * Tokens are ``input_ids.numel()``, i.e. padded tokens: right for hardware utilisation (the CPU multiplies
#   the padding too), but not "useful" FLOPs; compare padding variants on samples/s, not on FLOP/s.
# * The loop's train time excludes evaluation and checkpoints but includes step 1 (warm-up) and data
#   loading, so its figure sits slightly under the ``steady`` one printed beside it.
# ``flop_count_check`` confirms the loop counts exactly 6N x the tokens our own clock saw (1.000).
def flop_count_check(result: Dict[str, Any]) -> Optional[float]:
    """Loop's FLOP count (flops/s x train time) / our recount 6 x N x tokens of every step: 1.0 if consistent."""
    reported = result["reported"]
    shape = result.get("model_shape") or {}
    if not reported.get("train_flops_per_second") or not reported.get("train_runtime_s") or not shape:
        return None
    recount = 6.0 * shape["non_embedding_params"] * result["total_tokens"]
    return reported["train_flops_per_second"] * reported["train_runtime_s"] / recount if recount else None


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def ratios(runs: Dict[str, Dict[str, Any]], a: str, b: str, unit: str = "samples") -> Dict[str, Optional[float]]:
    """a/b on steady samples/s (or tokens/s), and on the median step's rate (less sensitive to load bursts)."""
    return {"ratio": ratio(runs[a][f"steady_{unit}_per_second"], runs[b][f"steady_{unit}_per_second"]),
            "ratio_median_step": ratio(runs[a][f"median_step_{unit}_per_second"],
                                       runs[b][f"median_step_{unit}_per_second"])}


def build_sections(sections: List[str], runs: Dict[str, Dict[str, Any]], peaks: Optional[Dict[str, float]],
                   skipped: Dict[str, str], shares: Optional[List[Dict[str, Any]]] = None,
                   device: Optional[Dict[str, Any]] = None,
                   matmul_size: int = MATMUL_SIZE) -> Dict[str, Dict[str, Any]]:
    """Rows and the headline ratio of every requested section (``device``: ``describe_device()``, for MFU)."""
    out: Dict[str, Dict[str, Any]] = {}
    for section in sections:
        if section in skipped:
            out[section] = {"skipped": skipped[section]}
            continue
        if section == "padding_share":
            out[section] = {"families": shares or []}
            continue
        rows = [runs[v] for v in SECTION_VARIANTS[section]]
        if section == "loop_vs_hf":
            out[section] = {"rows": rows, "ratio_name": "ours/HF", **ratios(runs, "ours", "hf")}
        elif section == "defaults":
            out[section] = {"rows": rows, **defaults_section(runs)}
        elif section == "padding":
            out[section] = {"rows": rows, "ratio_name": "dynamic+grouped/static",
                            **ratios(runs, "dynamic_grouped", "static128"),
                            "ratio_dynamic_ungrouped": ratios(runs, "ours", "static128")["ratio"]}
        elif section == "precision":
            out[section] = {"rows": rows, "ratio_name": "bf16/fp32", **ratios(runs, "ours_bf16", "ours"),
                            "eval_accuracy": {"fp32": runs["ours"]["eval_accuracy"],
                                              "bf16": runs["ours_bf16"]["eval_accuracy"]}}
        elif section == "utilisation":
            out[section] = {"rows": rows, **utilisation_section(runs, peaks, device, matmul_size)}
        elif section == "profile":
            out[section] = {"rows": rows, "profile": runs["profile_defaults"]["profile"],
                            "resolved": runs["profile_defaults"]["resolved"]}
        elif section == "choices":
            out[section] = {"rows": rows, **choices_section(runs)}
        elif section == "causal_lora":
            out[section] = {"rows": rows, "ratio_name": "ours/HF tokens/s",
                            **ratios(runs, "causal_ours", "causal_hf", unit="tokens"),
                            "mixed_precision": {"setting": "auto",
                                                "ours": runs["causal_ours"]["mixed_precision"],
                                                "hf": runs["causal_hf"]["mixed_precision"]}}
    return out


# ----------------------------------------------------------------------------------------------------------
# The choices section: the training decisions of experiments/hardware_table.yaml, measured on this machine.
# ----------------------------------------------------------------------------------------------------------

def choices_section(runs: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Each training decision's winner on this machine: the alternative (bf16 autocast; eager attention) where it
    ran at least the table's ``margin`` faster than the conservative value, else the conservative value."""
    from experiments import hardware

    table = hardware.load_table()
    margin, conservative = table["margin"], table["conservative"]
    rate = {name[len("choice_"):]: runs[name]["steady_samples_per_second"] for name in SECTION_VARIANTS["choices"]}

    def pick(decision: str, alternative: str, faster: Optional[float], baseline: Optional[float],
             what: str) -> Dict[str, Any]:
        measured = ratio(faster, baseline)
        wins = measured is not None and measured >= 1 + margin
        return {"choice": alternative if wins else conservative[decision], "ratio": measured,
                "figures": f"{what} {fmt(measured, '.2f', 'x')} the steady samples/s "
                           f"({fmt(faster)} vs {fmt(baseline)}; winner needs >= {1 + margin:.2f}x)"}

    best = {p: max((rate[f"{p}_{a}"] or 0.0) for a in ("sdpa", "eager")) or None for p in ("fp32", "bf16")}
    return {"hardware": hardware.hardware_class(training_device()), "margin": margin, "decisions": {
        "mixed_precision": pick("mixed_precision", "bf16", best["bf16"], best["fp32"],
                                "bf16 autocast vs fp32 (the faster attention of each):"),
        "attention_half_training": pick("attention_half_training", "eager", rate["bf16_eager"],
                                        rate["bf16_sdpa"], "eager vs SDPA attention, bf16 training:"),
        "attention": pick("attention", "eager", rate["fp32_eager"], rate["fp32_sdpa"],
                          "eager vs SDPA attention, fp32 training:"),
    }}


# --check: each section's target on the machine the bench runs on (docs/speed.md); (key, least value).
TARGETS = {"defaults": ("ratio", 2.0), "loop_vs_hf": ("ratio", 1.0), "causal_lora": ("ratio", 1.0)}
UTILISATION_TARGET = 0.5  # training FLOP/s / the measured matmul peak, in the precision the defaults train in


def check_targets(sections: Dict[str, Dict[str, Any]]) -> List[str]:
    """One line per target a measured section falls below (skipped sections are not checked)."""
    from experiments import hardware

    failures = []
    for name, (key, target) in TARGETS.items():
        data = sections.get(name) or {"skipped": "not run"}
        if "skipped" not in data and (data.get(key) is None or data[key] < target):
            failures.append(f"{name}: {key} {fmt(data.get(key), '.2f')} < {target}")
    util = sections.get("utilisation") or {"skipped": "not run"}
    if "skipped" not in util:
        precision = "bf16" if hardware.mixed_precision("auto") == "bf16" else "fp32"
        value = util["utilisation"][precision]["utilisation_steady"]
        if value is None or value < UTILISATION_TARGET:
            failures.append(f"utilisation: {precision} training at {fmt(_pct(value), '.0f', ' %')} of the measured "
                            f"{precision} matmul peak < {UTILISATION_TARGET:.0%}")
    return failures


def isa_caps() -> str:
    """The ISA caps this run was under (oneDNN, ATen, MKL), as the machine's description must say."""
    names = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
    caps = [f"{name}={os.environ[name]}" for name in names if os.environ.get(name)]
    return f" under {' '.join(caps)}" if caps else ""


def record_choices(section: Dict[str, Any], meta: Dict[str, Any], command: str, path: Optional[Path] = None) -> Path:
    """Write the choices section's winners into the hardware table under this machine's kind, each with the
    machine, the date, the command and the figures; the table's leading comment block is kept."""
    import yaml

    from experiments import hardware
    from experiments.files import atomic_write

    path = path or hardware.TABLE_PATH
    text = path.read_text(encoding="utf-8")
    header = "".join(line for line in text.splitlines(keepends=True)[:_comment_lines(text)])
    table = yaml.safe_load(text)
    kind = table.setdefault("classes", {}).setdefault(section["hardware"], {})
    kind.setdefault("describes", f"measured on {meta['device_name']}")
    measured = kind.get("measured") or {}
    machine = device_text(meta["device_info"]) + isa_caps()
    for decision, result in section["decisions"].items():
        measured[decision] = {"choice": result["choice"], "machine": machine, "date": time.strftime("%Y-%m-%d"),
                              "command": command,
                              "figures": f"{result['figures']}; MiniLM on {meta['dataset']}, batch "
                                         f"{meta['batch_size']}, {meta['steps']} steps, median of {meta['repeats']}"}
    kind["measured"] = measured
    atomic_write(path, header + "\n" + yaml.safe_dump(table, sort_keys=False, width=110, allow_unicode=True))
    return path


def _comment_lines(text: str) -> int:
    """How many lines the table's leading comment block takes."""
    lines = text.splitlines()
    return next((i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")), len(lines))


def defaults_section(runs: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Our loop at conf/ defaults vs the Trainer at TrainingArguments defaults: samples/s, ratio, accuracy,
    the precision each ran in and the settings each was composed with."""
    ours, hf = runs["defaults_ours"], runs["defaults_hf"]
    return {
        "ratio_name": "our defaults/HF defaults",
        **ratios(runs, "defaults_ours", "defaults_hf"),
        "samples_per_second": {"ours": ours["steady_samples_per_second"], "hf": hf["steady_samples_per_second"]},
        "eval_accuracy": {"ours": ours["eval_accuracy"], "hf": hf["eval_accuracy"]},
        "mixed_precision": {"ours": ours["mixed_precision"], "hf": hf["mixed_precision"]},
        "settings": {"ours": ours.get("settings"), "hf": hf.get("settings")},
        "resolved": {"ours": ours.get("resolved"), "hf": hf.get("resolved")},
        "hf_vs_training_arguments_defaults": {
            field: {**values, "effect": HF_DIFFERENCE_EFFECTS.get(field, "not annotated")}
            for field, values in (hf.get("training_arguments_vs_defaults") or {}).items()},
    }


def utilisation_section(runs: Dict[str, Dict[str, Any]], peaks: Dict[str, float],
                        device: Optional[Dict[str, Any]], matmul_size: int) -> Dict[str, Any]:
    """Achieved 6N FLOP/s of the fp32 and bf16 runs as a fraction of the measured matmul peak of the same
    precision, and (MFU) of the GPU's dense bf16 datasheet peak when one applies."""
    datasheet = (device or {}).get("datasheet")
    datasheet_flops = datasheet["bf16_dense_flops_per_second"] if datasheet else None
    util = {}
    for precision, variant in (("fp32", "ours"), ("bf16", "ours_bf16")):
        run = runs[variant]
        util[precision] = {
            "variant": variant,
            "matmul_size": matmul_size,
            "matmul_peak_flops_per_second": peaks[precision],
            "reported_flops_per_second": run["reported_flops_per_second"],
            "steady_flops_per_second": run["steady_flops_per_second_6n"],
            "utilisation_reported": ratio(run["reported_flops_per_second"], peaks[precision]),
            "utilisation_steady": ratio(run["steady_flops_per_second_6n"], peaks[precision]),
            "mfu_reported": ratio(run["reported_flops_per_second"], datasheet_flops),
            "mfu_steady": ratio(run["steady_flops_per_second_6n"], datasheet_flops),
            "attention_flops_fraction": run["attention_flops_fraction"],
            "flop_count_check": run["flop_count_check"],
        }
    return {"ratio_name": "utilisation", "utilisation": util, "datasheet": datasheet,
            "measured_bf16_matmul_of_datasheet": ratio(peaks["bf16"], datasheet_flops),
            "mfu_note": None if datasheet else no_datasheet_reason(device)}


def no_datasheet_reason(device: Optional[Dict[str, Any]]) -> str:
    if not device:
        return "no datasheet peak applies: the device is unknown"
    if device["type"] != "cuda":
        return f"no datasheet peak applies to a CPU ({device['name']})"
    known = ", ".join(gpu for gpu, _, _ in GPU_BF16_DENSE_TFLOPS)
    return f"no datasheet peak known for {device['name']} (the table has: {known})"


def fmt(value: Optional[float], spec: str = ".1f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def _eval_cell(row: Dict[str, Any]) -> str:
    """The eval column: accuracy (classification) or perplexity (language models)."""
    if row.get("eval_accuracy") is not None:
        return fmt(row["eval_accuracy"], ".4f")
    if row.get("eval_perplexity") is not None:
        return f"ppl {row['eval_perplexity']:.2f}"
    return "n/a"


def render(meta: Dict[str, Any], sections: Dict[str, Dict[str, Any]]) -> str:
    """The printed report: one table for the training sections, one for padding_share, then the ratios."""
    lines = render_header(meta)
    training = {k: v for k, v in sections.items() if k != "padding_share"}
    if training:
        header = (f"{'section':<12} {'variant':<50} {'steady sps':>10} {'med-step':>8} {'tok/s':>8} {'reported':>9} "
                  f"{'pad len':>7} {'eval':>10}")
        lines += [header, "-" * len(header)]
    for section, data in training.items():
        if "skipped" in data:
            lines.append(f"{section:<12} skipped: {data['skipped']}")
            continue
        for row in data["rows"]:
            lines.append(f"{section:<12} {row['label']:<50} {fmt(row['steady_samples_per_second']):>10} "
                         f"{fmt(row['median_step_samples_per_second']):>8} "
                         f"{fmt(row['steady_tokens_per_second'], '.0f'):>8} "
                         f"{fmt(row['reported_samples_per_second']):>9} {fmt(row['mean_padded_length']):>7} "
                         f"{_eval_cell(row):>10}")
    if "padding_share" in sections:
        lines += ([""] if training else []) + render_shares(sections["padding_share"])
    if training:
        lines += ["", "ratios (steady samples/s; [median-step samples/s]; causal_lora: tokens/s):"]
    for section, data in training.items():
        lines += render_ratio(section, data)
    return "\n".join(lines)


def render_header(meta: Dict[str, Any]) -> List[str]:
    """The device first, then the bases and the run's settings."""
    device = device_text(meta["device_info"]) if meta.get("device_info") else meta["device"]
    lines = [f"bench_train: steps={meta['steps']} repeats={meta['repeats']}", f"device: {device}"]
    if "minilm" in meta["base_overrides"] or "defaults" in meta["base_overrides"]:
        lines.append(
            f"  MiniLM sections: model=minilm dataset={meta['dataset']} batch={meta['batch_size']} "
            f"max_train_samples={meta['max_train_samples']} max_eval_samples={meta['max_eval_samples']}")
    if "defaults" in meta["base_overrides"]:
        lines.append(f"  defaults: ours = the MiniLM base less {', '.join(LEFT_TO_CONF)} (conf/'s defaults); "
                     f"HF = trainer=hf_trainer at TrainingArguments' defaults (fp32), same batch")
    if "causal" in meta["base_overrides"]:
        lines.append(
            f"  causal_lora: experiment={CAUSAL_PRESET} (SmolLM2-135M-Instruct GGUF + LoRA r=16 on q/k/v/o), "
            f"batch={meta['causal_batch_size']} x 256-token blocks, max_eval_samples={CAUSAL_EVAL_SAMPLES}, "
            f"trainer.mixed_precision=auto for both backends")
    return lines + [
        f"torch.set_num_threads({meta['threads']}) (workers reported torch threads: {meta['worker_threads']}); "
        f"cpu_count={meta['cpu_count']}; device {meta['device']}; torch {meta['torch']}; "
        f"load average before/after {meta['load_before']} / {meta['load_after']} (the CPU is shared: noisy)",
        "steady = optimizer steps 2..N (warm-up step excluded), same clock for both backends; med-step = "
        "samples/s of the median step; tok/s = steady padded tokens/s; reported = the backend's own "
        "final.train_samples_per_second (time inside training steps, first step included); "
        "eval = accuracy, or ppl = perplexity",
        "",
    ]


def render_ratio(section: str, data: Dict[str, Any]) -> List[str]:
    """A section's lines under "ratios"."""
    if "skipped" in data:
        return [f"  {section}: skipped ({data['skipped']})"]
    headline = f"{fmt(data.get('ratio'), '.2f', 'x')} [{fmt(data.get('ratio_median_step'), '.2f', 'x')}]"
    if section == "loop_vs_hf":
        return [f"  ours/HF                 = {headline}"]
    if section == "defaults":
        return render_defaults(data, headline)
    if section == "padding":
        return [f"  dynamic+grouped/static  = {headline}   "
                f"(dynamic without grouping/static = {fmt(data['ratio_dynamic_ungrouped'], '.2f', 'x')})"]
    if section == "precision":
        acc = data["eval_accuracy"]
        return [f"  bf16/fp32               = {headline}   "
                f"(eval accuracy fp32 {fmt(acc['fp32'], '.4f')}, bf16 {fmt(acc['bf16'], '.4f')})"]
    if section == "utilisation":
        return render_utilisation(data)
    if section == "profile":
        return render_profile(data)
    if section == "choices":
        return [f"  {name:<24}= {result['choice']:<6} {result['figures']}"
                for name, result in data["decisions"].items()] + [f"  (hardware kind: {data['hardware']})"]
    if section == "causal_lora":
        mp = data["mixed_precision"]
        return [f"  causal LoRA ours/HF     = {headline} tokens/s   "
                f"(trainer.mixed_precision={mp['setting']} -> ours {'/'.join(mp['ours'])}, "
                f"HF {'/'.join(mp['hf'])})"]
    return []


def render_profile(data: Dict[str, Any]) -> List[str]:
    """Share of operator time per class, then the top operators."""
    profile = data["profile"] or {}
    if not profile:
        return ["  profile: no steps profiled (needs --steps >= 3)"]
    lines = [f"  profile of our defaults over {profile['steps']} steps ({profile['op_seconds']:.2f} s of aten ops):"]
    lines += [f"    {label:<18} {100 * c['share']:5.1f} %  {c['seconds']:7.2f} s"
              for label, c in profile["classes"].items()]
    lines.append("    top ops: " + ", ".join(f"{o['op'].split('::')[-1]} {100 * o['share']:.1f} %"
                                          for o in profile["top_ops"][:8]))
    return lines


def render_defaults(data: Dict[str, Any], headline: str) -> List[str]:
    """Ratio, samples/s, accuracy and precision of each side; our side's resolved speed choices; then where the
    HF side still differs from plain TrainingArguments."""
    sps, acc, mp = data["samples_per_second"], data["eval_accuracy"], data["mixed_precision"]
    ours = (data.get("settings") or {}).get("ours") or {}
    grouping = ours.get("trainer.group_by_length")
    lines = [f"  our/HF defaults         = {headline}   "
             f"(ours {fmt(sps['ours'])} samples/s, eval accuracy {fmt(acc['ours'], '.4f')}, "
             f"{precision_text(mp['ours'], ours.get('trainer.mixed_precision'))}, "
             f"group_by_length {'n/a' if grouping is None else str(grouping).lower()}; "
             f"HF {fmt(sps['hf'])} samples/s, eval accuracy {fmt(acc['hf'], '.4f')}, {precision_text(mp['hf'])})"]
    resolved = (data.get("resolved") or {}).get("ours")
    if resolved:
        lines.append("      ours resolved: " + ", ".join(f"{k}={v}" for k, v in resolved.items() if k != "device"))
    differences = data.get("hf_vs_training_arguments_defaults") or {}
    if not differences:
        return lines + ["      the HF side's TrainingArguments equal plain TrainingArguments() (bench harness aside)"]
    lines.append("      the HF side vs plain TrainingArguments() (bench harness aside), fixed in hf_trainer.py:")
    return lines + [f"        {field}={d['ours']} (default {d['default']}): {d['effect']}"
                    for field, d in differences.items()]


def precision_text(resolved: Sequence[str], setting: Optional[str] = None) -> str:
    """``["no"]`` -> ``fp32``; with the setting when it differs: ``auto -> bf16``."""
    text = "/".join("fp32" if p == "no" else p for p in resolved) or "n/a"
    return f"mixed_precision {setting} -> {text}" if setting and setting not in resolved else text


def render_utilisation(data: Dict[str, Any]) -> List[str]:
    """Per precision: share of the measured matmul peak, the 6N check, MFU against the datasheet peak."""
    lines = []
    for precision, u in data["utilisation"].items():
        size = u.get("matmul_size", MATMUL_SIZE)
        lines += [
            f"  utilisation {precision}        = {fmt(_pct(u['utilisation_reported']), '.1f', '%')} "
            f"(metrics.json {flops_text(u['reported_flops_per_second'])} of a {size}x{size} {precision} matmul "
            f"at {flops_text(u['matmul_peak_flops_per_second'])}); "
            f"steady {fmt(_pct(u['utilisation_steady']), '.1f', '%')}",
            f"      6N estimate check: loop's FLOP count / recount = {fmt(u['flop_count_check'], '.3f')}; "
            f"attention matmuls left out of 6N = +{fmt(_pct(u['attention_flops_fraction']), '.1f', '%')}"]
    sheet = data.get("datasheet")
    if not sheet:
        return lines + [f"  MFU: {data.get('mfu_note') or 'no datasheet peak applies'}; "
                        f"utilisation above is against the measured matmul peak"]
    peak = sheet["bf16_dense_flops_per_second"]
    for precision, u in data["utilisation"].items():
        lines.append(f"  MFU {precision}                = {fmt(_pct(u['mfu_reported']), '.2f', '%')} of the "
                     f"{sheet['gpu']} bf16 datasheet peak {flops_text(peak)} "
                     f"(steady {fmt(_pct(u['mfu_steady']), '.2f', '%')})")
    bf16 = data["utilisation"]["bf16"]["matmul_peak_flops_per_second"]
    return lines + [f"      measured bf16 matmul peak {flops_text(bf16)} = "
                    f"{fmt(_pct(data['measured_bf16_matmul_of_datasheet']), '.1f', '%')} of it ({sheet['source']})"]


def flops_text(value: Optional[float]) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1e12:.1f} TFLOP/s" if value >= 1e12 else f"{value / 1e9:.1f} GFLOP/s"


def render_shares(data: Dict[str, Any]) -> List[str]:
    """The padding_share table: one row per task family (or its skip reason)."""
    if "skipped" in data:
        return [f"padding_share skipped: {data['skipped']}"]
    header = (f"{'family':<20} {'config':<56} {'batch':>5} {'batches':>7} {'pad len':>7} {'padding':>8} "
              f"{'labels':>7}")
    lines = ["padding_share (no training): first train batches, shuffled with trainer.seed, the task's collator; "
             "padding = attention_mask==0 share; labels = labels!=-100 share (token-label families)",
             header, "-" * len(header)]
    for row in data["families"]:
        if "skipped" in row:
            lines.append(f"{row['family']:<20} {row['config']:<56} skipped: {row['skipped']}")
            continue
        lines.append(f"{row['family']:<20} {row['config']:<56} {row['batch_size']:>5} {row['batches']:>7} "
                     f"{fmt(row['mean_padded_length']):>7} {fmt(_pct(row['padding_share']), '.1f', '%'):>8} "
                     f"{fmt(_pct(row['label_token_share']), '.1f', '%'):>7}")
    return lines


def _pct(value: Optional[float]) -> Optional[float]:
    return None if value is None else 100.0 * value


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def mrpc_available(mirror: Path) -> bool:
    return (mirror / "glue" / "MRPC" / "train.tsv").is_file() and (mirror / "glue" / "MRPC" / "dev.tsv").is_file()


# ----------------------------------------------------------------------------------------------------------
# padding_share: no training, the collated train batches of each task family.
# ----------------------------------------------------------------------------------------------------------

MRPC_FILES = ["glue/MRPC/train.tsv", "glue/MRPC/dev.tsv"]
MULTI30K_FILES = [f"translation/multi30k/{split}.{lang}" for split in ("val", "test") for lang in ("en", "de")]

# family, config (what the table shows), overrides, mirror files it needs (none: a packaged corpus).
SHARE_FAMILIES: List[Dict[str, Any]] = [
    {"family": "text-classification", "config": "MiniLM, MRPC (mrpc_minilm), dynamic padding",
     "overrides": ["experiment=mrpc_minilm", "collator=dynamic"], "needs": MRPC_FILES},
    {"family": "text-classification", "config": f"MiniLM, MRPC (mrpc_minilm), static {STATIC_LENGTH}",
     "overrides": ["experiment=mrpc_minilm", "collator=static", f"tokenizer.max_length={STATIC_LENGTH}"],
     "needs": MRPC_FILES},
    {"family": "question-answering", "config": "MiniLM, XQuAD-en (squad_minilm), 256-token windows",
     "overrides": ["experiment=squad_minilm"], "needs": ["squad/xquad.en.json"]},
    {"family": "translation", "config": "SmolLM2, Multi30k prompt->target (multi30k_smollm2_lora)",
     "overrides": ["experiment=multi30k_smollm2_lora"], "needs": MULTI30K_FILES},
    {"family": "summarization", "config": "SmolLM2, XSum prompt->summary (xsum_smollm2_lora)",
     "overrides": ["experiment=xsum_smollm2_lora"], "needs": ["summarization/xsum_test_1000.jsonl"]},
    {"family": "text-generation", "config": f"SmolLM2, BBC news 256-token blocks ({CAUSAL_PRESET})",
     "overrides": [f"experiment={CAUSAL_PRESET}"], "needs": []},
    {"family": "fill-mask", "config": "MiniLM, BBC news 128-token blocks, 15% masked",
     "overrides": ["model=minilm", "task=fill-mask", "dataset=bbc_news", "task.max_length=128"], "needs": []},
]


def missing_files(mirror: Path, needs: Iterable[str]) -> List[str]:
    return [name for name in needs if not (mirror / name).is_file()]


def label_share(batches: Sequence[Dict[str, Any]]) -> Optional[float]:
    """Share of positions whose label the loss counts (``labels != -100``) over collated batches; None when
    the labels are not per token (classification: one per row; QA: start/end positions)."""
    import torch

    total = counted = 0
    for batch in batches:
        labels = batch.get("labels")
        if labels is None or tuple(torch.as_tensor(labels).shape) != tuple(batch["input_ids"].shape):
            return None
        labels = torch.as_tensor(labels)
        total += labels.numel()
        counted += int((labels != IGNORE_INDEX).sum())
    return counted / total if total else None


def measure_share(overrides: List[str], batches: int) -> Dict[str, Any]:
    """Compose the config as ``run_worker`` does, build the experiment (tokenizer + task data + collator; no
    model), collate the first ``batches`` train batches (``per_device_batch_size``, shuffled with the
    config's seed, as our loop does) and measure their padding and label-token shares."""
    import itertools

    import torch
    from torch.utils.data import DataLoader

    from experiments.config.validate import compose, to_typed
    from experiments.data.lm import padding_share
    from experiments.train.common import build_experiment

    typed = to_typed(compose(overrides))
    exp = build_experiment(typed)
    t = typed.trainer
    torch.manual_seed(t.seed)  # the fill-mask collator draws its masks from torch's global RNG
    loader = DataLoader(exp.data.train, batch_size=t.per_device_batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(t.seed), collate_fn=exp.collator)
    taken = list(itertools.islice(loader, batches))
    rows = sum(int(b["input_ids"].shape[0]) for b in taken)
    positions = sum(int(b["input_ids"].numel()) for b in taken)
    return {
        "task": typed.task.name,
        "model": typed.model.name,
        "dataset": typed.dataset.name,
        "train_rows": len(exp.data.train),
        "batch_size": t.per_device_batch_size,
        "batches": len(taken),
        "rows": rows,
        "positions": positions,
        "mean_padded_length": positions / rows if rows else None,
        "max_padded_length": max((int(b["input_ids"].shape[1]) for b in taken), default=None),
        "padding_share": padding_share(taken),
        "label_token_share": label_share(taken),
    }


def padding_share_rows(mirror: str, batches: int, families: Optional[List[Dict[str, Any]]] = None,
                       progress: bool = True) -> List[Dict[str, Any]]:
    """One row per family: its measured shares, or the reason it was skipped (data missing from the mirror)."""
    from datasets import disable_progress_bars

    disable_progress_bars()
    rows = []
    for family in families if families is not None else SHARE_FAMILIES:
        row: Dict[str, Any] = {"family": family["family"], "config": family["config"],
                               "overrides": family["overrides"]}
        missing = missing_files(Path(mirror), family["needs"])
        if missing:
            row["skipped"] = f"not in the mirror {mirror}: {', '.join(missing)}"
        else:
            if progress:
                print(f"padding_share: {family['family']}: {family['config']} ...", flush=True)
            tic = time.perf_counter()
            row.update(measure_share(family["overrides"] + [f"paths.mirror={mirror}"], batches))
            row["seconds"] = time.perf_counter() - tic
        rows.append(row)
    return rows


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per variant (>= 2; step 1 is warm-up)")
    parser.add_argument("--batch-size", type=int, default=32, help="per-device train batch size (MiniLM sections)")
    parser.add_argument("--causal-batch-size", type=int, default=8,
                        help="per-device train batch size of causal_lora (256-token blocks; the preset's 8)")
    parser.add_argument("--share-batches", type=int, default=20,
                        help="padding_share: train batches measured per task family")
    parser.add_argument("--max-train-samples", type=int, default=None, help="cap on train rows (default: all)")
    parser.add_argument("--max-eval-samples", type=int, default=200,
                        help="cap on eval rows for the accuracy column (0: the whole eval split)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads for everything")
    parser.add_argument("--sections", default=",".join(s for s in SECTIONS if s not in OPT_IN_SECTIONS),
                        help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    parser.add_argument("--repeats", type=int, default=1, help="runs per variant, interleaved; the median is shown")
    parser.add_argument("--mirror", default=os.environ.get("EXPERIMENTS_MIRROR") or str(REPO.parent / "shared" / "data"),
                        help="local data mirror holding glue/MRPC, squad/, translation/, summarization/ "
                             "(default: $EXPERIMENTS_MIRROR or ../shared/data)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a section's ratio falls below its target (TARGETS) on this machine")
    parser.add_argument("--record", action="store_true",
                        help="choices section: write its winners into the hardware table for this machine's kind")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results to this JSON file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        parser.error(f"--sections: unknown {unknown} (choose from: {', '.join(SECTIONS)})")
    args.sections = sections
    for key in ("steps", "batch_size", "causal_batch_size", "share_batches", "threads", "repeats"):
        minimum = 2 if key == "steps" else 1
        if getattr(args, key) < minimum:
            parser.error(f"--{key.replace('_', '-')} must be >= {minimum}")
    if args.record and "choices" not in sections:
        parser.error("--record writes the choices section's winners: add choices to --sections")
    args.mirror = str(Path(args.mirror).resolve())
    args.max_eval_samples = args.max_eval_samples or None
    return args


def plan_runs(args: argparse.Namespace) -> Dict[str, Any]:
    """The dataset of the MiniLM bases, the sections skipped (and why), the variants to run and their bases."""
    skipped: Dict[str, str] = {}
    has_mrpc = mrpc_available(Path(args.mirror))
    dataset = "mrpc" if has_mrpc else "bbc_news"
    if not has_mrpc and any(base_of(v) in MINILM_BASES for s in args.sections for v in SECTION_VARIANTS[s]):
        reason = f"real MRPC not found under {args.mirror}/glue/MRPC (set --mirror or EXPERIMENTS_MIRROR)"
        if "padding" in args.sections:
            skipped["padding"] = reason
        print(f"note: {reason}; the other MiniLM sections use dataset=bbc_news", flush=True)

    needed: List[str] = []
    for section in args.sections:
        if section not in skipped:
            needed += [v for v in SECTION_VARIANTS[section] if v not in needed]
    all_bases = {"minilm": base_overrides(args, dataset), "defaults": defaults_base_overrides(args, dataset),
                 "causal": causal_base_overrides(args)}
    bases = {name: overrides for name, overrides in all_bases.items() if any(base_of(v) == name for v in needed)}
    return {"dataset": dataset, "skipped": skipped, "needed": needed, "bases": bases}


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(Path(args.worker))

    import torch
    from tqdm.auto import tqdm

    device = describe_device()
    print(f"device: {device_text(device)}", flush=True)
    plan = plan_runs(args)
    needed, bases = plan["needed"], plan["bases"]

    load_before = _load()
    peaks = None
    size = matmul_size(device["type"])
    if "utilisation" in args.sections:
        print(f"measuring {size}x{size} matmul peaks on {device['type']} ({args.threads} threads) ...", flush=True)
        peaks = matmul_peak(args.threads, size)

    results: Dict[str, List[Dict[str, Any]]] = {v: [] for v in needed}
    with tempfile.TemporaryDirectory(prefix="bench_train-") as tmp:
        order = [(r, v) for r in range(args.repeats) for v in needed]  # A B C A B C: drift hits all alike
        for index, (_, variant) in enumerate(tqdm(order, desc="variants", unit="run")):
            results[variant].append(run_variant(variant, variant_overrides(variant, bases), args.threads,
                                                Path(tmp), index))
    if "utilisation" in args.sections:  # the peak again, after the runs: shows how much the CPU drifted
        after = matmul_peak(args.threads, size)
        peaks_each = {"before": peaks, "after": after}
        peaks = {k: max(peaks[k], after[k]) for k in peaks}  # the best seen: the fairest peak on a busy CPU
    shares = None
    if "padding_share" in args.sections:  # after the timed runs: it shares the CPU with nothing then
        torch.set_num_threads(args.threads)
        shares = padding_share_rows(args.mirror, args.share_batches)
    runs = {v: summarise(v, results[v]) for v in needed}
    sections = build_sections(args.sections, runs, peaks, plan["skipped"], shares, device, size)
    meta = {
        "dataset": plan["dataset"],
        "steps": args.steps,
        "batch_size": args.batch_size,
        "causal_batch_size": args.causal_batch_size,
        "share_batches": args.share_batches,
        "max_train_samples": args.max_train_samples,
        "max_eval_samples": args.max_eval_samples,
        "repeats": args.repeats,
        "threads": args.threads,
        "worker_threads": sorted({t for r in runs.values() for t in r["torch_threads"]}),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "device": device["type"],
        "device_name": device["name"],
        "device_info": device,
        "datasheet_peak": device["datasheet"],
        "load_before": load_before,
        "load_after": _load(),
        "mirror": args.mirror,
        "base_overrides": bases,
        "matmul_size": size,
        "matmul_peaks_flops_per_second": peaks,
    }
    if peaks is not None:
        meta["matmul_peaks_measured"] = peaks_each
    print()
    print(render(meta, sections), flush=True)
    if args.record and "choices" in sections:
        given = list(argv if argv is not None else sys.argv[1:])
        kept = [a for i, a in enumerate(given) if a != "--json" and (i == 0 or given[i - 1] != "--json")]
        command = isa_caps().replace(" under ", "").strip() + " scripts/bench_train.py " + " ".join(kept)
        print(f"\nrecorded the choices of {sections['choices']['hardware']} in "
              f"{record_choices(sections['choices'], meta, command.strip())}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"meta": meta, "sections": sections}, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json_path}")
    if args.check:
        failures = check_targets(sections)
        print("\ncheck: " + ("every measured ratio meets its target" if not failures
                             else "below target: " + "; ".join(failures)))
        return 1 if failures else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
