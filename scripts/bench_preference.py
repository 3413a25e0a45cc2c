"""DPO and GRPO training speed: this framework (``python run.py tuning=dpo|grpo``) against TRL's trainer used
directly, at equal settings, side by side in one run.

For each method the framework's run goes first, as a user runs it (the preset ``experiment=smollm2_dpo`` /
``smollm2_grpo``, cut to ``--steps`` optimizer steps with no evaluation inside training). Then a fresh process
builds TRL's ``DPOTrainer`` / ``GRPOTrainer`` by hand the way TRL's documentation does, with what that run recorded:
the same weights (resolved as the run resolved them), the same LoRA, batch, lengths, learning rate, group size,
temperature and KL, and the same speed settings (mixed precision, attention kernel, optimizer) read from the run's
``metrics.json``. Prompts differ in wrapping (the framework adds the task's template), so the fair figure is tokens/s;
steps/s is printed too. Both sides count tokens with TRL's own ``num_tokens`` and time the same span: the inside of
the training steps (a Trainer callback's ``on_step_begin`` to ``on_step_end``, the framework's ``train_runtime_s``),
so the framework's evaluation of the final state, which a run always makes, is not counted against it.

    python scripts/bench_preference.py --steps 6                    # SmolLM2 presets (needs build_preferences.py)
    python scripts/bench_preference.py --methods dpo --steps 4 --json bench.json
    python scripts/bench_preference.py --steps 2 --extra model=local model.name_or_path=DIR ... --extra-dpo ...
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
PRESETS = {"dpo": "smollm2_dpo", "grpo": "smollm2_grpo"}
QUIET = ["trainer.eval_before_training=false", "trainer.eval_steps=1000000", "trainer.save_steps=1000000",
         "trainer.save_model=false", "trainer.log_every_n_steps=1", "trainer.warmup_ratio=0.0",
         "dataset.max_eval_samples=16", "trainer.eval_generate_samples=1", "logger=csv"]


def ours(method: str, steps: int, extra: List[str], workdir: Path) -> Dict[str, Any]:
    """The framework's run of ``method``; its speed from its own run record."""
    run_dir = workdir / f"ours-{method}"
    cmd = [sys.executable, str(REPO / "run.py"), f"experiment={PRESETS[method]}", *QUIET,
           f"trainer.max_steps={steps}", *extra, f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method}: python run.py failed:\n{proc.stderr[-3000:]}")
    record = json.loads((run_dir / "metrics.json").read_text())
    final = record["final"]
    return {"run_dir": str(run_dir), "steps": final["global_step"], "seconds": final["train_runtime_s"],
            "tokens": record["train_log"][-1].get("num_tokens"), "speed": record.get("speed", {})}


