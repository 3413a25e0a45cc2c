"""``hydra/launcher=ray``: every job of a sweep as one Ray task on a Ray cluster, ``n_jobs`` in flight.

The task starts the same child process as the subprocess launcher (``_child.py``) on the node Ray
chose, so the job writes its own run dir, record and result exactly as it does there; numbering, resume
and how a failure is recorded are the subprocess launcher's (this class only replaces how a job runs).
The sweep folder must be on a file system every node sees at the same path (as with Slurm).

Why not hydra-ray-launcher (1.2.2): it requires cloudpickle<3 (this stack has 3.x) and boto3 (for its AWS
mode), runs each job's task function inside a Ray worker process that Ray reuses for later tasks (so
Accelerate, CUDA, W&B and logging state would leak from one job into the next, which the subprocess
launcher exists to prevent), and knows nothing of this project's job numbering, resume, records and
one-line failures. What Ray itself gives is used as is: scheduling by ``num_cpus`` / ``num_gpus`` /
custom resources, the ``SPREAD`` strategy, ``max_retries`` (a task whose worker or node dies is run
again elsewhere) and ``ray.cancel``.

Written here because Ray has no such thing: a check that the cluster answers before anything is written
(``ray.init`` on an address where nothing listens waits for minutes), a check that some node can hold
a job's resources (Ray would wait for ever), and a record of the node(s) each job ran on.

With ``nodes`` = N > 1 a job trains on N machines (multi-node DDP): it reserves a placement group of N
bundles (``STRICT_SPREAD``: one per node) and runs one task per bundle, each starting the job's process
with its share of ``trainer.num_machines`` / ``machine_rank`` / ``main_process_ip`` / ``main_process_port``
(node 0's address and a port found free there). Node 0 records the job; the others write nothing into its
run dir (as under Slurm). The job's outcome is node 0's, unless another node failed first.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import sys
import time
from collections import deque
from dataclasses import replace
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.utils import JobReturn
from omegaconf import DictConfig

from hydra_plugins.experiments_launcher.subprocess_launcher import (
    CHILD_MODULE,
    SubprocessLauncher,
    _interrupt_on_sigterm,
    _Job,
    _last_line,
)

log = logging.getLogger(__name__)

# The first line each attempt writes into the job's output file (.launcher/job_<n>.out); read back to
# know on which node(s) the job ran, also when Ray gave up on it.
ATTEMPT = "[ray] attempt on node {node_id} (ip {ip}, host {host})"
_ATTEMPT_RE = re.compile(r"^\[ray\] attempt on node (\w+) \(ip ([^,]*), host ([^)]*)\)$", re.M)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_WAIT_S = 150  # how long an interrupted sweep waits for its jobs to stop (each saves a checkpoint first)
NODE_OUTPUT = "job_{num}.node{rank}.out"  # (in .launcher) the console output of node rank > 0 of a job
NODE_RESULT = "job_{num}.node{rank}.result.pkl"
ADDRESS_WAIT_S = 120  # how long node 0's address and free port are waited for once its bundle is reserved
HINT = ("start it (`ray start --head`) or give the address of a running one as hydra.launcher.address=HOST:PORT; "
        "hydra.launcher.address=null starts a local Ray")


class _Gang:
    """The tasks of one job that runs on several nodes (``nodes`` > 1), in its placement group."""

    def __init__(self, group: Any, placed_by: float) -> None:
        self.group = group  # the placement group
        self.placed_by = placed_by  # when waiting for it gives up (inf: never)
        self.refs: Dict[int, Any] = {}  # rank -> task ref, once the group is ready
        self.codes: Dict[int, Any] = {}  # rank -> exit code, or the RayError of its task
        self.failure: Optional[str] = None  # the first failure of a node (one line), in the order they ended
        self.failed_rank: Optional[int] = None


class RayLauncher(SubprocessLauncher):
    def __init__(self, address: Optional[str] = None, n_jobs: int = 4, num_cpus: float = 1, num_gpus: float = 0,
                 resources: Optional[Dict[str, float]] = None, max_retries: int = 1,
                 scheduling_strategy: str = "SPREAD", resume: bool = False, python: Optional[str] = None,
                 forward_env: Sequence[str] = (), connect_timeout_s: float = 10,
                 init_kwargs: Optional[Dict[str, Any]] = None, nodes: int = 1,
                 placement_timeout_s: Optional[float] = 600) -> None:
        super().__init__(n_jobs=n_jobs, resume=resume, stream_output=False)
        self.address = None if address in (None, "", "null", "local") else str(address)
        self.options: Dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": int(max_retries),
                                        "resources": dict(resources or {}),
                                        "scheduling_strategy": str(scheduling_strategy)}
        self.python = python
        self.forward_env = list(forward_env)
        self.connect_timeout_s = float(connect_timeout_s)
        self.init_kwargs = dict(init_kwargs or {})
        self.nodes = nodes
        self.placement_timeout_s = None if placement_timeout_s in (None, "null") else float(placement_timeout_s)
        self._gangs: Dict[int, _Gang] = {}  # job number -> its tasks, for jobs on several nodes
        self.cluster = ""  # what we are connected to, for the log and the records
        self._signal: Optional[int] = None  # the signal that interrupted the sweep
        self._task = None  # run_on_node as a Ray remote function with the job's resources

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if isinstance(self.nodes, bool) or not isinstance(self.nodes, int) or self.nodes < 1:
            _refuse(f"hydra.launcher.nodes={self.nodes} is not a node count: give an integer >= 1 (the machines "
                    "each job trains on)")
        if self.nodes > 1 and not self._demand():
            _refuse(f"hydra.launcher.nodes={self.nodes} reserves num_cpus / num_gpus / resources on each node: "
                    "set hydra.launcher.num_cpus or num_gpus > 0")
        self._connect()  # before the sweeper writes anything into the sweep folder

    # -- the cluster -------------------------------------------------------------------------------------
    def _connect(self) -> None:
        """``ray.init`` on ``address``; a cluster that cannot be reached is one line and exit code 2."""
        try:
            import ray
        except ImportError:
            _refuse("hydra/launcher=ray needs Ray, which is not installed: "
                    ".venv/bin/pip install -c constraints.txt ray (or the project's [sweep] extra)")
        if ray.is_initialized():
            return
        address = self.address
        if address is not None and address != "auto":
            _probe(address, self.connect_timeout_s)
        kwargs = dict(logging_level=logging.ERROR, log_to_driver=False)
        if address is None and not os.environ.get("RAY_ADDRESS"):
            kwargs["include_dashboard"] = False  # a local Ray for this sweep only
        kwargs.update(self.init_kwargs)
        try:
            info = ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            if address != "auto":
                _refuse(f"cannot connect to the Ray cluster at {address}: {_first_line(exc)}; {HINT}")
            log.info("no Ray cluster is running on this machine (address=auto): starting a local one")
            info = ray.init(**kwargs)
        except Exception as exc:  # a malformed address, an option ray.init does not take, ...
            _refuse(f"cannot start Ray with hydra.launcher.address={address}: {_first_line(exc)}")
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        total = ray.cluster_resources()
        self.cluster = str(getattr(info, "address_info", {}).get("gcs_address") or address or "local")
        log.info("Ray cluster %s: %d node(s), %g CPU(s), %g GPU(s)", self.cluster, len(nodes),
                 total.get("CPU", 0), total.get("GPU", 0))

    def _demand(self) -> Dict[str, float]:
        need = {"CPU": float(self.options["num_cpus"] or 0), "GPU": float(self.options["num_gpus"] or 0)}
        need.update({str(k): float(v) for k, v in self.options["resources"].items()})
        return {k: v for k, v in need.items() if v > 0}

    def _unfit(self) -> Optional[str]:
        """Why no node of the cluster can ever run a job (Ray would keep it waiting), or None."""
        import ray

        need = self._demand()
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        fit = sum(all(have.get(k, 0) >= v for k, v in need.items()) for have in nodes)
        if fit >= self.nodes:
            return None
        if fit:
            return (f"hydra.launcher.nodes={self.nodes} but only {fit} node(s) of the Ray cluster can hold a job's "
                    f"share ({', '.join(f'{k}={v:g}' for k, v in need.items())} each, one node per share): lower "
                    f"hydra.launcher.nodes, or add nodes to the cluster")
        shown = "; ".join(", ".join(f"{k}={v:g}" for k, v in sorted(have.items()) if "memory" not in k.lower()
                                    and not k.startswith("node:")) for have in nodes)
        return (f"no node of the Ray cluster has what a job asks for ({', '.join(f'{k}={v:g}' for k, v in need.items())};"
                f" the nodes have: {shown or 'none'}): lower hydra.launcher.num_cpus / num_gpus / resources")

    # -- a batch of jobs ---------------------------------------------------------------------------------
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import ray

        sweep_dir, work = self._open_batch()
        log.info("Launching %d job(s) on the Ray cluster %s, %d at a time (%s) -> %s", len(job_overrides),
                 self.cluster, self.n_jobs, ", ".join(f"{k}={v:g}" for k, v in self._demand().items()), sweep_dir)
        results, jobs = self._prepare_all(job_overrides, initial_job_idx, sweep_dir, work)
        unfit = self._unfit() if jobs else None
        waiting, running, started = deque(jobs), {}, {}
        previous = self._interrupt_on_sigterm()
        try:
            while waiting or running or self._gangs:
                while waiting and len({j.num for j in running.values()} | set(self._gangs)) < self.n_jobs:
                    job = waiting.popleft()
                    started[job.num] = time.time()
                    problem = unfit or self._not_multi_node(job)
                    if problem:
                        results[job.index] = self._failed(job.num, job.overrides, job.run_dir, sweep_dir,
                                                          RuntimeError(problem), started[job.num], job.rerun_of)
                        continue
                    if self.nodes > 1:
                        self._gangs[job.num] = self._reserve(job)
                    else:
                        running[self._submit(job)] = job
                for job in [j for j in jobs if j.num in self._gangs and not self._gangs[j.num].refs]:
                    problem = self._start_gang(job, running)
                    if problem:
                        self._release(job)
                        results[job.index] = self._failed(job.num, job.overrides, job.run_dir, sweep_dir,
                                                          RuntimeError(problem), started[job.num], job.rerun_of)
                if not running:
                    if self._gangs:  # jobs waiting for their nodes
                        time.sleep(0.2)
                    continue
                done, _ = ray.wait(list(running), num_returns=1, timeout=1 if self._gangs else None)
                for ref in done:
                    job = running.pop(ref)
                    if job.num not in self._gangs:
                        results[job.index] = self._collect(job, ref, started[job.num], sweep_dir)
                    elif self._task_ended(job, ref, running):
                        results[job.index] = self._collect_gang(job, started[job.num], sweep_dir)
        except BaseException as exc:  # Ctrl+C / SIGTERM: stop the running jobs, then say which signal it was
            self._stop(running)
            if isinstance(exc, KeyboardInterrupt) and self._signal and not str(exc).startswith("signal "):
                raise KeyboardInterrupt(f"signal {self._signal}") from None  # (ray.wait raises a bare one)
            raise
        finally:
            self._after_batch(previous)
        return self._close_batch(results)

    def _interrupt_on_sigterm(self):
        """As the subprocess launcher's, remembering the signal: ``ray.wait`` turns the handler's
        KeyboardInterrupt into one that does not say which signal stopped the sweep."""
        self._signal = None
        previous = _interrupt_on_sigterm()
        if previous is not None:
            import signal

            def handler(signum, frame):
                self._signal = signum
                raise KeyboardInterrupt(f"signal {signum}")

            signal.signal(signal.SIGTERM, handler)
        return previous

    def _stop(self, running: Dict[Any, _Job]) -> None:
        """Cancel the running jobs' tasks and wait until each has stopped its job's process (the job records
        how it ended, as under the subprocess launcher); a second Ctrl+C stops waiting."""
        import ray
        from ray.util import remove_placement_group

        for num in [n for n, gang in self._gangs.items() if not gang.refs]:  # still waiting for its nodes
            remove_placement_group(self._gangs.pop(num).group)
        if not running:
            return
        for ref in running:
            ray.cancel(ref)
        # A cancelled task's result is ready at once, while its job still stops: wait for the job's result file
        # (written when it stopped), for jobs that started.
        deadline = time.time() + STOP_WAIT_S
        try:
            while time.time() < deadline and any(attempts_in(j.output) and not j.result.exists()
                                                 for j in running.values()):
                time.sleep(0.5)
        except KeyboardInterrupt:
            return
        for job in {j.num: j for j in running.values()}.values():
            self._note_nodes(job)
            self._release(job)

    def _submit(self, job: _Job, rank: int = 0, node: Optional[Dict[str, Any]] = None, group=None):
        """Start job ``job``'s task (``rank``'s share of it, in bundle ``rank`` of ``group``, on several nodes)."""
        import ray

        env = {k: v for k, v in os.environ.items() if any(fnmatch(k, p) for p in self.forward_env)}
        env.update(PYTHONUNBUFFERED="1", EXPERIMENTS_SWEEP_JOB=str(job.num))
        cpus = self.options["num_cpus"]
        if cpus and "OMP_NUM_THREADS" not in env:  # the job's threads: the CPUs Ray holds for it
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(max(1, int(cpus)))
        output, result = _node_file(job.output, NODE_OUTPUT, job, rank), _node_file(job.result, NODE_RESULT, job, rank)
        output.unlink(missing_ok=True)  # appended to by each attempt
        result.unlink(missing_ok=True)
        if self._task is None:
            self._task = ray.remote(run_on_node).options(**self.options)
        task = self._task
        if group is not None:  # one try: a node that reruns alone could not rejoin the others
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            task = ray.remote(run_on_node).options(**{**self.options, "max_retries": 0, "scheduling_strategy":
                                                      PlacementGroupSchedulingStrategy(placement_group=group,
                                                                                       placement_group_bundle_index=rank)})
        return task.remote(str(job.payload.resolve()), str(result.resolve()), str(output.resolve()), os.getcwd(),
                           env, self.python, node)

    # -- a job on several nodes ------------------------------------------------------------------------
    def _not_multi_node(self, job: _Job) -> Optional[str]:
        from omegaconf import OmegaConf

        mode = OmegaConf.select(job.config, "mode", default="train")
        if self.nodes > 1 and mode != "train":
            return (f"hydra.launcher.nodes={self.nodes} trains on several machines, but this job runs mode={mode}: "
                    "set hydra.launcher.nodes=1")
        return None

    def _reserve(self, job: _Job) -> _Gang:
        """Ask for the job's placement group: one bundle of its resources on each of ``nodes`` nodes."""
        from ray.util import placement_group

        bundles = [dict(self._demand()) for _ in range(self.nodes)]
        group = placement_group(bundles, strategy="STRICT_SPREAD")
        limit = float("inf") if self.placement_timeout_s is None else self.placement_timeout_s
        log.info("job #%d waits for %d Ray nodes (%s each)", job.num, self.nodes,
                 ", ".join(f"{k}={v:g}" for k, v in self._demand().items()))
        return _Gang(group, time.time() + limit)

    def _start_gang(self, job: _Job, running: Dict[Any, _Job]) -> Optional[str]:
        """Once the job's placement group is ready: find node 0's address and a free port there, then start
        one task per node. Returns why it cannot start (one line), or None (started, or still waiting)."""
        import ray

        gang = self._gangs[job.num]
        ready, _ = ray.wait([gang.group.ready()], timeout=0)
        if not ready:
            if time.time() < gang.placed_by:
                return None
            return (f"{self.nodes} Ray nodes with {', '.join(f'{k}={v:g}' for k, v in self._demand().items())} "
                    f"each were not free within hydra.launcher.placement_timeout_s={self.placement_timeout_s:g} s "
                    f"(the cluster is busy): raise it (null: wait for ever) or lower hydra.launcher.nodes")
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        probe = ray.remote(node_address).options(num_cpus=0, max_retries=0, scheduling_strategy=
                                                 PlacementGroupSchedulingStrategy(placement_group=gang.group,
                                                                                  placement_group_bundle_index=0))
        try:
            ip, port = ray.get(probe.remote(), timeout=ADDRESS_WAIT_S)
        except Exception as exc:
            return f"could not find the address of node 0 of the job: {type(exc).__name__}: {_first_line(exc)}"
        log.info("job #%d on %d Ray nodes: node 0 at %s:%d", job.num, self.nodes, ip, port)
        for rank in range(self.nodes):
            node = {"trainer.num_machines": self.nodes, "trainer.machine_rank": rank,
                    "trainer.main_process_ip": ip, "trainer.main_process_port": int(port)}
            ref = self._submit(job, rank, node, gang.group)
            gang.refs[rank] = ref
            running[ref] = job
        return None

    def _task_ended(self, job: _Job, ref, running: Dict[Any, _Job]) -> bool:
        """Note how one node's task of the job ended; the first node to fail stops the others. True once all ended."""
        import ray

        gang = self._gangs[job.num]
        rank = next(r for r, known in gang.refs.items() if known == ref)
        try:
            gang.codes[rank] = ray.get(ref)
        except ray.exceptions.RayError as exc:
            gang.codes[rank] = exc
        if gang.failure is None:
            problem = self._node_problem(job, rank, gang.codes[rank])
            if problem is not None:
                gang.failure, gang.failed_rank = problem, rank
                for other in [r for r, known in gang.refs.items() if known in running]:
                    ray.cancel(gang.refs[other])
        return len(gang.codes) == len(gang.refs)

    def _node_problem(self, job: _Job, rank: int, code) -> Optional[str]:
        """Why node ``rank``'s share of the job failed (one line), or None."""
        from experiments.sweep.records import error_line, outcome

        if isinstance(code, BaseException):
            return f"its Ray task ended: {type(code).__name__}: {_first_line(code).split('. ')[0].rstrip('.')}"
        ret = self._read_result(replace(job, result=_node_file(job.result, NODE_RESULT, job, rank)))
        if ret is None:
            tail = _last_line(_node_file(job.output, NODE_OUTPUT, job, rank))
            return f"its process exited with code {code} before reporting a result" + (f" ({tail})" if tail else "")
        if ret.status.name != "COMPLETED":
            value = outcome(ret)
            return error_line(value) if isinstance(value, BaseException) else str(value)
        return None

    def _collect_gang(self, job: _Job, started: float, sweep_dir: Path) -> JobReturn:
        """The job's return once all its nodes ended: node 0's, unless another node failed first."""
        gang = self._gangs[job.num]
        code = gang.codes.get(0)
        if gang.failure is None or gang.failed_rank == 0:
            if isinstance(code, BaseException):
                error = RuntimeError(f"node 0 of {self.nodes}: {gang.failure}")
                ret = self._failed(job.num, job.overrides, job.run_dir, sweep_dir, error, started, job.rerun_of)
            else:
                ret = self._conclude(job, code, started, sweep_dir)
        else:
            where = attempts_in(_node_file(job.output, NODE_OUTPUT, job, gang.failed_rank))
            at = f" (Ray node {where[-1]['node_id'][:12]}, {where[-1]['ip']})" if where else ""
            error = RuntimeError(f"node {gang.failed_rank} of {self.nodes}{at} failed: {gang.failure}")
            ret = self._failed(job.num, job.overrides, job.run_dir, sweep_dir, error, started, job.rerun_of)
            job.payload.unlink(missing_ok=True)
            job.result.unlink(missing_ok=True)
        self._note_nodes(job)
        self._release(job)
        return ret

    def _release(self, job: _Job) -> None:
        """Give back the job's placement group and remove its nodes' result files."""
        gang = self._gangs.pop(job.num, None)
        if gang is None:
            return
        from ray.util import remove_placement_group

        try:
            remove_placement_group(gang.group)
        except Exception as exc:
            log.warning("could not remove the placement group of job #%d: %s", job.num, exc)
        for rank in range(1, self.nodes):
            _node_file(job.result, NODE_RESULT, job, rank).unlink(missing_ok=True)

    def _collect(self, job: _Job, ref, started: float, sweep_dir: Path) -> JobReturn:
        """The job's return: its own result, or a one-line failure when Ray gave up on its task."""
        import ray

        try:
            code = ray.get(ref)
        except ray.exceptions.RayError as exc:  # its node / worker died (max_retries times), cancelled, ...
            attempts = attempts_in(job.output)
            where = f" (last on node {attempts[-1]['node_id'][:12]}, {attempts[-1]['ip']})" if attempts else ""
            error = RuntimeError(f"Ray gave up on its task after {len(attempts)} attempt(s){where}: "
                                 f"{type(exc).__name__}: {_first_line(exc).split('. ')[0].rstrip('.')}")
            ret = self._failed(job.num, job.overrides, job.run_dir, sweep_dir, error, started, job.rerun_of)
        else:
            ret = self._conclude(job, code, started, sweep_dir)
        self._note_nodes(job)
        return ret

    def _note_nodes(self, job: _Job) -> None:
        """Add the node(s) the job ran on to its record (``"ray"``: the last node, every attempt)."""
        from experiments.sweep import records

        attempts = attempts_in(job.output)
        record = records.read(job.run_dir)
        if not attempts or record is None:
            return
        record["ray"] = {"cluster": self.cluster, "node_id": attempts[-1]["node_id"], "node_ip": attempts[-1]["ip"],
                         "attempts": attempts}
        if self.nodes > 1:  # every node of the job, by rank (the last attempt of each)
            shares = [attempts_in(_node_file(job.output, NODE_OUTPUT, job, rank)) for rank in range(self.nodes)]
            record["ray"]["nodes"] = [{"rank": rank, **share[-1]} for rank, share in enumerate(shares) if share]
            log.info("job #%d ran on Ray nodes %s", job.num, ", ".join(n["node_id"] for n in record["ray"]["nodes"]))
        if len(attempts) > 1:
            log.warning("job #%d ran %d times: its Ray worker or node died (nodes %s)", job.num, len(attempts),
                        ", ".join(a["node_id"][:12] for a in attempts))
        log.info("job #%d ran on Ray node %s (%s)", job.num, attempts[-1]["node_id"], attempts[-1]["ip"])
        try:
            records.write(job.run_dir, record)
        except OSError as exc:
            log.warning("could not record the Ray node of job #%d: %s", job.num, exc)


