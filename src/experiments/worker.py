"""One rank of a multi-process run: ``python -m experiments.worker <run dir>`` (started by accelerate launch)."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run_dir = Path(argv[0])
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"[rank {rank}][%(name)s][%(levelname)s] %(message)s",
                        handlers=[logging.StreamHandler(), *( [logging.FileHandler(run_dir / "run.log")] if rank == 0 else [])])
    from experiments import interrupts
    from experiments.errors import ExperimentError
    from experiments.train import train
    from experiments.train.launch import ERROR_FILE_ENV

    interrupts.current().install()
    try:
        train(load_run_config(run_dir), run_dir)
    except ExperimentError as exc:
        if rank == 0:
            Path(os.environ.get(ERROR_FILE_ENV, run_dir / "error.txt")).write_text(str(exc) + "\n")
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def load_run_config(run_dir: Path):
    """The typed config the parent process wrote for this run (workers never compose config themselves)."""
    from omegaconf import OmegaConf

    from experiments.config import schema
    from experiments.config.validate import to_typed
    from experiments.runs import CONFIG_FILE

    base = OmegaConf.structured(schema.ExperimentConfig)
    return to_typed(OmegaConf.merge(base, OmegaConf.load(run_dir / CONFIG_FILE)))


if __name__ == "__main__":
    sys.exit(main())
