"""The sweep summary: ``sweep_summary.json`` / ``.csv`` in the sweep dir, and a table with the best job
marked. Rebuilt from the job records (:mod:`experiments.sweep.records`) each time, so it is always
consistent with what is on disk (also after a resumed sweep).

A job that a resumed sweep ran again (it failed, or lost its metrics) keeps its folder and record, but
is *superseded* by the newer job with the same overrides: ``jobs``, the counts, the best job, the table
and the report hold only the current jobs; the superseded ones are listed apart (``superseded`` in the
JSON, status ``superseded`` in the CSV, one line under the table), so nothing is counted twice.

Jobs whose overrides differ only in the seed (:data:`SEED_KEYS`) are one *configuration*
(``configs``): with replicates, the best configuration is chosen on the mean of its finished jobs and
shown with the 95 % confidence interval (Student's t), and each configuration with 2+ seeds gets a verdict
against the best of them (``vs_best``: Welch over seeds, Holm-corrected together). With several objectives
(``hydra.sweeper.objectives``) the summary also holds every job's objective values and the Pareto front
of the finished jobs. Pruned jobs (stopped early by the search) and failed ones are counted and shown
with their status; only finished jobs can be best."""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from experiments import locks
from experiments.files import atomic_write, write_json
from experiments.metrics.significance import against_best
from experiments.record import higher_is_better, is_better
from experiments.record import quality_metrics as names_of
from experiments.runs import metric_values, read_metrics
from experiments.sweep import records
from experiments.sweep.naming import sweep_id
from experiments.sweep.records import SUMMARY_JSON

if TYPE_CHECKING:  # annotations only
    from omegaconf import DictConfig

log = logging.getLogger(__name__)

SUMMARY_CSV = "sweep_summary.csv"
MAX_TABLE_METRICS = 4
SUMMARY_WAIT_S = 120  # how long a summary waits for another process writing the same sweep's summary
# Override keys that make replicates: jobs that differ only in these are one configuration.
SEED_KEYS = ("trainer.seed",)


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
    best, best_value = None, None
    for job in jobs:
        value = metric_value(job, metric) if job.get("status") == records.FINISHED else None
        if value is not None and is_better(value, best_value, direction == "maximize"):
            best, best_value = job["job"], value
    return best


def build_summary(sweep_dir: Path, objective: Optional[str] = None, metric_for_best: Optional[str] = None,
                  sweeper_direction: Any = None, greater_is_better: bool = True,
                  objectives: Optional[List[str]] = None, replicates: int = 1) -> Dict[str, Any]:
    """The summary of the sweep in ``sweep_dir`` (see the module docstring); ``objectives`` (more than one
    name) makes it multi-objective, ``replicates`` > 1 always shows configurations with mean ± CI."""
    jobs, old = split_superseded(records.read_all(sweep_dir), sweep_dir)
    names = quality_metrics(jobs)
    objectives = [objectives] if isinstance(objectives, str) else [str(o) for o in objectives or []]
    metric = choose_metric(objectives[0] if objectives else objective, metric_for_best, names)
    direction = direction_for(metric, sweeper_direction, greater_is_better)
    configs = group_configs(jobs, metric)
    add_verdicts(configs, direction)
    top_config = best_config(configs, direction)
    grouped = int(replicates or 1) > 1 or any(c["n"] > 1 for c in configs)
    candidates = [j for j in jobs if j["config"] == top_config] if grouped else jobs
    best = best_job(candidates, metric, direction)
    for job in jobs:
        job["best"] = job["job"] == best
    for config in configs:
        config["best"] = config["config"] == top_config
    counts: Dict[str, int] = {}
    for job in jobs:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    summary = {
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
        "replicates": int(replicates or 1),
        "grouped": grouped,
        "configs": configs,
        "best_config": top_config,
    }
    if len(objectives) > 1:
        summary.update(pareto_summary(jobs, objectives, sweeper_direction, greater_is_better, Path(sweep_dir)))
    return summary


# -- replicates: configurations that differ only in the seed ------------------------------------------------

def config_overrides(overrides: List[str]) -> List[str]:
    """The overrides that make a job's configuration: all but the seed (:data:`SEED_KEYS`)."""
    return [o for o in overrides if split_override(o)[0] not in SEED_KEYS]


