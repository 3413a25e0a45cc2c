"""Running tiny sweeps for the tests (shared by tests/sweep and tests/report; one run per session)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
# One optimizer step on 16 rows, no saved model, no checkpoint (conf/debug/tiny.yaml).
TINY = ["debug=tiny"]
GRID = ["trainer.lr=1e-5,3e-5", "trainer.per_device_batch_size=8,16"]

_CACHE: Dict[str, Tuple[Path, subprocess.CompletedProcess]] = {}


def run_sweep(args: List[str], cwd: Path, timeout: int = 600,
              env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """``python run.py -m <args>`` from ``cwd`` (offline), as a user types it (``env``: more variables)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline", WANDB_SILENT="true",
               TOKENIZERS_PARALLELISM="false", **(env or {}))
    env.pop("WANDB_API_KEY", None)
    cmd = [sys.executable, str(REPO / "run.py"), "-m", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def grid_sweep(tmp_path_factory) -> Tuple[Path, subprocess.CompletedProcess]:
    """The 2x2 grid (lr x batch size) on debug=tiny with W&B offline, 2 jobs side by side."""
    if "grid" not in _CACHE:
        work = tmp_path_factory.mktemp("grid")
        sweep_dir = work / "multirun" / "grid"
        result = run_sweep([*TINY, "logger=wandb", *GRID, "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}"],
                           cwd=work)
        _CACHE["grid"] = (sweep_dir, result)
    return _CACHE["grid"]


def summary(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep_summary.json").read_text())


def explain(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
