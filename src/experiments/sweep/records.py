"""One JSON record per sweep job (``sweep_job.json`` in its run dir): what ran, how it ended, its metrics.

Written by the job itself (a Hydra callback, whichever launcher runs it) or, when the job's process
died before it could, by the launcher. The sweep summary is rebuilt from these files alone.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set

from experiments.errors import ExperimentError
from experiments.files import write_json
from experiments.runs import read_metrics

RECORD_FILE = "sweep_job.json"
SUMMARY_JSON = "sweep_summary.json"  # the sweep's summary (sweep/summary.py writes it)
FINISHED = "finished"
FAILED = "failed"
PRUNED = "pruned"  # stopped early by the search's pruner (its metrics are partial)
from experiments.record import SPEED_KEYS  # noqa: E402,F401  (re-exported for readers of records)

_SKIP_DIRS = {"checkpoints", "best", "last", "wandb", "tensorboard", ".hydra", ".launcher", ".submitit"}


def outcome(job_return) -> Any:
    """A Hydra job's return value, or the exception it failed with (Hydra's public getter re-raises it)."""
    try:
        return job_return.return_value
    except BaseException as exc:  # noqa: B902 - a failed job's stored exception, whatever its type
        return exc


def error_line(exc: BaseException) -> str:
    """One line that says what went wrong: the message for user errors, ``Type: message`` otherwise."""
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
    try:
        final = read_metrics(run_dir).get("final", {}) or {}
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in final.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def ended_as(run_dir: Path) -> str:
    """FINISHED, or PRUNED when the run stopped because its search pruned it (metrics.json ``stopped``)."""
    try:
        stopped = read_metrics(run_dir).get("stopped") or {}
    except (OSError, ValueError):
        return FINISHED
    return PRUNED if stopped.get("reason") == PRUNED else FINISHED


def read(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The job record in ``run_dir``, or None."""
    try:
        return json.loads((Path(run_dir) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None


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
                record = json.loads((Path(root) / RECORD_FILE).read_text())
                if not isinstance(record, dict):
                    raise ValueError("not a job record")
                records.append(record)
            except (OSError, ValueError) as exc:  # a truncated or unreadable record: that job is left out
                logging.getLogger(__name__).warning("skipping %s: cannot read it (%s)", Path(root) / RECORD_FILE,
                                                    getattr(exc, "strerror", None) or exc)
    return sorted(records, key=lambda r: (r.get("job", 0), r.get("run_dir", "")))


def finished_jobs(sweep_dir: Path) -> Dict[tuple, Dict[str, Any]]:
    """Records of the jobs that finished (and still have their metrics), keyed by :func:`job_key`."""
    done = {}
    for record in read_all(sweep_dir):
        if _has_metrics(record, sweep_dir):
            done[job_key(record.get("overrides", []))] = record
    return done


def _has_metrics(record: Dict[str, Any], sweep_dir: Path) -> bool:
    run_dir = resolve_run_dir(record, sweep_dir)
    return record.get("status") == FINISHED and (run_dir / "metrics.json").is_file()


def latest_jobs(sweep_dir: Path) -> Dict[tuple, Dict[str, Any]]:
    """The newest record (highest job number) per :func:`job_key`: what a resumed sweep re-runs is
    named after the job it replaces."""
    latest: Dict[tuple, Dict[str, Any]] = {}
    for record in read_all(sweep_dir):  # sorted by job number: later records win
        latest[job_key(record.get("overrides", []))] = record
    return latest


def used_job_numbers(sweep_dir: Path) -> Set[int]:
    """Job numbers that already have something in the sweep dir (a record, a numbered folder, a launcher
    file): a resumed sweep numbers its new jobs after all of them, so it never writes into their files."""
    sweep_dir = Path(sweep_dir)
    used = {int(r["job"]) for r in read_all(sweep_dir) if str(r.get("job", "")).isdigit()}
    if sweep_dir.is_dir():
        used |= {int(p.name) for p in sweep_dir.iterdir() if p.name.isdigit()}
        launcher_dir = sweep_dir / ".launcher"
        if launcher_dir.is_dir():
            found = (re.match(r"job_(\d+)\.", p.name) for p in launcher_dir.iterdir())
            used |= {int(m.group(1)) for m in found if m}
    return used


def superseded(jobs: List[Dict[str, Any]], sweep_dir: Path) -> Dict[int, int]:
    """{position in ``jobs``: job number of the next newer record with the same overrides} for every job
    that a resumed sweep ran again: a failed job, or a finished one whose metrics.json is gone. A finished
    job with metrics is never superseded (a search that tries the same values twice keeps both)."""
    out: Dict[int, int] = {}
    for pos, job in enumerate(jobs):
        if _has_metrics(job, sweep_dir):
            continue
        key, num = job_key(job.get("overrides", [])), job.get("job", -1)
        newer = [o.get("job", -1) for o in jobs if o is not job and o.get("job", -1) > num
                 and job_key(o.get("overrides", [])) == key]
        if newer:
            out[pos] = min(newer)
    return out


def resolve_run_dir(record: Dict[str, Any], sweep_dir: Path) -> Path:
    path = Path(record.get("run_dir", ""))
    return path if path.is_absolute() else Path(sweep_dir) / path
