"""``report.html`` in a sweep dir: the summary table (pruned and failed jobs with their status), the
configurations with mean ± 95 % CI when the sweep has replicates, the chosen metric against every swept
hyperparameter (learning-rate-like axes on a log scale), the Pareto front of a multi-objective sweep, the
jobs' learning curves overlaid, and Optuna's own plots of the study when the sweep was a search. One
self-contained file (plots inlined), laid out by a jinja2 template that escapes every value it is given."""
from __future__ import annotations

import base64
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from experiments.files import atomic_write
from experiments.report.study_plots import study_figures
from experiments.sweep import records
from experiments.sweep.summary import (
    SEED_KEYS,
    config_params,
    job_value,
    mean_text,
    metric_value,
    objective_columns,
    short_value,
    split_override,
    verdict_text,
)

REPORT_FILE = "report.html"
TEMPLATE = "report.html.j2"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _as_number(text: str) -> Optional[float]:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def log_axis(key: str, numbers: List[Optional[float]]) -> bool:
    """A log-scale axis for a hyperparameter: all values positive and either a learning-rate-like key
    (ending in ``lr`` or ``learning_rate``) or values spanning at least a factor of 10."""
    if not numbers or any(n is None or n <= 0 for n in numbers):
        return False
    lr_like = key.lower().endswith(("lr", "learning_rate"))
    return lr_like or max(numbers) / min(numbers) >= 10


def _job_param(job: Dict[str, Any], key: str) -> Optional[str]:
    return dict(split_override(o) for o in job["overrides"]).get(key)


def metric_vs_param_plots(summary: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(title, image) per swept hyperparameter: the summary's metric of each finished job (the best one a
    red star), pruned jobs' partial values as grey crosses, and with replicates each configuration's mean
    with its 95 % CI as an error bar. The seed gets no plot when the sweep has replicates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = summary.get("metric")
    shown = [j for j in summary["jobs"] if j["status"] in (records.FINISHED, records.PRUNED)
             and metric_value(j, metric) is not None]
    plots: List[Tuple[str, str]] = []
    if not metric or not any(j["status"] == records.FINISHED for j in shown):
        return plots
    keys = config_params(summary) if summary.get("grouped") else list(summary["swept"])
    for key in keys:
        values = summary["swept"][key]
        numbers = [_as_number(v) for v in values]
        numeric = all(n is not None for n in numbers)

        def position(raw: str) -> float:
            return float(raw) if numeric else values.index(raw)  # noqa: B023 - used within this iteration

        fig, ax = plt.subplots(figsize=(5, 3.4))
        for job in shown:
            raw = _job_param(job, key)
            if raw is not None:
                _job_point(ax, job, position(raw), metric_value(job, metric))
        if summary.get("grouped"):
            _config_means(ax, summary, key, position)
        if numeric and log_axis(key, numbers):
            ax.set_xscale("log")
        elif not numeric:
            ax.set_xticks(range(len(values)))
            ax.set_xticklabels(values, rotation=20, fontsize=8)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.set_title(f"{metric} vs {key}", fontsize=10)
        plots.append((f"{metric} vs {key}", _png(fig)))
    return plots


def _job_point(ax, job: Dict[str, Any], x: float, y: float) -> None:
    """One job in a metric-vs-parameter plot: best = red star, pruned = grey cross, others blue dots."""
    if job["status"] == records.PRUNED:
        ax.scatter([x], [y], s=30, marker="x", color="tab:gray")
        label = f"{job['job']} (pruned)"
    else:
        best = bool(job.get("best"))
        ax.scatter([x], [y], s=60 if best else 30, marker="*" if best else "o",
                   color="tab:red" if best else "tab:blue")
        label = str(job["job"])
    ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)


def _config_means(ax, summary: Dict[str, Any], key: str, position) -> None:
    """Each configuration's mean ± 95 % CI at its value of ``key`` (black bars; the best one red)."""
    for config in summary["configs"]:
        raw = dict(split_override(o) for o in config["overrides"]).get(key)
        if raw is None or config["mean"] is None:
            continue
        ax.errorbar([position(raw)], [config["mean"]], yerr=[config["ci95"] or 0.0], fmt="_", markersize=14,
                    capsize=4, color="tab:red" if config.get("best") else "black", zorder=3)


