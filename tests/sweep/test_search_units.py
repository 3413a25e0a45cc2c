"""The Optuna search loop (experiments.sweep.search) with a launcher that writes what jobs write (records
and metrics.json) without training: settings, search space, replicates, resume, grid, pruning requests."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytest
from omegaconf import OmegaConf

from experiments.errors import ExperimentError
from experiments.files import write_json
from experiments.runs import STOP_REQUEST
from experiments.sweep import records
from experiments.sweep import search as S

optuna = pytest.importorskip("optuna", reason="the [sweep] extra installs optuna")


def _config(sweep_dir: Path, **sweeper) -> OmegaConf:
    node = {"direction": "maximize", "objectives": None, "sampler": "tpe", "sampler_options": {}, "seed": None,
            "pruner": "none", "pruner_options": {}, "n_trials": 4, "n_jobs": 1, "replicates": 1,
            "study_name": "s", "storage": None,
            "params": {"trainer.lr": "tag(log, interval(1e-5, 1e-2))", "trainer.per_device_batch_size": "choice(8, 16)"}}
    node.update(sweeper)
    return OmegaConf.create({"objective": "eval_accuracy", "trainer": {"seed": 7},
                             "hydra": {"sweeper": node, "sweep": {"dir": str(sweep_dir)}}})


def _metric(overrides: List[str]) -> float:
    """A made-up accuracy: best near lr 1e-3, a little noise from the seed."""
    import math

    values = dict(o.split("=", 1) for o in overrides)
    lr, seed = float(values["trainer.lr"]), int(values.get("trainer.seed", 0))
    return 1.0 - abs(math.log10(lr) + 3) / 10 + seed * 1e-3


class FakeLauncher:
    """Writes each job's metrics.json and record as a finished job would; ``fail``/``interrupt_at`` alter that."""

    def __init__(self, sweep_dir: Path, fail: Optional[Callable[[List[str]], bool]] = None,
                 interrupt_at: Optional[int] = None) -> None:
        self.sweep_dir, self.fail, self.interrupt_at, self.batches = sweep_dir, fail, interrupt_at, []

    def run_dir_of(self, overrides: List[str], num: int) -> Path:
        return self.sweep_dir / str(num)

    def launch(self, batch: List[List[str]], first: int):
        self.batches.append([list(o) for o in batch])
        for offset, overrides in enumerate(batch):
            num, run_dir = first + offset, self.sweep_dir / str(first + offset)
            run_dir.mkdir(parents=True)
            if self.interrupt_at is not None and num >= self.interrupt_at:
                raise KeyboardInterrupt  # the sweep dies while this job runs: no record
            failed = bool(self.fail and self.fail(overrides))
            if not failed:
                write_json(run_dir / "metrics.json", {"mode": "train", "model": "m",
                                                      "final": {"eval_accuracy": _metric(overrides)},
                                                      "total_params": 1000})
            records.write(run_dir, records.build(
                job=num, overrides=overrides, status=records.FAILED if failed else records.FINISHED,
                run_dir=run_dir, sweep_dir=self.sweep_dir, sweep="s", started_at=time.time(),
                finished_at=time.time(), error="RuntimeError: out of memory" if failed else None))
        return [None] * len(batch)


def _search(config, launcher: FakeLauncher, arguments=()):
    settings = S.settings_from(config)
    dists, fixed = S.space_of(config, list(arguments))
    study = S.open_study(settings, launcher.sweep_dir, dists)
    return S.Search(settings, study, dists, fixed, launcher.sweep_dir, launcher.launch, launcher.run_dir_of,
                    poll_s=0.05), study


# -- settings and space ---------------------------------------------------------------------------------
@pytest.mark.parametrize("change, needle", [
    ({"sampler": "bayes"}, "hydra.sweeper.sampler=bayes"),
    ({"pruner": "asha"}, "hydra.sweeper.pruner=asha"),
    ({"direction": "up"}, "hydra.sweeper.direction"),
    ({"objectives": ["eval_accuracy", "total_params"], "direction": ["maximize"] * 3}, "one per objective"),
    ({"objectives": ["eval_accuracy", "total_params"], "pruner": "median"}, "single-objective"),
    ({"objectives": ["eval_accuracy", "total_params"], "sampler": "cmaes"}, "cmaes optimises one objective"),
    ({"pruner": "median", "replicates": 3}, "replicates=3"),
    ({"n_trials": 0}, "n_trials=0"),
])
def test_settings_the_search_cannot_honour_are_refused(tmp_path, change, needle):
    with pytest.raises(ExperimentError, match="hydra.sweeper") as info:
        S.settings_from(_config(tmp_path, **change))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_pruner_needs_an_objective_measured_at_each_evaluation(tmp_path):
    config = _config(tmp_path, pruner="median")
    config.objective = "train_loss"
    with pytest.raises(ExperimentError, match="needs an objective measured at every evaluation"):
        S.settings_from(config)


