"""Inference throughput per task: this framework's path vs plain pipeline() vs one-by-one calls.

For every task, the same inputs, model and torch threads go through
  ours/defaults  ``mode=infer`` at its defaults: inference.dtype=auto (bf16 where the hardware runs it fast),
                 inference.batch_size with the inference.max_batch_tokens budget, length-sorted, its default path
  ours/pipeline  float32 weights: length-sorted batches of --batch-size through transformers.pipeline() (inference.path=pipeline)
  ours/manual    the same batches through tokenizer -> model -> post-processing (inference.path=manual)
  pipeline(bs)   one plain call: pipeline(inputs, batch_size=--batch-size), inputs in their given order
  one-by-one     one call per input (pipeline where transformers has the task, else the manual path)
and items/s (best of --repeats passes, columns interleaved) are printed side by side with ratios: defaults/plain
(ours at our defaults vs the plain pipeline call at its own) and same/plain (the code paths alone, same settings).
Tasks without a transformers pipeline (question-answering, seq2seq summarization / translation) have no pipeline
columns. ``--agreement-model DIR`` also checks, on all of SST-2 dev, that a trained classifier's labels with
inference.dtype=auto weights equal its float32 labels. Runs unchanged on CUDA (the device is printed first).

Models: real MiniLM (feature-extraction) and SmolLM2-135M-Instruct (text-generation); for the other tasks,
checkpoints with the real models' shapes and random heads / weights, built in a temporary folder: MiniLM
with a classification / NLI / masked-LM / QA head, and a t5-small-shaped T5 (generation runs a fixed number
of tokens, so random weights cost what trained ones do). Inputs come from ../shared/data when present.

    python scripts/bench_infer.py                       # all tasks, 64 inputs each, 2 threads
    python scripts/bench_infer.py --tasks text-classification fill-mask --n 256 --threads 1
    python scripts/bench_infer.py --tasks text-classification --agreement-model outputs/<sst2 run>/best --json b.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ALL_TASKS = ["text-classification", "fill-mask", "feature-extraction", "zero-shot-classification",
             "question-answering", "summarization", "translation", "text-generation"]


# --check: mode=infer at its defaults vs pipeline(batch_size) at its own, per task, and the bf16 label agreement.
TARGETS = {"text-classification": 1.8, "fill-mask": 1.8, "feature-extraction": 1.8, "zero-shot-classification": 1.8,
           "text-generation": 1.3}
AGREEMENT_TARGET = 0.995


def check_targets(rows: List[Dict[str, Any]], batch_size: int, agreement: Optional[Dict[str, Any]]) -> List[str]:
    """One line per task whose defaults/plain ratio falls below its target (tasks not run are not checked)."""
    failures = []
    for row in rows:
        target = TARGETS.get(row["task"])
        value = ratios(row, batch_size)["defaults/plain"]
        if target is not None and (value is None or value < target):
            failures.append(f"{row['task']}: defaults/plain {value if value is None else round(value, 2)} < {target}")
    if agreement and (agreement["agreement"] or 0) < AGREEMENT_TARGET:
        failures.append(f"label agreement {agreement['agreement']:.4f} < {AGREEMENT_TARGET}")
    return failures


# --- inputs -----------------------------------------------------------------------------------------------
def _sentences(data: Optional[Path], n: int) -> List[str]:
    path = data / "glue" / "SST-2" / "dev.tsv" if data else None
    if path and path.exists():
        lines = path.read_text(encoding="utf-8").splitlines()[1:]
        return [line.split("\t")[0].strip() for line in lines][:n]
    words = "the film was a long and surprisingly moving story about two friends on the road".split()
    return [" ".join(words[: 4 + (i * 7) % len(words)]) for i in range(n)]


def make_inputs(task: str, data: Optional[Path], n: int) -> List[Any]:
    if task == "fill-mask":
        out = []
        for sentence in _sentences(data, n):
            words = sentence.split()
            words[min(2, len(words) - 1)] = "[MASK]"
            out.append(" ".join(words))
        return out
    if task == "question-answering":
        path = data / "squad" / "xquad.en.json" if data else None
        if path and path.exists():
            rows = [{"question": qa["question"], "context": p["context"]}
                    for a in json.loads(path.read_text())["data"] for p in a["paragraphs"] for qa in p["qas"]]
            return rows[:n]
        return [{"question": "Who wrote it?", "context": s * 3} for s in _sentences(None, n)]
    if task == "summarization":
        path = data / "summarization" / "xsum_test_1000.jsonl" if data else None
        if path and path.exists():
            return [json.loads(line)["document"] for line in path.read_text().splitlines()[:n]]
        return [" ".join(_sentences(None, 20)) for _ in range(n)]
    if task == "translation":
        path = data / "translation" / "multi30k" / "val.en" if data else None
        if path and path.exists():
            return [line for line in path.read_text().splitlines() if line.strip()][:n]
        return _sentences(None, n)
    if task == "text-generation":
        return [f"Write one sentence about {s.split()[-1]}." for s in _sentences(data, n)]
    return _sentences(data, n)


# --- models -----------------------------------------------------------------------------------------------
def build_models(root: Path) -> Dict[str, Path]:
    """MiniLM with random task heads, and a t5-small-shaped random T5 (both with MiniLM's tokenizer)."""
    import torch
    from transformers import (
        AutoModelForMaskedLM,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        T5Config,
        T5ForConditionalGeneration,
    )

    from experiments.resolve import resolve_model

    minilm = str(resolve_model("sentence-transformers/all-MiniLM-L6-v2").path)
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    torch.manual_seed(0)
    nli = {0: "entailment", 1: "neutral", 2: "contradiction"}
    models = {
        "classifier": AutoModelForSequenceClassification.from_pretrained(
            minilm, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}),
        "nli": AutoModelForSequenceClassification.from_pretrained(
            minilm, num_labels=3, id2label=nli, label2id={v: k for k, v in nli.items()}),
        "mlm": AutoModelForMaskedLM.from_pretrained(minilm),
        "qa": AutoModelForQuestionAnswering.from_pretrained(minilm),
        "t5": T5ForConditionalGeneration(T5Config(vocab_size=30522, d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                                                  num_heads=8, pad_token_id=0, eos_token_id=102,
                                                  decoder_start_token_id=0)),
    }
    paths = {}
    for name, model in models.items():
        model.save_pretrained(str(root / name), safe_serialization=True)
        tokenizer.save_pretrained(str(root / name))
        paths[name] = root / name
    return paths


