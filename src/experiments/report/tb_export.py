"""TensorBoard event files built from finished runs (``config.yaml`` + ``metrics.json``), so the
hparams dashboard shows every run of ``outputs/`` and ``multirun/`` with its hyperparameters and
metrics (table and parallel coordinates), and the scalars dashboard their learning curves. The runs
themselves are only read; the events go to a separate export folder."""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Tuple

from experiments.report.runs_index import RunInfo, differing_keys, find_runs, load_run, quality_metric_names
from experiments.sweep.summary import SUMMARY_JSON, verdict_text

log = logging.getLogger(__name__)

ALWAYS_HPARAMS = ("mode", "model.name", "dataset.name")
MARKER = ".exported"  # in each exported run folder: the source's metrics mtime it was built from


def _source_stamp(run: Path) -> str:
    stamps = [str((run / name).stat().st_mtime_ns) for name in ("metrics.json", "sweep_job.json", "config.yaml")
              if (run / name).is_file()]
    return ",".join(stamps)


def export_name(run: Path, roots: List[Path]) -> str:
    """How a run is called in TensorBoard: its path below the parent of the root it was found in
    (``multirun/2026-11-22/10-11-12/0``)."""
    for root in roots:
        try:
            return str(run.relative_to(root.resolve().parent))
        except ValueError:
            continue
    return run.name


def hparam_values(runs: List[RunInfo]) -> Tuple[List[str], Dict[Path, Dict[str, Any]]]:
    """The hyperparameters worth showing (differing config keys + a few always) and each run's
    values, with one type per key (numbers stay numbers unless some run has text there)."""
    keys = list(dict.fromkeys([*ALWAYS_HPARAMS, *differing_keys(runs)]))
    per_run: Dict[Path, Dict[str, Any]] = {}
    for key in keys:
        raw = {r.path: r.config.get(key) for r in runs}
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw.values() if v is not None)
        for path, value in raw.items():
            if value is None:
                value = float("nan") if numeric else "null"
            elif isinstance(value, (list, dict)):
                value = json.dumps(value)
            elif numeric:
                value = float(value)
            elif not isinstance(value, (str, bool)) or any(isinstance(v, str) for v in raw.values()):
                value = str(value)
            per_run.setdefault(path, {})[key] = value
    verdicts = _verdicts(runs)
    for run in runs:
        per_run.setdefault(run.path, {})["sweep"] = (run.record or {}).get("sweep") or ""
        per_run[run.path]["status"] = run.status
        per_run[run.path]["vs_best"] = verdicts.get(run.path, "")
    return keys + ["sweep", "status", "vs_best"], per_run


def _verdicts(runs: List[RunInfo]) -> Dict[Path, str]:
    """Each sweep job's configuration verdict against the sweep's best over seeds (``vs_best`` of the sweep's
    summary: best / worse / tie, Holm-corrected); '' for a run outside a sweep with replicates."""
    summaries: Dict[Path, Dict[str, Any]] = {}
    out: Dict[Path, str] = {}
    for run in runs:
        job = (run.record or {}).get("job")
        folder = run.path.parent
        if job is None or not (folder / SUMMARY_JSON).is_file():
            continue
        if folder not in summaries:
            try:
                summaries[folder] = json.loads((folder / SUMMARY_JSON).read_text())
            except (OSError, ValueError):
                summaries[folder] = {}
        summary = summaries[folder]
        number = next((j.get("config") for j in summary.get("jobs", []) if j.get("job") == job), None)
        configs = summary.get("configs") or []
        if isinstance(number, int) and 0 <= number < len(configs):
            out[run.path] = verdict_text(configs[number])
    return out


def _scalars(run: RunInfo, metrics: List[str]) -> Iterator[Tuple[str, float, int]]:
    """(tag, value, step) of the learning curves (train loss, eval metrics) and then the final metrics
    at the last step, so the scalars dashboard draws the curves and the hparams table finds the finals."""
    last_step = 0
    for row in run.metrics.get("train_log") or []:
        if row.get("train_loss") is not None:
            yield "train_loss", row["train_loss"], int(row["step"])
            last_step = max(last_step, int(row["step"]))
    for row in run.metrics.get("history") or []:
        for key in metrics:
            if key.startswith("eval_") and isinstance(row.get(key), (int, float)):
                yield key, row[key], int(row["step"])
        last_step = max(last_step, int(row.get("step", 0)))
    final_step = int(run.final.get("global_step", last_step))
    for key, value in run.final.items():
        if key in metrics:
            yield key, value, final_step


def session_status(status: str) -> int:
    """The hparams plugin's session status of a run's status: finished = success, failed = failure, pruned
    (stopped early by a search's pruner: TensorBoard has no such state) = unknown, anything else (a run
    without final metrics) = running. The ``status`` column of the table names the run's own status."""
    from tensorboard.plugins.hparams import api_pb2

    codes = {"finished": api_pb2.STATUS_SUCCESS, "failed": api_pb2.STATUS_FAILURE, "pruned": api_pb2.STATUS_UNKNOWN}
    return codes.get(status, api_pb2.STATUS_RUNNING)


def _session_end(status: str, end_time: float):
    """The hparams session's end (:func:`session_status`), which the dashboard's status filter reads.
    tensorboard's ``summary.session_end_pb`` imports TensorFlow and ``summary_v2`` has no session-end
    twin, so this one summary is made from the plugin's own messages and metadata helper."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    code = session_status(status)
    data = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=code, end_time_secs=end_time))
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(data),
        tensor=metadata.NULL_TENSOR)])


def write_run_events(run: RunInfo, hparams: Dict[str, Any], out: Path, name: str, metrics: List[str]) -> None:
    """One run's events: session start (hparams, by tensorboard's hparams API), scalars per step (torch's
    SummaryWriter, as plain scalars), final metrics, session end. Times are the run's, not the export's."""
    from tensorboard.plugins.hparams import summary_v2
    from torch.utils.tensorboard import SummaryWriter

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    start = (run.path / "config.yaml").stat().st_mtime
    end = (run.path / "metrics.json").stat().st_mtime if (run.path / "metrics.json").is_file() else start
    with SummaryWriter(log_dir=str(out)) as writer:
        writer.file_writer.add_summary(summary_v2.hparams_pb(hparams, trial_id=name, start_time_secs=start),
                                       global_step=0, walltime=start)
        for tag, value, step in _scalars(run, metrics):
            writer.add_scalar(tag, value, step, walltime=start)
        writer.file_writer.add_summary(_session_end(run.status, end), global_step=0, walltime=end)


def export(roots: Iterable[Path], out_dir: Path) -> List[str]:
    """Write (or refresh) the events of every run below ``roots`` into ``out_dir``; returns the
    names of the runs written this time (unchanged runs are skipped)."""
    roots = [Path(r) for r in roots]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [load_run(p) for p in find_runs(roots)]
    if not runs:
        return []
    keys, values = hparam_values(runs)
    metrics = quality_metric_names(runs)
    written = []
    signature = json.dumps(keys)
    for run in runs:
        name = export_name(run.path, roots)
        target = out_dir / name
        stamp = _source_stamp(run.path) + "|" + signature + "|" + values[run.path]["vs_best"]  # a new verdict too
        marker = target / MARKER
        if marker.is_file() and marker.read_text() == stamp:
            continue
        write_run_events(run, {"run": name, **values[run.path]}, target, name, metrics)
        marker.write_text(stamp)
        written.append(name)
    if written:
        log.info("exported %d run(s) to %s (%s)", len(written), out_dir, time.strftime("%H:%M:%S"))
    return written
