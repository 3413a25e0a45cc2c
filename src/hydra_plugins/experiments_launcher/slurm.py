"""``hydra/launcher=slurm`` (and ``slurm_local`` to try it without a cluster): hydra-submitit-launcher,
one Slurm job per sweep job, one task per allocated node. Each node's task runs the job, which starts
``accelerate launch`` over that node's GPUs (``trainer.num_processes`` = ``gpus_per_node``) with the
node's rank, the node count and the first node as rendezvous address. Only node 0 records the job.

The sweep's process waits for every job and records how each ended: a job that Slurm cancelled
(``scancel``), timed out or killed before it could report is recorded as failed with a line that says so,
and a failed job is reported in one line (its traceback is in ``.submitit/``), never as a traceback. Job
states come from ``sacct``; on a cluster that keeps no accounting they come from ``squeue``."""

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.callbacks import NODE_RANK_ENV  # only node 0 records a job
from hydra_plugins.experiments_launcher.subprocess_launcher import SweepJobFailed

log = logging.getLogger(__name__)

try:
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
    from submitit.slurm.slurm import SlurmInfoWatcher
except ImportError:  # hydra-submitit-launcher not installed: the configs are simply unavailable
    LocalLauncher = SlurmLauncher = None
    SlurmInfoWatcher = object
else:
    from dataclasses import dataclass

    from hydra.core.config_store import ConfigStore

    @dataclass
    class SlurmRequeueConf(SlurmQueueConf):
        """hydra-submitit-launcher's Slurm settings + how often a job stopped by Slurm is requeued."""
        max_requeues: int = 3

    @dataclass
    class LocalRequeueConf(LocalQueueConf):
        max_requeues: int = 0

    for _name, _node in (("submitit_slurm_requeue", SlurmRequeueConf), ("submitit_local_requeue", LocalRequeueConf)):
        ConfigStore.instance().store(group="hydra/launcher", name=_name, node=_node, provider="experiments")

# Slurm states of a job that has not ended yet (as submitit counts them).
RUNNING_STATES = ("READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED",
                  "CONFIGURING", "SUSPENDED", "RESIZING", "REQUEUE_FED", "REQUEUE_HOLD", "SIGNALING", "STAGE_OUT")
GONE = "ENDED"  # state of a job that squeue no longer knows (no accounting to say how it ended)
STATE_WAIT_S = 60  # how long a failed job's final Slurm state is waited for (it is completing)


class SlurmSubmissionFailed(CompactHydraException):
    """sbatch refused the sweep's jobs: one line, no traceback."""


def rendezvous_port(job_id: str) -> int:
    """The same free-looking port on every node of one Slurm job (derived from its id)."""
    digits = re.sub(r"\D", "", str(job_id)) or "0"
    return 20000 + int(digits) % 20000


def node_settings(gpus_per_node: Optional[int], num_machines: int = 1) -> Dict[str, Any]:
    """``trainer.*`` values for this node of the allocation (from submitit's view of the job). A config that
    asks for another machine count than the allocation has is one line (the nodes would wait for ever)."""
    import submitit

    from experiments.errors import ExperimentError

    env = submitit.JobEnvironment()
    if num_machines > 1 and num_machines != env.num_nodes:
        raise ExperimentError(f"trainer.num_machines={num_machines} but the Slurm job has {env.num_nodes} node(s): "
                              f"set hydra.launcher.nodes={num_machines} (the launcher sets trainer.num_machines "
                              f"from it)")
    settings: Dict[str, Any] = {}
    if gpus_per_node:
        settings["trainer.num_processes"] = int(gpus_per_node)
    if env.num_nodes > 1:
        settings.update({"trainer.num_machines": env.num_nodes, "trainer.machine_rank": env.node,
                         "trainer.main_process_ip": env.hostnames[0],
                         "trainer.main_process_port": rendezvous_port(env.job_id)})
    return settings


def parse_squeue(text: str) -> Dict[str, Dict[str, str]]:
    """``squeue --noheader --array --format=%i|%T|%N`` lines -> {job id (``12``, ``12_3``): its state}."""
    info: Dict[str, Dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0]:
            nodes = parts[2] if len(parts) > 2 else ""
            info[parts[0]] = {"JobID": parts[0], "State": parts[1], "NodeList": nodes}
    return info


