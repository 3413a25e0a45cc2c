"""Resumable checkpoints: ``checkpoints/step_<N>/`` = Accelerate ``save_state`` + our loop counters."""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from experiments.errors import ExperimentError

log = logging.getLogger(__name__)

STATE_FILE = "loop_state.json"
_STEP = re.compile(r"step_(\d+)$")


def checkpoint_dirs(run_dir: Path) -> List[Path]:
    """Complete checkpoints of a run, oldest first (a checkpoint counts once its loop state is written)."""
    root = Path(run_dir) / "checkpoints"
    found = [p for p in root.glob("step_*") if _STEP.search(p.name) and (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(_STEP.search(p.name).group(1)))


def save(accelerator, run_dir: Path, step: int, state: Dict[str, Any], keep: int) -> Path:
    directory = Path(run_dir) / "checkpoints" / f"step_{step}"
    accelerator.save_state(str(directory))
    if accelerator.is_main_process:
        (directory / STATE_FILE).write_text(json.dumps(state))
        for old in checkpoint_dirs(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return directory


def find(resume: Optional[str], run_dir: Path) -> Optional[Path]:
    """The checkpoint to resume from: ``true``/``latest`` -> this run's newest; a path -> that checkpoint
    (or that run's newest)."""
    if resume is None or str(resume).lower() in ("false", "no", "0", "none", "null", ""):
        return None
    if str(resume).lower() in ("true", "yes", "1", "latest"):
        found = checkpoint_dirs(run_dir)
        if not found:
            raise ExperimentError(f"trainer.resume=true but {run_dir}/checkpoints holds no checkpoint; "
                                  f"rerun in the same directory (hydra.run.dir=<run dir>) or pass a checkpoint path")
        return found[-1]
    path = Path(resume).expanduser()
    if (path / STATE_FILE).exists():
        return path
    found = checkpoint_dirs(path) if path.is_dir() else []
    if not found:
        raise ExperimentError(f"trainer.resume: no checkpoint at '{resume}'")
    return found[-1]


def load_state(path: Path) -> Dict[str, Any]:
    return json.loads((Path(path) / STATE_FILE).read_text())