def mean_ci(values: List[float]) -> Dict[str, Optional[float]]:
    """n, mean, sample std (ddof=1) and the half-width of the 95 % confidence interval of the mean from
    Student's t, ``t.ppf(0.975, n - 1) * std / sqrt(n)`` (std and CI are None below two values)."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None}
    mean = math.fsum(values) / n
    if n < 2:
        return {"n": 1, "mean": mean, "std": None, "ci95": None}
    from scipy import stats

    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return {"n": n, "mean": mean, "std": std, "ci95": float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)}


def group_configs(jobs: List[Dict[str, Any]], metric: Optional[str]) -> List[Dict[str, Any]]:
    """One entry per configuration, in order of first job: its overrides (seed removed), job numbers,
    job counts by status, and ``n``/``mean``/``std``/``ci95`` of ``metric`` over its finished jobs (their
    ``values``). Each job gets ``config``, the number of its configuration."""
    groups: Dict[tuple, Dict[str, Any]] = {}
    for job in jobs:
        kept = config_overrides(job.get("overrides", []))
        group = groups.setdefault(records.job_key(kept), {"config": len(groups), "overrides": kept, "jobs": [],
                                                          "counts": {}, "values": []})
        job["config"] = group["config"]
        group["jobs"].append(job["job"])
        group["counts"][job["status"]] = group["counts"].get(job["status"], 0) + 1
        value = metric_value(job, metric) if job.get("status") == records.FINISHED else None
        if value is not None and math.isfinite(value):
            group["values"].append(value)
    for group in groups.values():
        group.update(mean_ci(group["values"]))
    return list(groups.values())


def add_verdicts(configs: List[Dict[str, Any]], direction: str) -> None:
    """Each configuration with 2+ finished seeds against the best of them, corrected together
    (``metrics.significance.against_best``): ``vs_best`` is best / worse / tie with its figures, else None."""
    verdicts = against_best([c["values"] for c in configs], higher_is_better=direction == "maximize")
    for config, verdict in zip(configs, verdicts):
        config["vs_best"] = verdict


def verdict_text(entry: Dict[str, Any]) -> str:
    """``best``, ``worse (p=0.003)``, ``tie (not distinguishable) (p=0.41, 12 seeds)`` or '' (fewer than 2 seeds)."""
    verdict = entry.get("vs_best")
    if not verdict:
        return ""
    if "p_holm" not in verdict:
        return verdict["vs_best"]
    needed = verdict.get("seeds_needed")
    extra = f", {needed} seeds to tell" if needed and verdict["vs_best"] != "worse" else ""
    return f"{verdict['vs_best']} (Holm p={verdict['p_holm']:.2g}{extra})"


def best_config(configs: List[Dict[str, Any]], direction: str) -> Optional[int]:
    """The configuration with the best mean (of its finished jobs), in ``direction``."""
    best, best_mean = None, None
    for config in configs:
        if config["mean"] is not None and is_better(config["mean"], best_mean, direction == "maximize"):
            best, best_mean = config["config"], config["mean"]
    return best


# -- several objectives: the Pareto front ---------------------------------------------------------------------

def objective_directions(objectives: List[str], sweeper_direction: Any, greater_is_better: bool = True) -> List[str]:
    """maximize | minimize per objective: the sweeper's list, one direction for all, or from the names."""
    if isinstance(sweeper_direction, (list, tuple)):
        given = list(sweeper_direction) + [None] * len(objectives)
        return [direction_for(name, given[i], greater_is_better) for i, name in enumerate(objectives)]
    return [direction_for(name, sweeper_direction, greater_is_better) for name in objectives]


def objective_values(job: Dict[str, Any], names: List[str], sweep_dir: Path) -> Dict[str, Optional[float]]:
    """A job's value of each objective: its final metric, else a number at the top of its metrics.json
    (``total_params``), else None."""
    values = {name: metric_value(job, name) for name in names}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        try:
            values.update(metric_values(read_metrics(records.resolve_run_dir(job, sweep_dir)), missing))
        except (OSError, ValueError):
            pass
    return values


def dominates(a: List[float], b: List[float]) -> bool:
    """``a`` is at least as good as ``b`` everywhere and better somewhere (values to maximise)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_front(jobs: List[Dict[str, Any]], objectives: List[str], directions: List[str]) -> List[int]:
    """Job numbers of the finished jobs that no other finished job dominates (their ``objective_values``)."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    points = []
    for job in jobs:
        values = [(job.get("objective_values") or {}).get(name) for name in objectives]
        if job.get("status") == records.FINISHED and all(v is not None and math.isfinite(v) for v in values):
            points.append((job["job"], [s * v for s, v in zip(signs, values)]))
    return [num for num, point in points if not any(dominates(other, point) for _, other in points)]


