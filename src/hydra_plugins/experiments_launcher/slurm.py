"""``hydra/launcher=slurm`` (and ``slurm_local`` to try it without a cluster): hydra-submitit-launcher,
one Slurm job per sweep job, one task per allocated node. Each node's task runs the job, which starts
``accelerate launch`` over that node's GPUs (``trainer.num_processes`` = ``gpus_per_node``) with the
node's rank, the node count and the first node as rendezvous address. Only node 0 records the job."""

import logging
import os
import re
from typing import Any, Dict, List, Optional

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, run_job, setup_globals
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
except ImportError:  # hydra-submitit-launcher not installed: the configs are simply unavailable
    LocalLauncher = SlurmLauncher = None

NODE_RANK_ENV = "EXPERIMENTS_NODE_RANK"  # read by experiments.callbacks


def rendezvous_port(job_id: str) -> int:
    """The same free-looking port on every node of one Slurm job (derived from its id)."""
    digits = re.sub(r"\D", "", str(job_id)) or "0"
    return 20000 + int(digits) % 20000


def node_settings(gpus_per_node: Optional[int]) -> Dict[str, Any]:
    """``trainer.*`` values for this node of the allocation (from submitit's view of the job)."""
    import submitit

    env = submitit.JobEnvironment()
    settings: Dict[str, Any] = {}
    if gpus_per_node:
        settings["trainer.num_processes"] = int(gpus_per_node)
    if env.num_nodes > 1:
        settings.update({"trainer.num_machines": env.num_nodes, "trainer.machine_rank": env.node,
                         "trainer.main_process_ip": env.hostnames[0],
                         "trainer.main_process_port": rendezvous_port(env.job_id)})
    return settings


class _AccelerateMixin:
    """Replaces the submitit launcher's per-task body: the node's settings are merged into the job's
    config (not added to its overrides, so names, records and resume keys stay the same)."""

    params: Dict[str, Any]

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if int(self.params.get("tasks_per_node") or 1) != 1:
            raise ValueError("hydra.launcher.tasks_per_node must be 1: accelerate launch starts one process per GPU")

    def launch(self, job_overrides, initial_job_idx):
        returns = super().launch(job_overrides, initial_job_idx)
        from experiments.sweep.summary import summarize

        summarize(self.config)
        return returns

    def __call__(self, sweep_overrides: List[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: Dict[type, Singleton]) -> JobReturn:
        import submitit

        Singleton.set_state(singleton_state)
        setup_globals()
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, sweep_overrides)
        env = submitit.JobEnvironment()
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = env.job_id
            sweep_config.hydra.job.num = job_num
            for key, value in node_settings(self.params.get("gpus_per_node")).items():
                OmegaConf.update(sweep_config, key, value, merge=False)
        os.environ[NODE_RANK_ENV] = str(env.node)
        if env.node:
            log.info("node %d of %d joins job #%d", env.node, env.num_nodes, job_num)
        return run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=sweep_config,
                       job_dir_key=job_dir_key, job_subdir_key="hydra.sweep.subdir")


if SlurmLauncher is not None:

    class SlurmAccelerateLauncher(_AccelerateMixin, SlurmLauncher):
        """Each job as `accelerate launch` across the GPUs of its Slurm allocation."""

    class LocalAccelerateLauncher(_AccelerateMixin, LocalLauncher):
        """The same on submitit's local executor (tests, a single workstation)."""
