"""``hydra/launcher=subprocess``: every job of a sweep runs in a fresh Python process, ``n_jobs`` at a time.

A fresh process per job means no Accelerate, CUDA, W&B or logging state leaks from one job into the
next; a job with ``trainer.num_processes>1`` starts ``accelerate launch`` from its own process. On a
GPU machine concurrent jobs get disjoint ``CUDA_VISIBLE_DEVICES`` (``trainer.num_processes`` GPUs each,
or ``gpus_per_job``); on CPU the cores are split between them. A job that fails is recorded and the
others still run; with ``resume=true`` jobs that already finished in the same sweep dir are kept, and
every job that runs gets a number (and so a folder) after all those already there: nothing an earlier
run of the sweep wrote is overwritten.
"""

import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

CHILD_MODULE = "hydra_plugins.experiments_launcher._child"
WORK_DIR = ".launcher"  # inside the sweep dir: job payloads and each job's console output


class SweepJobFailed(CompactHydraException):
    """A job of the sweep failed: Hydra prints this one line instead of a traceback."""


@dataclass
class SubprocessLauncherConf:
    _target_: str = "hydra_plugins.experiments_launcher.subprocess_launcher.SubprocessLauncher"
    n_jobs: int = 1  # jobs running at the same time
    resume: bool = False  # keep jobs that already finished in this sweep dir (same overrides)
    gpus_per_job: Optional[int] = None  # None: the job's trainer.num_processes (GPU machines only)
    threads_per_job: Optional[int] = None  # CPU threads per job when n_jobs > 1 (None: cores / n_jobs)
    stream_output: Optional[bool] = None  # echo job output to the console (None: only when n_jobs == 1)


ConfigStore.instance().store(group="hydra/launcher", name="subprocess", node=SubprocessLauncherConf,
                             provider="experiments")


@dataclass
class _Job:
    index: int  # position in this batch
    num: int  # Hydra job number
    overrides: List[str]
    config: DictConfig
    run_dir: Path
    gpus_needed: int
    payload: Path
    result: Path
    output: Path
    rerun_of: Optional[str] = None  # with resume: which earlier job it runs again, and why (see _earlier)


