#!/usr/bin/env python
"""Fine-tuning benchmark: six comparisons measured side by side in one run.

Sections (``--sections``, default all):

* ``loop_vs_hf``   samples/s of our Accelerate loop (``trainer=accelerate``) vs transformers' Trainer
                   (``trainer=hf_trainer``) on the same config.
* ``padding``      dynamic padding + length-grouped batches vs static padding to 128 on real MRPC
                   (skipped, with the reason printed, when the mirror has no ``glue/MRPC``).
* ``precision``    bf16 autocast vs fp32, with the eval accuracy of each.
* ``utilisation``  achieved training FLOP/s (``metrics.json`` ``final.train_flops_per_second``) as a
                   fraction of a 2048x2048 matmul peak of the same precision, measured in the same run.
* ``causal_lora``  tokens/s of a causal-LM LoRA fine-tune of SmolLM2-135M-Instruct (``experiment=bbc_smollm2_clm``:
                   BBC news in 256-token blocks, LoRA r=16 on q/k/v/o), our loop vs transformers' Trainer with
                   peft, same config; ``trainer.mixed_precision=auto`` (the preset's default) for both, the
                   precision it resolved to printed beside the ratio.
* ``padding_share`` no training: share of padded positions (``attention_mask == 0``) and of loss-bearing label
                   tokens (``labels != -100``, LM families) in the first ``--share-batches`` shuffled train
                   batches of each task family, built by the task objects (``build_experiment``) and collated by
                   the task's own collator. Families whose data the mirror lacks are skipped, the reason printed.

The first four sections share a MiniLM base (``base_overrides``); ``causal_lora`` has its own
(``causal_base_overrides``). Every variant is composed the way the CLI does (``compose(overrides)`` then
``to_typed``) and handed to the backend's ``run(typed, run_dir)``. Each variant runs in its own fresh process
(with the same ``torch.set_num_threads``): one process cannot hold two Accelerate states with different mixed
precision, and a fresh process gives every variant the same start. Variants are interleaved (A B C A B C ...) when
``--repeats`` > 1, so drift on a shared CPU spreads over all of them; the median is reported.

Two speed figures per run:

* ``steady``    samples/s over optimizer steps 2..N: the first step (lazy allocations, kernel selection)
                is excluded. Measured with PyTorch's global optimizer-step and module-forward hooks, so
                both backends are timed by the same clock over the same span (data loading + forward +
                backward + optimizer step), and the samples/tokens of each step are counted exactly.
* ``reported``  the backend's own ``final.train_samples_per_second``. Note the spans differ: the
                Trainer's figure includes its end-of-training evaluation and checkpoint save, ours
                does not; so ratios use ``steady``.

Examples::

    python scripts/bench_train.py --steps 10                         # quick: ~3-5 min on 2 cores
    python scripts/bench_train.py --steps 40 --repeats 2 --json bench.json
    python scripts/bench_train.py --steps 2 --sections loop_vs_hf --max-train-samples 64
    python scripts/bench_train.py --sections causal_lora,padding_share --steps 10
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("loop_vs_hf", "padding", "precision", "utilisation", "causal_lora", "padding_share")
STATIC_LENGTH = 128
MATMUL_SIZE = 2048
CAUSAL_PRESET = "bbc_smollm2_clm"
CAUSAL_EVAL_SAMPLES = 8  # held-out blocks for the final eval of causal_lora (after the timed steps)
IGNORE_INDEX = -100  # experiments.data.lm.IGNORE_INDEX: labels the loss skips


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
}

VARIANT_LABELS = {
    "ours": "accelerate loop, dynamic, fp32",
    "hf": "HF Trainer, dynamic, fp32",
    "ours_bf16": "accelerate loop, dynamic, bf16",
    "dynamic_grouped": "accelerate loop, dynamic + group_by_length, fp32",
    "static128": f"accelerate loop, static {STATIC_LENGTH}, fp32",
    "causal_ours": "accelerate loop, SmolLM2 + LoRA, 256-token blocks",
    "causal_hf": "HF Trainer + peft, SmolLM2 + LoRA, 256-token blocks",
}

# Which base a variant's overrides go on top of (see variant_overrides).
VARIANT_BASE = {"causal_ours": "causal", "causal_hf": "causal"}

SECTION_VARIANTS = {
    "loop_vs_hf": ["ours", "hf"],
    "padding": ["static128", "ours", "dynamic_grouped"],
    "precision": ["ours", "ours_bf16"],
    "utilisation": ["ours", "ours_bf16"],
    "causal_lora": ["causal_ours", "causal_hf"],
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
    """

    def __init__(self) -> None:
        self.step_ends: List[float] = []
        self.batches: List[tuple] = []  # (batch size, padded sequence length) per training forward
        self.model_shape: Optional[Dict[str, int]] = None
        self.model_class: Optional[str] = None  # the class of the module whose calls were counted
        self._handles: List[Any] = []
        self._depth = 0  # module calls in progress

    def __enter__(self) -> "StepClock":
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self._handles = [register_optimizer_step_post_hook(self._on_step),
                         register_module_forward_pre_hook(self._on_enter),
                         register_module_forward_hook(self._on_forward, with_kwargs=True)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()

    def _on_step(self, optimizer, args, kwargs) -> None:
        self.step_ends.append(time.perf_counter())

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
        steps = len(self.step_ends)
        out: Dict[str, Any] = {"steps_seen": steps, "forwards_seen": len(self.batches)}
        if steps < 2 or len(self.batches) != steps:
            return out  # needs >= 2 steps and one forward per step (gradient accumulation 1)
        window = self.batches[1:]
        seconds = self.step_ends[-1] - self.step_ends[0]
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
                b / (t1 - t0) for (b, _), t0, t1 in zip(window, self.step_ends, self.step_ends[1:])),
            "tokens_per_second": tokens / seconds,
            "tokens_per_second_median_step": statistics.median(
                b * s / (t1 - t0) for (b, s), t0, t1 in zip(window, self.step_ends, self.step_ends[1:])),
            "flops_per_second_6n": flops_6n / seconds,
            "attention_flops_fraction": flops_attention / flops_6n if flops_6n else 0.0,
            "mean_padded_length": tokens / samples,
            "step_seconds": [b - a for a, b in zip(self.step_ends, self.step_ends[1:])],
        })
        return out

    def total_tokens(self) -> int:
        return sum(b * s for b, s in self.batches)


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
    with StepClock() as clock:
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
        "steady": clock.steady(),
        "model_shape": clock.model_shape,
        "model_class": clock.model_class,
        "total_tokens": clock.total_tokens(),
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