def test_unknown_sampler_options_and_grid_over_an_interval_are_one_line(tmp_path):
    config = _config(tmp_path, sampler_options={"n_startup": 3})
    with pytest.raises(ExperimentError, match="sampler_options for tpe"):
        S.check_search(config, [])
    with pytest.raises(ExperimentError, match="trainer.lr is an interval"):
        S.check_search(_config(tmp_path, sampler="grid"), [])


def test_search_space_syntax_becomes_optuna_distributions(tmp_path):
    import optuna.distributions as d

    dists, fixed = S.space_of(_config(tmp_path), ["trainer.warmup_ratio=interval(0, 0.2)",
                                                  "trainer.num_epochs=range(1, 4)", "trainer.weight_decay=0.01"])
    assert dists["trainer.lr"] == d.FloatDistribution(1e-5, 1e-2, log=True)
    assert dists["trainer.per_device_batch_size"] == d.CategoricalDistribution([8, 16])
    assert dists["trainer.warmup_ratio"] == d.FloatDistribution(0.0, 0.2)
    assert dists["trainer.num_epochs"] == d.IntDistribution(1, 3, step=1)
    assert fixed == ["trainer.weight_decay=0.01"]


# -- the loop -------------------------------------------------------------------------------------------
def test_trials_are_told_what_their_jobs_wrote_and_job_numbers_follow_each_other(tmp_path):
    launcher = FakeLauncher(tmp_path)
    search, study = _search(_config(tmp_path, n_trials=5, n_jobs=2), launcher)
    search.run()
    assert [len(b) for b in launcher.batches] == [2, 2, 1]  # n_jobs trials side by side
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 5
    for trial in trials:
        (num, overrides, run_dir), = trial.user_attrs["jobs"]
        assert trial.value == pytest.approx(_metric(overrides))
        assert json.loads((tmp_path / run_dir / records.RECORD_FILE).read_text())["job"] == num
    assert sorted(j[0] for t in trials for j in t.user_attrs["jobs"]) == [0, 1, 2, 3, 4]
    described = json.loads((tmp_path / S.STUDY_FILE).read_text())
    assert described["storage"] == S.JOURNAL_FILE and described["study_name"] == "s"
    results = OmegaConf.load(tmp_path / S.RESULTS_FILE)
    assert results.best_value == pytest.approx(max(t.value for t in trials))


def test_replicates_run_one_job_per_seed_and_tell_the_mean(tmp_path):
    launcher = FakeLauncher(tmp_path)
    search, study = _search(_config(tmp_path, n_trials=2, n_jobs=3, replicates=3), launcher, ["trainer.seed=5"])
    search.run()
    assert [len(b) for b in launcher.batches] == [3, 3]  # one trial (3 seeds) per batch
    for trial in study.get_trials():
        jobs = trial.user_attrs["jobs"]
        seeds = [dict(o.split("=", 1) for o in overrides)["trainer.seed"] for _, overrides, _ in jobs]
        assert seeds == ["5", "6", "7"]  # trainer.seed=5 given: replicates from there, no duplicate key
        assert all(sum(o.startswith("trainer.seed=") for o in overrides) == 1 for _, overrides, _ in jobs)
        values = [_metric(overrides) for _, overrides, _ in jobs]
        assert trial.value == pytest.approx(sum(values) / 3)


def test_a_failed_job_fails_its_trial_and_the_search_goes_on(tmp_path):
    launcher = FakeLauncher(tmp_path, fail=lambda o: "trainer.per_device_batch_size=16" in o)
    search, study = _search(_config(tmp_path, n_trials=6), launcher)
    search.run()
    states = [t.state.name for t in study.get_trials()]
    assert len(states) == 6 and "FAIL" in states and "COMPLETE" in states
    failed = next(t for t in study.get_trials() if t.state.name == "FAIL")
    assert failed.user_attrs["error"] == "RuntimeError: out of memory"


def test_a_search_where_every_trial_failed_ends_with_one_line(tmp_path):
    search, _ = _search(_config(tmp_path, n_trials=2), FakeLauncher(tmp_path, fail=lambda o: True))
    with pytest.raises(ExperimentError, match="no trial of study 's' completed"):
        search.run()


