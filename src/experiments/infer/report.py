"""What an inference run leaves behind: predictions.jsonl and metrics.json (speed, memory, quality)."""
from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from experiments.metrics.examples import RECORD_KEY, ExampleRecords, write_records
from experiments.tasks.base import Item, Task

PREDICTIONS_FILE = "predictions.jsonl"


def peak_memory_mb(device) -> float:
    """Peak accelerator memory on CUDA, else the process's peak resident set size, in MiB."""
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def percentile_ms(seconds: List[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(seconds) * 1000.0, q)) if seconds else 0.0


def count_tokens(task: Task, items: List[Item], outputs: List[Any]) -> int:
    """Input tokens (with special tokens) plus generated tokens, counted with the model's tokenizer."""
    tok = task.ctx.tokenizer
    texts = [t for item in items for t in task.input_text(item.input)]
    total = sum(len(ids) for ids in tok(texts, truncation=True, max_length=task.ctx.max_length)["input_ids"])
    generated = [task.output_text(o) for o in outputs]
    generated = [g for g in generated if g]
    if generated:
        total += sum(len(ids) for ids in tok(generated, add_special_tokens=False)["input_ids"])
    return int(total)


def generation_batches(task: Task, batches: List[List[int]], outputs: List[Any], batch_seconds: List[float],
                       batch_starts: List[float], first_token_times: List[float]) -> List[Dict[str, float]]:
    """Per batch of a generating task: its size, seconds, generated tokens, tokens/s and time to first token
    (from the first-token clock of its generate() call; absent when the calls did not match the batches)."""
    tok = task.ctx.tokenizer
    texts = [task.output_text(output) or "" for output in outputs]
    counts = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]] if texts else []
    timed = len(first_token_times) == len(batches)
    rows = []
    for number, (indices, seconds) in enumerate(zip(batches, batch_seconds)):
        generated = sum(counts[i] for i in indices)
        row = {"size": len(indices), "seconds": seconds, "generated_tokens": generated,
               "tokens_per_second": generated / seconds if seconds > 0 else 0.0}
        if timed:
            row["time_to_first_token_s"] = first_token_times[number] - batch_starts[number]
        rows.append(row)
    return rows


def generation_metrics(rows: List[Dict[str, float]]) -> Dict[str, float]:
    """Final metrics of a generating run: generated tokens/s overall and time to first token percentiles."""
    seconds = sum(row["seconds"] for row in rows) or 1e-9
    final = {"generated_tokens_per_second": sum(row["generated_tokens"] for row in rows) / seconds}
    first = [row["time_to_first_token_s"] for row in rows if "time_to_first_token_s" in row]
    if first:
        final["time_to_first_token_p50_ms"] = percentile_ms(first, 50)
        final["time_to_first_token_p95_ms"] = percentile_ms(first, 95)
    return final


def write_predictions(path: Path, items: List[Item], outputs: List[Any]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for item, output in zip(items, outputs):
            record: Dict[str, Any] = {"id": item.id, "input": item.input, "output": output}
            if item.reference is not None:
                record["reference"] = item.reference
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_eval_predictions(run_dir: Path, task: Task, items: List[Item], outputs: List[Any],
                           source: str) -> Dict[str, Any]:
    """eval_predictions.jsonl (the per-example rows of the quality metrics, over the items with a reference)
    and its entry in metrics.json; nothing when no item has a reference or the task keeps no rows."""
    found = task.example_rows(items, outputs) if any(item.reference is not None for item in items) else None
    if found is None:
        return {}
    eval_set = source[len("dataset "):] if source.startswith("dataset ") else source
    return {RECORD_KEY: write_records(run_dir, ExampleRecords(eval_set, found[0], found[1]))}


def final_metrics(num_items: int, tokens: int, batch_seconds: List[float], peak_mb: float,
                  quality: Optional[Dict[str, float]] = None) -> Dict[str, float]:
    """The flat dict of floats under metrics.json "final" (what sweep tables compare)."""
    total = float(sum(batch_seconds)) or 1e-9
    final = {
        "items_per_second": num_items / total,
        "tokens_per_second": tokens / total,
        "latency_p50_ms": percentile_ms(batch_seconds, 50),
        "latency_p95_ms": percentile_ms(batch_seconds, 95),
        "peak_memory_mb": float(peak_mb),
        "num_items": float(num_items),
        "total_seconds": total,
    }
    final.update({k: float(v) for k, v in (quality or {}).items()})
    return final
