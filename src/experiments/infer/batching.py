"""Length-sorted batches with the output order preserved, timed batch by batch."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Sequence


def plan_batches(lengths: Sequence[int], batch_size: int, sort_by_length: bool = True) -> List[List[int]]:
    """Index lists of at most ``batch_size``; longest inputs first when sorting (less padding per batch)."""
    order = list(range(len(lengths)))
    if sort_by_length:
        order.sort(key=lambda i: lengths[i], reverse=True)  # stable: equal lengths keep input order
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


@dataclass
class BatchRun:
    """Outputs in input order and the wall time of each batch."""

    outputs: List[Any]
    batch_seconds: List[float] = field(default_factory=list)

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
            results = fn([inputs[i] for i in indices])
            run.batch_seconds.append(time.perf_counter() - start)
            if len(results) != len(indices):
                raise RuntimeError(f"{desc}: {len(results)} outputs for a batch of {len(indices)} inputs")
            for index, result in zip(indices, results):
                outputs[index] = result
            bar.update(len(indices))
    bar.close()
    return run