def test_an_interrupted_search_resumes_to_n_trials_rerunning_the_interrupted_trial(tmp_path):
    search, study = _search(_config(tmp_path, n_trials=4), FakeLauncher(tmp_path, interrupt_at=2))
    with pytest.raises(KeyboardInterrupt):
        search.run()
    interrupted = study.get_trials()[2]
    assert interrupted.state.name == "RUNNING"
    launcher = FakeLauncher(tmp_path)  # the same command again, with resume
    search, study = _search(_config(tmp_path, n_trials=4), launcher)
    search.run()
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert search.counted() == 4
    assert trials[3].params == interrupted.params and trials[3].user_attrs["rerun_of"] == 2
    assert [j[0] for t in trials for j in t.user_attrs["jobs"]] == [0, 1, 2, 3, 4]  # unique, continuing
    record = records.read(tmp_path / "2")
    assert record["status"] == records.FAILED and "interrupted" in record["error"]
    assert trials[4].params != trials[0].params  # the resumed sampler does not repeat its first draws


def test_a_trial_whose_job_finished_after_the_sweep_died_is_told_its_outcome(tmp_path):
    search, study = _search(_config(tmp_path, n_trials=2), FakeLauncher(tmp_path, interrupt_at=1))
    with pytest.raises(KeyboardInterrupt):
        search.run()
    orphan = study.get_trials()[1]
    (num, overrides, _), = orphan.user_attrs["jobs"]
    run_dir = tmp_path / str(num)  # the orphaned job went on and finished on its own
    write_json(run_dir / "metrics.json", {"mode": "train", "model": "m", "final": {"eval_accuracy": 0.5}})
    records.write(run_dir, records.build(job=num, overrides=overrides, status=records.FINISHED, run_dir=run_dir,
                                         sweep_dir=tmp_path, sweep="s", started_at=time.time(),
                                         finished_at=time.time()))
    search, study = _search(_config(tmp_path, n_trials=2), FakeLauncher(tmp_path))
    search.run()
    trials = study.get_trials()
    assert len(trials) == 2 and trials[1].state.name == "COMPLETE" and trials[1].value == 0.5


def test_grid_search_walks_every_point_once_and_stops(tmp_path):
    config = _config(tmp_path, sampler="grid", n_trials=10,
                     params={"trainer.lr": "choice(1e-5, 1e-4, 1e-3)", "trainer.per_device_batch_size": "choice(8, 16)"})
    launcher = FakeLauncher(tmp_path)
    search, study = _search(config, launcher)
    search.run()
    points = {tuple(sorted(t.params.items())) for t in study.get_trials()}
    assert len(study.get_trials()) == 6 and len(points) == 6


@pytest.mark.parametrize("sampler", ["random", "cmaes"])
def test_other_samplers_search_the_same_space(tmp_path, sampler):
    config = _config(tmp_path, sampler=sampler, n_trials=3, params={"trainer.lr": "tag(log, interval(1e-5, 1e-2))"})
    search, study = _search(config, FakeLauncher(tmp_path))
    search.run()
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 3
    assert type(study.sampler).__name__.lower().startswith(sampler[:4])


def test_a_multi_objective_search_tells_each_objective_and_keeps_a_pareto_front(tmp_path):
    config = _config(tmp_path, objectives=["eval_accuracy", "total_params"], direction=["maximize", "minimize"])
    search, study = _search(config, FakeLauncher(tmp_path))
    search.run()
    assert all(t.values[1] == 1000 for t in study.get_trials())
    best = max(t.values[0] for t in study.get_trials())
    assert [t.values[0] for t in study.best_trials] == [best]
    assert "best_trials" in OmegaConf.load(tmp_path / S.RESULTS_FILE)


def test_an_existing_study_with_other_directions_is_refused(tmp_path):
    _search(_config(tmp_path), FakeLauncher(tmp_path))
    with pytest.raises(ExperimentError, match="optimises \\['maximize'\\], not \\['minimize'\\]"):
        _search(_config(tmp_path, direction="minimize"), FakeLauncher(tmp_path))


