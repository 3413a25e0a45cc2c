"""One JSON record per sweep job (``sweep_job.json`` in its run dir): what ran, how it ended, its metrics.

Written by the job itself (a Hydra callback, whichever launcher runs it) or, when the job's process
died before it could, by the launcher. The sweep summary is rebuilt from these files alone.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

RECORD_FILE = "sweep_job.json"
FINISHED = "finished"
FAILED = "failed"
# Final metrics that describe speed, not quality: kept in the record, left out of tables and plots.
SPEED_KEYS = ("eval_runtime_s", "eval_samples_per_second", "train_samples_per_second", "train_runtime_s",
              "train_flops_per_second", "global_step", "epochs")
_SKIP_DIRS = {"checkpoints", "best", "last", "wandb", "tensorboard", ".hydra", ".launcher", ".submitit"}


def error_line(exc: BaseException) -> str:
    """One line that says what went wrong: the message for user errors, ``Type: message`` otherwise."""
    from experiments.errors import ExperimentError

    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, ExperimentError):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def job_key(overrides: Iterable[str]) -> tuple:
    """Identity of a job within a sweep: its overrides, order-insensitive."""
    return tuple(sorted(str(o) for o in overrides))


def final_metrics(run_dir: Path) -> Dict[str, float]:
    """The float metrics of ``metrics.json``'s "final" dict (empty when the run wrote none)."""
    from experiments.runs import read_metrics

    try:
        final = read_metrics(run_dir).get("final", {}) or {}
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in final.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def build(*, job: int, overrides: List[str], status: str, run_dir: Path, sweep_dir: Path, sweep: str,
          started_at: float, finished_at: float, error: Optional[str] = None, objective: Optional[str] = None,
          objective_value: Optional[float] = None, choices: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A job record (see module docstring)."""
    return {
        "job": job,
        "overrides": list(overrides),
        "status": status,
        "error": error,
        "objective": objective,
        "objective_value": objective_value,
        "metrics": final_metrics(run_dir),
        "duration_s": round(finished_at - started_at, 3),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started_at)),
        "run_dir": relative_run_dir(run_dir, sweep_dir),
        "sweep": sweep,
        "choices": choices or {},
    }


def relative_run_dir(run_dir: Path, sweep_dir: Path) -> str:
    """The run dir relative to the sweep dir when inside it (summaries stay valid when moved)."""
    try:
        return str(Path(run_dir).resolve().relative_to(Path(sweep_dir).resolve()))
    except ValueError:
        return str(Path(run_dir).resolve())


def write(run_dir: Path, record: Dict[str, Any]) -> Path:
    from experiments.runs import write_json

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    path = Path(run_dir) / RECORD_FILE
    write_json(path, record)
    return path


def read_all(sweep_dir: Path) -> List[Dict[str, Any]]:
    """Every job record below ``sweep_dir``, by job number."""
    records = []
    for root, dirs, files in os.walk(sweep_dir):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        if RECORD_FILE in files:
            try:
                records.append(json.loads((Path(root) / RECORD_FILE).read_text()))
            except (OSError, ValueError):
                continue
    return sorted(records, key=lambda r: (r.get("job", 0), r.get("run_dir", "")))


def finished_jobs(sweep_dir: Path) -> Dict[tuple, Dict[str, Any]]:
    """Records of the jobs that finished (and still have their metrics), keyed by :func:`job_key`."""
    done = {}
    for record in read_all(sweep_dir):
        run_dir = resolve_run_dir(record, sweep_dir)
        if record.get("status") == FINISHED and (run_dir / "metrics.json").is_file():
            done[job_key(record.get("overrides", []))] = record
    return done


def resolve_run_dir(record: Dict[str, Any], sweep_dir: Path) -> Path:
    path = Path(record.get("run_dir", ""))
    return path if path.is_absolute() else Path(sweep_dir) / path