def direct(method: str, run_dir: Path) -> Dict[str, Any]:
    """TRL's trainer built by hand with the settings of ``run_dir``, in a fresh process."""
    out = run_dir.parent / f"direct-{method}.json"
    proc = subprocess.run([sys.executable, __file__, "--worker", method, "--run-dir", str(run_dir), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method}: TRL direct failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


# -- the worker: TRL used directly -------------------------------------------------------------------------------
def _settings(run_dir: Path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / "config.yaml")
    speed = json.loads((run_dir / "metrics.json").read_text()).get("speed", {})
    return cfg, speed


def _model_and_tokenizer(cfg, speed: Dict[str, Any]):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from experiments.resolve import resolve_model

    model = cfg.model
    path = resolve_model(model.name_or_path, mirror=cfg.paths.mirror, package=model.package, revision=model.revision,
                         gguf_file=model.gguf_file).path
    kwargs = {"gguf_file": model.gguf_file} if model.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    loaded = AutoModelForCausalLM.from_pretrained(str(path), dtype="float32",
                                                  attn_implementation=speed.get("attn_implementation") or "sdpa",
                                                  **kwargs)
    if model.gguf_file:  # dequantized to float weights on load, still marked as GGUF, which the Trainer refuses to
        loaded.hf_quantizer, loaded.is_quantized = None, False  # train: drop the mark, as the framework's load does
        if hasattr(loaded.config, "quantization_config"):
            del loaded.config.quantization_config
    return loaded, tokenizer


def _common_arguments(cfg, speed: Dict[str, Any], out_dir: str) -> Dict[str, Any]:
    t = cfg.trainer
    return dict(output_dir=out_dir, max_steps=t.max_steps, learning_rate=t.lr,
                per_device_train_batch_size=t.per_device_batch_size,
                gradient_accumulation_steps=t.gradient_accumulation_steps, warmup_steps=0, seed=t.seed,
                bf16=speed.get("mixed_precision") == "bf16", optim=speed.get("optimizer") or "adamw_torch",
                logging_steps=1, save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True,
                gradient_checkpointing=False, disable_tqdm=True)


def _lora(cfg):
    from peft import LoraConfig

    p = cfg.peft
    return LoraConfig(r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout, target_modules=list(p.target_modules),
                      task_type="CAUSAL_LM")


def _turn(role: str, text: str, chat: bool) -> Any:
    return [{"role": role, "content": text}] if chat else text


def _pairs(cfg, chat: bool) -> List[Dict[str, Any]]:
    """The run's preference rows, the prompt with the framework's translation instruction."""
    rows = [json.loads(line) for line in Path(cfg.dataset.data_files.train).read_text().splitlines() if line.strip()]
    limit = cfg.dataset.max_train_samples or len(rows)
    return [{"prompt": _turn("user", f"Translate English to German: {r[cfg.dataset.text_column]}", chat),
             "chosen": _turn("assistant", r[cfg.tuning.chosen_column], chat),
             "rejected": _turn("assistant", r[cfg.tuning.rejected_column], chat)} for r in rows[:limit]]


def _prompts(cfg, chat: bool) -> List[Dict[str, Any]]:
    """Multi30k validation rows (what the GRPO preset trains on) as prompts with their references."""
    folder = Path(cfg.paths.mirror) / "translation" / "multi30k"
    english = (folder / "val.en").read_text(encoding="utf-8").splitlines()
    german = (folder / "val.de").read_text(encoding="utf-8").splitlines()
    limit = cfg.dataset.max_train_samples or len(english)
    return [{"prompt": _turn("user", f"Translate English to German: {en}", chat), "reference": de}
            for en, de in list(zip(english, german))[:limit]]


def chrf_reward(prompts, completions, reference, **_: Any) -> List[float]:
    """chrF of each completion against its reference (sacrebleu, as the framework's built-in ``chrf`` reward)."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]  # chat: the assistant's turn
    return [metric.sentence_score(str(t), [r]).score / 100.0 for t, r in zip(texts, reference)]


def worker(method: str, run_dir: Path, out: Path) -> None:
    from datasets import Dataset
    from transformers.trainer_utils import set_seed

    from experiments.train.hf_trainer import StepClock

    cfg, speed = _settings(run_dir)
    set_seed(cfg.trainer.seed)
    model, tokenizer = _model_and_tokenizer(cfg, speed)
    chat = tokenizer.chat_template is not None
    with tempfile.TemporaryDirectory() as tmp:
        common = _common_arguments(cfg, speed, tmp)
        if method == "dpo":
            from trl import DPOConfig, DPOTrainer

            args = DPOConfig(**common, beta=cfg.tuning.beta, loss_type=[cfg.tuning.loss_type],
                             max_length=int(cfg.task.max_length or cfg.tokenizer.max_length) + cfg.task.max_new_tokens)
            trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(_pairs(cfg, chat)),
                                 processing_class=tokenizer, peft_config=_lora(cfg))
        else:
            from trl import GRPOConfig, GRPOTrainer

            args = GRPOConfig(**common, beta=cfg.tuning.kl_coef, num_generations=cfg.tuning.num_generations,
                              max_completion_length=cfg.task.max_new_tokens, temperature=cfg.tuning.temperature)
            trainer = GRPOTrainer(model=model, reward_funcs=[chrf_reward], args=args,
                                  train_dataset=Dataset.from_list(_prompts(cfg, chat)), processing_class=tokenizer,
                                  peft_config=_lora(cfg))
        clock = StepClock()  # the clock of the framework's own record
        trainer.add_callback(clock)
        result = trainer.train()
        tokens = [entry["num_tokens"] for entry in trainer.state.log_history if "num_tokens" in entry]
    out.write_text(json.dumps({"steps": result.global_step, "seconds": clock.step_seconds,
                               "tokens": tokens[-1] if tokens else None}))


# -- side by side ----------------------------------------------------------------------------------------------
def rates(side: Dict[str, Any]) -> Dict[str, Optional[float]]:
    seconds = side["seconds"] or float("nan")
    return {"steps_per_s": side["steps"] / seconds,
            "tokens_per_s": side["tokens"] / seconds if side.get("tokens") else None}


def compare(ours_side: Dict[str, Any], direct_side: Dict[str, Any]) -> Dict[str, Any]:
    a, b = rates(ours_side), rates(direct_side)
    return {"ours": {**ours_side, **a}, "trl": {**direct_side, **b},
            "ratio": {key: (a[key] / b[key] if a[key] and b[key] else None) for key in a}}


def render(meta: Dict[str, Any], results: Dict[str, Dict[str, Any]]) -> str:
    lines = [f"{meta['device']}  torch {meta['torch']}  trl {meta['trl']}  steps {meta['steps']}", "",
             f"{'method':8}{'side':7}{'steps/s':>10}{'tokens/s':>11}", "-" * 36]
    for method, data in results.items():
        for side in ("ours", "trl"):
            row = data[side]
            tokens = f"{row['tokens_per_s']:.0f}" if row["tokens_per_s"] else "-"
            lines.append(f"{method:8}{side:7}{row['steps_per_s']:>10.3f}{tokens:>11}")
        ratio = data["ratio"]
        shown = ", ".join(f"{key} {value:.2f}x" for key, value in ratio.items() if value)
        lines.append(f"{method:8}ours/TRL: {shown}")
    return "\n".join(lines)


def describe() -> Dict[str, Any]:
    import platform

    import torch
    import trl

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"device": f"{model}, {os.cpu_count()} cores", "torch": torch.__version__, "trl": trl.__version__}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="dpo,grpo")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides for the framework's runs")
    for method in PRESETS:
        parser.add_argument(f"--extra-{method}", nargs="*", default=[], help=f"more overrides for the {method} run")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", choices=sorted(PRESETS), help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.run_dir, args.out)
        return 0
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in PRESETS]
    if unknown:
        parser.error(f"--methods: {unknown} (choose from {', '.join(PRESETS)})")
    with tempfile.TemporaryDirectory(prefix="bench-preference-") as tmp:
        results = {}
        for method in methods:
            extra = args.extra + getattr(args, f"extra_{method}")
            side = ours(method, args.steps, extra, Path(tmp))
            results[method] = compare(side, direct(method, Path(side["run_dir"])))
    meta = {**describe(), "steps": args.steps}
    print(render(meta, results))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
