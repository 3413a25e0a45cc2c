"""The run record: what ``metrics.json`` holds, one schema for every mode and backend.

Every mode builds a :class:`RunRecord` and writes it with :func:`write_record`; every reader (sweep
records, the runs index, compare, the dashboard) goes through :func:`read_record`. The file stays flat
JSON (``final``, ``history``, ``device``, … at the top level, mode-specific ``details`` beside them) so
it is easy to read by hand and by ``jq``; ``schema_version`` says which schema wrote it.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from experiments.files import write_json

METRICS_FILE = "metrics.json"
SCHEMA_VERSION = 1
# Final metrics that describe speed or progress, not quality: kept in records, left out of tables and plots.
SPEED_KEYS = ("eval_runtime_s", "eval_samples_per_second", "eval_steps_per_second", "train_samples_per_second",
              "train_runtime_s", "train_flops_per_second", "global_step", "epochs")


# Metrics where lower is better whatever trainer.greater_is_better says (the loss, and perplexity = exp(loss)).
LOWER_IS_BETTER = ("eval_loss", "eval_perplexity")


def higher_is_better(key: str, greater_is_better: bool = True) -> bool:
    return greater_is_better and key not in LOWER_IS_BETTER


def is_quality_metric(key: str) -> bool:
    return key not in SPEED_KEYS


def quality_metrics(finals: Iterable[Dict[str, Any]]) -> List[str]:
    """Quality metric names of several runs' ``final`` dicts, in first-seen order."""
    names: List[str] = []
    for final in finals:
        names += [k for k in final if is_quality_metric(k) and k not in names]
    return names


def is_better(value: float, best: Optional[float], higher_is_better: bool) -> bool:
    """The one rule for "which run / evaluation is best": a finite value beats none or a worse one."""
    import math

    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if higher_is_better else value < best


@dataclass
class RunRecord:
    mode: str  # train | infer
    model: str  # model.name_or_path as configured
    run_name: str = ""
    backend: str = ""  # train: accelerate | hf_trainer; infer: pipeline | manual (the path asked for)
    model_source: str = ""  # "<origin>:<directory>" the weights came from
    dataset: str = ""
    final: Dict[str, Any] = field(default_factory=dict)  # metrics at the end (empty while running)
    best: Optional[Dict[str, Any]] = None  # {"metric", "value", "step"} (train)
    history: List[Dict[str, Any]] = field(default_factory=list)  # one row per evaluation (train)
    train_log: List[Dict[str, Any]] = field(default_factory=list)  # one row per logging step (train)
    num_train_samples: Optional[int] = None
    num_eval_samples: Optional[int] = None
    global_batch_size: Optional[int] = None
    mixed_precision: Optional[str] = None
    resumed_from: Optional[str] = None
    # train: why and when training ended ({"reason": "completed" | "early_stopping" | "pruned", "step", ...};
    # "pruned": a search stopped the trial early, see experiments.runs.STOP_REQUEST)
    stopped: Optional[Dict[str, Any]] = None
    distributed_type: Optional[str] = None
    task: Optional[str] = None  # train: the task trained (task.name)
    peft: Optional[str] = None  # train: none | lora
    trainable_params: Optional[int] = None  # train: parameters the optimizer updates
    total_params: Optional[int] = None
    environment: Dict[str, Any] = field(default_factory=dict)  # device, processes, threads, versions
    details: Dict[str, Any] = field(default_factory=dict)  # mode-specific (inference: task, tokens, …)
    schema_version: int = SCHEMA_VERSION

    @property
    def finished(self) -> bool:
        return bool(self.final)


_FIELDS = [f.name for f in dataclasses.fields(RunRecord) if f.name not in ("environment", "details")]
_ENVIRONMENT = ("device", "num_processes", "torch_threads", "cpu_count", "python", "platform", "versions")


def to_payload(record: RunRecord) -> Dict[str, Any]:
    """The flat JSON object written to metrics.json."""
    payload = {name: getattr(record, name) for name in _FIELDS}
    payload.update(record.environment)
    payload.update(record.details)
    return payload


def write_record(run_dir: Path, record: RunRecord) -> Dict[str, Any]:
    """The one writer of metrics.json (atomic: a reader never sees half a file). Returns the payload."""
    payload = to_payload(record)
    write_json(Path(run_dir) / METRICS_FILE, payload)
    return payload


def from_payload(payload: Dict[str, Any]) -> RunRecord:
    known = {k: payload[k] for k in _FIELDS if k in payload}
    environment = {k: payload[k] for k in _ENVIRONMENT if k in payload}
    details = {k: v for k, v in payload.items() if k not in known and k not in environment}
    known.setdefault("mode", "train")
    known.setdefault("model", "")
    return RunRecord(**known, environment=environment, details=details)


def read_record(run_dir: Path) -> Optional[RunRecord]:
    """The one reader of metrics.json: None when the run wrote none (or it cannot be read)."""
    path = Path(run_dir) / METRICS_FILE
    try:
        return from_payload(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