# -- on the Ray node ---------------------------------------------------------------------------------------
def run_on_node(payload: str, result: str, output: str, cwd: str, env: Dict[str, str],
                python: Optional[str], node: Optional[Dict[str, Any]] = None) -> int:
    """The body of a job's Ray task: ``python -m hydra_plugins.experiments_launcher._child PAYLOAD RESULT [NODE]``
    in the sweep's working directory, output appended to the job's output file; returns its exit code. The
    process dies with the task's worker (a retry never runs beside it) and stops when the task is cancelled.
    ``node``: this node's settings when the job runs on several nodes."""
    import json
    import signal
    import subprocess

    import ray

    node_id, ip = ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()
    with open(output, "ab") as sink:
        sink.write((ATTEMPT.format(node_id=node_id, ip=ip, host=socket.gethostname()) + "\n").encode())
        sink.flush()
        extra = [json.dumps(node)] if node else []
        proc = subprocess.Popen([python or sys.executable, "-m", CHILD_MODULE, payload, result, *extra], cwd=cwd,
                                env=dict(os.environ, **env), stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent())
        try:
            while True:
                try:
                    return proc.wait(timeout=0.5)  # (a wait without timeout could not be interrupted by a cancel)
                except subprocess.TimeoutExpired:
                    continue
        except KeyboardInterrupt:  # ray.cancel: the job stops as on SIGTERM (a checkpoint, one line)
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            raise