def matmul_peak(threads: int, size: int = MATMUL_SIZE, seconds: float = 2.0) -> Dict[str, float]:
    """FLOP/s of a size x size matmul in fp32 and bf16 on ``threads`` threads (best of timed rounds),
    on the device the training runs on."""
    import torch

    torch.set_num_threads(threads)
    device = training_device()
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
        "flop_count_check": flop_count_check(repeats[-1]),
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
                   skipped: Dict[str, str], shares: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Dict[str, Any]]:
    """Rows and the headline ratio of every requested section."""
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
        elif section == "padding":
            out[section] = {"rows": rows, "ratio_name": "dynamic+grouped/static",
                            **ratios(runs, "dynamic_grouped", "static128"),
                            "ratio_dynamic_ungrouped": ratios(runs, "ours", "static128")["ratio"]}
        elif section == "precision":
            out[section] = {"rows": rows, "ratio_name": "bf16/fp32", **ratios(runs, "ours_bf16", "ours"),
                            "eval_accuracy": {"fp32": runs["ours"]["eval_accuracy"],
                                              "bf16": runs["ours_bf16"]["eval_accuracy"]}}
        elif section == "utilisation":
            util = {}
            for precision, variant in (("fp32", "ours"), ("bf16", "ours_bf16")):
                run = runs[variant]
                util[precision] = {
                    "variant": variant,
                    "matmul_peak_flops_per_second": peaks[precision],
                    "reported_flops_per_second": run["reported_flops_per_second"],
                    "steady_flops_per_second": run["steady_flops_per_second_6n"],
                    "utilisation_reported": ratio(run["reported_flops_per_second"], peaks[precision]),
                    "utilisation_steady": ratio(run["steady_flops_per_second_6n"], peaks[precision]),
                    "attention_flops_fraction": run["attention_flops_fraction"],
                    "flop_count_check": run["flop_count_check"],
                }
            out[section] = {"rows": rows, "ratio_name": "utilisation", "utilisation": util}
        elif section == "causal_lora":
            out[section] = {"rows": rows, "ratio_name": "ours/HF tokens/s",
                            **ratios(runs, "causal_ours", "causal_hf", unit="tokens"),
                            "mixed_precision": {"setting": "auto",
                                                "ours": runs["causal_ours"]["mixed_precision"],
                                                "hf": runs["causal_hf"]["mixed_precision"]}}
    return out


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
    lines = [f"bench_train: steps={meta['steps']} repeats={meta['repeats']}"]
    if "minilm" in meta["base_overrides"]:
        lines.append(
            f"  MiniLM sections: model=minilm dataset={meta['dataset']} batch={meta['batch_size']} "
            f"max_train_samples={meta['max_train_samples']} max_eval_samples={meta['max_eval_samples']}")
    if "causal" in meta["base_overrides"]:
        lines.append(
            f"  causal_lora: experiment={CAUSAL_PRESET} (SmolLM2-135M-Instruct GGUF + LoRA r=16 on q/k/v/o), "
            f"batch={meta['causal_batch_size']} x 256-token blocks, max_eval_samples={CAUSAL_EVAL_SAMPLES}, "
            f"trainer.mixed_precision=auto for both backends")
    lines += [
        f"torch.set_num_threads({meta['threads']}) (workers reported torch threads: {meta['worker_threads']}); "
        f"cpu_count={meta['cpu_count']}; device {meta['device']}; torch {meta['torch']}; "
        f"load average before/after {meta['load_before']} / {meta['load_after']} (the CPU is shared: noisy)",
        "steady = optimizer steps 2..N (warm-up step excluded), same clock for both backends; med-step = "
        "samples/s of the median step; tok/s = steady padded tokens/s; reported = the backend's own "
        "final.train_samples_per_second (the Trainer's includes its final eval + checkpoint); "
        "eval = accuracy, or ppl = perplexity",
        "",
    ]
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
        if "skipped" in data:
            lines.append(f"  {section}: skipped ({data['skipped']})")
        elif section == "loop_vs_hf":
            lines.append(f"  ours/HF                 = {fmt(data['ratio'], '.2f', 'x')} "
                         f"[{fmt(data['ratio_median_step'], '.2f', 'x')}]")
        elif section == "padding":
            lines.append(f"  dynamic+grouped/static  = {fmt(data['ratio'], '.2f', 'x')} "
                         f"[{fmt(data['ratio_median_step'], '.2f', 'x')}]   "
                         f"(dynamic without grouping/static = {fmt(data['ratio_dynamic_ungrouped'], '.2f', 'x')})")
        elif section == "precision":
            acc = data["eval_accuracy"]
            lines.append(f"  bf16/fp32               = {fmt(data['ratio'], '.2f', 'x')} "
                         f"[{fmt(data['ratio_median_step'], '.2f', 'x')}]   "
                         f"(eval accuracy fp32 {fmt(acc['fp32'], '.4f')}, bf16 {fmt(acc['bf16'], '.4f')})")
        elif section == "utilisation":
            for precision, u in data["utilisation"].items():
                lines.append(
                    f"  utilisation {precision}        = {fmt(_pct(u['utilisation_reported']), '.1f', '%')} "
                    f"(metrics.json {fmt(_g(u['reported_flops_per_second']), '.1f')} GFLOP/s of a "
                    f"{MATMUL_SIZE}x{MATMUL_SIZE} {precision} matmul at "
                    f"{fmt(_g(u['matmul_peak_flops_per_second']), '.1f')} GFLOP/s); "
                    f"steady {fmt(_pct(u['utilisation_steady']), '.1f', '%')}")
                lines.append(
                    f"      6N estimate check: loop's FLOP count / recount = {fmt(u['flop_count_check'], '.3f')}; "
                    f"attention matmuls left out of 6N = +{fmt(_pct(u['attention_flops_fraction']), '.1f', '%')}")
        elif section == "causal_lora":
            mp = data["mixed_precision"]
            lines.append(f"  causal LoRA ours/HF     = {fmt(data['ratio'], '.2f', 'x')} "
                         f"[{fmt(data['ratio_median_step'], '.2f', 'x')}] tokens/s   "
                         f"(trainer.mixed_precision={mp['setting']} -> ours {'/'.join(mp['ours'])}, "
                         f"HF {'/'.join(mp['hf'])})")
    return "\n".join(lines)


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