# -- pruning --------------------------------------------------------------------------------------------
def test_the_monitor_reports_evaluations_and_asks_a_hopeless_run_to_stop(tmp_path):
    settings = S.settings_from(_config(tmp_path, pruner="median"))
    study = optuna.create_study(direction="maximize", pruner=S.make_pruner(settings))
    for good in (0.8, 0.9):  # two finished trials: the median at step 10 is 0.75
        trial = study.ask()
        trial.report(good - 0.1, 10)
        study.tell(trial, good)
    run_dir = tmp_path / "7"
    run_dir.mkdir()
    pending = S.Pending(study.ask(), [S.Job(7, ["trainer.lr=0.01"], run_dir)])
    monitor = S.Monitor([pending], settings, poll_s=0.05)
    write_json(run_dir / "metrics.json", {"mode": "train", "model": "m", "history": [{"step": 5, "eval_loss": 2.0}]})
    monitor.check(pending)  # no eval_accuracy yet: nothing reported, nothing asked
    assert pending.reported == set() and not (run_dir / STOP_REQUEST).exists()
    write_json(run_dir / "metrics.json", {"mode": "train", "model": "m",
                                          "history": [{"step": 10, "eval_accuracy": 0.2}]})
    monitor.check(pending)
    request = json.loads((run_dir / STOP_REQUEST).read_text())
    assert request == {"reason": "pruned", "pruner": "median", "metric": "eval_accuracy", "value": 0.2,
                       "at_step": 10, "trial": pending.trial.number}
    assert pending.trial.storage.get_trial(pending.trial._trial_id).intermediate_values == {10: 0.2}


def test_a_run_stops_on_a_request_and_every_process_agrees(tmp_path):
    from experiments.runs import request_stop
    from experiments.train.common import requested_stop

    assert requested_stop(tmp_path, 3) is None
    request_stop(tmp_path, "pruned", at_step=2)
    assert requested_stop(tmp_path, 3) == {"reason": "pruned", "at_step": 2, "step": 3}
    assert requested_stop(tmp_path, 3, agree=lambda flag: False) is None
    (tmp_path / STOP_REQUEST).unlink()
    assert requested_stop(tmp_path, 4, agree=lambda flag: True) == {"reason": "requested", "step": 4}


def test_a_pruned_run_is_recorded_as_pruned(tmp_path):
    write_json(tmp_path / "metrics.json", {"mode": "train", "model": "m", "final": {"eval_accuracy": 0.3},
                                           "stopped": {"reason": "pruned", "step": 4}})
    assert records.ended_as(tmp_path) == records.PRUNED
    write_json(tmp_path / "metrics.json", {"mode": "train", "model": "m", "final": {"eval_accuracy": 0.3},
                                           "stopped": {"reason": "early_stopping", "step": 4}})
    assert records.ended_as(tmp_path) == records.FINISHED


def test_the_direction_follows_the_metric_unless_given(tmp_path):
    config = _config(tmp_path, direction="auto")
    assert S.settings_from(config).directions == ["maximize"]
    config.objective = "eval_perplexity"
    assert S.settings_from(config).directions == ["minimize"]
    config = _config(tmp_path, direction=["auto", "minimize"], objectives=["eval_loss", "eval_runtime_s"])
    assert S.settings_from(config).directions == ["minimize", "minimize"]


@pytest.mark.parametrize("preset, objective, direction", [("mrpc_minilm", "eval_f1", "maximize"),
                                                          ("bbc_minilm_mlm", "eval_perplexity", "minimize")])
def test_an_experiment_presets_objective_wins_over_the_search_default(preset, objective, direction):
    from experiments.config.validate import compose_full

    config = compose_full([f"experiment={preset}", "hparams_search=optuna"])
    settings = S.settings_from(config)
    assert (settings.objectives, settings.directions) == ([objective], [direction])


def test_a_storage_that_cannot_be_opened_is_one_line_with_the_password_masked(tmp_path):
    settings = S.settings_from(_config(tmp_path, storage=f"sqlite:///{tmp_path}/missing/dir/x.db"))
    with pytest.raises(ExperimentError, match="cannot be opened \\(OperationalError"):
        S.open_study(settings, tmp_path, {})
    settings = S.settings_from(_config(tmp_path, storage="postgresql://me:hunter2pw@db.invalid/studies"))
    with pytest.raises(ExperimentError) as info:
        S.open_study(settings, tmp_path, {})
    assert "postgresql://me:***@db.invalid/studies" in str(info.value) and "hunter2pw" not in str(info.value)


def test_a_storage_url_with_a_password_is_refused_on_the_command_line():
    from experiments import secrets

    with pytest.raises(ExperimentError, match="looks like a secret.*oc.env"):
        secrets.check_override("hydra.sweeper.storage=postgresql://me:hunter2pw@db.invalid/studies")
    secrets.check_override("hydra.sweeper.storage=${oc.env:OPTUNA_STORAGE}")
    secrets.check_override("hydra.sweeper.storage=sqlite:///studies.db")