def pareto_summary(jobs: List[Dict[str, Any]], objectives: List[str], sweeper_direction: Any,
                   greater_is_better: bool, sweep_dir: Path) -> Dict[str, Any]:
    """``objectives``, ``directions`` and ``pareto_front`` of a multi-objective sweep; each job gets its
    ``objective_values`` and ``pareto`` (on the front or not)."""
    directions = objective_directions(objectives, sweeper_direction, greater_is_better)
    for job in jobs:
        job["objective_values"] = objective_values(job, objectives, sweep_dir)
    front = pareto_front(jobs, objectives, directions)
    for job in jobs:
        job["pareto"] = job["job"] in front
    return {"objectives": objectives, "directions": directions, "pareto_front": front}


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
    import io

    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    json_path = sweep_dir / SUMMARY_JSON
    write_json(json_path, summary)
    csv_path = sweep_dir / SUMMARY_CSV
    extra = objective_columns(summary)
    columns = ["job", "status", "best", *(["config"] if summary.get("grouped") else []),
               *(["pareto"] if "pareto_front" in summary else []), "overrides", *summary["metrics"], *extra,
               "duration_s", "run_dir", "error"]
    handle = io.StringIO()  # written whole (atomic_write: a temporary file of this process, then renamed)
    writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for job in [*summary["jobs"], *summary.get("superseded", [])]:
        status = "superseded" if "superseded_by" in job else job["status"]
        row = {"job": job["job"], "status": status, "best": job.get("best", False), "config": job.get("config"),
               "pareto": job.get("pareto", False), "overrides": " ".join(job.get("overrides", [])),
               "duration_s": job.get("duration_s"), "run_dir": job.get("run_dir"), "error": job.get("error") or ""}
        row.update({m: job.get("metrics", {}).get(m, "") for m in summary["metrics"]})
        row.update({m: _or_blank((job.get("objective_values") or {}).get(m)) for m in extra})
        writer.writerow(row)
    atomic_write(csv_path, handle.getvalue())
    return json_path, csv_path


def objective_columns(summary: Dict[str, Any]) -> List[str]:
    """Objectives that are not final metrics (``total_params``): extra columns of a multi-objective sweep."""
    return [name for name in summary.get("objectives") or [] if name not in summary["metrics"]]


def _or_blank(value: Any) -> Any:
    return "" if value is None else value


def job_value(job: Dict[str, Any], name: str) -> Optional[float]:
    """A job's final metric ``name``, or its objective value of that name."""
    value = job.get("metrics", {}).get(name)
    return value if value is not None else (job.get("objective_values") or {}).get(name)


def table_metrics(summary: Dict[str, Any]) -> List[str]:
    """The metric columns of the table: the decision metric, the other objectives, then the rest."""
    objectives = summary.get("objectives") or []
    first = [summary["metric"]] if summary.get("metric") in [*summary["metrics"], *objectives] else []
    first += [o for o in objectives if o not in first]
    rest = [m for m in summary["metrics"] if m not in first]
    return first + rest[: max(0, MAX_TABLE_METRICS - len(first))]


def format_table(summary: Dict[str, Any]) -> str:
    """A terminal table: one row per job, swept values as columns, the best job marked with ``*`` (and its
    configuration and whether it is on the Pareto front, when the sweep has those); then, with replicates,
    one row per configuration with the mean ± 95 % CI."""
    import pandas as pd

    shown = table_metrics(summary)
    rows = []
    for job in summary["jobs"]:
        params = dict(split_override(o) for o in job.get("overrides", []))
        row: Dict[str, Any] = {"job": job["job"], "best": "*" if job.get("best") else "", "status": job["status"]}
        if summary.get("grouped"):
            row["config"] = job.get("config")
        if "pareto_front" in summary:
            row["pareto"] = "*" if job.get("pareto") else ""
        if summary["swept"]:
            row.update({key: short_value(params.get(key, "")) for key in summary["swept"]})
        else:
            row["overrides"] = " ".join(job.get("overrides", []))
        row.update({m: job_value(job, m) for m in shown})
        row["duration_s"] = job.get("duration_s")
        row["run_dir"] = job.get("run_dir")
        if any(j.get("error") for j in summary["jobs"]):
            row["error"] = (job.get("error") or "")[:80]
        rows.append(row)
    if not rows:
        return "(no jobs)"
    frame = pd.DataFrame(rows)
    table = frame.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}")
    if summary.get("grouped"):
        table += "\n\n" + format_configs(summary)
    return table + _superseded_line(summary)


def config_params(summary: Dict[str, Any]) -> List[str]:
    """Swept keys that tell configurations apart (the seed is not one)."""
    return [key for key in summary["swept"] if key not in SEED_KEYS]


def mean_text(entry: Dict[str, Any]) -> str:
    """``0.8133 ± 0.0214`` (mean ± 95 % CI half-width), ``0.8133`` for one value, ``-`` for none."""
    if entry.get("mean") is None:
        return "-"
    return f"{entry['mean']:.4g}" + (f" ± {entry['ci95']:.2g}" if entry.get("ci95") is not None else "")


