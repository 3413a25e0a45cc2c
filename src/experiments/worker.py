"""One rank of a multi-process run: ``python -m experiments.worker <run dir>`` (started by accelerate launch)."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from experiments import interrupts
from experiments.config import schema
from experiments.config.validate import to_typed
from experiments.errors import as_user_error
from experiments.runs import CONFIG_FILE, read_config
from experiments.train import train
from experiments.train.launch import ERROR_FILE_ENV
from experiments.train.nodes import CONFIG_FILE_ENV, agree_on_config, announce_rendezvous, process_state


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run_dir = Path(argv[0])
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"[rank {rank}][%(name)s][%(levelname)s] %(message)s",
                        handlers=[logging.StreamHandler(), *( [logging.FileHandler(run_dir / "run.log")] if rank == 0 else [])])

    interrupts.current().install()
    try:
        cfg = load_run_config(run_dir)
        process_state()  # every rank of every machine has joined once this returns
        announce_rendezvous()
        agree_on_config(cfg)
        train(cfg, run_dir)
    except Exception as caught:  # a user error, a failed write, out of memory: one line; else a bug (re-raised)
        exc = as_user_error(caught)
        if exc is None:
            raise  # a bug in this framework: its traceback (in launch.log)
        if ERROR_FILE_ENV not in os.environ:
            print(f"error: {exc}", file=sys.stderr)
        elif int(os.environ.get("LOCAL_RANK", rank)) == 0:  # this node's parent reports it, with its exit code
            Path(os.environ[ERROR_FILE_ENV]).write_text(f"{exc.exit_code} {exc}\n")
        return exc.exit_code
    return 0


def load_run_config(run_dir: Path):
    """The typed config this node's parent wrote for this run (workers never compose config themselves):
    ``<run dir>/config.yaml`` on node 0, a node-local copy on the others."""
    from omegaconf import OmegaConf

    path = Path(os.environ.get(CONFIG_FILE_ENV) or run_dir / CONFIG_FILE)
    base = OmegaConf.structured(schema.ExperimentConfig)
    return to_typed(OmegaConf.merge(base, read_config(path)))


if __name__ == "__main__":
    sys.exit(main())
