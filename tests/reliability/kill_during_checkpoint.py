"""Fault injection: ``python kill_during_checkpoint.py <step> <run.py overrides…>`` runs the CLI and
SIGKILLs itself half-way through writing checkpoint ``step_<step>`` (after part of optimizer.bin)."""
import os
import signal
import sys

import torch

_real_save = torch.save
_STEP = f"step_{sys.argv[1]}"


def _dying_save(obj, f, *args, **kwargs):
    if _STEP in str(f) and str(f).endswith("optimizer.bin"):
        with open(f, "wb") as handle:
            handle.write(b"\x80\x02partial")
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_save(obj, f, *args, **kwargs)


torch.save = _dying_save
sys.argv = ["run.py", *sys.argv[2:]]
from experiments.cli import main  # noqa: E402

main()
