"""experiments.sweep.preflight, directly: what a multirun is checked for before Hydra writes anything — secrets in
the overrides, sweeps over Hydra's own settings, ``hydra.sweeper.params.<dotted key>`` on the command line, the
search space (each searched value a trial can draw, as one job), the sweep folder (an earlier sweep in it, a
file, another command holding it) — and that each refusal is one line with exit code 2."""
from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from experiments import locks
from experiments.errors import ExperimentError
from experiments.sweep import preflight
from experiments.sweep.records import RECORD_FILE, SUMMARY_JSON
from experiments.sweep.space import parse

# hypothesis runs many examples in one test's tmp_path: each example makes its own folder inside it
EACH_EXAMPLE_OWN_FOLDER = settings(suppress_health_check=[*settings().suppress_health_check,
                                                          HealthCheck.function_scoped_fixture])


def one_line_refusal(exc: ExperimentError) -> str:
    assert exc.exit_code == 2 and "\n" not in str(exc)
    return str(exc)


# -- before anything is composed: secrets, Hydra's own settings -------------------------------------------------
@given(st.lists(st.text(max_size=30), max_size=5), st.booleans())
def test_a_single_run_or_no_overrides_is_not_checked_here(overrides, with_secret):
    """``python run.py`` without ``-m``: the single run's checks are the CLI's, not the sweep's."""
    if with_secret:
        overrides = [*overrides, "logger.api_key=abcdefgh12345678"]
    assert preflight.check_sweep_or_exit(overrides, multirun=False) is None
    assert preflight.check_sweep_or_exit(None, multirun=True) is None


def test_a_refused_multirun_prints_one_line_and_exits_with_its_code(capsys):
    with pytest.raises(SystemExit) as stopped:
        preflight.check_sweep_or_exit(["trainer.lr=1e-5,2e-5", "hydra.launcher.n_jobs=1,2"], multirun=True)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 'hydra.launcher.n_jobs=1,2' sweeps over a Hydra setting") and err.count("\n") == 1


TOKEN = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"),
                min_size=30, max_size=40).map(lambda s: f"hf_{s}")


@given(st.sampled_from(["trainer.lr", "logger.project", "+extra.note", "hydra.sweeper.storage", "hydra.sweep.dir",
                        "model.name_or_path"]),
       TOKEN, st.sampled_from(["", "prefix-", "x,"]), st.sampled_from(["", ",b", "(", " trailing"]),
       st.lists(st.sampled_from(["trainer.lr=1e-5,2e-5", "hparams_search=optuna", "debug=tiny"]), max_size=2))
def test_a_token_in_any_override_is_refused_without_showing_it(key, token, before, after, others):
    """Checked before the overrides are parsed: even a line Hydra cannot parse never echoes the token."""
    with pytest.raises(ExperimentError) as refused:
        preflight.check_sweep([*others, f"{key}={before}{token}{after}"])
    line = one_line_refusal(refused.value)
    assert line.startswith(f"'{key.lstrip('+~')}' looks like a secret") and token not in line


@given(st.sampled_from(["logger.api_key", "hydra.sweeper.password", "+wandb.token", "hydra.sweeper.auth"]),
       st.text(st.sampled_from("abcxyz0123456789-_"), min_size=1, max_size=20))
def test_a_secret_named_key_with_a_value_is_refused(key, value):
    with pytest.raises(ExperimentError) as refused:
        preflight.check_sweep([f"{key}={value}"])
    assert one_line_refusal(refused.value).startswith(f"'{key.lstrip('+~')}' looks like a secret")


WORD = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789_"), min_size=1, max_size=8)


@given(st.sampled_from(["hydra.launcher.n_jobs", "hydra.sweep.dir", "hydra.job.chdir", "hydra.sweeper.n_trials",
                        "hydra.launcher.resume", "hydra.sweeper.params.seed", "hydra.sweeper.sampler"]),
       st.lists(WORD, min_size=2, max_size=4, unique=True),
       st.lists(st.sampled_from(["trainer.lr=1e-5,2e-5", "hparams_search=optuna", "model=no_such_model"]),
                max_size=2))
