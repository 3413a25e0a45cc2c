"""Where a single run writes, decided before Hydra writes anything: a new run gets a new (or empty)
directory, a resumed run gets the directory of the run it continues — and only if its config is the
same experiment. Nothing of an earlier run is overwritten, and a failed start removes only what this
invocation created.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from omegaconf import OmegaConf

from experiments import locks, secrets
from experiments.config.schema import training_backend
from experiments.config.validate import compose_with_hydra, to_typed
from experiments.errors import ExperimentError
from experiments.files import atomic_write
from experiments.runs import CONFIG_FILE, flat_keys, read_config
from experiments.train.checkpoints import (
    has_checkpoint,
    nothing_to_continue,
    resume_in_place,
    resume_requested,
)
from experiments.train.nodes import node_dir

if TYPE_CHECKING:  # annotations only
    from omegaconf import DictConfig

RESUME_LOG = "resume_log.jsonl"
_STALE_TMP = re.compile(r"\..+\.\d+\.tmp")  # files.atomic_write's temporary name
log = logging.getLogger(__name__)
# Set by the preflight for the Hydra job in this process: the run dir it made, if it made one.
CREATED_ENV = "EXPERIMENTS_CREATED_RUN_DIR"
CREATED_TOP_ENV = "EXPERIMENTS_CREATED_TOP_DIR"  # the outermost folder of the run dir's path it made
RESUME_SUBDIR_ENV = "EXPERIMENTS_RESUME_HYDRA_SUBDIR"

# Keys a resumed run may change without becoming another experiment (where files go, what is logged).
RESUME_FREE = ("trainer.resume", "paths.output_dir", "paths.root_dir", "logger.", "inference.", "tags",
               "objective", "trainer.log_every_n_steps", "trainer.save_total_limit", "trainer.save_steps",
               "trainer.dataloader_num_workers", "trainer.main_process_port", "trainer.main_process_ip",
               "trainer.rendezvous_timeout_s")
# Keys a resumed run may raise: it trains longer (the schedule stretches to the new end from here on).
RESUME_LONGER = ("trainer.epochs", "trainer.max_steps")


def plan_single_run(overrides: List[str]) -> List[str]:
    """Check the run dir of a single run; return the overrides that pin it for Hydra."""
    for override in overrides:  # hydra.* overrides too: Hydra writes every override to .hydra/
        secrets.check_override(override)
    cfg, hydra_cfg = compose_with_hydra(overrides)
    run_dir = Path(str(hydra_cfg.run.dir))
    typed = to_typed(cfg)
    pinned = any(o.startswith("hydra.run.dir=") for o in overrides)
    extra = [] if pinned else [f"hydra.run.dir={run_dir}"]
    if typed.mode == "train" and typed.trainer.machine_rank > 0:
        if not pinned:
            raise ExperimentError(f"trainer.machine_rank={typed.trainer.machine_rank} joins node 0's run: give it "
                                  f"the same hydra.run.dir=<dir> as the command on node 0")
        return [f"{k}={'null' if v is None else v}" for k, v in node_settings(run_dir, typed.trainer.machine_rank).items()]
    existed = run_dir.exists()
    top = run_dir.resolve()  # the outermost folder of the path that is not there yet (the lock makes them all)
    while not top.parent.exists():
        top = top.parent
    lock_run_dir(run_dir)
    resume = typed.mode == "train" and resume_requested(typed.trainer.resume)
    if resume and resume_in_place(typed.trainer.resume):
        check_resumable(run_dir, cfg, training_backend(typed.tuning.name, typed.trainer.backend))
        remove_stale_temporaries(run_dir)
        subdir = f".hydra/resume-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        os.environ[RESUME_SUBDIR_ENV] = str(run_dir.resolve() / subdir)
        return extra + [f"hydra.output_subdir={subdir}"]
    if resume:
        source = checkpoint_run_dir(Path(str(typed.trainer.resume)).expanduser())
        if source is not None:
            compare_for_resume(source, cfg)
    check_fresh(run_dir, resume)
    if not existed:
        os.environ[CREATED_ENV] = str(run_dir.resolve())
        os.environ[CREATED_TOP_ENV] = str(top)
    return extra


def lock_run_dir(run_dir: Path) -> None:
    """One command at a time in a run dir (a new run, a resume): the lock is taken before anything is
    checked or written, and held until this process ends (``experiments.locks``). A path that is a file is
    left to :func:`check_fresh` to refuse."""
    if not run_dir.exists() or run_dir.is_dir():
        locks.hold(run_dir, "hydra.run.dir")


def node_settings(run_dir: Path, machine_rank: int) -> Dict[str, Any]:
    """Hydra settings of node ``machine_rank`` > 0 of a run on several machines: Hydra writes nothing into the
    run dir (node 0 records the run; its resume is checked there), and this node's log goes to its
    node-local folder (``train.nodes.node_dir``)."""
    folder = node_dir(run_dir, machine_rank)
    folder.mkdir(parents=True, exist_ok=True)
    return {"hydra.output_subdir": None, "hydra.job_logging.handlers.file.filename": str(folder / "run.log")}


def check_fresh(run_dir: Path, resume: bool) -> None:
    """A new run never writes into a directory that already holds files."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise ExperimentError(f"hydra.run.dir={run_dir} is a file, not a directory: choose another hydra.run.dir")
    held = sorted(p.name for p in run_dir.iterdir() if not locks.is_lock_file(p.name))
    if held:
        shown = ", ".join(held[:6]) + (", ..." if len(held) > 6 else "")
        what = "a run" if (run_dir / CONFIG_FILE).exists() else "files"
        hint = "" if resume else "; to continue that run add trainer.resume=true"
        raise ExperimentError(f"hydra.run.dir={run_dir} already holds {what} ({shown}): a new run needs a new or "
                              f"empty directory{hint}")


