"""What every run directory holds: the resolved config, metrics.json, the log and a learning curve."""
from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from experiments.errors import ExperimentError, RecordUnreadable
from experiments.files import atomic_write, write_json
from experiments.record import (
    METRICS_FILE,  # noqa: F401  (re-exported)
    is_quality_metric,
    read_record,
    to_payload,
)
from experiments.secrets import scrub

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"


def start_run(composed: DictConfig, run_dir: Path) -> None:
    """Write the resolved config (secrets masked, atomically) before any work starts."""
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = scrub(OmegaConf.to_container(composed, resolve=True))
    atomic_write(run_dir / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(resolved)))


def read_config(path: Path) -> DictConfig:
    """A run's saved ``config.yaml``: a truncated, garbled or unreadable file is one line naming it."""
    try:
        loaded = OmegaConf.load(path)
    except FileNotFoundError:
        raise RecordUnreadable(path, "the file is missing") from None
    except OSError as exc:
        raise RecordUnreadable(path, exc.strerror or str(exc)) from None
    except Exception as exc:  # yaml and omegaconf raise many types for a damaged file
        raise RecordUnreadable(path, f"it is damaged ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(loaded, DictConfig):
        raise RecordUnreadable(path, "it is damaged (not a mapping of config keys)")
    return loaded


def environment(num_processes: int = 1) -> Dict[str, Any]:
    """Device, process count and library versions, recorded with every result."""
    import importlib.metadata as md

    import torch

    device = "cpu"
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)} x{torch.cuda.device_count()})"
    versions = {}
    for pkg in ("torch", "transformers", "datasets", "accelerate", "evaluate", "tokenizers", "hydra-core", "wandb"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {
        "device": device,
        "num_processes": num_processes,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def flat_keys(container: Any, prefix: str = "") -> Dict[str, Any]:
    """``{"trainer.lr": 3e-5, ...}`` of a nested config container (an empty mapping kept as ``{}``)."""
    if isinstance(container, dict):
        out: Dict[str, Any] = {}
        for key, value in container.items():
            out.update(flat_keys(value, f"{prefix}{key}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): container}


def read_metrics(run_dir: Path) -> Dict[str, Any]:
    """metrics.json as a dict, read through the run record (empty when the run wrote none)."""
    record = read_record(run_dir)
    return to_payload(record) if record is not None else {}


def plot_learning_curve(history: List[Dict[str, float]], train_log: List[Dict[str, float]], path: Path,
                        title: str = "") -> Optional[Path]:
    """Train loss and eval metrics against optimizer steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history and not train_log:
        return None
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    if train_log:
        ax_loss.plot([r["step"] for r in train_log], [r["train_loss"] for r in train_log], label="train loss")
    eval_loss = [(r["step"], r["eval_loss"]) for r in history if r.get("eval_loss") is not None]
    if eval_loss:
        ax_loss.plot(*zip(*eval_loss), "o-", label="eval loss")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()

    keys = sorted({k for r in history for k in r if k.startswith("eval_") and k != "eval_loss"
                   and isinstance(r[k], (int, float)) and is_quality_metric(k)})
    for key in keys:
        ax_metric.plot([r["step"] for r in history if key in r], [r[key] for r in history if key in r], "o-", label=key)
    ax_metric.set_xlabel("optimizer step")
    ax_metric.set_ylabel("eval metric")
    if keys:
        ax_metric.legend()
    fig.suptitle(title)
    fig.tight_layout()
    import io

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, png.getvalue())
    return path


# Overrides that say where files go or how a run is logged, not what it is: never part of its name.
_NOISE_PREFIXES = ("hydra.", "hydra/", "logger.", "paths.", "+hydra", "~hydra")


def run_name_from_overrides(overrides) -> Optional[str]:
    """``trainer.lr=3e-5,model=bert`` from a run's overrides (None when none describe the run)."""
    import re

    kept = [o for o in overrides if not o.startswith(_NOISE_PREFIXES)]
    if not kept:
        return None
    return re.sub(r"[^\w.,=+-]", "_", ",".join(kept))[:120]


def objective_value(metrics: Dict[str, Any], objective: Optional[str]) -> Optional[float]:
    """The value a sweeper optimises: ``final[objective]`` of the run's metrics."""
    if not objective:
        return None
    final = metrics.get("final", {})
    if objective not in final:
        raise ExperimentError(f"objective '{objective}' is not a metric of this run (metrics: {', '.join(final)})")
    return float(final[objective])


# A request, from outside the run, to stop training at its next logging or evaluation step (a search's
# pruner writes it into a trial's run dir; the run ends normally, with ``stopped.reason`` from the request).
STOP_REQUEST = "stop_request.json"


def request_stop(run_dir: Path, reason: str, **detail: Any) -> None:
    write_json(Path(run_dir) / STOP_REQUEST, {"reason": reason, **detail})


def stop_request(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The pending stop request of a run, or None."""
    path = Path(run_dir) / STOP_REQUEST
    try:
        request = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return request if isinstance(request, dict) and request.get("reason") else None


def metric_values(metrics: Dict[str, Any], names: List[str]) -> Dict[str, Optional[float]]:
    """``final[name]`` for each name, else a number the record holds at its top level (``total_params``),
    else None: what a (multi-objective) search reads from a finished run."""
    values: Dict[str, Optional[float]] = {}
    for name in names:
        value = (metrics.get("final") or {}).get(name, metrics.get(name))
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        values[name] = float(value) if ok else None
    return values


def finish_run(run_dir: Path, metrics: Dict[str, Any], objective: Optional[str]) -> Optional[float]:
    """Log the run's final metrics; return the value of ``objective`` (the config's, for a sweeper)."""
    final = metrics.get("final", {})
    shown = ", ".join(f"{k}={v:.4f}" for k, v in final.items() if isinstance(v, float))
    log.info("done: %s (%s)", run_dir, shown)
    return objective_value(metrics, objective)