def test_sweeping_over_a_hydra_setting_is_refused_before_anything_is_composed(key, values, others):
    """Refused even beside an override that would not compose (``model=no_such_model``): it comes first."""
    override = f"{key}={','.join(values)}"
    with pytest.raises(ExperimentError) as refused:
        preflight.check_sweep([*others, override])
    line = one_line_refusal(refused.value)
    assert line.startswith(f"'{override}' sweeps over a Hydra setting") and f"give {key} one value" in line


def test_an_override_hydra_cannot_parse_is_one_line():
    with pytest.raises(ExperimentError) as refused:
        preflight.check_sweep(["trainer.lr=interval(1e-5"])
    assert one_line_refusal(refused.value).startswith("cannot parse overrides:")


# -- hydra.sweeper.params.<a.b> on the command line -------------------------------------------------------------
@pytest.mark.parametrize("override", ["hydra.sweeper.params.trainer.warmup_ratio=interval(0.0,0.2)",
                                      "hydra.sweeper.params.trainer.warmup_ratio=0.1"])
def test_a_dotted_search_space_key_says_how_to_change_the_space(override):
    with pytest.raises(ExperimentError) as refused:
        preflight.check_sweep(["hydra/sweeper=optuna", override])
    value = override.split("=", 1)[1]
    line = one_line_refusal(refused.value)
    assert line.startswith("'hydra.sweeper.params.trainer.warmup_ratio' cannot change the search space")
    assert f"give 'trainer.warmup_ratio={value}' as an override instead" in line


def test_a_dotted_search_space_key_with_a_value_the_schema_rejects_names_that_value():
    with pytest.raises(ExperimentError) as refused:
        preflight.check_sweep(["hydra/sweeper=optuna", "hydra.sweeper.params.trainer.warmup_ratio=interval(0.0,1.5)"])
    line = one_line_refusal(refused.value)
    assert line.startswith("searched value trainer.warmup_ratio=1.5 (from hydra.sweeper.params.trainer.warmup_ratio "
                           "on the command line): ")
    assert "trainer.warmup_ratio" in line.split("): ", 1)[1]


# -- the values a trial can get ---------------------------------------------------------------------------------
def entry(spec: str):
    return parse([f"trainer.x={spec}"])[0]


NOT_WORDS = {"true", "false", "null", "nan", "inf", "int", "float", "str", "bool", "choice", "range", "interval",
             "shuffle", "sort", "tag", "glob", "extend_list", "json_str"}
BARE = st.one_of(st.integers(-10_000, 10_000).map(str),
                 st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz_"), min_size=2, max_size=10)
                 .filter(lambda w: w not in NOT_WORDS))


@given(st.lists(BARE, min_size=1, max_size=6, unique=True), st.booleans())
def test_every_choice_is_a_trial_value_in_order(values, grid_syntax):
    spec = ",".join(values) if grid_syntax and len(values) > 1 else f"choice({','.join(values)})"
    assert [str(v) for v in preflight.trial_values("trainer.x", entry(spec), "here")] == values


@given(st.integers(-50, 50), st.integers(-50, 50), st.integers(-7, 7).filter(bool))
def test_a_range_is_checked_at_both_ends_and_an_empty_one_is_refused(start, stop, step):
    expected = range(start, stop, step)
    spec = f"range({start},{stop},{step})"
    if expected:
        assert preflight.trial_values("trainer.x", entry(spec), "here") == [expected[0], expected[-1]]
        shuffled = preflight.trial_values("trainer.x", entry(f"shuffle({spec})"), "here")
        assert sorted(int(v) for v in shuffled) == sorted(expected)  # shuffled: any value can come first
    else:
        with pytest.raises(ExperimentError) as refused:
            preflight.trial_values("trainer.x", entry(spec), "here")
        assert one_line_refusal(refused.value) == f"search space trainer.x={spec} (from here) is an empty range"


NUMBER = st.one_of(st.integers(-1000, 1000), st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False))


@given(NUMBER, NUMBER, st.booleans())
def test_an_interval_is_checked_at_both_ends_and_refused_backwards_or_log_of_non_positive(start, end, log):
    spec = f"interval({start!r},{end!r})"
    spec = f"tag(log,{spec})" if log else spec
    if start <= end and (start > 0 or not log):
        assert preflight.trial_values("trainer.x", entry(spec), "here") == [float(start), float(end)]
    else:
        with pytest.raises(ExperimentError) as refused:
            preflight.trial_values("trainer.x", entry(spec), "here")
        line = one_line_refusal(refused.value)
        assert line.startswith(f"search space trainer.x={spec} (from here): an interval needs start <= end")


