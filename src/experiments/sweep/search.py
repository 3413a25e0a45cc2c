"""Hyperparameter search on Optuna's ask/tell API (``hparams_search=optuna``; Hydra plugin:
``hydra_plugins.experiments_sweeper``).

The search space is written in Hydra's override syntax (``interval(1e-5, 1e-3)``, ``tag(log, ...)``,
``choice(16, 32)``, ``range(...)``) in ``hydra.sweeper.params`` or on the command line. Each trial is one
job (``hydra.sweeper.replicates`` jobs with seeds ``trainer.seed``, ``+1``, ... when replicated) that the
configured launcher runs like any sweep job, ``hydra.launcher.n_jobs`` at a time; what Optuna is told
comes from the jobs' own records and ``metrics.json``.

* **Pruning** (``hydra.sweeper.pruner=median|successive_halving|hyperband``): while a batch of jobs runs,
  a monitor thread reads each trial's evaluation history from its ``metrics.json``, reports it to Optuna
  and, when the pruner says so, writes a stop request into the run dir
  (:data:`experiments.runs.STOP_REQUEST`); the run stops at its next logging or evaluation step, ends as
  ``pruned`` with its partial metrics and Optuna is told ``PRUNED``. Stopping through a file works with
  every launcher whose jobs share the sweep folder (subprocess, Slurm).
* **Resume**: the study lives in the sweep folder (an Optuna journal file, ``optuna.journal``) unless
  ``hydra.sweeper.storage`` names another (an RDB URL or a journal file). Running the same command again
  with ``hydra.launcher.resume=true`` continues toward the *total* ``n_trials``: trials the study already
  finished count; a trial left running by an interrupted sweep is either told the outcome its jobs
  reached after all, or failed (marked interrupted, not counted) and run again with the same parameters
  under new job numbers. Nothing an earlier run of the sweep wrote is overwritten.

The summary, report and dashboard are built from the job records as for any sweep
(:mod:`experiments.sweep.summary`); ``optuna_study.json`` tells them where the study is.
"""
from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

from experiments.errors import ExperimentError
from experiments.files import write_json
from experiments.runs import metric_values, read_metrics, request_stop
from experiments.sweep import records
from experiments.sweep.naming import sweep_id
from experiments.sweep.samplers import PRUNERS, SAMPLERS, grid_of
from experiments.sweep.space import parse, search_space
from experiments.sweep.summary import SEED_KEYS, direction_for

log = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")
STUDY_FILE = "optuna_study.json"  # where the study is (read by the report)
JOURNAL_FILE = "optuna.journal"  # the default storage, inside the sweep dir
RESULTS_FILE = "optimization_results.yaml"
SEED_KEY = SEED_KEYS[0]  # replicates differ in this key only
_INTERRUPTED = "interrupted_trials"  # study user attr: trials an interrupted sweep left; not counted


# -- settings ----------------------------------------------------------------------------------------
@dataclass
class Settings:
    """``hydra.sweeper.*`` of a search, checked (every problem is one line naming the key)."""

    objectives: List[str]
    directions: List[str]
    sampler: str = "tpe"
    sampler_options: Dict[str, Any] = field(default_factory=dict)
    seed: Optional[int] = None
    pruner: str = "none"
    pruner_options: Dict[str, Any] = field(default_factory=dict)
    n_trials: int = 20
    n_jobs: int = 1
    replicates: int = 1
    base_seed: int = 0
    study_name: Optional[str] = None
    storage: Optional[str] = None

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