def node_address() -> "tuple[str, int]":
    """(IP, a free TCP port) of the node this runs on: where the other nodes of a job meet its node 0."""
    import ray

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return ray.util.get_node_ip_address(), sock.getsockname()[1]


def _die_with_parent():
    """A ``preexec_fn`` that has the job's process killed (SIGKILL) when the Ray worker that started it dies
    (Linux; None elsewhere). libc is looked up here, before the fork."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


# -- helpers -----------------------------------------------------------------------------------------------
def attempts_in(output: Path) -> List[Dict[str, str]]:
    """Each attempt's node (id, ip, host), in order, from the job's output file."""
    try:
        text = Path(output).read_text(errors="replace")
    except OSError:
        return []
    return [{"node_id": m[0], "ip": m[1], "host": m[2]} for m in _ATTEMPT_RE.findall(text)]


def _node_file(path: Path, pattern: str, job: _Job, rank: int) -> Path:
    """A job's file for node ``rank``: ``path`` itself for node 0."""
    return path if rank == 0 else path.with_name(pattern.format(num=job.num, rank=rank))


def _probe(address: str, timeout_s: float) -> None:
    """Refuse (one line, exit 2) an address where nothing answers: ``ray.init`` would wait for minutes."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        _refuse(f"hydra.launcher.address={address} is not an address: give the cluster's HOST:PORT (e.g. "
                "10.0.0.1:6379, or ray://HOST:10001), auto (the cluster on this machine) or null (a local Ray)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, socket.timeout):
            reason = f"no answer within {timeout_s:g} s"
        _refuse(f"cannot reach the Ray cluster at {address} ({reason.lower()}); {HINT}")


def _refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__