@given(BARE)
def test_a_fixed_value_is_its_own_only_trial_value(value):
    assert preflight.trial_values("trainer.x", entry(value), "here") == [value]


def test_a_sweep_the_sampler_cannot_draw_from_is_refused():
    with pytest.raises(ExperimentError) as refused:
        preflight.trial_values("model", parse(["model=glob(*)"])[0], "the command line")
    assert "model=glob(*) (from the command line) is not supported by the sweeper" in one_line_refusal(refused.value)


# -- the search space, composed -----------------------------------------------------------------------------------
def test_a_search_whose_every_value_is_valid_passes_and_writes_nothing(tmp_path):
    sweep_dir = tmp_path / "sweep"
    preflight.check_sweep(["hydra/sweeper=optuna", "objective=eval_accuracy", "trainer.epochs=1", "trainer.lr=tag(log,interval(1e-5,1e-4))",
                           "trainer.per_device_batch_size=choice(16,32)", f"hydra.sweep.dir={sweep_dir}"])
    assert list(tmp_path.iterdir()) == []


def test_a_searched_value_the_schema_rejects_is_named_with_where_it_came_from():
    """Any sweeper but Hydra's basic one: its space is checked, trial by trial."""
    with pytest.raises(ExperimentError) as refused:
        preflight.check_sweep(["hydra/sweeper=optuna", "trainer.warmup_ratio=interval(0.1,1.5)"])
    line = one_line_refusal(refused.value)
    assert line.startswith("searched value trainer.warmup_ratio=1.5 (from the command line): ")
    assert "must be in [0, 1)" in line


@pytest.mark.parametrize("spec, bad", [("choice(0.1,2.0,0.05,3.0)", ["2.0"]), ("range(0.5,1.5,0.25)", ["1.25"]),
                                       ("shuffle(range(0.5,1.5,0.25))", ["1.0", "1.25"])])
def test_a_value_a_trial_could_draw_that_the_schema_rejects_is_named(spec, bad):
    """The first such value in the order the sweeper would draw them (a shuffled range: any of them)."""
    cfg = OmegaConf.create({"hydra": {"sweeper": {"params": {}}}})
    with pytest.raises(ExperimentError) as refused:
        preflight.check_search_space(cfg, parse([f"trainer.warmup_ratio={spec}"]))
    named = re.match(r"searched value trainer.warmup_ratio=(\S+) \(from the command line\): ",
                     one_line_refusal(refused.value))
    assert named and named.group(1) in bad


def test_a_bad_entry_of_a_search_preset_names_its_file():
    """A preset's space is checked as well as the command line's (here one given as a composed config)."""
    cfg = OmegaConf.create({"hydra": {"sweeper": {"params": {"trainer.per_device_batch_size": "choice(16, 0)"}},
                                      "runtime": {"choices": {"hparams_search": "mine"}}}})
    with pytest.raises(ExperimentError) as refused:
        preflight.check_search_space(cfg, [])
    assert one_line_refusal(refused.value).startswith(
        "searched value trainer.per_device_batch_size=0 (from hydra.sweeper.params of conf/hparams_search/mine.yaml)")


def test_a_plain_override_of_a_search_is_checked_as_the_trials_common_part():
    with pytest.raises(ExperimentError) as refused:
        preflight.check_sweep(["hydra/sweeper=optuna", "trainer.epochs=0", "trainer.lr=choice(1e-5,2e-5)"])
    line = one_line_refusal(refused.value)
    assert "trainer.epochs" in line and not line.startswith("searched value")


def test_searching_the_seed_of_replicated_trials_is_refused():
    with pytest.raises(ExperimentError) as refused:
        preflight.check_sweep(["hydra/sweeper=optuna", "objective=eval_loss", "hydra.sweeper.replicates=2", "trainer.seed=choice(1,2)"])
    assert "hydra.sweeper.replicates=2" in one_line_refusal(refused.value)


# -- the sweep folder ------------------------------------------------------------------------------------------
def sweep_config(sweep_dir, resume=None, launcher="subprocess"):
    """The ``hydra`` part of a composed config that the folder checks read (``resume`` None: a launcher
    without that setting)."""
    launcher_node = {"_target_": "some.Launcher", **({} if resume is None else {"resume": resume})}
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir), "subdir": "${hydra.job.num}"},
                                       "launcher": launcher_node,
                                       "runtime": {"choices": {"hydra/launcher": launcher}}}})


