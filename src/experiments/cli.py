"""`python run.py [overrides]`: compose, validate, then train or infer in a Hydra run directory."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from experiments import interrupts, locks
from experiments.config import schema
from experiments.config.validate import check_overrides, conf_dir, to_typed
from experiments.errors import ExperimentError, WriteFailed, as_user_error, write_failed
from experiments.interrupts import Interrupted
from experiments.rundir import CREATED_ENV, plan_single_run, record_resume, remove_created, undo_resume
from experiments.runs import finish_run, start_run
from experiments.sweep.naming import apply_sweep_context
from experiments.sweep.preflight import check_sweep_or_exit
from experiments.train import train
from experiments.train.checkpoints import has_checkpoint, resume_in_place
from experiments.train.nodes import config_dir

if TYPE_CHECKING:  # annotations only
    from omegaconf import DictConfig

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
    argv = sys.argv[1:]
    overrides = _user_overrides(argv)
    multirun = "-m" in argv or "--multirun" in argv
    if not multirun:  # a sweep's parent leaves signals to its launcher; each job installs its own
        interrupts.current().install()  # first: Ctrl-C at any moment from here on is one line
    # A search (hparams_search=… or another Hydra sweeper) is checked by the sweep preflight, trial values included.
    sweeper_chosen = any(o.startswith(("hparams_search=", "hydra/sweeper=")) for o in (overrides or []))
    if overrides is not None and not sweeper_chosen:
        try:  # a single run is composed and checked once, with the run dir it will write to
            if multirun:
                check_overrides(overrides)
            else:
                sys.argv += plan_single_run(overrides)
        except ExperimentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
    elif overrides is not None and not multirun:
        print("error: hparams_search=... runs a sweep: add -m (python run.py -m hparams_search=...)", file=sys.stderr)
        sys.exit(2)

    check_sweep_or_exit(overrides, multirun)  # sweep dir in use without resume, search-space typos: exit 2

    import hydra

    schema.register()
    _hydra_writes_in_one_line()
    hydra_main = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(run_job)
    try:
        hydra_main()
    except KeyboardInterrupt as exc:  # a sweep's parent (a single run stops through experiments.interrupts)
        signum = int(str(exc).split()[-1]) if str(exc).startswith("signal ") else 2
        print(f"error: the sweep was interrupted ({interrupts.signal_name(signum)}); its finished jobs are kept: "
              "run the same command with hydra.launcher.resume=true hydra.sweep.dir=<its folder> "
              "to continue it", file=sys.stderr)
        sys.exit(128 + signum)


def _hydra_writes_in_one_line() -> None:
    """Hydra opens run.log and writes ``.hydra/*.yaml`` (and a sweep's multirun.yaml) before any job code runs:
    a failed write there (disk full, read-only, permission denied) is one line and exit 4 too."""
    import hydra.core.utils as hydra_utils

    def guarded(func):
        def call(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except (OSError, ValueError) as exc:  # logging.config wraps the OSError in a ValueError
                cause = exc if isinstance(exc, OSError) else exc.__cause__ or exc.__context__
                if not isinstance(cause, OSError):
                    raise
                if os.environ.get(CREATED_ENV):
                    remove_created(Path(os.environ[CREATED_ENV]))
                print(f"error: {write_failed(cause)} — free space (or fix the permissions) and run the command again",
                      file=sys.stderr)
                sys.exit(WriteFailed.exit_code)
        return call

    if not getattr(hydra_utils._save_config, "guarded", False):
        hydra_utils._save_config, hydra_utils.configure_log = guarded(hydra_utils._save_config), guarded(
            hydra_utils.configure_log)
        hydra_utils._save_config.guarded = True


def run_job(composed: DictConfig) -> Optional[float]:
    """One Hydra job: returns the objective (for sweepers) when the config names one."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    interrupts.current().install()
    logging.raiseExceptions = False  # a full disk under run.log: no traceback per log line (the error says it)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    resumed = None  # what a resume in place found, put back if it stops before saving anything
    try:
        if multirun:  # W&B group/name/tags of a sweep job (docs/sweeps.md)
            apply_sweep_context(composed, hydra_cfg)
        typed = to_typed(composed)
        node = typed.trainer.machine_rank if typed.mode == "train" else 0  # > 0: node 0 records the run
        if multirun and not node:  # a sweep job's run dir is its own (a single run locks in plan_single_run)
            job = f"{Path(str(hydra_cfg.sweep.dir)).resolve()}#{hydra_cfg.job.num}"  # a retry may take over its lock
            locks.hold(run_dir, "hydra.run.dir", job=job)
        if not multirun and not node and typed.mode == "train" and resume_in_place(typed.trainer.resume):
            resumed = record_resume(run_dir, composed)  # the preflight checked it is the same experiment: log what changed
        start_run(composed, config_dir(run_dir, node))
        if typed.mode == "train":
            metrics = train(typed, run_dir)
            if node:
                return None
        else:
            from experiments.infer import infer

            metrics = infer(typed, run_dir)
        return finish_run(run_dir, metrics, typed.objective)
    except Exception as caught:  # a user error, a failed write, out of memory: one line; else a bug (re-raised)
        exc = as_user_error(caught)
        if resumed is not None:
            undo_resume(run_dir, resumed)
        if exc is None:
            raise  # a bug in this framework: its traceback
        log.error("%s", exc)
        if multirun:
            raise exc from None
        failed_write = exc.exit_code == WriteFailed.exit_code  # here or in a worker of a multi-process run
        if exc.exit_code == 2 or failed_write or isinstance(exc, Interrupted):  # leave nothing this invocation
            # made behind (remove_created keeps a run dir that holds a checkpoint or metrics: a run to resume)
            logging.shutdown()
            remove_created(run_dir)
        message = f"{exc} {_after_write_failed(run_dir)}" if failed_write else str(exc)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(exc.exit_code)


def _after_write_failed(run_dir: Path) -> str:
    """What to do after a failed write: the run dir is gone (start again), holds a checkpoint (resume), or
    holds results but no checkpoint (start again elsewhere)."""
    fix = "— free space (or fix the permissions) and"
    if not run_dir.exists():
        return f"{fix} run the command again"
    if has_checkpoint(run_dir) or has_checkpoint(run_dir, "hf_trainer"):
        return f"{fix} resume with trainer.resume=true hydra.run.dir={run_dir}"
    return f"{fix} run the command again with a new hydra.run.dir ({run_dir} holds no checkpoint to resume from)"


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    main()
