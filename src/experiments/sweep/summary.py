"""The sweep summary: ``sweep_summary.json`` / ``.csv`` in the sweep dir, and a table with the best job
marked. Rebuilt from the job records (:mod:`experiments.sweep.records`) each time, so it is always
consistent with what is on disk (also after a resumed sweep).

A job that a resumed sweep ran again (it failed, or lost its metrics) keeps its folder and record, but
is *superseded* by the newer job with the same overrides: ``jobs``, the counts, the best job, the table
and the report hold only the current jobs; the superseded ones are listed apart (``superseded`` in the
JSON, status ``superseded`` in the CSV, one line under the table), so nothing is counted twice."""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from experiments.sweep import records

log = logging.getLogger(__name__)

SUMMARY_JSON = "sweep_summary.json"
SUMMARY_CSV = "sweep_summary.csv"
MAX_TABLE_METRICS = 4


def split_override(override: str) -> Tuple[str, str]:
    """``trainer.lr=3e-5`` -> (``trainer.lr``, ``3e-5``)."""
    key, _, value = str(override).partition("=")
    return key.lstrip("+~"), value


def swept_params(jobs: List[Dict[str, Any]]) -> Dict[str, List[str]]:
    """Override keys whose value differs between the jobs, with their values in job order."""
    values: Dict[str, List[str]] = {}
    for job in jobs:
        for override in job.get("overrides", []):
            key, value = split_override(override)
            if not key.startswith("hydra"):
                values.setdefault(key, [])
                if value not in values[key]:
                    values[key].append(value)
    keys_everywhere = {k for k in values if all(any(split_override(o)[0] == k for o in j.get("overrides", []))
                                                 for j in jobs)}
    return {k: v for k, v in values.items() if len(v) > 1 or k not in keys_everywhere}


def quality_metrics(jobs: List[Dict[str, Any]]) -> List[str]:
    """Metric names worth a column: every non-speed metric of the finished jobs, in first-seen order."""
    from experiments.record import quality_metrics as names_of

    return names_of(job.get("metrics", {}) for job in jobs)


def choose_metric(objective: Optional[str], metric_for_best: Optional[str], names: List[str]) -> Optional[str]:
    """The metric that decides the best job: the objective, else trainer.metric_for_best, else the
    first eval metric that is not the loss."""
    if objective:
        return objective
    if metric_for_best:
        return metric_for_best if metric_for_best.startswith("eval_") else f"eval_{metric_for_best}"
    evals = [n for n in names if n.startswith("eval_") and n != "eval_loss"]
    return evals[0] if evals else ("eval_loss" if "eval_loss" in names else None)


def direction_for(metric: Optional[str], sweeper_direction: Any, greater_is_better: bool = True) -> str:
    """maximize | minimize: the sweeper's direction when it has one, else from the metric's name."""
    if isinstance(sweeper_direction, (list, tuple)) and sweeper_direction:
        sweeper_direction = sweeper_direction[0]
    sweeper_direction = getattr(sweeper_direction, "name", sweeper_direction)  # Optuna's Direction enum
    if isinstance(sweeper_direction, str) and sweeper_direction.lower() in ("maximize", "minimize"):
        return sweeper_direction.lower()
    from experiments.record import higher_is_better

    if metric and "loss" in metric:
        return "minimize"
    return "maximize" if higher_is_better(metric or "", greater_is_better) else "minimize"


def metric_value(job: Dict[str, Any], metric: Optional[str]) -> Optional[float]:
    if not metric:
        return None
    if job.get("objective") == metric and job.get("objective_value") is not None:
        return float(job["objective_value"])
    value = job.get("metrics", {}).get(metric)
    return float(value) if value is not None else None


def best_job(jobs: List[Dict[str, Any]], metric: Optional[str], direction: str) -> Optional[int]:
    from experiments.record import is_better

    best, best_value = None, None
    for job in jobs:
        value = metric_value(job, metric) if job.get("status") == records.FINISHED else None
        if value is not None and is_better(value, best_value, direction == "maximize"):
            best, best_value = job["job"], value
    return best


def build_summary(sweep_dir: Path, objective: Optional[str] = None, metric_for_best: Optional[str] = None,
                  sweeper_direction: Any = None, greater_is_better: bool = True) -> Dict[str, Any]:
    from experiments.sweep.naming import sweep_id

    jobs, old = split_superseded(records.read_all(sweep_dir), sweep_dir)
    names = quality_metrics(jobs)
    metric = choose_metric(objective, metric_for_best, names)
    direction = direction_for(metric, sweeper_direction, greater_is_better)
    best = best_job(jobs, metric, direction)
    for job in jobs:
        job["best"] = job["job"] == best
    counts: Dict[str, int] = {}
    for job in jobs:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    return {
        "sweep": jobs[0]["sweep"] if jobs else sweep_id(str(sweep_dir)),
        "sweep_dir": str(Path(sweep_dir).resolve()),
        "metric": metric,
        "direction": direction,
        "best_job": best,
        "counts": counts,
        "swept": swept_params(jobs),
        "metrics": names,
        "jobs": jobs,
        "superseded": old,
    }