def settings_from(composed: DictConfig) -> Settings:
    """The search settings of a composed (primary) config."""
    sweeper = OmegaConf.select(composed, "hydra.sweeper", default=None)
    if sweeper is None:
        raise ExperimentError("hparams_search=optuna: no hydra.sweeper settings")
    node = OmegaConf.to_container(sweeper, resolve=True)
    objectives = _as_list(node.get("objectives")) or _as_list(OmegaConf.select(composed, "objective", default=None))
    if not objectives:
        raise ExperimentError("a search needs an objective: set objective=<metric> (e.g. objective=eval_f1) or "
                              "hydra.sweeper.objectives=[<metric>,<metric>]")
    directions = [str(d).lower() for d in _as_list(node.get("direction")) or ["auto"]]
    if len(directions) == 1 and len(objectives) > 1:
        directions = directions * len(objectives)
    if len(directions) == len(objectives):  # auto: *loss* and perplexity are minimised, the rest maximised
        directions = [direction_for(str(o), None) if d == "auto" else d for o, d in zip(objectives, directions)]
    settings = Settings(
        objectives=[str(o) for o in objectives], directions=directions,
        sampler=str(node.get("sampler") or "tpe").lower(), sampler_options=dict(node.get("sampler_options") or {}),
        seed=node.get("seed"), pruner=str(node.get("pruner") or "none").lower(),
        pruner_options=dict(node.get("pruner_options") or {}), n_trials=_int(node, "n_trials", 20),
        n_jobs=_int(node, "n_jobs", 1), replicates=_int(node, "replicates", 1),
        base_seed=int(OmegaConf.select(composed, SEED_KEY, default=0) or 0),
        study_name=node.get("study_name"), storage=node.get("storage"))
    check(settings)
    return settings


def _as_list(value: Any) -> List[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _int(node: Dict[str, Any], key: str, default: int) -> int:
    value = node.get(key, default)
    try:
        return int(default if value is None else value)
    except (TypeError, ValueError):
        raise ExperimentError(f"hydra.sweeper.{key}={value}: give a whole number") from None


def check(s: Settings) -> None:
    """Refuse settings the search cannot honour, before anything runs."""
    bad = [d for d in s.directions if d not in DIRECTIONS]
    if bad or len(s.directions) != len(s.objectives):
        raise ExperimentError(f"hydra.sweeper.direction={s.directions}: give maximize, minimize or auto, one per "
                              f"objective ({', '.join(s.objectives)})")
    sampler, pruner = SAMPLERS[s.sampler], PRUNERS[s.pruner]  # an unknown name: one line with the choices
    for key in ("n_trials", "n_jobs", "replicates"):
        if getattr(s, key) < 1:
            raise ExperimentError(f"hydra.sweeper.{key}={getattr(s, key)}: must be at least 1")
    if s.multi_objective and not sampler.traits.multi_objective:
        several = ", ".join(e.name for e in SAMPLERS if e.traits.multi_objective)
        raise ExperimentError(f"hydra.sweeper.sampler={s.sampler} optimises one objective: use one of {several} "
                              f"for {len(s.objectives)} objectives")
    if pruner.traits.prunes:
        if s.multi_objective:
            raise ExperimentError(f"hydra.sweeper.pruner={s.pruner}: Optuna prunes single-objective studies "
                                  "only; set hydra.sweeper.pruner=none or one objective")
        if s.replicates > 1:
            raise ExperimentError(f"hydra.sweeper.pruner={s.pruner} with hydra.sweeper.replicates={s.replicates}"
                                  ": pruning replicated trials is not supported; drop one of them")
        if not s.objectives[0].startswith("eval_"):
            raise ExperimentError(f"hydra.sweeper.pruner={s.pruner} needs an objective measured at every "
                                  f"evaluation (eval_*), not {s.objectives[0]}")


# -- the search space ----------------------------------------------------------------------------------
def space_of(composed: DictConfig, arguments: Sequence[str]) -> Tuple[Dict[str, Any], List[str]]:
    """({key: Optuna distribution}, fixed overrides) from ``hydra.sweeper.params`` and the command line
    (a command-line sweep replaces a key's range, a plain value fixes it)."""
    plain = [o for o in parse(list(arguments)) if not o.is_hydra_override()]
    space, config_fixed = search_space(composed, plain)
    fixed = config_fixed + [o.input_line for o in plain if not o.is_sweep_override()]
    return {key: distribution(key, entry) for key, (_, entry) in space.items()}, fixed


def distribution(key: str, entry) -> Any:
    """The Optuna distribution of one searched key: ``choice``/shuffled ``range`` -> categorical,
    ``range`` of whole numbers -> int with step, ``interval`` -> float or int (``tag(log, ...)``: log)."""
    import optuna.distributions as d
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep, Transformer

    value = entry.value()
    if isinstance(value, RangeSweep) and not value.shuffle:
        values = list(entry.sweep_iterator())
        if values and all(isinstance(v, int) for v in values):
            step = values[1] - values[0] if len(values) > 1 else 1
            return d.IntDistribution(values[0], values[-1], step=step)
    if isinstance(value, (ChoiceSweep, RangeSweep)):
        raw = list(entry.sweep_iterator())
        numeric = all(isinstance(v, (int, float, bool)) for v in raw)
        return d.CategoricalDistribution(raw if numeric else list(entry.sweep_iterator(transformer=Transformer.encode)))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return d.IntDistribution(value.start, value.end, log=log_scale)
        return d.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ExperimentError(f"search space {key}: use choice(...), range(...) or interval(...)")


def override(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={value}"


# -- Optuna objects ------------------------------------------------------------------------------------
def make_sampler(s: Settings, dists: Dict[str, Any], trials_before: int = 0):
    """The sampler, seeded with ``hydra.sweeper.seed`` (default ``trainer.seed``) plus the number of trials the
    study already has: a resumed study draws new points instead of repeating its first ones."""
    entry = SAMPLERS[s.sampler]
    seed = (s.seed if s.seed is not None else s.base_seed) + trials_before
    try:
        return entry.build(seed, dists, entry.options(s.sampler_options))
    except TypeError as exc:
        raise ExperimentError(f"hydra.sweeper.sampler_options for {s.sampler}: {exc}") from None


def make_pruner(s: Settings):
    entry = PRUNERS[s.pruner]
    try:
        return entry.build(entry.options(s.pruner_options))
    except TypeError as exc:
        raise ExperimentError(f"hydra.sweeper.pruner_options for {s.pruner}: {exc}") from None


def storage_for(s: Settings, sweep_dir: Path) -> Tuple[Any, str]:
    """(Optuna storage, how it is described in optuna_study.json): an RDB URL as given (password
    masked in the description), else a journal file (default: ``<sweep dir>/optuna.journal``)."""
    spec = s.storage
    if spec and "://" in str(spec):
        return str(spec), re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", str(spec))
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(spec) if spec else Path(sweep_dir) / JOURNAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path))), records.relative_run_dir(path, sweep_dir)