class SlurmWatcher(SlurmInfoWatcher):
    """submitit's job-state watcher (``sacct``), which falls back to ``squeue`` when ``sacct`` fails (a
    cluster without accounting storage): with submitit's own, a job that ended without a result (cancelled,
    killed) would be waited for forever there, and every poll would print sacct's error."""

    def __init__(self, delay_s: int = 60) -> None:
        super().__init__(delay_s=delay_s)
        self.sacct_error: Optional[str] = None

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        info = self._sacct(command)
        if info is None:
            info = self._squeue({x.split("_")[0] for x in self._registered - self._finished})
        self._info_dict.update(info)
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def _sacct(self, command: List[str]) -> Optional[Dict[str, Dict[str, str]]]:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            done, error = None, str(exc)
        else:
            error = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[0]
        if done is not None and done.returncode == 0:
            return self.read_info(done.stdout)
        if self.sacct_error is None:
            log.info("sacct is unavailable (%s): following the jobs with squeue", error)
        self.sacct_error = error
        return None

    def _squeue(self, job_ids: "set[str]") -> Dict[str, Dict[str, str]]:
        """States from squeue (it knows jobs until MinJobAge after their end); a job it no longer knows has
        ended (state ``ENDED``), so that waiting for it stops. (sbatch returns once the controller has the
        job, so a job that squeue does not list is not one that is still to come.)"""
        command = ["squeue", "--states=all", "--array", "--noheader", "--format=%i|%T|%N",
                   f"--jobs={','.join(sorted(job_ids))}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("squeue failed: %s", exc)
            return {}
        if done.returncode != 0 and "Invalid job id" not in done.stderr:
            log.warning("squeue failed: %s", done.stderr.strip() or f"exit code {done.returncode}")
            return {}
        info = parse_squeue(done.stdout if done.returncode == 0 else "")
        for job_id in self._registered - self._finished:
            if job_id.split("_")[0] in job_ids and job_id not in info:
                info[job_id] = {"JobID": job_id, "State": GONE, "NodeList": ""}
        return info


class _AccelerateMixin:
    """Replaces the submitit launcher's per-task body: the node's settings are merged into the job's
    config (not added to its overrides, so names, records and resume keys stay the same). The sweep's
    process records every job's end, including the ends that the job itself cannot record."""

    params: Dict[str, Any]
    _EXECUTOR: str

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if int(self.params.get("tasks_per_node") or 1) != 1:
            raise ValueError("hydra.launcher.tasks_per_node must be 1: accelerate launch starts one process per GPU")

    # -- in the sweep's process ------------------------------------------------------------------
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """hydra-submitit-launcher's ``launch`` (same executor and parameters), except how the jobs are
        waited for and how their ends are recorded (:meth:`_outcome`)."""
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        from experiments.sweep.summary import summarize

        assert self.config is not None and len(job_overrides) > 0
        init_keys = {"submitit_folder", "max_num_timeout", "max_requeues"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
                                         **{f"{self._EXECUTOR}_max_num_timeout": self.params[k]
                                            for k in ("max_num_timeout",) if k in self.params})
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in baseparams else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items() if k not in init_keys})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params: List[Any] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                               Singleton.get_state()))
        started = time.time()
        try:
            jobs = executor.map_array(self, *zip(*job_params))
        except submitit.core.utils.FailedJobError as exc:  # sbatch said no (its message is above)
            lines = [ln for ln in str(exc).splitlines() if ln.strip()] or [str(exc)]
            raise SlurmSubmissionFailed(f"error: the sweep's jobs were not submitted: {lines[-1]}") from None
        if self._EXECUTOR == "slurm":
            watcher = SlurmWatcher()
            for job in [*jobs, *(sub for j in jobs for sub in j._sub_jobs)]:  # sub-jobs: one per node
                job.watcher = watcher
            log.info("submitted as Slurm job(s) %s", ", ".join(j.job_id for j in jobs))
        returns = [self._outcome(job, idx, list(overrides), started)
                   for job, (overrides, _, idx, _, _) in zip(jobs, job_params)]
        summarize(self.config)
        return returns

    def _outcome(self, job, num: int, overrides: List[str], started: float) -> JobReturn:
        """The job's return once it ended. A job that failed, or ended without a readable result, is
        recorded as failed with one line (cancelled / timed out / ... from its Slurm state) and returned
        as a one-line failure for Hydra to print."""
        from submitit.core.utils import UncompletedJobError  # the job left no result: it says nothing

        from experiments.sweep.records import error_line

        try:
            ret = job.results()[0]
        except Exception as exc:  # no result (cancelled, killed, out of time) or one that cannot be read
            ret, problem = None, exc
        if ret is not None and ret.status == JobStatus.COMPLETED:
            return ret
        if ret is not None:
            value = ret._return_value  # (Hydra's getter prints "Error executing job ..." and raises)
            problem = value if isinstance(value, BaseException) else RuntimeError(str(value))
        state = self._final_state(job)
        recorded = self._recorded_error(num, overrides)
        said = recorded or ("" if isinstance(problem, UncompletedJobError) else error_line(problem))
        line = describe_end(job.job_id, state, said, result=ret is not None or recorded is not None)
        log.error("job #%d failed: %s", num, line)
        if ret is None or line != recorded:
            self._record_failure(num, overrides, line, started)
        failed = JobReturn(overrides=overrides, status=JobStatus.FAILED)
        failed.return_value = SweepJobFailed(f"job #{num} failed: {line} (output: {job.paths.stderr})")
        return failed

    def _final_state(self, job) -> str:
        """The Slurm state a failed job ended in (waited for while it is completing), '' off Slurm."""
        if self._EXECUTOR != "slurm":
            return ""
        deadline = time.time() + STATE_WAIT_S
        while True:
            state = job.watcher.get_state(job.job_id, mode="force")
            if (state.split() or ["UNKNOWN"])[0].upper() not in RUNNING_STATES or time.time() > deadline:
                return state
            time.sleep(1)

    def _run_dir(self, num: int, overrides: List[str]) -> Path:
        from hydra_plugins.experiments_launcher._jobs import job_run_dir

        assert self.config is not None and self.hydra_context is not None
        return job_run_dir(self.hydra_context.config_loader, self.config, overrides, num)

    def _recorded_error(self, num: int, overrides: List[str]) -> Optional[str]:
        """The error the job recorded itself (sweep_job.json), if it could."""
        from experiments.sweep import records

        return (records.read(self._run_dir(num, overrides)) or {}).get("error") or None

    def _record_failure(self, num: int, overrides: List[str], line: str, started: float) -> None:
        """Write (or correct) the job's record: failed, with ``line`` as its error."""
        from experiments.sweep import records
        from experiments.sweep.naming import sweep_id

        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        run_dir = self._run_dir(num, overrides)
        record = records.read(run_dir)
        if record is not None:
            record.update(status=records.FAILED, error=line)
        else:
            record = records.build(job=num, overrides=overrides, status=records.FAILED, run_dir=run_dir,
                                   sweep_dir=sweep_dir, sweep=sweep_id(str(sweep_dir)), started_at=started,
                                   finished_at=time.time(), error=line,
                                   objective=OmegaConf.select(self.config, "objective", default=None))
        try:
            records.write(run_dir, record)
        except OSError as exc:
            log.warning("could not record job #%d: %s", num, exc)

    # -- in the job (on each node) ---------------------------------------------------------------------
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
            run_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
            machines = int(OmegaConf.select(sweep_config, "trainer.num_machines", default=1) or 1)
            for key, value in {**node_settings(self.params.get("gpus_per_node"), machines),
                               **resume_settings(sweep_config, run_dir)}.items():
                OmegaConf.update(sweep_config, key, value, merge=False)
            if env.node:  # node 0 records the job; this node writes nothing of it (rundir.node_settings)
                from experiments.rundir import node_settings as hydra_node_settings

                for key, value in hydra_node_settings(run_dir, env.node).items():
                    OmegaConf.update(sweep_config, key, value, merge=False)
        os.environ[NODE_RANK_ENV] = str(env.node)
        if env.node:
            log.info("node %d of %d joins job #%d", env.node, env.num_nodes, job_num)
        ret = run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=sweep_config,
                      job_dir_key=job_dir_key, job_subdir_key="hydra.sweep.subdir")
        if ret.status == JobStatus.FAILED:
            self._requeue_if_stopped(ret, env, run_dir)
        return ret

    def _requeue_if_stopped(self, ret: JobReturn, env, run_dir: Path) -> None:
        """A job that Slurm stopped (SIGTERM: preempted, requeued, its node taken down; SIGUSR2: its time limit
        is near) has saved a checkpoint and stopped: it leaves no result, so that the sweep waits for it to run
        again (Slurm requeues it; on SIGUSR2 the job requeues itself) and resume from that checkpoint in the same
        run dir. A job requeued ``max_requeues`` times already, or one that failed for a real error, returns its
        failure and is recorded as failed."""
        import signal

        from experiments.interrupts import Interrupted

        stopped = ret._return_value
        if not isinstance(stopped, Interrupted) or stopped.signum not in (signal.SIGTERM, signal.SIGUSR2):
            return
        restarts, limit = int(os.environ.get("SLURM_RESTART_COUNT") or 0), int(self.params.get("max_requeues") or 0)
        if restarts >= limit:
            log.error("job %s is not requeued: it ran %d time(s) already (hydra.launcher.max_requeues=%d)",
                      env.job_id, restarts + 1, limit)
            return
        if stopped.signum == signal.SIGUSR2 and env.global_rank == 0:
            subprocess.run(["scontrol", "requeue", str(env.job_id)], check=False, timeout=60)
        log.warning("job %s stopped by %s after a checkpoint: requeued (%d of %d), it resumes in the same run dir",
                    env.job_id, signal.Signals(stopped.signum).name, restarts + 1, limit)
        if not env.node:  # the job-end record this attempt just wrote (failed): the job is not over
            from experiments.sweep.records import RECORD_FILE

            (run_dir / RECORD_FILE).unlink(missing_ok=True)
        logging.shutdown()
        sys.exit(128 + stopped.signum)  # SystemExit: submitit writes no result for this attempt