def numbers_of(found: str) -> set:
    """``jobs 0-2, 5`` -> {0, 1, 2, 5}; ``job 3`` -> {3}."""
    spans = re.fullmatch(r"jobs? (.+)", found).group(1).split(", ")
    out = set()
    for span in spans:
        first, _, last = span.partition("-")
        out |= set(range(int(first), int(last or first) + 1))
    return out


JOBS = st.sets(st.integers(0, 40), max_size=8)


@settings(EACH_EXAMPLE_OWN_FOLDER, max_examples=50)
@given(JOBS, JOBS, JOBS, st.sets(st.sampled_from(["multirun.yaml", SUMMARY_JSON, ".launcher"])),
       st.sampled_from([None, False, True]))
def test_a_folder_holding_an_earlier_sweep_is_refused_unless_resumed_and_named_by_what_it_holds(
        tmp_path, folders, records, launcher_files, files, resume):
    sweep_dir = Path(tempfile.mkdtemp(dir=tmp_path)) / "sweep"
    sweep_dir.mkdir()
    for n in folders:
        (sweep_dir / str(n)).mkdir()
    for n in records:  # a job record in a named run dir
        (sweep_dir / f"run-{n}").mkdir()
        (sweep_dir / f"run-{n}" / RECORD_FILE).write_text(json.dumps({"job": n, "overrides": []}))
    for name in files:
        (sweep_dir / name).mkdir() if name == ".launcher" else (sweep_dir / name).write_text("{}")
    if launcher_files:
        (sweep_dir / ".launcher").mkdir(exist_ok=True)
        for n in launcher_files:
            (sweep_dir / ".launcher" / f"job_{n}.pkl").write_text("")
    jobs = folders | records | launcher_files
    found = preflight.earlier_sweep(sweep_dir)
    if jobs:
        assert numbers_of(found) == jobs
        spans = [[int(x) for x in span.split("-")] for span in found.split(" ", 1)[1].split(", ")]
        assert all(a[-1] + 1 < b[0] for a, b in zip(spans, spans[1:]))  # the fewest spans, in order
    elif files or launcher_files:
        assert found == ", ".join(n for n in ("multirun.yaml", SUMMARY_JSON, ".launcher") if n in files)
    else:
        assert found is None

    cfg = sweep_config(sweep_dir, resume)
    if found is None or resume:
        preflight.check_sweep_dir(cfg)
        return
    with pytest.raises(ExperimentError) as refused:
        preflight.check_sweep_dir(cfg)
    line = one_line_refusal(refused.value)
    assert line.startswith(f"hydra.sweep.dir={sweep_dir} already holds a sweep ({found}); ")
    if resume is None:
        assert "hydra/launcher=subprocess cannot resume" in line and "resume=true" not in line
    else:
        assert "add hydra.launcher.resume=true to continue it" in line


@EACH_EXAMPLE_OWN_FOLDER
@given(st.sets(st.sampled_from(["multirun.yaml", SUMMARY_JSON, ".launcher", "notes.txt", "plots"]), min_size=1))
def test_without_jobs_the_files_a_sweep_leaves_are_what_it_holds(tmp_path, names):
    sweep_dir = Path(tempfile.mkdtemp(dir=tmp_path))
    for name in names:
        (sweep_dir / name).mkdir() if name in (".launcher", "plots") else (sweep_dir / name).write_text("{}")
    of_a_sweep = [n for n in ("multirun.yaml", SUMMARY_JSON, ".launcher") if n in names]
    assert preflight.earlier_sweep(sweep_dir) == (", ".join(of_a_sweep) or None)