MODEL_LABELS = {"text-classification": "minilm+cls", "fill-mask": "minilm+mlm", "feature-extraction": "minilm",
                "zero-shot-classification": "minilm+nli", "question-answering": "minilm+qa",
                "summarization": "t5-small*", "translation": "t5-small*", "text-generation": "smollm2"}


def task_overrides(task: str, models: Dict[str, Path]) -> List[str]:
    local = lambda name: ["model=local", f"model.name_or_path={models[name]}"]  # noqa: E731
    return {
        "text-classification": local("classifier"),
        "fill-mask": local("mlm"),
        "feature-extraction": ["model=minilm"],
        "zero-shot-classification": local("nli") + ["task.candidate_labels=[positive,negative,neutral]"],
        "question-answering": local("qa"),
        "summarization": local("t5") + ["task.max_new_tokens=16", "task.min_new_tokens=16"],
        "translation": local("t5") + ["task.max_new_tokens=16", "task.min_new_tokens=16"],
        "text-generation": ["model=smollm2", "task.max_new_tokens=16", "task.min_new_tokens=16"],
    }[task]


# --- timing -----------------------------------------------------------------------------------------------
def items_per_second(fn: Callable[[], Any], n: int) -> float:
    import torch

    with torch.inference_mode():
        start = time.perf_counter()
        fn()
        return n / (time.perf_counter() - start)


def _config(name: str, overrides: List[str], threads: int, *settings: str):
    from experiments.config.validate import compose, to_typed

    return to_typed(compose(["mode=infer", f"task={name}", f"inference.num_threads={threads}", *overrides,
                             *settings]))


