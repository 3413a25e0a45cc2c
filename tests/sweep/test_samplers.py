"""experiments.sweep.samplers: every registered sampler and pruner builds; the docs' tables are the registries';
a sampler or a pruner added from outside (here, from this test) is one registered entry, and a whole search
runs with it."""
from __future__ import annotations

import re

import pytest
from test_search_units import FakeLauncher, _config, _search

from experiments.errors import ExperimentError
from experiments.sweep import search as S
from experiments.sweep.samplers import PRUNERS, SAMPLERS, PrunerTraits, SamplerTraits

optuna = pytest.importorskip("optuna", reason="the [sweep] extra installs optuna")


def _settings(tmp_path, **sweeper):
    return S.settings_from(_config(tmp_path, **sweeper))


def test_the_docs_tables_are_the_registries(repo_root):
    docs = (repo_root / "docs" / "sweeps.md").read_text()
    for registry in (SAMPLERS, PRUNERS):
        assert registry.table() in docs, f"docs/sweeps.md: replace the {registry.kind} table with\n{registry.table()}"
        assert all(f"`{name}`" in docs for name in registry.names())


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_builds_over_a_space_it_can_search(tmp_path, name):
    params = {"trainer.lr": "choice(1e-5, 1e-4)", "trainer.per_device_batch_size": "choice(8, 16)"}
    settings = _settings(tmp_path, sampler=name, params=params)
    dists, _ = S.space_of(_config(tmp_path, sampler=name, params=params), [])
    assert isinstance(S.make_sampler(settings, dists), optuna.samplers.BaseSampler)


@pytest.mark.parametrize("name", PRUNERS.names())
def test_every_pruner_builds_with_our_defaults(tmp_path, name):
    pruner = S.make_pruner(_settings(tmp_path, pruner=name))
    assert isinstance(pruner, optuna.pruners.BasePruner)
    for option, value in PRUNERS[name].defaults.items():
        assert any(v == value for k, v in vars(pruner).items() if option in k), (name, option, vars(pruner))


@pytest.mark.parametrize("registry, key", [(SAMPLERS, "sampler"), (PRUNERS, "pruner")])
def test_an_unknown_name_lists_every_registered_one(tmp_path, registry, key):
    with pytest.raises(ExperimentError, match=re.escape(f"choose one of {', '.join(registry.names())}")):
        _settings(tmp_path, **{key: "bayesian"})


@pytest.fixture
def qmc_and_percentile():
    """A sampler and a pruner this project does not ship, added the way docs/architecture.md says."""
    @SAMPLERS.register("qmc", "quasi-Monte Carlo points", traits=SamplerTraits(multi_objective=True),
                       defaults={"scramble": True})
    def qmc_sampler(seed, space, options):
        return optuna.samplers.QMCSampler(seed=seed, **options)

    @PRUNERS.register("percentile", "stops a trial below the 25th percentile", traits=PrunerTraits(),
                      defaults={"percentile": 25.0, "n_startup_trials": 1})
    def percentile_pruner(options):
        return optuna.pruners.PercentilePruner(**options)

    yield
    SAMPLERS.unregister("qmc")
    PRUNERS.unregister("percentile")


@pytest.mark.filterwarnings("ignore:QMCSampler is experimental")
def test_a_sampler_added_from_outside_runs_a_whole_search(tmp_path, qmc_and_percentile):
    config = _config(tmp_path, sampler="qmc", n_trials=3, params={"trainer.lr": "tag(log, interval(1e-5, 1e-2))"})
    search, study = _search(config, FakeLauncher(tmp_path))
    search.run()
    assert isinstance(study.sampler, optuna.samplers.QMCSampler)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 3
    assert "qmc" in SAMPLERS.table()


def test_a_pruner_added_from_outside_is_checked_like_the_shipped_ones(tmp_path, qmc_and_percentile):
    assert isinstance(S.make_pruner(_settings(tmp_path, pruner="percentile")), optuna.pruners.PercentilePruner)
    with pytest.raises(ExperimentError, match="hydra.sweeper.pruner=percentile: Optuna prunes single-objective"):
        _settings(tmp_path, pruner="percentile", objectives=["eval_accuracy", "total_params"])
    with pytest.raises(ExperimentError, match="pruner_options for percentile"):
        S.make_pruner(_settings(tmp_path, pruner="percentile", pruner_options={"no_such_option": 1}))