def test_a_new_or_empty_folder_or_the_default_one_is_accepted(tmp_path):
    preflight.check_sweep_dir(sweep_config(tmp_path / "new" / "sweep", resume=False))
    (tmp_path / "empty").mkdir()
    preflight.check_sweep_dir(sweep_config(tmp_path / "empty", resume=False))
    (tmp_path / "0").mkdir()  # the default folder is new every time: never looked at
    preflight.check_sweep_dir(sweep_config(f"{tmp_path}/${{now:%Y-%m-%d}}", resume=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "empty"]


def test_a_file_as_sweep_folder_is_refused_and_not_locked(tmp_path):
    path = tmp_path / "sweep"
    path.write_text("not a folder")
    cfg = sweep_config(path, resume=True)
    preflight.lock_sweep_dir(cfg)
    assert not locks.held(path) and path.read_text() == "not a folder"
    with pytest.raises(ExperimentError) as refused:
        preflight.check_sweep_dir(cfg)
    assert one_line_refusal(refused.value) == f"hydra.sweep.dir={path} is a file: choose a folder for hydra.sweep.dir"


def test_the_parent_of_a_sweep_locks_its_folder(tmp_path):
    sweep_dir = tmp_path / "a" / "sweep"
    try:
        preflight.check_sweep(["trainer.lr=1e-5,2e-5", f"hydra.sweep.dir={sweep_dir}"], lock=True)
        assert locks.held(sweep_dir) and sweep_dir.is_dir()
    finally:
        locks.release(sweep_dir)
    assert not (tmp_path / "a").exists()  # the folders the lock made go with it while they are empty


def test_a_folder_another_command_holds_is_refused(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    other = os.getppid()  # a process that runs (filelock takes over the lock of one that does not)
    (sweep_dir / locks.LOCK_NAME).write_text(f"{other}\n{socket.gethostname()}\n")
    with pytest.raises(ExperimentError) as refused:
        preflight.check_sweep(["trainer.lr=1e-5,2e-5", f"hydra.sweep.dir={sweep_dir}"], lock=True)
    line = one_line_refusal(refused.value)
    assert line.startswith(f"hydra.sweep.dir={sweep_dir} is in use by another command (pid {other} on host")
    assert not locks.held(sweep_dir)


def test_a_grid_sweep_into_a_finished_sweeps_folder_is_refused_and_resumed_on_request(tmp_path):
    sweep_dir = tmp_path / "sweep"
    for n in (0, 1, 2, 5):
        (sweep_dir / str(n)).mkdir(parents=True)
    overrides = ["trainer.lr=1e-5,2e-5", f"hydra.sweep.dir={sweep_dir}"]
    with pytest.raises(ExperimentError) as refused:
        preflight.check_sweep(overrides)
    assert one_line_refusal(refused.value) == (
        f"hydra.sweep.dir={sweep_dir} already holds a sweep (jobs 0-2, 5); add hydra.launcher.resume=true to "
        "continue it, or choose a new hydra.sweep.dir")
    preflight.check_sweep([*overrides, "hydra.launcher.resume=true"])


# -- the launcher and the sweeper are plugins Hydra will load -----------------------------------------------------
def _with_targets(launcher, sweeper="hydra._internal.core_plugins.basic_sweeper.BasicSweeper"):
    return OmegaConf.create({"hydra": {"launcher": {"_target_": launcher}, "sweeper": {"_target_": sweeper},
                                       "runtime": {"choices": {"hydra/launcher": "mine", "hydra/sweeper": "basic"}}}})


@pytest.mark.parametrize("launcher", ["hydra_plugins.experiments_launcher.subprocess_launcher.SubprocessLauncher",
                                      "hydra_plugins.experiments_launcher.ray_launcher.RayLauncher",
                                      "hydra._internal.core_plugins.basic_launcher.BasicLauncher"])
def test_the_shipped_launchers_are_plugins_hydra_loads(launcher):
    preflight.check_plugins(_with_targets(launcher))


@given(st.from_regex(r"[a-z_]{1,10}(\.[a-z_]{1,10}){0,2}\.[A-Z][A-Za-z]{0,10}", fullmatch=True))
def test_a_plugin_outside_hydra_plugins_or_unknown_there_is_one_line(target):
    for launcher in (target, f"hydra_plugins.{target}"):
        if launcher.startswith(("hydra_plugins.experiments_", "hydra._internal.")):
            continue
        with pytest.raises(ExperimentError) as caught:
            preflight.check_plugins(_with_targets(launcher))
        message = one_line_refusal(caught.value)
        assert message.startswith("hydra/launcher=mine: ") and launcher in message
        assert ("outside the hydra_plugins package" in message) == (not launcher.startswith("hydra_plugins."))


def test_a_config_that_names_no_plugin_class_is_one_line():
    with pytest.raises(ExperimentError) as caught:
        preflight.check_plugins(_with_targets(None))
    assert "names no hydra.launcher._target_" in one_line_refusal(caught.value)