def check_resumable(run_dir: Path, composed: DictConfig, backend: str) -> None:
    """``trainer.resume=true``: the dir holds a run of the same experiment with a complete checkpoint (or one
    stopped before its first checkpoint, with no result: it starts again from step 0)."""
    held = {p.name for p in run_dir.iterdir() if not locks.is_lock_file(p.name) and not _STALE_TMP.fullmatch(p.name)
            } if run_dir.is_dir() else set()  # (a config.yaml cut short by the kill is such a temporary file)
    if not (run_dir / CONFIG_FILE).is_file() and held and held <= {".hydra", "run.log"}:
        raise ExperimentError(f"trainer.resume=true but {run_dir} holds only Hydra's files of a start stopped before "
                              f"the run began (nothing to continue): remove that folder, or start the run in "
                              f"another hydra.run.dir")
    if not (run_dir / CONFIG_FILE).is_file():
        raise ExperimentError(f"trainer.resume=true but {run_dir} holds no run (no {CONFIG_FILE}); rerun in the "
                              f"run's directory (hydra.run.dir=<run dir>) or pass a checkpoint path")
    compare_for_resume(run_dir, composed)
    if not has_checkpoint(run_dir, backend) and not nothing_to_continue(run_dir):
        raise ExperimentError(f"trainer.resume=true but {run_dir}/checkpoints holds no complete checkpoint; "
                              f"rerun in the same directory (hydra.run.dir=<run dir>) or pass a checkpoint path")


