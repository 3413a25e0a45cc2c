"""``report.html`` in a sweep dir: the summary table, the chosen metric against every swept
hyperparameter, and the jobs' learning curves overlaid. One self-contained file (plots inlined), laid
out by a jinja2 template that escapes every value it is given."""
from __future__ import annotations

import base64
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from experiments.sweep import records
from experiments.sweep.summary import metric_value, short_value, split_override

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


def metric_vs_param_plots(summary: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(title, image) per swept hyperparameter: the summary's metric of each finished job."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = summary.get("metric")
    finished = [j for j in summary["jobs"] if j["status"] == records.FINISHED and metric_value(j, metric) is not None]
    plots = []
    if not metric or not finished:
        return plots
    for key, values in summary["swept"].items():
        fig, ax = plt.subplots(figsize=(5, 3.4))
        numbers = [_as_number(v) for v in values]
        numeric = all(n is not None for n in numbers)
        for job in finished:
            raw = dict(split_override(o) for o in job["overrides"]).get(key)
            if raw is None:
                continue
            x = float(raw) if numeric else values.index(raw)
            ax.scatter([x], [metric_value(job, metric)], s=60 if job.get("best") else 30,
                       marker="*" if job.get("best") else "o", color="tab:red" if job.get("best") else "tab:blue")
            ax.annotate(str(job["job"]), (x, metric_value(job, metric)), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
        if numeric:
            positive = [n for n in numbers if n and n > 0]
            if len(positive) == len(numbers) and max(positive) / min(positive) >= 10:
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(values)))
            ax.set_xticklabels(values, rotation=20, fontsize=8)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.set_title(f"{metric} vs {key}", fontsize=10)
        plots.append((f"{metric} vs {key}", _png(fig)))
    return plots


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
        label = _label(job, summary["swept"])
        train_log = data.get("train_log") or []
        history = [r for r in data.get("history") or [] if r.get(metric) is not None]
        if train_log:
            ax_loss.plot([r["step"] for r in train_log], [r["train_loss"] for r in train_log], ".-", label=label)
            drawn = True
        if history:
            ax_metric.plot([r["step"] for r in history], [r[metric] for r in history], "o-", label=label)
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
    escapes every cell, so a value with ``<`` or ``&`` in it cannot break the page."""
    metrics = summary["metrics"]
    head = ["job", "status", *summary["swept"], *metrics, "duration (s)", "run dir", "error"]
    rows = []
    for job in summary["jobs"]:
        params = dict(split_override(o) for o in job["overrides"])
        cells = [job["status"], *(short_value(params.get(k, "")) for k in summary["swept"])]
        cells += [f"{job['metrics'][m]:.4g}" if m in job.get("metrics", {}) else "-" for m in metrics]
        cells += [f"{job.get('duration_s') or 0:.1f}", str(job.get("run_dir", "")), job.get("error") or ""]
        css = "best" if job.get("best") else ("failed" if job["status"] != "finished" else "")
        rows.append({"job": job["job"], "best": bool(job.get("best")), "css": css, "cells": cells})
    return {"head": head, "rows": rows}


def _template():
    """The page layout, kept as package data (``report.html.j2``) and rendered with autoescaping on."""
    import jinja2

    source = resources.files("experiments.report").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return jinja2.Environment(autoescape=True, keep_trailing_newline=True).from_string(source)


def write_report(sweep_dir: Path, summary: Dict[str, Any]) -> Path:
    """Render ``report.html`` for ``summary`` (see :func:`experiments.sweep.summary.build_summary`)."""
    sweep_dir = Path(sweep_dir)
    page = _template().render(
        summary=summary, table=_table(summary), metric=str(summary.get("metric")), best=summary.get("best_job"),
        counts=", ".join(f"{n} {s}" for s, n in sorted(summary["counts"].items())),
        figures=metric_vs_param_plots(summary), curves=learning_curve_plot(summary, sweep_dir))
    path = sweep_dir / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path