def _our_defaults(name: str, overrides: List[str], inputs: List[Any], threads: int) -> Callable[[], Any]:
    """One pass the way ``mode=infer`` runs at its defaults (inference.dtype, batch size, token budget, path)."""
    import torch

    from experiments.infer import load_task, plan, runner
    from experiments.infer.batching import run_batches

    cfg = _config(name, overrides, threads)
    task = load_task(cfg)
    batch = [task.adapt_input(task.check_input(x)) for x in inputs]
    batches, fn = plan(task, batch, cfg.inference), runner(task, cfg.inference)
    with torch.inference_mode():
        fn(batch[:2])  # warm-up
    return lambda: run_batches(fn, batch, batches, progress=False)


def bench_task(name: str, overrides: List[str], inputs: List[Any], batch_size: int, threads: int,
               repeats: int = 3) -> Dict[str, Any]:
    """items/s per column. ``ours/defaults``: mode=infer at its defaults; the other columns share float32
    weights and --batch-size, so they compare the code paths alone."""
    import torch

    from experiments.infer import load_task, plan
    from experiments.infer.batching import run_batches

    cfg = _config(name, overrides, threads, f"inference.batch_size={batch_size}", "inference.dtype=float32",
                  "inference.max_batch_tokens=null", "inference.sort_by_length=true")
    task = load_task(cfg)
    torch.set_num_threads(threads)
    batch = [task.adapt_input(task.check_input(x)) for x in inputs]
    batches = plan(task, batch, cfg.inference)
    row: Dict[str, Any] = {"task": name, "model": MODEL_LABELS[name], "n": len(batch)}
    with torch.inference_mode():  # warm-up: first-call costs stay out of every column
        task.manual(batch[:2])
        if task.has_pipeline:
            task.pipeline(batch[:2])
    columns: Dict[str, Callable[[], Any]] = {
        "ours/defaults": _our_defaults(name, overrides, inputs, threads),
        "ours/manual": lambda: run_batches(task.manual, batch, batches, progress=False)}
    if task.has_pipeline:
        columns["ours/pipeline"] = lambda: run_batches(task.pipeline, batch, batches, progress=False)
        pipe, kwargs = task.get_pipeline(), task.pipeline_kwargs  # fresh kwargs per call: pipelines edit them
        prompts = task.pipeline_inputs(batch)
        columns[f"pipeline(bs={batch_size})"] = lambda: pipe(prompts, batch_size=batch_size, **kwargs())
        columns["one-by-one"] = lambda: [pipe(p, **kwargs()) for p in prompts]
    else:
        columns["one-by-one"] = lambda: [task.manual([x]) for x in batch]
    for _ in range(repeats):  # round-robin over the columns; the best of each (the machine may be shared)
        for label, fn in columns.items():
            row[label] = max(row.get(label, 0.0), items_per_second(fn, len(batch)))
    return row