class SubprocessLauncher(Launcher):
    def __init__(self, n_jobs: int = 1, resume: bool = False, gpus_per_job: Optional[int] = None,
                 threads_per_job: Optional[int] = None, stream_output: Optional[bool] = None) -> None:
        if int(n_jobs) < 1:
            raise ValueError(f"hydra.launcher.n_jobs must be >= 1, got {n_jobs}")
        self.n_jobs = int(n_jobs)
        self.resume = bool(resume)
        self.gpus_per_job = gpus_per_job
        self.threads_per_job = threads_per_job
        self.stream_output = self.n_jobs == 1 if stream_output is None else bool(stream_output)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None
        self._procs: Dict[int, subprocess.Popen] = {}
        self._stopping = False
        self._lock = threading.Lock()

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    # ------------------------------------------------------------------------------------------
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.experiments_launcher._gpus import GpuPool, visible_gpus

        sweep_dir, work = self._open_batch()
        gpus = GpuPool(visible_gpus())
        log.info("Launching %d job(s), %d at a time, each in its own process -> %s%s", len(job_overrides),
                 self.n_jobs, sweep_dir, f" ({gpus.total} GPU(s))" if gpus.total else "")
        results, jobs = self._prepare_all(job_overrides, initial_job_idx, sweep_dir, work)

        previous = _interrupt_on_sigterm()
        try:
            with ThreadPoolExecutor(max_workers=self.n_jobs, thread_name_prefix="sweep-job") as pool:
                try:
                    for job, ret in zip(jobs, pool.map(lambda j: self._run(j, gpus, sweep_dir), jobs)):
                        results[job.index] = ret
                except BaseException:  # Ctrl+C: stop the running jobs before waiting for their threads
                    self._stopping = True
                    self._terminate_all()
                    raise
        finally:
            self._after_batch(previous)
        return self._close_batch(results)

    def _open_batch(self) -> "tuple[Path, Path]":
        """Hydra's globals and logging for a batch of jobs; the sweep dir and the launcher's folder in it."""
        from hydra.core.utils import configure_log, setup_globals

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        work = sweep_dir / WORK_DIR
        work.mkdir(parents=True, exist_ok=True)
        return sweep_dir, work

    def _after_batch(self, previous_sigterm) -> None:
        """On every exit of a batch: the SIGTERM handler and the logging it found (jobs reconfigure logging)."""
        from hydra.core.utils import configure_log

        _restore_sigterm(previous_sigterm)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)

    def _close_batch(self, results: List[Optional[JobReturn]]) -> List[JobReturn]:
        """The batch ran: the sweep summary so far, and the jobs' returns in order (kept jobs included)."""
        self._write_summary()
        return [r for r in results if r is not None]

    def _prepare_all(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int, sweep_dir: Path,
                     work: Path) -> "tuple[List[Optional[JobReturn]], List[_Job]]":
        """Results of the jobs kept or failed already, and the jobs to run. With resume, a job that finished
        before (same overrides) is kept, and every other job is numbered after all the numbers the sweep dir
        already uses, so neither a finished nor a failed earlier job's folder is written into."""
        from hydra.core.utils import filter_overrides

        from experiments.sweep import records

        kept = records.finished_jobs(sweep_dir) if self.resume else {}
        earlier = records.latest_jobs(sweep_dir) if self.resume else {}
        taken = records.used_job_numbers(sweep_dir) if self.resume else set()
        results: List[Optional[JobReturn]] = [None] * len(job_overrides)
        jobs: List[_Job] = []
        for index, overrides in enumerate(map(list, job_overrides)):
            shown, key = " ".join(filter_overrides(overrides)), records.job_key(overrides)
            if key in kept:
                log.info("\t#%s : %s (finished before: kept)", kept[key]["job"], shown)
                results[index] = self._kept_return(overrides, kept[key])
                continue
            num, rerun_of = _free_number(initial_job_idx + index, taken), _earlier(earlier.get(key))
            try:
                job = self._prepare(index, num, overrides, sweep_dir, work)
            except Exception as exc:  # a job whose config cannot be composed fails alone
                taken.add(num)
                log.info("\t#%d : %s%s", num, shown, _rerun_note(rerun_of))
                results[index] = self._failed(num, overrides, sweep_dir / str(num), sweep_dir, exc, time.time(),
                                              rerun_of)
                continue
            job.rerun_of = rerun_of
            taken.add(job.num)
            log.info("\t#%d : %s%s", job.num, shown, _rerun_note(rerun_of))
            jobs.append(job)
        return results, jobs

    # ------------------------------------------------------------------------------------------
    def _prepare(self, index: int, num: int, overrides: List[str], sweep_dir: Path, work: Path) -> _Job:
        import cloudpickle
        from hydra.core.singleton import Singleton

        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        num, run_dir = self._place(config, num, sweep_dir)
        needed = self.gpus_per_job or int(OmegaConf.select(config, "trainer.num_processes", default=1) or 1)
        job = _Job(index, num, overrides, config, run_dir, needed, work / f"job_{num}.pkl",
                   work / f"job_{num}.result.pkl", work / f"job_{num}.out")
        job.result.unlink(missing_ok=True)
        with job.payload.open("wb") as handle:
            pickle.dump(list(sys.path), handle)
            cloudpickle.dump({"hydra_context": self.hydra_context, "config": config,
                              "task_function": self.task_function, "singletons": Singleton.get_state()}, handle)
        return job

    def _place(self, config: DictConfig, num: int, sweep_dir: Path) -> "tuple[int, Path]":
        """Set the job's number (hydra.job.num, hence its subdir) and return it with the run dir. With
        resume, a number whose run dir already exists is skipped: a resumed sweep never writes into the
        folder of an earlier job."""
        first: Optional[Path] = None
        while True:
            with open_dict(config):
                config.hydra.job.id = f"{num}"
                config.hydra.job.num = num
            try:
                run_dir = sweep_dir / str(OmegaConf.select(config, "hydra.sweep.subdir"))
            except Exception:
                run_dir = sweep_dir / str(num)
            if not (self.resume and run_dir.exists()):
                return num, run_dir
            if run_dir == first:  # the subdir does not depend on the job number
                raise RuntimeError(f"run dir {run_dir} belongs to an earlier job; with "
                                   "hydra.launcher.resume=true, hydra.sweep.subdir must contain ${hydra.job.num}")
            first = first or run_dir
            num += 1

    def _env(self, gpu_ids: Optional[List[str]], num: int) -> Dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1", EXPERIMENTS_SWEEP_JOB=str(num))
        if gpu_ids is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
        if self.n_jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
            threads = self.threads_per_job or max(1, (os.cpu_count() or 1) // self.n_jobs)
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        return env

    def _run(self, job: _Job, gpus, sweep_dir: Path) -> JobReturn:
        started = time.time()
        if self._stopping:
            return self._failed(job.num, job.overrides, job.run_dir, sweep_dir, KeyboardInterrupt("interrupted"),
                                started, job.rerun_of)
        try:
            gpu_ids = gpus.acquire(job.gpus_needed)
        except RuntimeError as exc:
            return self._failed(job.num, job.overrides, job.run_dir, sweep_dir, exc, started, job.rerun_of)
        try:
            cmd = [sys.executable, "-m", CHILD_MODULE, str(job.payload), str(job.result)]
            with job.output.open("wb") as sink:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        env=self._env(gpu_ids, job.num), start_new_session=True)
                with self._lock:
                    self._procs[job.num] = proc
                assert proc.stdout is not None
                for chunk in iter(lambda: proc.stdout.read1(65536), b""):
                    sink.write(chunk)
                    if self.stream_output:
                        sys.stdout.buffer.write(chunk)
                        sys.stdout.flush()
                code = proc.wait()
            with self._lock:
                self._procs.pop(job.num, None)
        finally:
            gpus.release(gpu_ids)
        return self._conclude(job, code, started, sweep_dir)

    def _conclude(self, job: _Job, code: int, started: float, sweep_dir: Path) -> JobReturn:
        """The job's return once its process ended with ``code`` (also used by the Ray launcher): the result
        the job wrote, or, when it wrote none, a failure recorded for it."""
        ret = self._read_result(job)
        if ret is None:
            tail = _last_line(job.output)
            exc = RuntimeError(f"job process exited with code {code} before reporting a result"
                               + (f" ({tail})" if tail else f"; see {job.output}"))
            return self._failed(job.num, job.overrides, job.run_dir, sweep_dir, exc, started, job.rerun_of)
        if ret.status == JobStatus.COMPLETED:
            log.info("job #%d finished in %.1f s", job.num, time.time() - started)
        else:
            from experiments.sweep.records import error_line, outcome

            value = outcome(ret)
            line = error_line(value) if isinstance(value, BaseException) else str(value)
            log.error("job #%d failed: %s", job.num, line)
            # A one-line failure for Hydra to report (the traceback is in the job's output file).
            ret.return_value = SweepJobFailed(_failure(job.num, line, job.rerun_of, job.output))
        job.payload.unlink(missing_ok=True)
        job.result.unlink(missing_ok=True)
        return ret

    @staticmethod
    def _read_result(job: _Job) -> Optional[JobReturn]:
        if not job.result.is_file():
            return None
        import cloudpickle

        try:
            with job.result.open("rb") as handle:
                return cloudpickle.load(handle)
        except Exception as exc:
            log.warning("could not read the result of job #%d: %s", job.num, exc)
            return None

    def _failed(self, num: int, overrides: List[str], run_dir: Path, sweep_dir: Path, exc: BaseException,
                started: float, rerun_of: Optional[str] = None) -> JobReturn:
        """A job that never reported (could not start, or its process died): record it as failed."""
        from experiments.sweep import records
        from experiments.sweep.naming import sweep_id

        log.error("job #%d failed: %s", num, records.error_line(exc))
        assert self.config is not None
        record = records.build(job=num, overrides=overrides, status=records.FAILED, run_dir=run_dir,
                               sweep_dir=sweep_dir, sweep=sweep_id(str(sweep_dir)), started_at=started,
                               finished_at=time.time(), error=records.error_line(exc),
                               objective=OmegaConf.select(self.config, "objective", default=None))
        try:
            records.write(run_dir, record)
        except OSError as write_error:
            log.warning("could not record job #%d: %s", num, write_error)
        ret = JobReturn(overrides=overrides, status=JobStatus.FAILED)
        ret.return_value = SweepJobFailed(_failure(num, records.error_line(exc), rerun_of))
        return ret

    @staticmethod
    def _kept_return(overrides: List[str], record: Dict[str, Any]) -> JobReturn:
        ret = JobReturn(overrides=overrides, status=JobStatus.COMPLETED, working_dir=os.getcwd())
        ret.return_value = record.get("objective_value")
        return ret

    def _write_summary(self) -> None:
        """Keep sweep_summary.* current after every batch (a search launches several)."""
        from experiments.sweep.summary import summarize

        try:
            summarize(self.config)
        except Exception as exc:
            log.warning("could not update the sweep summary: %s", exc)

    def _terminate_all(self) -> None:
        import signal

        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except OSError:
                    pass


