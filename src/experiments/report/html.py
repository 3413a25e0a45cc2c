"""``report.html`` in a sweep dir: the summary table, the chosen metric against every swept
hyperparameter, and the jobs' learning curves overlaid. One self-contained file (plots inlined)."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from experiments.sweep import records
from experiments.sweep.summary import metric_value, short_value, split_override

REPORT_FILE = "report.html"


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


def _table(summary: Dict[str, Any]) -> str:
    metrics = summary["metrics"]
    head = ["job", "status", *summary["swept"], *metrics, "duration (s)", "run dir", "error"]
    rows = []
    for job in summary["jobs"]:
        params = dict(split_override(o) for o in job["overrides"])
        cells = [("&#9733; " if job.get("best") else "") + str(job["job"]), job["status"]]
        cells += [html.escape(short_value(params.get(k, ""))) for k in summary["swept"]]
        cells += [f"{job['metrics'][m]:.4g}" if m in job.get("metrics", {}) else "-" for m in metrics]
        cells += [f"{job.get('duration_s') or 0:.1f}", html.escape(str(job.get("run_dir", ""))),
                  html.escape(job.get("error") or "")]
        style = ' class="best"' if job.get("best") else (' class="failed"' if job["status"] != "finished" else "")
        rows.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def write_report(sweep_dir: Path, summary: Dict[str, Any]) -> Path:
    """Render ``report.html`` for ``summary`` (see :func:`experiments.sweep.summary.build_summary`)."""
    sweep_dir = Path(sweep_dir)
    figures = metric_vs_param_plots(summary)
    curves = learning_curve_plot(summary, sweep_dir)
    best = summary.get("best_job")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary["counts"].items()))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Sweep {html.escape(summary['sweep'])}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f2f2f2}"
        "tr.best{background:#fff4cc}tr.failed{background:#fde2e2}img{margin:6px;border:1px solid #eee}</style>",
        "</head><body>",
        f"<h1>Sweep {html.escape(summary['sweep'])}</h1>",
        f"<p>{html.escape(summary['sweep_dir'])}<br>{len(summary['jobs'])} jobs: {html.escape(counts)}. "
        f"Metric: <b>{html.escape(str(summary.get('metric')))}</b> ({summary['direction']})"
        + (f"; best job: <b>{best}</b>" if best is not None else "") + ".</p>",
        "<h2>Jobs</h2>", _table(summary),
    ]
    if figures:
        parts.append("<h2>Metric vs hyperparameters</h2><div>")
        parts += [f"<img alt='{html.escape(t)}' title='{html.escape(t)}' src='{src}'>" for t, src in figures]
        parts.append("</div>")
    if curves:
        parts += ["<h2>Learning curves</h2>", f"<img alt='learning curves' src='{curves}'>"]
    parts.append("</body></html>")
    path = sweep_dir / REPORT_FILE
    path.write_text("\n".join(parts))
    return path