def split_superseded(jobs: List[Dict[str, Any]],
                     sweep_dir: Path) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(current jobs, superseded jobs): a re-run replaces the earlier attempt in every count and table,
    while the earlier one stays visible, marked with the job that replaced it (``superseded_by``)."""
    gone = records.superseded(jobs, sweep_dir)
    for pos, newer in gone.items():
        jobs[pos]["superseded_by"] = newer
    return [j for p, j in enumerate(jobs) if p not in gone], [j for p, j in enumerate(jobs) if p in gone]


def write_summary(summary: Dict[str, Any], sweep_dir: Path) -> Tuple[Path, Path]:
    """``sweep_summary.json`` (everything) and ``sweep_summary.csv`` (one row per job)."""
    from experiments.runs import write_json

    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    json_path = sweep_dir / SUMMARY_JSON
    write_json(json_path, summary)
    csv_path = sweep_dir / SUMMARY_CSV
    columns = ["job", "status", "best", "overrides", *summary["metrics"], "duration_s", "run_dir", "error"]
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for job in [*summary["jobs"], *summary.get("superseded", [])]:
            status = "superseded" if "superseded_by" in job else job["status"]
            row = {"job": job["job"], "status": status, "best": job.get("best", False),
                   "overrides": " ".join(job.get("overrides", [])), "duration_s": job.get("duration_s"),
                   "run_dir": job.get("run_dir"), "error": job.get("error") or ""}
            row.update({m: job.get("metrics", {}).get(m, "") for m in summary["metrics"]})
            writer.writerow(row)
    tmp.replace(csv_path)
    return json_path, csv_path


def format_table(summary: Dict[str, Any]) -> str:
    """A terminal table: one row per job, swept values as columns, the best job marked with ``*``."""
    import pandas as pd

    metric = summary.get("metric")
    shown = [m for m in summary["metrics"] if m == metric]
    shown += [m for m in summary["metrics"] if m != metric][: MAX_TABLE_METRICS - len(shown)]
    rows = []
    for job in summary["jobs"]:
        params = dict(split_override(o) for o in job.get("overrides", []))
        row: Dict[str, Any] = {"job": job["job"], "best": "*" if job.get("best") else "", "status": job["status"]}
        if summary["swept"]:
            row.update({key: short_value(params.get(key, "")) for key in summary["swept"]})
        else:
            row["overrides"] = " ".join(job.get("overrides", []))
        row.update({m: job.get("metrics", {}).get(m) for m in shown})
        row["duration_s"] = job.get("duration_s")
        row["run_dir"] = job.get("run_dir")
        if any(j.get("error") for j in summary["jobs"]):
            row["error"] = (job.get("error") or "")[:80]
        rows.append(row)
    if not rows:
        return "(no jobs)"
    frame = pd.DataFrame(rows)
    table = frame.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}")
    return table + _superseded_line(summary)


def _superseded_line(summary: Dict[str, Any]) -> str:
    """``superseded (run again later): job 1 (failed) -> job 3`` under the table, or nothing."""
    old = summary.get("superseded") or []
    if not old:
        return ""
    items = ", ".join(f"job {j['job']} ({j['status']}) -> job {j['superseded_by']}" for j in old)
    return f"\nsuperseded (run again later, folders kept): {items}"


def short_value(value: str) -> str:  # also used by the HTML report
    """``2.368863950364079e-05`` -> ``2.369e-05`` (text stays as it is)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return value if len(value) <= 8 else f"{number:.4g}"


def headline(summary: Dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items()))
    best = summary["best_job"]
    best_text = ""
    if best is not None:
        job = next(j for j in summary["jobs"] if j["job"] == best)
        best_text = f"; best: job {best} ({summary['metric']}={metric_value(job, summary['metric']):.4g}, " \
                    f"{summary['direction']})"
    old = len(summary.get("superseded") or [])
    counts += f" (+{old} superseded)" if old else ""
    return f"sweep {summary['sweep']}: {counts}{best_text} -> {summary['sweep_dir']}"


def summarize(config) -> Dict[str, Any]:
    """Build and write the summary of the sweep a (primary, Hydra) config describes."""
    from omegaconf import OmegaConf

    sweep_dir = Path(str(config.hydra.sweep.dir))
    summary = build_summary(
        sweep_dir,
        objective=OmegaConf.select(config, "objective", default=None),
        metric_for_best=OmegaConf.select(config, "trainer.metric_for_best", default=None),
        sweeper_direction=OmegaConf.select(config, "hydra.sweeper.direction", default=None),
        greater_is_better=bool(OmegaConf.select(config, "trainer.greater_is_better", default=True)),
    )
    write_summary(summary, sweep_dir)
    return summary


def print_summary(summary: Dict[str, Any]) -> None:
    """The table and headline on stdout (and where the HTML report is, when one was written)."""
    print("\n" + format_table(summary) + "\n" + headline(summary), flush=True)
    if summary.get("report"):
        print(f"report: {summary['report']}", flush=True)
