"""Which GPUs this machine has, and a pool that hands disjoint sets of them to concurrent jobs."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from typing import List, Optional


def visible_gpus() -> List[str]:
    """GPU ids a job may use: ``CUDA_VISIBLE_DEVICES`` when set, else what ``nvidia-smi`` lists.
    Torch is not imported: the launcher's process stays light and never touches CUDA."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


class GpuPool:
    """Blocking allocation of ``n`` GPUs at a time; no GPUs means every request gets ``None``."""

    def __init__(self, ids: List[str]):
        self.total = len(ids)
        self._free = list(ids)
        self._cond = threading.Condition()

    def acquire(self, n: int) -> Optional[List[str]]:
        if not self.total:
            return None
        if n > self.total:
            raise RuntimeError(f"the job needs {n} GPU(s) but only {self.total} are visible")
        with self._cond:
            self._cond.wait_for(lambda: len(self._free) >= n)
            taken, self._free = self._free[:n], self._free[n:]
            return taken

    def release(self, ids: Optional[List[str]]) -> None:
        if not ids:
            return
        with self._cond:
            self._free.extend(ids)
            self._cond.notify_all()
