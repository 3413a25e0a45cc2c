"""Length-sorted batches with the output order preserved, timed batch by batch."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence


def plan_batches(lengths: Sequence[int], batch_size: int, sort_by_length: bool = True,
                 max_tokens: Optional[int] = None) -> List[List[int]]:
    """Index lists of at most ``batch_size`` inputs; longest first when sorting (less padding per batch).

    With ``max_tokens``, a batch also stops growing before its padded size (inputs x the longest input's
    length) would pass it: short inputs go in large batches, long ones in small ones. An input longer than
    the budget runs alone."""
    order = list(range(len(lengths)))
    if sort_by_length:
        order.sort(key=lambda i: lengths[i], reverse=True)  # stable: equal lengths keep input order
    batches: List[List[int]] = []
    current: List[int] = []
    longest = 0
    for index in order:
        widest = max(longest, lengths[index])
        full = len(current) >= batch_size or (max_tokens is not None and widest * (len(current) + 1) > max_tokens)
        if current and full:
            batches.append(current)
            current, widest = [], lengths[index]
        current.append(index)
        longest = widest
    if current:
        batches.append(current)
    return batches


@dataclass
class BatchRun:
    """Outputs in input order and the wall time of each batch."""

    outputs: List[Any]
    batch_seconds: List[float] = field(default_factory=list)
    batch_starts: List[float] = field(default_factory=list)  # time.perf_counter() at each batch's start

    @property
    def total_seconds(self) -> float:
        return float(sum(self.batch_seconds))


def run_batches(fn: Callable[[List[Any]], List[Any]], inputs: Sequence[Any], batches: List[List[int]],
                progress: bool = True, desc: str = "infer") -> BatchRun:
    """``fn`` on each batch under ``torch.inference_mode``; results put back at their inputs' positions."""
    import torch
    from tqdm.auto import tqdm

    outputs: List[Any] = [None] * len(inputs)
    run = BatchRun(outputs)
    bar = tqdm(total=len(inputs), desc=desc, unit="item", disable=not progress)
    with torch.inference_mode():
        for indices in batches:
            start = time.perf_counter()
            run.batch_starts.append(start)
            results = fn([inputs[i] for i in indices])
            run.batch_seconds.append(time.perf_counter() - start)
            if len(results) != len(indices):
                raise RuntimeError(f"{desc}: {len(results)} outputs for a batch of {len(indices)} inputs")
            for index, result in zip(indices, results):
                outputs[index] = result
            bar.update(len(indices))
    bar.close()
    return run
