"""Hydra callback (``hydra.callbacks.sweep`` in conf/hydra/default.yaml) that makes every multirun a
documented sweep: each job writes its record, and the end of the sweep writes the summary, prints it
and renders the HTML report. Works with any launcher (basic, subprocess, submitit)."""
from __future__ import annotations

import atexit
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from experiments import locks
from experiments.config.schema import LoggerConfig
from experiments.locks import is_lock_file
from experiments.report.html import write_report
from experiments.runs import CONFIG_FILE, read_config
from experiments.sweep import records
from experiments.sweep.naming import sweep_id
from experiments.sweep.records import resolve_run_dir
from experiments.sweep.summary import print_summary, summarize
from experiments.tracking import add_to_wandb_summary

log = logging.getLogger(__name__)

# Set by a multi-node launcher on every node but the first: only node 0 records the job.
NODE_RANK_ENV = "EXPERIMENTS_NODE_RANK"


class SweepCallback(Callback):
    def __init__(self, report: bool = True, print_table: bool = True) -> None:
        self.report = report
        self.print_table = print_table
        self._started: Optional[float] = None
        self._sweep_config: Optional[DictConfig] = None
        self._finalized = False

    # -- in the job's process ------------------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._started = time.time()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        hydra_cfg = config.hydra
        if hydra_cfg.mode != RunMode.MULTIRUN or int(os.environ.get(NODE_RANK_ENV, "0")) > 0:
            return

        value = records.outcome(job_return)
        failed = job_return.status != JobStatus.COMPLETED
        sweep_dir = Path(str(hydra_cfg.sweep.dir))
        run_dir = Path(str(hydra_cfg.runtime.output_dir))
        record = records.build(
            job=int(hydra_cfg.job.num),
            overrides=list(hydra_cfg.overrides.task),
            status=records.FAILED if failed else records.ended_as(run_dir),
            error=records.error_line(value) if failed and isinstance(value, BaseException) else None,
            run_dir=run_dir,
            sweep_dir=sweep_dir,
            sweep=sweep_id(str(hydra_cfg.sweep.dir)),
            started_at=self._started or time.time(),
            finished_at=time.time(),
            objective=OmegaConf.select(config, "objective", default=None),
            objective_value=float(value) if not failed and isinstance(value, (int, float)) else None,
            choices={str(k): v for k, v in OmegaConf.to_container(hydra_cfg.runtime.choices).items()
                     if not str(k).startswith("hydra")},
        )
        try:
            records.write(run_dir, record)
        except OSError as exc:
            log.warning("could not write the sweep record of job %s: %s", record["job"], exc)

        locks.release(run_dir)  # taken in cli.run_job: the job's record is its last write

    # -- in the sweep's (parent) process ----------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_config = config
        self._finalized = False
        # A failed job makes Hydra's sweepers raise before on_multirun_end: finish the sweep at exit too.
        atexit.register(self._finalize)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_config = config
        self._finalize()

    def _finalize(self) -> None:
        if self._finalized or self._sweep_config is None:
            return
        self._finalized = True
        if not _holds_files(Path(str(self._sweep_config.hydra.sweep.dir))):
            return  # stopped before its first job (its launcher could not start): nothing to summarise or write
        try:
            finish_sweep(self._sweep_config, print_table=self.print_table, report=self.report)
        except Exception as exc:  # the summary must never hide the sweep's own outcome
            log.warning("could not write the sweep summary: %s", exc)


def _holds_files(sweep_dir: Path) -> bool:
    """The sweep dir exists and holds more than its lock (taken before the sweep started)."""
    return sweep_dir.is_dir() and any(not is_lock_file(p.name) for p in sweep_dir.iterdir())


def finish_sweep(composed: DictConfig, print_table: bool = True, report: bool = True) -> Dict[str, Any]:
    """End of a sweep: summary files, the HTML report, the table on stdout."""
    summary = summarize(composed)
    if report and summary["jobs"]:
        try:
            summary["report"] = str(write_report(Path(summary["sweep_dir"]), summary))
        except Exception as exc:  # a plotting problem must not lose the summary
            log.warning("could not write the HTML report: %s", exc)
    _verdicts_to_wandb(summary)
    if print_table:
        print_summary(summary)
    return summary


def _verdicts_to_wandb(summary: Dict[str, Any]) -> None:
    """A sweep with replicates: each finished job that logs to W&B gets its configuration's verdict against the best
    (``vs_best``, ``vs_best_p_holm``, ``vs_best_difference``) in its W&B run's summary."""
    from omegaconf import OmegaConf

    configs = summary.get("configs") or []
    for job in summary.get("jobs", []):
        verdict = configs[job["config"]].get("vs_best") if isinstance(job.get("config"), int) else None
        run_dir = resolve_run_dir(job, Path(summary["sweep_dir"]))
        if not verdict or not (run_dir / CONFIG_FILE).is_file():
            continue
        values = {"vs_best": verdict["vs_best"], **{f"vs_best_{key}": verdict[key] for key in
                                                    ("difference", "p_holm", "p_beats_best", "seeds_needed")
                                                    if verdict.get(key) is not None}}
        try:  # a damaged config.yaml (RecordUnreadable) or a tracker's failure: a warning, the summary stands
            logger = read_config(run_dir / CONFIG_FILE).get("logger") or {}
            if "wandb" not in (logger.get("trackers") or []):
                continue
            add_to_wandb_summary(run_dir, OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(LoggerConfig),
                                                                              logger)), values)
        except Exception as exc:  # the summary and the report are written; a tracker's failure must not lose them
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            log.warning("could not add the verdict to job %s's W&B run: %s", job["job"], reason)