def pareto_plot(summary: Dict[str, Any]) -> Optional[str]:
    """The first two objectives of a multi-objective sweep, one point per finished job, the Pareto front
    red and joined; pruned jobs as grey crosses."""
    if "pareto_front" not in summary or len(summary["objectives"]) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_name, y_name = summary["objectives"][:2]
    points = {j["job"]: (j, (j.get("objective_values") or {}).get(x_name), (j.get("objective_values") or {}).get(y_name))
              for j in summary["jobs"] if j["status"] in (records.FINISHED, records.PRUNED)}
    points = {n: p for n, p in points.items() if p[1] is not None and p[2] is not None}
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for num, (job, x, y) in points.items():
        pruned = job["status"] == records.PRUNED
        on_front = num in summary["pareto_front"]
        ax.scatter([x], [y], marker="x" if pruned else "o", s=40 if on_front else 25,
                   color="tab:gray" if pruned else ("tab:red" if on_front else "tab:blue"))
        ax.annotate(f"{num}{' (pruned)' if pruned else ''}", (x, y), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)
    front = sorted((points[n][1], points[n][2]) for n in summary["pareto_front"] if n in points)
    if len(front) > 1:
        ax.plot([p[0] for p in front], [p[1] for p in front], "-", color="tab:red", alpha=0.5)
    if log_axis("", [p[1] for p in points.values()]):
        ax.set_xscale("log")
    if log_axis("", [p[2] for p in points.values()]):
        ax.set_yscale("log")
    directions = dict(zip(summary["objectives"], summary["directions"]))
    ax.set(xlabel=f"{x_name} ({directions[x_name]})", ylabel=f"{y_name} ({directions[y_name]})",
           title="Pareto front (red)")
    ax.grid(alpha=0.3)
    return _png(fig)


def _label(job: Dict[str, Any], swept: Dict[str, List[str]]) -> str:
    params = dict(split_override(o) for o in job["overrides"])
    shown = ", ".join(f"{k.split('.')[-1]}={short_value(params[k])}" for k in swept if k in params)
    return f"#{job['job']} {shown}".strip()


