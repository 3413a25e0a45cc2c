"""Metrics shipped as local `evaluate` modules, so they load without network access.

Each sub-folder ``<name>/<name>.py`` is an `evaluate.Metric` module. Load one with :func:`load`
(a thin wrapper around ``evaluate.load(<folder>)``), or build a Trainer-style metric function for a
classification / regression run with :func:`for_classification`. `evaluate` itself is imported lazily:
importing this package stays cheap.

The scripts share their MetricInfo, input features and compute wrappers through ``_shared.py`` (which
says why they import it absolutely) and take their BibTeX from ``citations.yaml``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import evaluate

__all__ = ["METRICS_DIR", "available", "for_classification", "load"]

METRICS_DIR: Path = Path(__file__).resolve().parent

# Unique per process, so concurrent runs never share evaluate's cache files or locks.
_PROCESS_TOKEN = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def available() -> list[str]:
    """Names of the bundled metric modules, sorted."""
    return sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())


def load(name: str, config_name: str | None = None, **kw: Any) -> evaluate.EvaluationModule:
    """Load the bundled metric ``name`` (with an optional config, e.g. ``load("glue", "mrpc")``).

    Extra keyword arguments go to ``evaluate.load``. For single-process use the metric is kept in
    memory and gets a per-process ``experiment_id`` unless given; in distributed use
    (``num_process > 1``) pass a shared ``experiment_id`` and ``cache_dir`` yourself.
    """
    names = available()
    if name not in names:
        raise ValueError(f"unknown metric {name!r} (available: {', '.join(names)})")
    import evaluate

    if kw.get("num_process", 1) == 1:
        kw.setdefault("keep_in_memory", True)
        kw.setdefault("experiment_id", f"{name}-{config_name or 'default'}-{_PROCESS_TOKEN}")
    return evaluate.load(str(METRICS_DIR / name), config_name, **kw)


def _as_labels(predictions: Any) -> Any:
    """Class ids from label ids or from ``(n, num_labels)`` logits (argmax over the last axis)."""
    import numpy as np

    array = np.asarray(predictions)
    return array.argmax(axis=-1) if array.ndim > 1 else array


def _as_scores(values: Any) -> Any:
    """A flat float array from scores shaped ``(n,)`` or ``(n, 1)``."""
    import numpy as np

    return np.asarray(values, dtype=np.float64).reshape(-1)


def for_classification(
    dataset_metric: str | None,
    metric_config: str | None,
    num_labels: int,
    is_regression: bool = False,
) -> Callable[[Sequence[Any], Sequence[Any]], dict[str, float]]:
    """Build ``compute(predictions, references) -> dict[str, float]`` for a sequence-classification run.

    The task metric ``dataset_metric``/``metric_config`` (e.g. ``"glue"``/``"mrpc"``; ``None`` for none)
    is merged with generic metrics: ``accuracy`` (plus ``f1_macro`` when ``num_labels > 2``) for
    classification, or ``pearson``, ``spearmanr`` and ``mse`` for regression. Task keys win on clashes.
    Predictions may be label ids or logits (argmax is taken); regression predictions may be ``(n, 1)``.
    All metrics load here, so a bad name fails before training starts.
    """
    import numpy as np
    from sklearn.metrics import mean_squared_error

    task = load(dataset_metric, metric_config) if dataset_metric else None
    if is_regression:
        pearson, spearman = load("pearsonr"), load("spearmanr")
    else:
        accuracy = load("accuracy")
        f1 = load("f1") if num_labels > 2 else None

    def compute(predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        if is_regression:
            preds, refs = _as_scores(predictions), _as_scores(references)
        else:
            preds, refs = _as_labels(predictions), np.asarray(references)
        result: dict[str, float] = {}
        if task is not None:
            result.update(task.compute(predictions=preds, references=refs))
        if is_regression:
            extra = {
                "pearson": pearson.compute(predictions=preds, references=refs)["pearsonr"],
                "spearmanr": spearman.compute(predictions=preds, references=refs)["spearmanr"],
                "mse": mean_squared_error(refs, preds),
            }
        else:
            extra = accuracy.compute(predictions=preds, references=refs)
            if f1 is not None:
                extra["f1_macro"] = f1.compute(predictions=preds, references=refs, average="macro")["f1"]
        for key, value in extra.items():
            result.setdefault(key, value)
        return {key: float(value) for key, value in result.items()}

    return compute
