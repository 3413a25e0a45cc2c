"""Trackers (W&B, TensorBoard, CSV) as Accelerate tracker objects, shared by both training backends."""
from __future__ import annotations

import csv
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from experiments.config.schema import LoggerConfig

log = logging.getLogger(__name__)

# Whole key components only: "hf_token", "api_key" are masked; "tokenizer", "max_new_tokens" are not.
_SECRET_KEY = re.compile(r"(^|[_-])(api[_-]?key|token|secret|secret[_-]?key|password|passwd|credentials?)$",
                         re.IGNORECASE)


def scrub(value: Any) -> Any:
    """A copy of a config dict with secret-looking keys masked (never log API keys)."""
    if isinstance(value, dict):
        return {k: ("***" if _SECRET_KEY.search(str(k)) and v not in (None, "") else scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def flatten(config: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return out


def wandb_mode(configured: str) -> str:
    """auto: online when an API key is configured (env or ~/.netrc), else offline."""
    if configured != "auto":
        return configured
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "online" if netrc.is_file() and "api.wandb.ai" in netrc.read_text() else "offline"
    except OSError:
        return "offline"


def _csv_tracker_class():
    from accelerate.tracking import GeneralTracker, on_main_process

    class CSVTracker(GeneralTracker):
        """Long-format ``metrics.csv`` (step, name, value): every logged scalar, append-only."""

        name = "csv"
        requires_logging_directory = True
        main_process_only = True

        def __init__(self, run_name: str, logging_dir: str):
            super().__init__()
            self.run_name = run_name
            self.path = Path(logging_dir) / "metrics.csv"

        @on_main_process
        def start(self):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                self.path.write_text("step,name,value\n")

        @property
        def tracker(self):
            return self.path

        @on_main_process
        def store_init_configuration(self, values: dict):
            pass

        @on_main_process
        def log(self, values: dict, step: Optional[int] = None, **kwargs):
            with self.path.open("a", newline="") as handle:
                writer = csv.writer(handle)
                for key, value in values.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                        writer.writerow([step, key, value])

    return CSVTracker


def build_trackers(cfg: LoggerConfig, run_dir: Path, run_name: str, tags: List[str]) -> list:
    """Tracker objects for ``Accelerator(log_with=…)`` (or direct use by the HF Trainer backend)."""
    trackers = []
    for name in cfg.trackers:
        if name == "csv":
            trackers.append(_csv_tracker_class()(run_name, str(run_dir)))
        elif name == "tensorboard":
            from accelerate.tracking import TensorBoardTracker

            trackers.append(TensorBoardTracker(run_name, str(run_dir / "tensorboard")))
        elif name == "wandb":
            from accelerate.tracking import WandBTracker

            mode = wandb_mode(cfg.wandb_mode)
            (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
            init = dict(name=run_name, dir=str(run_dir), mode=mode, group=cfg.group, job_type=cfg.job_type,
                        tags=sorted(set(cfg.tags) | set(tags)) or None, entity=cfg.entity, reinit="finish_previous")
            trackers.append(WandBTracker(cfg.project, **{k: v for k, v in init.items() if v is not None}))
    return trackers


class Tracking:
    """Start, log to and always finish a list of trackers (used where there is no Accelerator to do it)."""

    def __init__(self, trackers: list, config: Dict[str, Any]):
        self.trackers = trackers
        flat = {k: ("null" if v is None else v) for k, v in flatten(config).items()}
        for tracker in trackers:
            tracker.start()
            # TensorBoard's hparams take flat scalars only; W&B keeps the nested config.
            tracker.store_init_configuration(flat if tracker.name == "tensorboard" else config)

    def log(self, values: Dict[str, float], step: Optional[int] = None) -> None:
        for tracker in self.trackers:
            tracker.log(values, step=step)

    def finish(self) -> None:
        for tracker in self.trackers:
            try:
                tracker.finish()
            except Exception as exc:  # finishing must never mask the run's own outcome
                log.warning("tracker %s did not finish cleanly: %s", tracker.name, exc)
