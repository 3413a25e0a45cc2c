"""Resumable checkpoints: ``checkpoints/step_<N>/`` = Accelerate ``save_state`` + our loop counters.

A checkpoint counts once ``loop_state.json`` is in it; that file is written last and atomically, and
it lists the size of every other file, so a checkpoint cut short (killed mid-write, disk full, a file
truncated later) is never resumed from. Older checkpoints are removed only after a newer one is whole.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from experiments.errors import ExperimentError, WriteFailed, reason_of
from experiments.files import atomic_write
from experiments.runs import read_metrics

log = logging.getLogger(__name__)

STATE_FILE = "loop_state.json"
_STEP = re.compile(r"step_(\d+)$")
_HF_STEP = re.compile(r"checkpoint-(\d+)$")
_OFF = ("false", "no", "0", "none", "null", "")
_IN_PLACE = ("true", "yes", "1", "latest")


def resume_requested(value: Optional[str]) -> bool:
    """``trainer.resume`` asks to continue (true/latest, or a path)."""
    return value is not None and str(value).strip().lower() not in _OFF


def resume_in_place(value: Optional[str]) -> bool:
    """``trainer.resume`` continues this run's own newest checkpoint (rather than a given path)."""
    return str(value).strip().lower() in _IN_PLACE


def _files(directory: Path) -> Dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != STATE_FILE}


def problem(directory: Path) -> Optional[str]:
    """Why a checkpoint folder cannot be resumed from, or None when it is whole."""
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except FileNotFoundError:
        return f"no {STATE_FILE} (the checkpoint was not finished)"
    except (OSError, ValueError) as exc:
        return f"unreadable {STATE_FILE} ({exc})"
    expected = state.get("_files")
    if expected is None:
        return None  # written before file lists existed
    found = _files(directory)
    for name, size in expected.items():
        if found.get(name) != size:
            return f"{name} is {'missing' if name not in found else f'{found[name]} bytes, expected {size}'}"
    return None


def step_of(directory: Path) -> int:
    """The optimizer step of a ``step_<N>`` checkpoint folder."""
    return int(_STEP.search(Path(directory).name).group(1))


def checkpoint_dirs(run_dir: Path, whole_only: bool = True) -> List[Path]:
    """Checkpoints of a run, oldest first; by default only whole ones (see module docstring)."""
    root = Path(run_dir) / "checkpoints"
    found = [p for p in root.glob("step_*") if _STEP.search(p.name) and p.is_dir()]
    if whole_only:
        found = [p for p in found if problem(p) is None]
    return sorted(found, key=step_of)


def has_checkpoint(run_dir: Path, backend: str = "accelerate") -> bool:
    if backend == "hf_trainer":
        return last_hf_checkpoint(run_dir) is not None
    return bool(checkpoint_dirs(run_dir))


def last_hf_checkpoint(run_dir: Path) -> Optional[Path]:
    """The newest ``checkpoints/checkpoint-N`` the HF Trainer finished writing. It writes ``trainer_state.json``
    last, so a run killed while saving leaves a newer folder without one (or with one cut short), which
    transformers' ``get_last_checkpoint`` would pick."""
    root = Path(run_dir) / "checkpoints"
    found = [(int(match.group(1)), path) for path in root.glob("checkpoint-*")
             if (match := _HF_STEP.search(path.name)) and whole_hf_checkpoint(path)] if root.is_dir() else []
    return max(found)[1] if found else None