def label_agreement(model_dir: Path, sentences: List[str], threads: int) -> Dict[str, Any]:
    """Share of sentences whose predicted label is the same with the inference.dtype=auto weights as with
    float32 ones (text-classification, the model in ``model_dir``, run as mode=infer runs it)."""
    from experiments.infer import load_task, plan, runner
    from experiments.infer.batching import run_batches

    labels = {}
    for dtype in ("float32", "auto"):
        cfg = _config("text-classification", ["model=local", f"model.name_or_path={model_dir}"], threads,
                      f"inference.dtype={dtype}")
        task = load_task(cfg)
        outputs = run_batches(runner(task, cfg.inference), sentences, plan(task, sentences, cfg.inference),
                              progress=False).outputs
        labels[dtype] = [(out if isinstance(out, dict) else out[0])["label"] for out in outputs]
        labels[f"{dtype}_resolved"] = task.ctx.extra["speed"]["dtype"]
    same = sum(a == b for a, b in zip(labels["float32"], labels["auto"]))
    return {"model": str(model_dir), "n": len(sentences), "dtype": labels["auto_resolved"], "agree": same,
            "agreement": same / len(sentences) if sentences else None}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=ALL_TASKS, choices=ALL_TASKS)
    parser.add_argument("--n", type=int, default=64, help="inputs per task")
    parser.add_argument("--n-generate", type=int, default=16, help="inputs for text-generation (SmolLM2)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads for every column")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per column (best is kept)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a task's defaults/plain ratio falls below its target (TARGETS)")
    parser.add_argument("--agreement-model", type=Path, default=None,
                        help="a text-classification model dir (e.g. <sst2 run>/best): share of SST-2 dev labels "
                             "the inference.dtype=auto weights predict as float32 does")
    args = parser.parse_args(argv)

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from experiments.hardware import device_name

    data = args.data if (args.data / "MANIFEST.md").exists() else None
    device = device_name("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device={device} threads={args.threads} batch_size={args.batch_size} repeats={args.repeats} "
          f"data={data or 'synthetic'} torch={torch.__version__}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp))
        for name in args.tasks:
            n = args.n_generate if name == "text-generation" else args.n
            row = bench_task(name, task_overrides(name, models), make_inputs(name, data, n), args.batch_size,
                             args.threads, args.repeats)
            rows.append(row)
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    agreement = None
    if args.agreement_model:
        sentences = _sentences(data, 10**6)
        agreement = label_agreement(args.agreement_model, sentences, args.threads)
        print(json.dumps({"agreement": agreement}), flush=True)
    print_table(rows, args.batch_size)
    if agreement:
        print(f"\nlabels with inference.dtype=auto ({agreement['dtype']}) = float32 labels on {agreement['agree']} of "
              f"{agreement['n']} SST-2 dev sentences ({100 * agreement['agreement']:.2f} %)")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "threads": args.threads, "batch_size": args.batch_size,
                                         "rows": rows, "agreement": agreement}, indent=2) + "\n")
    if args.check:
        failures = check_targets(rows, args.batch_size, agreement)
        print("\ncheck: " + ("every ratio meets its target" if not failures else "below target: " + "; ".join(failures)))
        return 1 if failures else 0
    return 0


def ratios(row: Dict[str, Any], batch_size: int) -> Dict[str, Optional[float]]:
    """defaults/plain: ours at mode=infer's defaults vs pipeline(batch_size) at its own (float32, input order);
    same/plain: ours at the plain call's settings (float32, same batch size) vs it; ours/1-by-1."""
    plain = row.get(f"pipeline(bs={batch_size})")
    same = max(row.get("ours/pipeline", 0.0), row["ours/manual"])
    return {"defaults/plain": row["ours/defaults"] / plain if plain else None,
            "same/plain": same / plain if plain else None,
            "defaults/1-by-1": row["ours/defaults"] / row["one-by-one"]}


def print_table(rows: List[Dict[str, Any]], batch_size: int) -> None:
    columns = ["ours/defaults", "ours/pipeline", "ours/manual", f"pipeline(bs={batch_size})", "one-by-one"]
    names = ["defaults/plain", "same/plain", "defaults/1-by-1"]
    print("\nitems/s (higher is better). ours/defaults: mode=infer at its defaults (inference.dtype=auto, token "
          "budget); the other columns: float32 weights, the same batch size. +head: MiniLM with a random task head; "
          "t5-small*: t5-small-shaped, random weights; generation runs a fixed number of new tokens, so items/s "
          "ratios are tokens/s ratios")
    print(f"{'task':26} {'model':10} {'n':>4} " + " ".join(f"{c:>15}" for c in columns)
          + " " + " ".join(f"{n:>15}" for n in names))
    for row in rows:
        row["ratios"] = ratios(row, batch_size)
        cells = " ".join(f"{row[c]:15.1f}" if c in row else f"{'n/a':>15}" for c in columns)
        shown = " ".join(f"{v:15.2f}" if v is not None else f"{'n/a':>15}" for v in row["ratios"].values())
        print(f"{row['task']:26} {row['model']:10} {row['n']:4d} {cells} {shown}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    sys.exit(main())
