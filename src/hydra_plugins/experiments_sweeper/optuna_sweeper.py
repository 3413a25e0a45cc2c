"""``hydra/sweeper=optuna``: the Hydra side of :mod:`experiments.sweep.search` (settings, the launcher, each
job's run dir). Every setting is documented in docs/sweeps.md and conf/hparams_search/optuna.yaml."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class SearchFailed(CompactHydraException):
    """The search could not go on: Hydra prints this one line instead of a traceback."""


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.experiments_sweeper.optuna_sweeper.OptunaSweeper"
    direction: Any = "auto"  # maximize | minimize | auto (from the metric's name), or one per objective
    objectives: Optional[List[str]] = None  # several metrics: a multi-objective search (None: [objective])
    sampler: str = "tpe"  # tpe | random | grid | cmaes
    sampler_options: Any = None  # keyword arguments of Optuna's sampler, e.g. {n_startup_trials: 10}
    seed: Optional[int] = None  # the sampler's seed (None: trainer.seed)
    pruner: str = "none"  # none | median | successive_halving | hyperband
    pruner_options: Any = None  # keyword arguments of Optuna's pruner, e.g. {n_warmup_steps: 100}
    n_trials: int = 20  # in total, also across resumed runs of the sweep
    n_jobs: int = 1  # trials asked at once (= jobs side by side; set from hydra.launcher.n_jobs)
    replicates: int = 1  # jobs per trial, seeds trainer.seed, +1, ...; Optuna is told their mean
    study_name: Optional[str] = None  # None: the sweep's id
    storage: Optional[str] = None  # None: <sweep dir>/optuna.journal; or an RDB URL, or a journal file
    params: Optional[Dict[str, str]] = None  # the search space, in Hydra's override syntax


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="experiments")


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:  # read again from the config by experiments.sweep.search
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        from experiments.errors import ExperimentError
        from experiments.sweep.search import run_search

        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        try:
            run_search(self.config, arguments, launch=self._launch, run_dir_of=self._run_dir)
        except ExperimentError as exc:
            raise SearchFailed(f"error: {exc}") from None

    def _launch(self, batch: List[List[str]], first_job: int):
        assert self.launcher is not None
        return self.launcher.launch(batch, initial_job_idx=first_job)

    def _run_dir(self, overrides: List[str], num: int) -> Path:
        """Where job ``num`` runs, as the launcher places it."""
        from hydra_plugins.experiments_launcher._jobs import job_run_dir

        assert self.config is not None and self.hydra_context is not None
        return job_run_dir(self.hydra_context.config_loader, self.config, overrides, num)
