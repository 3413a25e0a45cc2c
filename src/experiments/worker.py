"""One rank of a multi-process run: ``python -m experiments.worker <run dir>`` (started by accelerate launch)."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from experiments import interrupts
from experiments.config import schema
from experiments.config.validate import to_typed
from experiments.errors import RecordUnreadable, as_user_error
from experiments.runs import CONFIG_FILE, read_config
from experiments.tracking import flatten
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


def load_run_config(run_dir: Path) -> schema.ExperimentConfig:
    """The typed config this node's parent wrote for this run (workers never compose config themselves):
    ``<run dir>/config.yaml`` on node 0, a node-local copy on the others. The parent writes every key, so a
    file without one was damaged since (cut short): it is refused, never filled in with defaults."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(os.environ.get(CONFIG_FILE_ENV) or run_dir / CONFIG_FILE)
    base = OmegaConf.structured(schema.ExperimentConfig)
    loaded = read_config(path)
    missing = sorted(flatten(OmegaConf.to_container(base)).keys() - flatten(OmegaConf.to_container(loaded)).keys())
    if missing:
        raise RecordUnreadable(path, f"it is damaged (no {missing[0]}: cut short?)")
    try:
        merged = OmegaConf.merge(base, loaded)
    except OmegaConfBaseException as exc:  # a value of the wrong kind, a key the schema lacks
        raise RecordUnreadable(path, f"it is damaged ({str(exc).splitlines()[0][:120]})") from None
    return to_typed(merged)


if __name__ == "__main__":
    sys.exit(main())