def _g(value: Optional[float]) -> Optional[float]:
    return None if value is None else value / 1e9


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
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    parser.add_argument("--repeats", type=int, default=1, help="runs per variant, interleaved; the median is shown")
    parser.add_argument("--mirror", default=os.environ.get("EXPERIMENTS_MIRROR") or str(REPO.parent / "shared" / "data"),
                        help="local data mirror holding glue/MRPC, squad/, translation/, summarization/ "
                             "(default: $EXPERIMENTS_MIRROR or ../shared/data)")
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
    args.mirror = str(Path(args.mirror).resolve())
    args.max_eval_samples = args.max_eval_samples or None
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(Path(args.worker))

    import torch
    from tqdm.auto import tqdm

    skipped: Dict[str, str] = {}
    has_mrpc = mrpc_available(Path(args.mirror))
    dataset = "mrpc" if has_mrpc else "bbc_news"
    if not has_mrpc and any(base_of(v) == "minilm" for s in args.sections for v in SECTION_VARIANTS[s]):
        reason = f"real MRPC not found under {args.mirror}/glue/MRPC (set --mirror or EXPERIMENTS_MIRROR)"
        if "padding" in args.sections:
            skipped["padding"] = reason
        print(f"note: {reason}; the other MiniLM sections use dataset=bbc_news", flush=True)

    needed: List[str] = []
    for section in args.sections:
        if section not in skipped:
            needed += [v for v in SECTION_VARIANTS[section] if v not in needed]
    all_bases = {"minilm": base_overrides(args, dataset), "causal": causal_base_overrides(args)}
    bases = {name: overrides for name, overrides in all_bases.items() if any(base_of(v) == name for v in needed)}

    load_before = _load()
    peaks = None
    if "utilisation" in args.sections:
        print(f"measuring {MATMUL_SIZE}x{MATMUL_SIZE} matmul peaks on {args.threads} threads ...", flush=True)
        peaks = matmul_peak(args.threads)

    results: Dict[str, List[Dict[str, Any]]] = {v: [] for v in needed}
    with tempfile.TemporaryDirectory(prefix="bench_train-") as tmp:
        order = [(r, v) for r in range(args.repeats) for v in needed]  # A B C A B C: drift hits all alike
        for index, (_, variant) in enumerate(tqdm(order, desc="variants", unit="run")):
            results[variant].append(run_variant(variant, variant_overrides(variant, bases), args.threads,
                                                Path(tmp), index))
    if "utilisation" in args.sections:  # the peak again, after the runs: shows how much the CPU drifted
        after = matmul_peak(args.threads)
        peaks_each = {"before": peaks, "after": after}
        peaks = {k: max(peaks[k], after[k]) for k in peaks}  # the best seen: the fairest peak on a busy CPU
    shares = None
    if "padding_share" in args.sections:  # after the timed runs: it shares the CPU with nothing then
        torch.set_num_threads(args.threads)
        shares = padding_share_rows(args.mirror, args.share_batches)
    runs = {v: summarise(v, results[v]) for v in needed}
    sections = build_sections(args.sections, runs, peaks, skipped, shares)
    meta = {
        "dataset": dataset,
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
        "device": training_device(),
        "load_before": load_before,
        "load_after": _load(),
        "mirror": args.mirror,
        "base_overrides": bases,
        "matmul_peaks_flops_per_second": peaks,
    }
    if peaks is not None:
        meta["matmul_peaks_measured"] = peaks_each
    print()
    print(render(meta, sections), flush=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"meta": meta, "sections": sections}, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