def whole_hf_checkpoint(path: Path) -> bool:
    """``path`` is a checkpoint the HF Trainer finished writing: its ``trainer_state.json`` parses."""
    try:
        return isinstance(json.loads((Path(path) / "trainer_state.json").read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):  # missing, or cut while it was written
        return False


def save(accelerator, run_dir: Path, step: int, state: Dict[str, Any], keep: int, shared: bool = True) -> Path:
    """Every process writes its part; then the writer lists the files and rotates old checkpoints. The writer
    is global rank 0 on a run dir every node shares (``shared``), else each node's first process: every node
    then holds a whole checkpoint (Accelerate's ``save_on_each_node``)."""
    directory = Path(run_dir) / "checkpoints" / f"step_{step}"
    writer = accelerator.is_main_process if shared else accelerator.is_local_main_process
    if writer and directory.exists() and not directory.is_dir():
        raise WriteFailed(directory, "a file is in the way of this checkpoint's folder")  # not ours to remove
    if writer and directory.exists():
        shutil.rmtree(directory)  # an unfinished attempt at this same step, from this run
    accelerator.wait_for_everyone()
    _write_state(accelerator, directory, state, writer)
    if writer:
        for old in checkpoint_dirs(run_dir, whole_only=False)[:-keep]:
            if old != directory:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return directory


def _write_state(accelerator, directory: Path, state: Dict[str, Any], writer: bool) -> None:
    """Accelerate's files, then ``loop_state.json`` (atomically, last). A failed write (disk full, permission
    denied) removes this unfinished checkpoint, to free its space, and raises WriteFailed: the earlier
    checkpoints stay, and the run resumes from the newest of them."""
    try:
        accelerator.save_state(str(directory))
        accelerator.wait_for_everyone()  # every process's files (its RNG state, its shards) are written before listing
        if writer:
            atomic_write(directory / STATE_FILE, json.dumps(dict(state, _files=_files(directory))))
    except Exception as exc:  # torch and safetensors raise their own types on a full disk
        failed = exc if isinstance(exc, WriteFailed) else WriteFailed(  # (the reason first: is the disk full?)
            getattr(exc, "filename", None) or directory, reason_of(exc, directory))
        if writer:
            shutil.rmtree(directory, ignore_errors=True)
        raise failed from None


def find(resume: Optional[str], run_dir: Path) -> Optional[Path]:
    """The checkpoint to resume from: ``true``/``latest`` -> this run's newest whole one; a path -> that
    checkpoint (or that run's newest)."""
    if not resume_requested(resume):
        return None
    if resume_in_place(resume):
        for candidate in reversed(checkpoint_dirs(run_dir, whole_only=False)):  # newest first
            why = problem(candidate)
            if why is None:
                return candidate
            log.warning("skipping %s: %s", candidate, why)
        if nothing_to_continue(run_dir):
            log.warning("%s holds no complete checkpoint and no result yet (the run was stopped before its first "
                        "checkpoint): it starts again from step 0", run_dir)
            return None
        raise ExperimentError(f"trainer.resume=true but {run_dir}/checkpoints holds no complete checkpoint; "
                              f"rerun in the same directory (hydra.run.dir=<run dir>) or pass a checkpoint path")
    path = Path(resume).expanduser()
    if (path / STATE_FILE).exists() or _STEP.search(path.name):
        why = problem(path) if path.is_dir() else "it does not exist"
        if why:
            raise ExperimentError(f"trainer.resume: checkpoint '{resume}' cannot be used: {why}")
        return path
    found = checkpoint_dirs(path) if path.is_dir() else []
    if not found:
        raise ExperimentError(f"trainer.resume: no complete checkpoint at '{resume}'")
    return found[-1]


def nothing_to_continue(run_dir: Path) -> bool:
    """A run stopped before its first whole checkpoint that holds no result (no ``best/``, ``last/`` or final
    metrics): a resume in place starts it again from step 0 in its own folder, the same experiment from its
    beginning, instead of asking the user to delete it. Its trackers drop what the stopped attempt logged."""
    run_dir = Path(run_dir)
    if (run_dir / "best").exists() or (run_dir / "last").exists():
        return False
    return not read_metrics(run_dir).get("final")


def load_state(path: Path) -> Dict[str, Any]:
    state = json.loads((Path(path) / STATE_FILE).read_text())
    state.pop("_files", None)
    return state


def restore(accelerator, path: Path) -> Dict[str, Any]:
    """Load model/optimizer/scheduler/RNG state and our counters; a damaged file is one line, not a trace."""
    try:
        accelerator.load_state(str(path))
    except Exception as exc:  # torch/safetensors raise many types for a damaged file
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ExperimentError(f"checkpoint {path} cannot be loaded ({first}); resume from an earlier one "
                              f"(trainer.resume=<path to checkpoints/step_N>)") from None
    return load_state(path)