def open_study(s: Settings, sweep_dir: Path, dists: Dict[str, Any]):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, described = storage_for(s, sweep_dir)

    name = s.study_name or sweep_id(str(sweep_dir))
    try:
        study = optuna.create_study(study_name=name, storage=storage, pruner=make_pruner(s),
                                    directions=s.directions, load_if_exists=True)
    except Exception as exc:  # a storage that cannot be reached or read: one line, the password masked
        detail = records.error_line(exc).replace(str(s.storage), described)[:200]
        raise ExperimentError(f"hydra.sweeper.storage={described}: the study '{name}' cannot be opened "
                              f"({detail})") from None
    study.sampler = make_sampler(s, dists, trials_before=len(study.trials))
    found = [d.name.lower() for d in study.directions]
    if found != s.directions:
        raise ExperimentError(f"study '{name}' in {described} optimises {found}, not {s.directions}: choose "
                              "another hydra.sweeper.study_name or the study's directions")

    write_json(Path(sweep_dir) / STUDY_FILE, {
        "study_name": name, "storage": described, "objectives": s.objectives, "directions": s.directions,
        "sampler": s.sampler, "pruner": s.pruner, "n_trials": s.n_trials, "replicates": s.replicates})
    return study


# -- the search --------------------------------------------------------------------------------------
Launch = Callable[[List[List[str]], int], Sequence[Any]]  # launcher.launch(job overrides, first job number)
RunDirOf = Callable[[List[str], int], Path]  # (overrides, job number) -> the job's run dir


@dataclass
class Job:
    num: int
    overrides: List[str]
    run_dir: Path


@dataclass
class Pending:
    """A trial that was asked, with its jobs (one per replicate)."""

    trial: Any
    jobs: List[Job]
    reported: set = field(default_factory=set)
    prune_asked: bool = False