def learning_curve_plot(summary: Dict[str, Any], sweep_dir: Path) -> Optional[str]:
    """Train loss and the metric against optimizer steps, one line per job."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = summary.get("metric") or "eval_loss"
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(13, 4))
    drawn = False
    for job in summary["jobs"]:
        path = records.resolve_run_dir(job, sweep_dir) / "metrics.json"
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        done = job["status"] == records.FINISHED
        label = _label(job, summary["swept"]) + ("" if done else f" ({job['status']})")
        line = "-" if done else ":"  # a pruned (stopped early) or failed job: dotted
        train_log = [r for r in data.get("train_log") or [] if r.get("train_loss") is not None]
        history = [r for r in data.get("history") or [] if r.get(metric) is not None]
        if train_log:
            ax_loss.plot([r["step"] for r in train_log], [r["train_loss"] for r in train_log], "." + line, label=label)
            drawn = True
        if history:
            ax_metric.plot([r["step"] for r in history], [r[metric] for r in history], "o" + line, label=label)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax_loss.set(xlabel="optimizer step", ylabel="train loss", title="train loss")
    ax_metric.set(xlabel="optimizer step", ylabel=metric, title=metric)
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
    source = ax_loss if ax_loss.lines else ax_metric
    handles, labels = source.get_legend_handles_labels()
    if handles:  # one legend, right of the plots, for both
        ax_metric.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _png(fig)


def _table(summary: Dict[str, Any]) -> Dict[str, Any]:
    """The jobs table as plain text cells (header, and per job its row class and cells); the template
    escapes every cell, so a value with ``<`` or ``&`` in it cannot break the page. Rows are classed by
    status (``best``, ``pruned``, ``failed``)."""
    grouped, multi = bool(summary.get("grouped")), "pareto_front" in summary
    metrics = [*summary["metrics"], *objective_columns(summary)]
    head = ["job", "status", *(["config"] if grouped else []), *(["Pareto front"] if multi else []),
            *summary["swept"], *metrics, "duration (s)", "run dir", "error"]
    rows = []
    for job in summary["jobs"]:
        params = dict(split_override(o) for o in job["overrides"])
        cells = [job["status"], *([str(job.get("config"))] if grouped else []),
                 *(["yes" if job.get("pareto") else ""] if multi else [])]
        cells += [short_value(params.get(k, "")) for k in summary["swept"]]
        cells += [_number(job_value(job, m)) for m in metrics]
        cells += [f"{job.get('duration_s') or 0:.1f}", str(job.get("run_dir", "")), job.get("error") or ""]
        rows.append({"job": job["job"], "best": bool(job.get("best")), "css": _row_class(job), "cells": cells})
    return {"head": head, "rows": rows}


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _row_class(job: Dict[str, Any]) -> str:
    if job.get("best"):
        return "best"
    if job["status"] == records.FINISHED:
        return ""
    return "pruned" if job["status"] == records.PRUNED else "failed"


def configs_table(summary: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """With replicates: one row per configuration (swept values without the seed, n finished, mean ± 95 % CI
    of the metric, std, its jobs and how many did not finish); the best configuration classed ``best``."""
    if not summary.get("grouped"):
        return None
    keys = config_params(summary)
    head = ["config", *keys, "n", f"{summary.get('metric')} mean ± 95% CI", "std", "vs best (over seeds)", "jobs",
            "not finished"]
    rows = []
    for config in summary["configs"]:
        params = dict(split_override(o) for o in config["overrides"])
        others = ", ".join(f"{n} {s}" for s, n in sorted(config["counts"].items()) if s != records.FINISHED)
        cells = [*(short_value(params.get(k, "")) for k in keys), str(config["n"]), mean_text(config),
                 _number(config["std"]), verdict_text(config), ", ".join(str(j) for j in config["jobs"]), others]
        rows.append({"job": config["config"], "best": bool(config.get("best")),
                     "css": "best" if config.get("best") else "", "cells": cells})
    return {"head": head, "rows": rows}


def _headline(summary: Dict[str, Any]) -> Dict[str, Any]:
    """What the page's first paragraph says besides the counts: the best configuration (with replicates)
    and the Pareto front (several objectives)."""
    out: Dict[str, Any] = {"best_config": None, "pareto": None}
    if summary.get("grouped") and summary.get("best_config") is not None:
        config = summary["configs"][summary["best_config"]]
        out["best_config"] = f"{config['config']} ({mean_text(config)}, mean ± 95% CI of {config['n']})"
    if "pareto_front" in summary:
        goals = ", ".join(f"{o} ({d})" for o, d in zip(summary["objectives"], summary["directions"]))
        jobs = ", ".join(str(j) for j in summary["pareto_front"]) or "none"
        out["pareto"] = f"jobs {jobs}; objectives {goals}"
    return out


def _template():
    """The page layout, kept as package data (``report.html.j2``) and rendered with autoescaping on."""
    import jinja2

    source = resources.files("experiments.report").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return jinja2.Environment(autoescape=True, keep_trailing_newline=True).from_string(source)


def write_report(sweep_dir: Path, summary: Dict[str, Any]) -> Path:
    """Render ``report.html`` for ``summary`` (see :func:`experiments.sweep.summary.build_summary`)."""
    sweep_dir = Path(sweep_dir)
    study, study_notes = study_figures(sweep_dir, _png)
    page = _template().render(
        summary=summary, table=_table(summary), configs=configs_table(summary), head=_headline(summary),
        metric=str(summary.get("metric")), best=summary.get("best_job"), seed_keys=", ".join(SEED_KEYS),
        counts=", ".join(f"{n} {s}" for s, n in sorted(summary["counts"].items())),
        figures=metric_vs_param_plots(summary), pareto=pareto_plot(summary),
        curves=learning_curve_plot(summary, sweep_dir), study=study, study_notes=study_notes)
    path = sweep_dir / REPORT_FILE
    atomic_write(path, page)  # whole or not at all, even with two writers (a temporary file of its own)
    return path
