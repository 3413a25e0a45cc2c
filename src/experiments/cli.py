"""`python run.py [overrides]`: compose, validate, then train or infer in a Hydra run directory."""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional

log = logging.getLogger("experiments")

# Hydra flags that print information and run nothing: no validation needed.
_INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc",
               "--version", "--resolve", "-p", "--package")


def _user_overrides(argv: List[str]) -> Optional[List[str]]:
    """Overrides a run would use, or None when the command only asks for information."""
    if any(arg in _INFO_FLAGS or arg.split("=")[0] in _INFO_FLAGS for arg in argv):
        return None
    return [a for a in argv if not a.startswith("-")]


def main() -> None:
    """Console entry point: one-line errors with exit code 2 for bad input, before any run dir exists."""
    from experiments.config import schema
    from experiments.config.validate import check_overrides, conf_dir
    from experiments.errors import ExperimentError

    argv = sys.argv[1:]
    overrides = _user_overrides(argv)
    multirun = "-m" in argv or "--multirun" in argv
    sweeper_chosen = any(o.startswith("hparams_search=") for o in (overrides or []))
    if overrides is not None and not sweeper_chosen:
        try:
            check_overrides(overrides)
        except ExperimentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
    elif overrides is not None and not multirun:
        print("error: hparams_search=... runs a sweep: add -m (python run.py -m hparams_search=...)", file=sys.stderr)
        sys.exit(2)

    import hydra

    schema.register()
    hydra_main = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(run_job)
    hydra_main()


def run_job(cfg) -> Optional[float]:
    """One Hydra job: returns the objective (for sweepers) when the config names one."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from experiments.config.validate import to_typed
    from experiments.errors import ExperimentError
    from experiments.runs import finish_run, start_run

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        if multirun:  # W&B group/name/tags of a sweep job (docs/sweeps.md)
            from experiments.sweep.naming import apply_sweep_context

            apply_sweep_context(cfg, hydra_cfg)
        typed = to_typed(cfg)
        start_run(cfg, run_dir)
        if typed.mode == "train":
            from experiments.train import train

            metrics = train(typed, run_dir)
        else:
            from experiments.infer import infer

            metrics = infer(typed, run_dir)
        return finish_run(typed, run_dir, metrics)
    except ExperimentError as exc:
        log.error("%s", exc)
        if multirun:
            raise
        _remove_if_empty_run(run_dir)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def _remove_if_empty_run(run_dir: Path) -> None:
    """A run that failed on bad input leaves no half-written directory (only Hydra's own files there)."""
    if run_dir.is_dir() and all(p.name in (".hydra", "config.yaml") or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
        parent = run_dir.parent
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    main()
