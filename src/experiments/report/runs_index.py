"""Find run directories (``config.yaml`` + ``metrics.json``) and load what tables and plots need."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from experiments.record import quality_metrics
from experiments.runs import CONFIG_FILE, METRICS_FILE, read_config, read_metrics
from experiments.tracking import flatten

_SKIP_DIRS = {"checkpoints", "best", "last", "wandb", "tensorboard", ".hydra", ".launcher", ".submitit",
              "__pycache__"}
# Config keys that differ between any two runs without saying anything about the experiment.
NOISE_KEYS = ("paths.", "logger.run_name", "logger.group", "logger.tags", "logger.job_type")


@dataclass
class RunInfo:
    path: Path
    config: Dict[str, Any]  # flattened, dotted keys
    metrics: Dict[str, Any] = field(default_factory=dict)  # the whole metrics.json
    record: Optional[Dict[str, Any]] = None  # the sweep job record, when the run belongs to a sweep

    @property
    def final(self) -> Dict[str, float]:
        final = self.metrics.get("final") or {}
        return {k: float(v) for k, v in final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    @property
    def status(self) -> str:
        """The sweep record's status (finished | failed | pruned); without one, ``pruned`` when a search
        stopped the run, else ``finished`` when it has final metrics, else ``unfinished``."""
        if self.record:
            return self.record.get("status", "finished")
        if (self.metrics.get("stopped") or {}).get("reason") == "pruned":
            return "pruned"
        return "finished" if self.final else "unfinished"


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and ((path / METRICS_FILE).is_file() or (path / "sweep_job.json").is_file())


def find_runs(roots: Iterable[Path]) -> List[Path]:
    """Run dirs at or below each root (a run dir, a sweep dir, ``outputs/``, ``multirun/``), sorted."""
    found: List[Path] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for current, dirs, _files in os.walk(root):
            here = Path(current)
            if is_run_dir(here):
                found.append(here)
                dirs[:] = []  # a run dir holds no other runs
                continue
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
    return sorted(dict.fromkeys(p.resolve() for p in found))


def load_run(path: Path) -> RunInfo:
    """A run's config, record and sweep record; a damaged config.yaml stops with one line naming it."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(read_config(path / CONFIG_FILE), resolve=False)
    metrics = read_metrics(path)  # through the run record: the one reader of metrics.json
    record = None
    if (path / "sweep_job.json").is_file():
        try:
            record = json.loads((path / "sweep_job.json").read_text())
        except (OSError, ValueError):
            record = None
    return RunInfo(path=path, config=flatten(config if isinstance(config, dict) else {}), metrics=metrics,
                   record=record)


def differing_keys(runs: List[RunInfo], ignore: Iterable[str] = NOISE_KEYS) -> List[str]:
    """Config keys whose value is not the same in every run (missing counts as a value)."""
    ignore = tuple(ignore)
    keys = sorted({k for r in runs for k in r.config})
    out = []
    for key in keys:
        if key.startswith(ignore):
            continue
        values = {json.dumps(r.config.get(key, "<unset>"), sort_keys=True, default=str) for r in runs}
        if len(values) > 1:
            out.append(key)
    return out


def quality_metric_names(runs: List[RunInfo]) -> List[str]:
    return quality_metrics(run.final for run in runs)