def resume_settings(sweep_config: DictConfig, run_dir: Path) -> Dict[str, Any]:
    """A Slurm job running again (requeued after preemption, a time limit or a node failure) continues from
    its newest whole checkpoint in its run dir; with none yet it starts over."""
    from experiments.config.schema import training_backend
    from experiments.train.checkpoints import has_checkpoint

    if not int(os.environ.get("SLURM_RESTART_COUNT") or 0):
        return {}
    backend = training_backend(str(OmegaConf.select(sweep_config, "tuning.name", default="sft")),
                               str(OmegaConf.select(sweep_config, "trainer.backend", default="accelerate")))
    if not has_checkpoint(run_dir, backend):
        log.warning("restart %s of this job: no checkpoint in %s yet, it starts over",
                    os.environ["SLURM_RESTART_COUNT"], run_dir)
        return {}
    log.warning("restart %s of this job: resuming from its checkpoint in %s", os.environ["SLURM_RESTART_COUNT"],
                run_dir)
    return {"trainer.resume": "true"}


def describe_end(job_id: str, state: str, error: str, result: bool = True) -> str:
    """One line for a failed job: what Slurm did to it (cancelled, timed out, ...) first, then what the
    job said. ``state`` is Slurm's (``CANCELLED by 0``), '' when unknown."""
    word = state.split()[0].upper() if state else ""
    said = f"; the job: {error}" if error else ""
    if word == "CANCELLED":
        return f"cancelled (Slurm job {job_id} {state}){said}"
    if word in ("TIMEOUT", "DEADLINE"):
        return f"out of time (Slurm job {job_id} {state}){said}"
    if word in ("OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "PREEMPTED"):
        return f"stopped by Slurm (job {job_id} {state}){said}"
    if not result:  # no result, and no state that explains it
        known = f" (Slurm job {job_id} {state})" if state else ""
        return f"ended without a result{known}{said}"
    return error


if SlurmLauncher is not None:

    class SlurmAccelerateLauncher(_AccelerateMixin, SlurmLauncher):
        """Each job as `accelerate launch` across the GPUs of its Slurm allocation."""

    class LocalAccelerateLauncher(_AccelerateMixin, LocalLauncher):
        """The same on submitit's local executor (tests, a single workstation)."""
