"""A run that spans several machines: what each node writes, and what the nodes must agree on.

One run dir, one ``config.yaml``, one ``metrics.json``, written by global rank 0 (node 0). A node of rank
> 0 writes nothing of the run's record: the config its workers read and its own log go to a node-local
folder (:func:`node_dir`), and its ranks write only their share of each checkpoint. The run dir may be on a
filesystem the nodes share (the usual cluster case) or on each node's own disk; the workers find out which
(:func:`shared_filesystem`) and, on separate disks, every node keeps a whole checkpoint of its own so that
any node can resume.

The nodes agree before training starts: on the config (:func:`agree_on_config`, a difference is one line
naming the key) and, on resume, on the checkpoint step (:func:`agree_on_step`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from experiments.config.schema import ExperimentConfig
from experiments.errors import ExperimentError
from experiments.runs import flat_keys
from experiments.train import checkpoints

log = logging.getLogger(__name__)

CONFIG_FILE_ENV = "EXPERIMENTS_CONFIG_FILE"  # the config the workers of this node read
RENDEZVOUS_FILE_ENV = "EXPERIMENTS_RENDEZVOUS_FILE"  # written by a node's first worker once all ranks met
# Keys that differ between the nodes of one run by design.
PER_NODE_KEYS = ("trainer.machine_rank",)


def node_dir(run_dir: Path, machine_rank: int) -> Path:
    """The node-local folder of node ``machine_rank`` (> 0) of the run in ``run_dir``: its config and log."""
    digest = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"experiments-node{machine_rank}-{digest}"


def config_dir(run_dir: Path, machine_rank: int) -> Path:
    """Where this node's parent writes the config its workers read: the run dir on node 0."""
    return Path(run_dir) if machine_rank == 0 else node_dir(run_dir, machine_rank)


def differences(configs: List[Dict[str, Any]]) -> List[str]:
    """Keys whose values differ between the nodes' flat configs (per-node keys excepted), sorted."""
    keys = sorted({k for c in configs for k in c} - set(PER_NODE_KEYS))
    return [k for k in keys if len({repr(c.get(k, "<missing>")) for c in configs}) > 1]


def process_state():
    """Accelerate's view of this process in the run (the process group is up once it returns). On CPU the
    launcher says so through ``ACCELERATE_USE_CPU``, which ``Accelerator`` reads and ``PartialState`` does not:
    without it the ranks would each think they run alone."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def _gather(value: Any) -> List[Any]:
    from accelerate.utils import gather_object

    return gather_object([value])


def agree_on_config(cfg: ExperimentConfig) -> None:
    """Every rank trains the same experiment: the first key whose value differs between nodes stops the run
    on every rank with one line (exit 2). Call once the process group is up."""
    from omegaconf import OmegaConf

    state = process_state()
    if state.num_processes == 1:
        return
    mine = flat_keys(OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True))
    everyone = _gather(mine)
    keys = differences(everyone)
    if keys:
        key = keys[0]
        per_rank = ", ".join(f"{everyone[r].get(key, '<missing>')!r} on rank {r}" for r in range(len(everyone)))
        error = ExperimentError(f"the nodes disagree on the config: {key} is {per_rank}"
                                f"{f' (and {len(keys) - 1} more keys)' if len(keys) > 1 else ''}; run the "
                                f"same command on every node, with only trainer.machine_rank differing")
        error.exit_code = 2
        raise error


def announce_rendezvous() -> None:
    """Tell this node's parent that every rank has joined (it stops waiting for the rendezvous)."""
    path = os.environ.get(RENDEZVOUS_FILE_ENV)
    if path and process_state().is_local_main_process:
        Path(path).write_text("ok\n")


def shared_filesystem(run_dir: Path, num_machines: int) -> bool:
    """Whether every node sees the same run dir: global rank 0 writes a probe with a fresh name, every rank
    looks for it. One machine: always. Call on every rank (it is collective)."""
    from accelerate.utils import broadcast_object_list

    state = process_state()
    if num_machines == 1 or state.num_processes == 1:
        return True
    name = [f".shared-fs-probe-{secrets.token_hex(6)}" if state.is_main_process else None]
    broadcast_object_list(name)
    probe = Path(run_dir) / name[0]
    if state.is_main_process:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text("probe\n")
    state.wait_for_everyone()
    seen = _gather(probe.exists())
    state.wait_for_everyone()
    if state.is_main_process:
        probe.unlink(missing_ok=True)
    shared = all(seen)
    if not shared:
        log.info("the run dir is on each node's own disk: every node keeps a whole checkpoint")
    return shared


def agree_on_step(found: Optional[Path], error: Optional[str]) -> Optional[Path]:
    """The checkpoint every rank resumes from: its own choice when all ranks chose the same step; else the
    newest step that every rank has (a node whose newest was cut short resumes one step earlier), or one
    line when there is none. ``error``: why this rank found none."""
    if process_state().num_processes == 1:
        if error:
            raise ExperimentError(error)
        return found
    mine = None if found is None else Path(found)
    steps_here = [checkpoints.step_of(p) for p in checkpoints.checkpoint_dirs(mine.parent.parent)] if mine else []
    everyone = _gather({"steps": steps_here, "chosen": checkpoints.step_of(mine) if mine else None, "error": error})
    errors = [e["error"] for e in everyone if e["error"]]
    if errors:
        raise ExperimentError(errors[0])
    if len({e["chosen"] for e in everyone}) == 1:  # every rank chose the same step (or none): keep it
        return mine
    common = set.intersection(*(set(e["steps"]) for e in everyone))
    if not common:
        held = "; ".join(f"rank {rank}: {e['steps']}" for rank, e in enumerate(everyone))
        raise ExperimentError(f"trainer.resume: the nodes hold no checkpoint step in common ({held}); "
                              "start a new run")
    step = max(common)
    return mine.parent / f"step_{step}"