def format_configs(summary: Dict[str, Any]) -> str:
    """One row per configuration: its swept values, n finished, mean ± 95 % CI, std, its jobs; the best
    configuration (on the mean) marked with ``*``."""
    import pandas as pd

    keys = config_params(summary)
    rows = []
    for config in summary["configs"]:
        params = dict(split_override(o) for o in config["overrides"])
        row: Dict[str, Any] = {"config": config["config"], "best": "*" if config.get("best") else ""}
        row.update({key: short_value(params.get(key, "")) for key in keys})
        row.update({"n": config["n"], f"{summary['metric']} (mean ± 95% CI)": mean_text(config), "std": config["std"],
                    "vs best (over seeds)": verdict_text(config) or "-", "jobs": ",".join(str(j) for j in config["jobs"])})
        others = {s: n for s, n in config["counts"].items() if s != records.FINISHED}
        if any(c["counts"].keys() - {records.FINISHED} for c in summary["configs"]):
            row["not finished"] = ", ".join(f"{n} {s}" for s, n in sorted(others.items()))
        rows.append(row)
    title = f"configurations (jobs that differ only in {', '.join(SEED_KEYS)}; best on the mean):"
    return title + "\n" + pd.DataFrame(rows).to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.3g}")


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
    if summary.get("grouped") and summary.get("best_config") is not None:
        best_text = _best_config_text(summary)
    elif best is not None:
        job = next(j for j in summary["jobs"] if j["job"] == best)
        best_text = f"; best: job {best} ({summary['metric']}={metric_value(job, summary['metric']):.4g}, " \
                    f"{summary['direction']})"
    old = len(summary.get("superseded") or [])
    counts += f" (+{old} superseded)" if old else ""
    return f"sweep {summary['sweep']}: {counts}{best_text}{_pareto_text(summary)} -> {summary['sweep_dir']}"


def _best_config_text(summary: Dict[str, Any]) -> str:
    """``; best: config 1 (eval_accuracy=0.81 ± 0.02, mean ± 95% CI of 3, maximize; best job 4)``."""
    config = summary["configs"][summary["best_config"]]
    job = f"; best job {summary['best_job']}" if summary.get("best_job") is not None else ""
    return f"; best: config {config['config']} ({summary['metric']}={mean_text(config)}, mean ± 95% CI of " \
           f"{config['n']}, {summary['direction']}{job})"


def _pareto_text(summary: Dict[str, Any]) -> str:
    """``; Pareto front (eval_accuracy max, total_params min): jobs 1, 3``, or nothing."""
    if "pareto_front" not in summary:
        return ""
    goals = ", ".join(f"{o} {d[:3]}" for o, d in zip(summary["objectives"], summary["directions"]))
    jobs = ", ".join(str(j) for j in summary["pareto_front"]) or "none"
    return f"; Pareto front ({goals}): jobs {jobs}"


def summarize(composed: DictConfig) -> Dict[str, Any]:
    """Build and write the summary of the sweep a (primary, Hydra) config describes."""
    from omegaconf import OmegaConf

    def select(key: str, default: Any = None) -> Any:
        value = OmegaConf.select(composed, key, default=default)
        return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value

    sweep_dir = Path(str(composed.hydra.sweep.dir))
    return summarize_dir(sweep_dir, objective=select("objective"), metric_for_best=select("trainer.metric_for_best"),
                         sweeper_direction=select("hydra.sweeper.direction"),
                         greater_is_better=bool(select("trainer.greater_is_better", True)),
                         objectives=select("hydra.sweeper.objectives"),
                         replicates=int(select("hydra.sweeper.replicates", 1) or 1))


def summarize_dir(sweep_dir: Path, **options: Any) -> Dict[str, Any]:
    """Build and write the summary of ``sweep_dir`` (``options``: those of :func:`build_summary`). Writers take
    turns: the records are read and the files written under one lock, so a summary never replaces a newer
    one with fewer rows, and two writers never mix their files."""
    with locks.holding(sweep_dir, "hydra.sweep.dir", locks.SUMMARY_LOCK, wait_s=SUMMARY_WAIT_S):
        summary = build_summary(sweep_dir, **options)
        write_summary(summary, sweep_dir)
    return summary


def print_summary(summary: Dict[str, Any]) -> None:
    """The table and headline on stdout (and where the HTML report is, when one was written)."""
    print("\n" + format_table(summary) + "\n" + headline(summary), flush=True)
    if summary.get("report"):
        print(f"report: {summary['report']}", flush=True)