class Search:
    """The ask -> launch -> tell loop of one study (see the module docstring)."""

    def __init__(self, settings: Settings, study, dists: Dict[str, Any], fixed: List[str], sweep_dir: Path,
                 launch: Launch, run_dir_of: RunDirOf, poll_s: float = 0.5) -> None:
        self.s, self.study, self.dists, self.sweep_dir = settings, study, dists, Path(sweep_dir)
        seeds = [o.split("=", 1)[1] for o in fixed if o.split("=", 1)[0] == SEED_KEY]
        self.base_seed = int(seeds[-1]) if seeds else settings.base_seed  # replicates: this seed, +1, ...
        self.fixed = [o for o in fixed if not (settings.replicates > 1 and o.split("=", 1)[0] == SEED_KEY)]
        self.launch, self.run_dir_of, self.poll_s = launch, run_dir_of, poll_s
        self.n_trials = self._cap(settings.n_trials)

    def _cap(self, n_trials: int) -> int:
        if not SAMPLERS[self.s.sampler].traits.exhaustive:
            return n_trials
        size = math.prod(len(v) for v in grid_of(self.dists).values())
        if size < n_trials:
            log.info("the grid has %d points: %d trials instead of %d", size, size, n_trials)
        return min(size, n_trials)

    def run(self) -> None:
        self.recover()
        while self.remaining() > 0:
            batch = [self.ask() for _ in range(min(self.remaining(), max(1, self.s.n_jobs // self.s.replicates)))]
            self.run_batch(batch)
            for pending in batch:
                self.tell(pending)
        self.write_results()

    # -- counting and resuming ---------------------------------------------------------------------
    def counted(self) -> int:
        """Trials that reached an outcome: complete, pruned, or failed (but not left by an interruption)."""
        from optuna.trial import TrialState

        interrupted = set(self.study.user_attrs.get(_INTERRUPTED, []))
        return sum(1 for t in self.study.get_trials(deepcopy=False)
                   if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                   or (t.state == TrialState.FAIL and t.number not in interrupted))

    def remaining(self) -> int:
        return max(0, self.n_trials - self.counted())

    def recover(self) -> None:
        """Trials this sweep folder left running (the sweep was interrupted): tell what their jobs reached
        after all, or fail them (not counted) and ask for the same parameters again."""
        from optuna.trial import TrialState

        here = str(self.sweep_dir.resolve())
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.user_attrs.get("sweep_dir") != here:
                continue  # another worker's trial (a shared study): not ours to judge
            jobs = [Job(n, list(o), self.sweep_dir / d) for n, o, d in trial.user_attrs.get("jobs", [])]
            ended = [records.read(j.run_dir) for j in jobs]
            if jobs and all(r and r.get("job") == j.num and r.get("status") in (records.FINISHED, records.PRUNED)
                            for r, j in zip(ended, jobs)):
                log.info("trial %d: its jobs finished after the sweep stopped; told their outcome", trial.number)
                self.tell(Pending(trial, jobs))
                continue
            for job, record in zip(jobs, ended):
                if record is None or record.get("job") != job.num:
                    self._record_interrupted(job)
            self.study.tell(trial.number, state=TrialState.FAIL)
            marked = list(self.study.user_attrs.get(_INTERRUPTED, [])) + [trial.number]
            self.study.set_user_attr(_INTERRUPTED, marked)
            self.study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
            log.info("trial %d was interrupted (jobs %s): it runs again with the same parameters", trial.number,
                     ", ".join(str(j.num) for j in jobs) or "-")

    def _record_interrupted(self, job: Job) -> None:
        """A job whose process died with the sweep leaves no record: say so in its folder, so the summary
        lists it (as superseded by the job that runs the same parameters again)."""
        import time

        started = job.run_dir.stat().st_mtime if job.run_dir.exists() else time.time()
        records.write(job.run_dir, records.build(
            job=job.num, overrides=job.overrides, status=records.FAILED, run_dir=job.run_dir,
            sweep_dir=self.sweep_dir, sweep=sweep_id(str(self.sweep_dir)), started_at=started,
            finished_at=started, error="interrupted: the sweep stopped while this job ran",
            objective=self.s.objectives[0]))

    # -- ask / launch / tell -------------------------------------------------------------------------
    def ask(self) -> Pending:
        trial = self.study.ask(self.dists)
        trial.set_user_attr("sweep_dir", str(self.sweep_dir.resolve()))  # resume: this folder's trial
        params = [override(k, v) for k, v in trial.params.items()]
        overrides = self.fixed + params
        if self.s.replicates > 1:
            runs = [overrides + [f"{SEED_KEY}={self.base_seed + i}"] for i in range(self.s.replicates)]
        else:
            runs = [overrides]
        return Pending(trial, [Job(-1, o, Path()) for o in runs])

    def run_batch(self, batch: List[Pending]) -> None:
        first = max(records.used_job_numbers(self.sweep_dir) | {-1}) + 1
        jobs = [job for pending in batch for job in pending.jobs]
        for offset, job in enumerate(jobs):
            job.num = first + offset
            job.run_dir = self.run_dir_of(job.overrides, job.num)
        for pending in batch:
            pending.trial.set_user_attr("jobs", [[j.num, j.overrides, records.relative_run_dir(j.run_dir,
                                                                                            self.sweep_dir)]
                                                 for j in pending.jobs])
        monitor = Monitor(batch, self.s, self.poll_s) if PRUNERS[self.s.pruner].traits.prunes else None
        if monitor:
            monitor.start()
        try:
            self.launch([j.overrides for j in jobs], first)
        finally:
            if monitor:
                monitor.stop()

    def tell(self, pending: Pending) -> None:
        from optuna.trial import TrialState

        outcomes = [self.outcome(job) for job in pending.jobs]
        statuses = {status for status, _, _ in outcomes}
        trial = pending.trial
        if records.FAILED in statuses:
            error = next(err for status, _, err in outcomes if status == records.FAILED)
            self._tell(trial, TrialState.FAIL, error=error)
        elif records.PRUNED in statuses:
            self._tell(trial, TrialState.PRUNED)
        else:  # replicates: Optuna is told the mean over the seeds
            per_job = [values for _, values, _ in outcomes]
            per_objective = {name: [values[name] for values in per_job] for name in self.s.objectives}
            missing = [name for name, vs in per_objective.items()
                       if any(v is None or not math.isfinite(v) for v in vs)]
            if missing:
                self._tell(trial, TrialState.FAIL, error=f"no finite value of {', '.join(missing)} in metrics.json")
            else:
                means = [sum(vs) / len(vs) for vs in per_objective.values()]
                self._tell(trial, TrialState.COMPLETE, values=means)

    def _tell(self, trial, state, values: Optional[List[float]] = None, error: Optional[str] = None) -> None:
        if error and hasattr(trial, "set_user_attr"):
            trial.set_user_attr("error", error[:300])
        jobs = ", ".join(str(j[0]) for j in trial.user_attrs.get("jobs", []))
        try:
            self.study.tell(trial.number, values if values is None or len(values) > 1 else values[0], state=state)
        except RuntimeError as exc:  # the grid sampler calls study.stop() once every point ran (told already)
            if "Study.stop" not in str(exc):
                raise
        shown = "" if values is None else " " + ", ".join(f"{n}={v:.4g}" for n, v in zip(self.s.objectives, values))
        log.info("trial %d (job %s): %s%s%s", trial.number, jobs, state.name.lower(), shown,
                 f" ({error})" if error else "")

    def outcome(self, job: Job) -> Tuple[str, Dict[str, Optional[float]], Optional[str]]:
        """(status, objective values, error) of one job, from its own record and metrics.json. A job the
        launcher kept from an earlier run of the sweep (same overrides, resume) is read where it ran."""
        record = records.read(job.run_dir)
        run_dir = job.run_dir
        if record is None or record.get("job") != job.num:
            kept = records.finished_jobs(self.sweep_dir).get(records.job_key(job.overrides))
            if kept is None:
                return records.FAILED, {}, f"job {job.num} left no record"
            record, run_dir = kept, records.resolve_run_dir(kept, self.sweep_dir)
        status = record.get("status", records.FAILED)
        if status == records.FAILED:
            return status, {}, record.get("error") or "failed"
        try:
            metrics = read_metrics(run_dir)
        except (OSError, ValueError):
            metrics = {}
        return status, metric_values(metrics, self.s.objectives), None

    # -- the end -------------------------------------------------------------------------------------
    def write_results(self) -> None:
        """``optimization_results.yaml``: the best trial (or the Pareto front) with its parameters and jobs."""
        from optuna.trial import TrialState

        done = [t for t in self.study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        result: Dict[str, Any] = {"name": self.study.study_name, "objectives": self.s.objectives,
                                  "directions": self.s.directions, "trials": len(self.study.trials)}
        if done and not self.s.multi_objective:
            best = self.study.best_trial
            result.update(best_params=best.params, best_value=best.value,
                          best_jobs=[j[0] for j in best.user_attrs.get("jobs", [])])
        elif done:
            result["best_trials"] = [{"params": t.params, "values": t.values,
                                      "jobs": [j[0] for j in t.user_attrs.get("jobs", [])]}
                                     for t in self.study.best_trials]
        OmegaConf.save(OmegaConf.create(result), self.sweep_dir / RESULTS_FILE)
        if not done and self.counted():
            raise ExperimentError(f"no trial of study '{self.study.study_name}' completed; see the sweep summary "
                                  f"in {self.sweep_dir}")


class Monitor:
    """While a batch runs: each trial's new evaluations go to Optuna; a trial the pruner gives up on is
    asked to stop (a file in its run dir, read by the run at its next logging or evaluation step)."""

    def __init__(self, batch: List[Pending], settings: Settings, poll_s: float) -> None:
        self.batch, self.metric, self.pruner, self.poll_s = batch, settings.objectives[0], settings.pruner, poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="search-pruning", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            for pending in self.batch:
                try:
                    self.check(pending)
                except Exception as exc:  # pruning is best effort; the trial still runs and is told
                    log.warning("pruning check of trial %d failed: %s", pending.trial.number, exc)

    def check(self, pending: Pending) -> None:
        job = pending.jobs[0]
        if pending.prune_asked or not (job.run_dir / "metrics.json").is_file():
            return
        history = read_metrics(job.run_dir).get("history") or []
        new = [(int(row["step"]), float(row[self.metric])) for row in history
               if int(row.get("step", -1)) not in pending.reported and isinstance(row.get(self.metric), (int, float))
               and math.isfinite(row[self.metric])]
        for step, value in new:
            pending.trial.report(value, step)
            pending.reported.add(step)
        if new and pending.trial.should_prune():
            step, value = new[-1]
            request_stop(job.run_dir, records.PRUNED, pruner=self.pruner, metric=self.metric, value=value,
                         at_step=step, trial=pending.trial.number)
            pending.prune_asked = True
            log.info("trial %d (job %d) pruned at step %d (%s=%.4g)", pending.trial.number, job.num, step,
                     self.metric, value)


def check_search(composed: DictConfig, arguments: Sequence[str]) -> None:
    """Everything :func:`run_search` would refuse, without running or writing anything (the preflight)."""
    settings = settings_from(composed)
    dists, _ = space_of(composed, arguments)
    if settings.replicates > 1 and SEED_KEY in dists:
        raise ExperimentError(f"hydra.sweeper.replicates={settings.replicates} runs every trial with seeds "
                              f"{SEED_KEY}, +1, ...: do not also search {SEED_KEY}")
    make_sampler(settings, dists)
    make_pruner(settings)


def run_search(composed: DictConfig, arguments: Sequence[str], launch: Launch, run_dir_of: RunDirOf) -> None:
    """The whole search a (primary) config describes, launching through ``launch``."""
    settings = settings_from(composed)
    sweep_dir = Path(str(composed.hydra.sweep.dir))
    dists, fixed = space_of(composed, arguments)
    if not dists:
        raise ExperimentError("the search space is empty: give hydra.sweeper.params in conf/hparams_search/ or "
                              "e.g. trainer.lr='interval(1e-5,1e-4)' on the command line")
    study = open_study(settings, sweep_dir, dists)
    Search(settings, study, dists, fixed, sweep_dir, launch, run_dir_of).run()
