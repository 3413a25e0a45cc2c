"""The Optuna samplers and pruners a search can use (``hydra.sweeper.sampler`` / ``hydra.sweeper.pruner``).

Each is one registered entry (:mod:`experiments.registry`): its name, a summary, our defaults for its options
(``hydra.sweeper.sampler_options`` / ``pruner_options`` are given on top, as keyword arguments of the Optuna
class, which checks them) and its builder. Adding one is one function here; the check of the setting, the error
that lists the choices and the tables in docs/sweeps.md come from these registries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List

from experiments.errors import ExperimentError
from experiments.registry import Registry


@dataclass(frozen=True)
class SamplerTraits:
    multi_objective: bool = True  # can it search several objectives at once
    exhaustive: bool = False  # it walks a finite grid: a search stops when every point ran


@dataclass(frozen=True)
class PrunerTraits:
    prunes: bool = True  # False: no trial is ever stopped early (no monitor runs)


#: (seed, the search space as Optuna distributions, options) -> an Optuna sampler
SamplerBuilder = Callable[[int, Dict[str, Any], Dict[str, Any]], Any]
#: (options) -> an Optuna pruner
PrunerBuilder = Callable[[Dict[str, Any]], Any]

SAMPLERS: Registry[SamplerBuilder, SamplerTraits] = Registry("sampler", "hydra.sweeper.sampler", SamplerTraits)
PRUNERS: Registry[PrunerBuilder, PrunerTraits] = Registry("pruner", "hydra.sweeper.pruner", PrunerTraits)


# -- samplers (our defaults where Optuna's suit long studies better than a fine-tuning search's few trials) --
@SAMPLERS.register("tpe", "Tree-structured Parzen Estimator (the default; 5 random start-up trials)",
                   defaults={"n_startup_trials": 5})
def tpe_sampler(seed: int, space: Dict[str, Any], options: Dict[str, Any]):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, **options)


@SAMPLERS.register("random", "independent random points")
def random_sampler(seed: int, space: Dict[str, Any], options: Dict[str, Any]):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed, **options)


@SAMPLERS.register("grid", "every point once (choices and ranges only); the search stops when every point ran",
                   traits=SamplerTraits(exhaustive=True))
def grid_sampler(seed: int, space: Dict[str, Any], options: Dict[str, Any]):
    import optuna

    return optuna.samplers.GridSampler(grid_of(space), seed=seed, **options)


@SAMPLERS.register("cmaes", "CMA-ES (one objective)", traits=SamplerTraits(multi_objective=False))
def cmaes_sampler(seed: int, space: Dict[str, Any], options: Dict[str, Any]):
    import optuna

    return optuna.samplers.CmaEsSampler(seed=seed, **options)


def grid_of(space: Dict[str, Any]) -> Dict[str, List[Any]]:
    """The grid a grid search walks (categorical and stepped int keys only)."""
    import optuna.distributions as d

    points: Dict[str, List[Any]] = {}
    for key, dist in space.items():
        if isinstance(dist, d.CategoricalDistribution):
            points[key] = list(dist.choices)
        elif isinstance(dist, d.IntDistribution) and not dist.log:
            points[key] = list(range(dist.low, dist.high + 1, dist.step))
        else:
            raise ExperimentError(f"hydra.sweeper.sampler=grid needs listed values: {key} is an interval; "
                                  f"give it as choice(...) or range(...)")
    return points


# -- pruners ---------------------------------------------------------------------------------------------
@PRUNERS.register("none", "no trial is stopped early (the default)", traits=PrunerTraits(prunes=False))
def no_pruner(options: Dict[str, Any]):
    import optuna

    return optuna.pruners.NopPruner(**options)


@PRUNERS.register("median", "stops a trial below the median of earlier trials at the same step (2 start-up "
                  "trials)", defaults={"n_startup_trials": 2})
def median_pruner(options: Dict[str, Any]):
    import optuna

    return optuna.pruners.MedianPruner(**options)


@PRUNERS.register("successive_halving", "asynchronous successive halving")
def successive_halving_pruner(options: Dict[str, Any]):
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(**options)


@PRUNERS.register("hyperband", "Hyperband (minimum resource 1 step)", defaults={"min_resource": 1})
def hyperband_pruner(options: Dict[str, Any]):
    import optuna

    return optuna.pruners.HyperbandPruner(**options)