def _free_number(wanted: int, taken: "set[int]") -> int:
    """Hydra's job number, or, when the sweep dir already uses numbers (resume), the next one after all."""
    return max([wanted] + [n + 1 for n in taken])


def _earlier(record: Optional[Dict[str, Any]]) -> Optional[str]:
    """Why an earlier job with the same overrides is run again (None: there is none)."""
    if record is None:
        return None
    if record.get("status") == "failed":
        return f"job #{record.get('job')} failed before with the same overrides"
    return f"job #{record.get('job')} with the same overrides left no metrics.json"


def _rerun_note(rerun_of: Optional[str]) -> str:
    return "" if rerun_of is None else f" ({rerun_of}: run again)"


def _failure(num: int, line: str, rerun_of: Optional[str], output: Optional[Path] = None) -> str:
    """The one line Hydra prints for a failed job; a re-run names the earlier attempt (kept in its folder)."""
    notes = [rerun_of] if rerun_of is not None else []
    notes += [f"output: {output}"] if output is not None else []
    return f"job #{num} failed: {line}" + (f" ({'; '.join(notes)})" if notes else "")


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").replace("\r", "\n").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def _interrupt_on_sigterm():
    """While jobs run, SIGTERM (e.g. from a scheduler) stops them like Ctrl+C instead of orphaning them."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)