def remove_stale_temporaries(run_dir: Path) -> List[Path]:
    """A resume (holding the run dir's lock, so no other process of ours writes there) removes the temporary
    files a killed attempt left mid-write: ``files.atomic_write``'s ``.<name>.<pid>.tmp`` beside the record it was
    replacing. The record itself is the old whole file, or the new one."""
    stale = [p for p in run_dir.rglob(".*.tmp") if _STALE_TMP.fullmatch(p.name) and p.is_file()
             and not p.name.endswith(f".{os.getpid()}.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
        log.info("removed %s, a temporary file left by a stopped attempt", path)
    return stale


def checkpoint_run_dir(path: Path) -> Optional[Path]:
    """The run a checkpoint path belongs to (``<run>/checkpoints/step_N`` or ``<run>``)."""
    for candidate in (path, path.parent.parent):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def resume_changes(run_dir: Path, composed: DictConfig) -> Tuple[Dict[str, list], Dict[str, list]]:
    """(allowed, refused) differences between the saved config of ``run_dir`` and ``composed``."""
    saved = flat_keys(OmegaConf.to_container(read_config(run_dir / CONFIG_FILE), resolve=False))
    container = OmegaConf.to_container(composed, resolve=True)
    container.pop("hydra", None)
    new = flat_keys(container)
    allowed, refused = {}, {}
    for key in sorted(set(saved) | set(new)):
        old_value, new_value = saved.get(key, "<unset>"), new.get(key, "<unset>")
        if _same(old_value, new_value) or key.startswith(RESUME_FREE):
            continue
        longer = key in RESUME_LONGER and isinstance(old_value, (int, float)) and isinstance(new_value, (int, float))
        if longer and (new_value >= old_value or key == "trainer.max_steps" and old_value <= 0 < new_value):
            allowed[key] = [old_value, new_value]
        else:
            refused[key] = [old_value, new_value]
    return allowed, refused


def compare_for_resume(run_dir: Path, composed: DictConfig) -> None:
    """Refuse to resume a run whose experiment the new config changes (anything but RESUME_FREE/LONGER)."""
    from omegaconf import open_dict

    probe = composed.copy()
    with open_dict(probe):
        probe.paths.output_dir = str(run_dir)
    _, refused = resume_changes(run_dir, probe)
    if refused:
        shown = "; ".join(f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in list(refused.items())[:4])
        more = f" (+{len(refused) - 4} more)" if len(refused) > 4 else ""
        raise ExperimentError(f"trainer.resume: the config differs from the run in {run_dir}: {shown}{more}; "
                              f"resume with the run's values, or start a new run")


@dataclass(frozen=True)
class ResumeStart:
    """The run's record as a resume in place found it, to put back if the resume saves nothing new."""

    config: bytes
    log_size: Optional[int]  # None: there was no resume log
    checkpoints: Tuple[str, ...]


def _checkpoint_names(run_dir: Path) -> Tuple[str, ...]:
    root = run_dir / "checkpoints"
    return tuple(sorted(p.name for p in root.iterdir())) if root.is_dir() else ()


def record_resume(run_dir: Path, composed: DictConfig) -> ResumeStart:
    """On resume: the allowed changes go to config.yaml (what the run now is; written by ``runs.start_run``) and
    resume_log.jsonl (history). Returns what :func:`undo_resume` needs to put the record back."""
    log = run_dir / RESUME_LOG
    start = ResumeStart((run_dir / CONFIG_FILE).read_bytes(), log.stat().st_size if log.is_file() else None,
                        _checkpoint_names(run_dir))
    allowed, _ = resume_changes(run_dir, composed)
    entry = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "changes": allowed}
    with log.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")
    return start


def undo_resume(run_dir: Path, start: ResumeStart) -> None:
    """A resume that stopped before it saved a checkpoint leaves the run as it found it: the saved config back
    (a later resume is checked against what the run is, not what this attempt asked for) and its log entry gone.
    Once it has saved a checkpoint, the run is what the new config says and the record stays."""
    if _checkpoint_names(run_dir) != start.checkpoints:
        return
    atomic_write(run_dir / CONFIG_FILE, start.config)
    log = run_dir / RESUME_LOG
    if start.log_size is None:
        log.unlink(missing_ok=True)
    elif log.is_file():
        with log.open("r+b") as handle:
            handle.truncate(start.log_size)


def remove_created(run_dir: Path) -> None:
    """After bad input: remove what this invocation created (never a directory that existed before)."""
    resume_subdir = os.environ.pop(RESUME_SUBDIR_ENV, None)
    if resume_subdir and Path(resume_subdir).is_dir():
        shutil.rmtree(resume_subdir, ignore_errors=True)
    created = os.environ.pop(CREATED_ENV, None)
    if not created or Path(created) != run_dir.resolve() or not run_dir.is_dir():
        return
    if any((run_dir / name).exists() for name in ("checkpoints", "metrics.json", "best", "last")):
        return  # training had started: its results stay
    shutil.rmtree(run_dir, ignore_errors=True)
    top = Path(os.environ.pop(CREATED_TOP_ENV, str(run_dir.resolve())))
    parent = run_dir.resolve().parent
    while top != run_dir.resolve() and parent.is_relative_to(top) and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()  # folders this invocation made (outputs/, the date folder), if nothing else is in them
        parent = parent.parent
