"""experiments.rundir, directly (the CLI tests run it through ``python run.py``): which directory a new run may
write (new or empty; a file refused), what a resume in place requires (a run of the same experiment with a
checkpoint, or one stopped before its first), which config changes a resume accepts (where files go, how the run
is logged, a longer schedule) and which it refuses, the stale temporary files it removes, the resume record it
writes and takes back, and what a failed start removes (only what this invocation made)."""
from __future__ import annotations

import json
import os
import string
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from experiments import locks, rundir
from experiments.config.validate import compose_with_hydra
from experiments.errors import ExperimentError
from experiments.runs import CONFIG_FILE, start_run

# Each example gets its own fresh folder under the test's tmp_path (made by ``fresh``), so the function-scoped
# tmp_path is safe to share between the examples of one test.
PROPERTY = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
# Examples that write a run's config.yaml (start_run: a flushed, fsynced write) or compose: fewer of them.
RUNS = settings(PROPERTY, max_examples=min(settings.default.max_examples, 30))
NAME = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=12).filter(
    lambda name: name not in (".", "..") and not name.startswith(".lock"))
LOCK_FILES = st.sets(st.sampled_from([locks.LOCK_NAME, locks.OWNER_NAME, ".lock.break.12345"]))
STALE = st.integers(1, 2 ** 22).filter(lambda pid: pid != os.getpid()).map(lambda pid: f".config.yaml.{pid}.tmp")
# Values a config may hold that no secret check masks (short texts, numbers) and YAML keeps as they are.
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 6, 10 ** 6),
                   st.floats(allow_nan=False, allow_infinity=False, width=32),
                   st.text(alphabet=string.ascii_letters + string.digits + " .", max_size=7))
KEY = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8)
GROUPS = ("model", "dataset", "trainer", "task", "peft")
VARIABLES = (rundir.CREATED_ENV, rundir.CREATED_TOP_ENV, rundir.RESUME_SUBDIR_ENV)


def fresh(tmp_path: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=tmp_path))


def make(folder: Path, names, as_dirs=()) -> None:
    for name in names:
        if name in as_dirs:
            (folder / name).mkdir(parents=True, exist_ok=True)
        else:
            (folder / name).write_text("x")


def free(key: str) -> bool:
    return key.startswith(rundir.RESUME_FREE + rundir.RESUME_LONGER)


@st.composite
def experiments_(draw) -> dict:
    """A config of a few groups of leaves, none of whose keys a resume may change."""
    config = {}
    for group in draw(st.lists(st.sampled_from(GROUPS), min_size=1, unique=True)):
        keys = draw(st.lists(KEY.filter(lambda k, g=group: not free(f"{g}.{k}")), min_size=2, max_size=4, unique=True))
        config[group] = {key: draw(LEAVES) for key in keys}
    return config


def as_run(config: dict, run_dir: Path):
    """The config of a run in ``run_dir`` (its output dir, as Hydra sets it) and its config.yaml written."""
    cfg = OmegaConf.create({**config, "paths": {"output_dir": str(run_dir)}})
    start_run(cfg, run_dir)
    return cfg


def given_as(config: dict, output_dir: str = "elsewhere"):
    """The config a new command composes (its own output dir, before the run dir is pinned)."""
    return OmegaConf.create({**config, "paths": {"output_dir": output_dir}})


@contextmanager
def variables() -> Iterator[pytest.MonkeyPatch]:
    """The run-dir variables of this process, as they were before, after the block."""
    with pytest.MonkeyPatch.context() as mp:
        for name in VARIABLES:
            mp.setenv(name, "")
            mp.delenv(name)
        yield mp


@pytest.fixture(autouse=True)
def _no_state_left():
    yield
    locks.release_all()
    for name in VARIABLES:
        os.environ.pop(name, None)


# ---- a new run --------------------------------------------------------------------------------------------------


@PROPERTY
@given(st.sets(NAME, max_size=9), st.sets(NAME, max_size=3), LOCK_FILES, st.booleans(), st.booleans())
def test_a_new_run_is_refused_any_directory_that_holds_more_than_a_lock(tmp_path, files, folders, lock_files,
                                                                       with_config, resume):
    run_dir = fresh(tmp_path)
    held = set(files) | set(folders) | ({CONFIG_FILE} if with_config else set())
    make(run_dir, held | lock_files, as_dirs=folders - files)
    if not held:
        rundir.check_fresh(run_dir, resume)
        return
    with pytest.raises(ExperimentError) as caught:
        rundir.check_fresh(run_dir, resume)
    message = str(caught.value)
    shown = sorted(held)
    assert "\n" not in message
    assert message.startswith(f"hydra.run.dir={run_dir} already holds {'a run' if with_config else 'files'} (")
    assert f"({', '.join(shown[:6])}{', ...' if len(shown) > 6 else ''}):" in message
    assert all(name not in message.split("(", 1)[1].split(")")[0].split(", ") for name in lock_files)
    assert message.endswith("; to continue that run add trainer.resume=true") is not resume


def test_a_missing_run_dir_is_fresh_and_a_file_in_its_place_is_refused(tmp_path):
    rundir.check_fresh(tmp_path / "a" / "b", resume=False)
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("mine")
    with pytest.raises(ExperimentError, match="is a file, not a directory: choose another hydra.run.dir"):
        rundir.check_fresh(tmp_path / "file", resume=False)
    assert (tmp_path / "file").read_text() == "mine"


def test_a_run_dir_is_locked_whether_new_or_existing_but_a_file_is_left_for_check_fresh(tmp_path):
    new, existing, file = tmp_path / "x" / "new", tmp_path / "existing", tmp_path / "file"
    existing.mkdir()
    file.write_text("mine")
    for run_dir in (new, existing):
        rundir.lock_run_dir(run_dir)
        assert locks.held(run_dir) and run_dir.is_dir()
    rundir.lock_run_dir(file)
    assert not locks.held(file) and file.read_text() == "mine"


@PROPERTY
@given(st.lists(NAME, min_size=1, max_size=3), st.integers(1, 64), st.integers(1, 64))
def test_a_node_above_0_logs_to_its_own_node_local_folder_and_writes_nothing_in_the_run_dir(tmp_path, parts, rank,
                                                                                           other_rank):
    root = fresh(tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(root / "node-local"))
        run_dir = root.joinpath("shared", *parts)
        settings_ = rundir.node_settings(run_dir, rank)
        log_file = Path(settings_["hydra.job_logging.handlers.file.filename"])
        assert settings_ == {"hydra.output_subdir": None, "hydra.job_logging.handlers.file.filename": str(log_file)}
        assert log_file.name == "run.log" and log_file.parent.is_dir()
        assert log_file.parent.parent == root / "node-local"
        assert not (root / "shared").exists()
        assert rundir.node_settings(run_dir, rank) == settings_
        again = rundir.node_settings(run_dir, other_rank)
        assert (again == settings_) is (other_rank == rank)
        elsewhere = rundir.node_settings(root / "shared" / "other" / "run", rank)
        assert elsewhere != settings_


# ---- what a resume in place needs ----------------------------------------------------------------------------------


@PROPERTY
@given(st.sets(st.sampled_from([".hydra", "run.log"])), st.sets(NAME.filter(lambda n: n != CONFIG_FILE), max_size=3),
       LOCK_FILES, st.lists(STALE, max_size=2))
def test_a_resume_where_no_run_was_recorded_is_refused_saying_whether_only_hydra_started(tmp_path, hydra_files,
                                                                                      others, lock_files, stale):
    run_dir = fresh(tmp_path)
    make(run_dir, hydra_files | others | lock_files | set(stale), as_dirs={".hydra"})
    with pytest.raises(ExperimentError) as caught:
        rundir.check_resumable(run_dir, given_as({}), "accelerate")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"trainer.resume=true but {run_dir} holds ")
    hydra_only = bool(hydra_files) and not (others - {".hydra", "run.log"})
    assert ("holds only Hydra's files of a start stopped before the run began" in message) is hydra_only
    assert (f"holds no run (no {CONFIG_FILE})" in message) is not hydra_only
    with pytest.raises(ExperimentError, match=f"holds no run \\(no {CONFIG_FILE}\\)"):
        rundir.check_resumable(run_dir / "missing", given_as({}), "accelerate")


CHECKPOINTS = {  # what a checkpoint folder of each backend holds when whole, and when cut short
    "accelerate-whole": ("step_5", "loop_state.json", '{"step": 5}'),
    "accelerate-cut": ("step_5", None, None),
    "hf_trainer-whole": ("checkpoint-5", "trainer_state.json", '{"global_step": 5}'),
    "hf_trainer-cut": ("checkpoint-5", "trainer_state.json", '{"global_st'),
}


@RUNS
@given(experiments_(), st.sampled_from(["accelerate", "hf_trainer"]), st.sampled_from([None, *CHECKPOINTS]),
       st.sets(st.sampled_from(["best", "last"])))
def test_a_run_of_the_same_experiment_resumes_from_a_whole_checkpoint_or_from_the_start_if_it_has_no_result(
        tmp_path, config, backend, checkpoint, results):
    run_dir = fresh(tmp_path)
    as_run(config, run_dir)
    if checkpoint:
        folder, state, text = CHECKPOINTS[checkpoint]
        (run_dir / "checkpoints" / folder).mkdir(parents=True)
        if state:
            (run_dir / "checkpoints" / folder / state).write_text(text)
    make(run_dir, results, as_dirs=results)
    if checkpoint == f"{backend}-whole" or not results:
        rundir.check_resumable(run_dir, given_as(config), backend)
        return
    with pytest.raises(ExperimentError, match=f"{run_dir}/checkpoints holds no complete checkpoint"):
        rundir.check_resumable(run_dir, given_as(config), backend)


# ---- which changes a resume accepts --------------------------------------------------------------------------------


@RUNS
@given(experiments_())
def test_a_run_compared_with_its_own_config_has_no_changes(tmp_path, config):
    run_dir = fresh(tmp_path)
    assert rundir.resume_changes(run_dir, as_run(config, run_dir)) == ({}, {})
    rundir.compare_for_resume(run_dir, given_as(config))


@RUNS
@given(experiments_(), st.data())
def test_any_other_value_for_a_key_of_the_experiment_is_refused_with_both_values(tmp_path, config, data):
    run_dir = fresh(tmp_path)
    as_run(config, run_dir)
    group = data.draw(st.sampled_from(sorted(config)))
    key = data.draw(st.sampled_from(sorted(config[group])))
    old = config[group][key]
    change = data.draw(st.sampled_from(["change", "remove", "add"]))
    new_config = json.loads(json.dumps(config))
    if change == "change":
        new = data.draw(LEAVES.filter(lambda v: v != old or type(v) is not type(old)).filter(
            lambda v: not (isinstance(v, (int, float)) and isinstance(old, (int, float)) and float(v) == float(old))))
        new_config[group][key] = new
        expected = {f"{group}.{key}": [old, new]}
    elif change == "remove":
        del new_config[group][key]
        expected = {f"{group}.{key}": [old, "<unset>"]}
    else:
        added = data.draw(KEY.filter(lambda k: k not in config[group] and not free(f"{group}.{k}")))
        new = data.draw(LEAVES)
        new_config[group][added] = new
        expected = {f"{group}.{added}": ["<unset>", new]}
    allowed, refused = rundir.resume_changes(run_dir, given_as(new_config, str(run_dir)))
    assert (allowed, refused) == ({}, expected)


FREE_KEYS = st.one_of(
    st.sampled_from([key for key in rundir.RESUME_FREE if not key.endswith(".")]),
    st.tuples(st.sampled_from([key for key in rundir.RESUME_FREE if key.endswith(".")]), KEY).map("".join))


@RUNS
@given(experiments_(), st.lists(st.tuples(FREE_KEYS, LEAVES), min_size=1, max_size=4))
def test_where_files_go_and_how_the_run_is_logged_may_change_on_resume(tmp_path, config, changes):
    run_dir = fresh(tmp_path)
    as_run(config, run_dir)
    new = given_as(config, str(run_dir))
    for key, value in changes:
        OmegaConf.update(new, key, value, force_add=True)
    assert rundir.resume_changes(run_dir, new) == ({}, {})
    rundir.compare_for_resume(run_dir, new)


@RUNS
@given(st.sampled_from(rundir.RESUME_LONGER), st.integers(-5, 10 ** 6), st.integers(-5, 10 ** 6))
def test_a_resume_may_raise_epochs_or_max_steps_and_never_lower_them(tmp_path, key, old, new):
    run_dir = fresh(tmp_path)
    group, name = key.split(".")
    as_run({group: {name: old, "lr": 0.5}}, run_dir)
    allowed, refused = rundir.resume_changes(run_dir, given_as({group: {name: new, "lr": 0.5}}, str(run_dir)))
    if new == old:
        assert (allowed, refused) == ({}, {})
    elif new > old:
        assert (allowed, refused) == ({key: [old, new]}, {})
    else:
        assert (allowed, refused) == ({}, {key: [old, new]})
        with pytest.raises(ExperimentError, match=f"{key}: {old!r} -> {new!r}"):
            rundir.compare_for_resume(run_dir, given_as({group: {name: new, "lr": 0.5}}))


@RUNS
@given(st.integers(-(2 ** 53), 2 ** 53))
def test_a_number_saved_as_an_int_is_the_same_value_given_as_a_float(tmp_path, number):
    run_dir = fresh(tmp_path)
    as_run({"model": {"size": number, "width": float(number)}}, run_dir)
    new = given_as({"model": {"size": float(number), "width": number}}, str(run_dir))
    assert rundir.resume_changes(run_dir, new) == ({}, {})


@RUNS
@given(st.integers(1, 9))
def test_a_refused_resume_names_the_first_four_changes_in_one_line_and_counts_the_rest(tmp_path, count):
    run_dir = fresh(tmp_path)
    keys = [f"k{i}" for i in range(count)]
    as_run({"model": {**{k: 1 for k in keys}, "name": "bert"}}, run_dir)
    with pytest.raises(ExperimentError) as caught:
        rundir.compare_for_resume(run_dir, given_as({"model": {**{k: 2 for k in keys}, "name": "bert"}}))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"trainer.resume: the config differs from the run in {run_dir}: ")
    named = [k for k in keys if f"model.{k}: 1 -> 2" in message]
    assert named == sorted(keys)[:4]
    assert ("(+" in message) is (count > 4) and (f"(+{count - 4} more)" in message) is (count > 4)
    assert message.endswith("; resume with the run's values, or start a new run")


@RUNS
@given(st.lists(NAME.filter(lambda n: "$" not in n), min_size=1, max_size=3))
def test_values_made_from_the_output_dir_compare_as_the_run_saved_them(tmp_path, parts):
    run_dir = fresh(tmp_path)
    derived = "${paths.output_dir}/" + "/".join(parts)
    saved = OmegaConf.create({"trainer": {"logging_dir": derived}, "paths": {"output_dir": str(run_dir)}})
    start_run(saved, run_dir)
    assert OmegaConf.load(run_dir / CONFIG_FILE).trainer.logging_dir == f"{run_dir}/{'/'.join(parts)}"
    given = OmegaConf.create({"trainer": {"logging_dir": derived}, "paths": {"output_dir": "outputs/today"}})
    rundir.compare_for_resume(run_dir, given)
    assert given.paths.output_dir == "outputs/today", "the comparison changed the caller's config"


# ---- stale temporaries, checkpoint paths ---------------------------------------------------------------------------

FOLDERS = st.sampled_from(["", ".hydra", "checkpoints/step_3", "best", "checkpoints/checkpoint-7/nested"])
RECORD_NAMES = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=12)
UNDOTTED = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)
OTHER_PID = st.integers(1, 2 ** 22).filter(lambda pid: pid != os.getpid())


@st.composite
def leftovers(draw) -> tuple:
    """(relative path, is stale): atomic_write's temporaries of other processes (stale) among our own process's,
    names like them that atomic_write never makes, and folders."""
    kind = draw(st.sampled_from(["stale", "own", "no pid", "no dot", "folder"]))
    folder = draw(FOLDERS)
    if kind == "stale":
        name = f".{draw(RECORD_NAMES)}.{draw(OTHER_PID)}.tmp"
    elif kind == "own":
        name = f".{draw(RECORD_NAMES)}.{os.getpid()}.tmp"
    elif kind == "no pid":
        name = f".{draw(UNDOTTED)}.tmp"
    elif kind == "no dot":
        name = f"{draw(UNDOTTED)}.{draw(OTHER_PID)}.tmp"
    else:
        name = f".{draw(RECORD_NAMES)}.{draw(OTHER_PID)}.tmp"
    return str(Path(folder, name)), kind


@PROPERTY
@given(st.lists(leftovers(), max_size=10, unique_by=lambda item: item[0]))
def test_a_resume_removes_exactly_the_temporary_files_other_processes_left(tmp_path, items):
    run_dir = fresh(tmp_path)
    for relative, kind in items:
        path = run_dir / relative
        if kind == "folder":
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("half a record")
    (run_dir / CONFIG_FILE).write_text("whole")
    removed = rundir.remove_stale_temporaries(run_dir)
    stale = {run_dir / relative for relative, kind in items if kind == "stale"}
    assert set(removed) == stale and len(removed) == len(stale)
    for relative, kind in items:
        assert (run_dir / relative).exists() is (kind != "stale"), relative
    assert (run_dir / CONFIG_FILE).read_text() == "whole"


@PROPERTY
@given(st.lists(NAME, min_size=1, max_size=3), NAME, st.booleans())
def test_a_checkpoint_path_belongs_to_the_run_two_folders_up_or_is_the_run_itself(tmp_path, parts, step, recorded):
    run_dir = fresh(tmp_path).joinpath(*parts)
    checkpoint = run_dir / "checkpoints" / step
    checkpoint.mkdir(parents=True)
    if recorded:
        (run_dir / CONFIG_FILE).write_text("model: {}\n")
    expected = run_dir if recorded else None
    assert rundir.checkpoint_run_dir(checkpoint) == expected
    assert rundir.checkpoint_run_dir(run_dir) == expected
    assert rundir.checkpoint_run_dir(run_dir / "checkpoints") is None


# ---- the resume record ---------------------------------------------------------------------------------------------


@RUNS
@given(st.floats(0.5, 100, allow_nan=False), st.floats(1, 100, allow_nan=False),
       st.one_of(st.none(), st.lists(st.dictionaries(KEY, st.integers()), max_size=3)),
       st.sets(st.integers(1, 50).map(lambda n: f"step_{n}"), max_size=3), st.booleans())
def test_a_resume_that_saved_nothing_puts_the_record_back_and_one_that_saved_keeps_it(tmp_path, epochs, more, lines,
                                                                                      checkpoints, saved):
    run_dir = fresh(tmp_path)
    as_run({"trainer": {"epochs": epochs, "lr": 0.1}, "logger": {"project": "a"}}, run_dir)
    original = (run_dir / CONFIG_FILE).read_bytes()
    log = run_dir / rundir.RESUME_LOG
    if lines is not None:
        log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    previous_log = log.read_bytes() if lines is not None else None
    for name in checkpoints:
        (run_dir / "checkpoints" / name).mkdir(parents=True)
    resumed = OmegaConf.create({"trainer": {"epochs": epochs + more, "lr": 0.1}, "logger": {"project": "b"},
                                "paths": {"output_dir": str(run_dir)}})

    start = rundir.record_resume(run_dir, resumed)
    entry = json.loads(log.read_text().splitlines()[-1])
    assert log.read_bytes().startswith(previous_log or b"")
    assert entry["changes"] == {"trainer.epochs": [epochs, epochs + more]} and entry["at"]
    start_run(resumed, run_dir)  # what the CLI writes next: the run is now what the resume asked for
    if saved:
        (run_dir / "checkpoints" / "step_99").mkdir(parents=True)
    rundir.undo_resume(run_dir, start)

    if saved:
        assert (run_dir / CONFIG_FILE).read_bytes() != original
        assert OmegaConf.load(run_dir / CONFIG_FILE).trainer.epochs == epochs + more
        assert json.loads(log.read_text().splitlines()[-1]) == entry
    else:
        assert (run_dir / CONFIG_FILE).read_bytes() == original
        assert (log.read_bytes() if log.exists() else None) == previous_log


# ---- what a failed start removes -----------------------------------------------------------------------------------


@PROPERTY
@given(st.integers(1, 4), st.one_of(st.none(), st.integers(0, 3)), st.sets(NAME, max_size=4),
       st.sets(st.sampled_from(["checkpoints", "metrics.json", "best", "last"])),
       st.sampled_from(["this", "unset", "another"]))
def test_a_failed_start_removes_the_run_dir_it_made_and_its_empty_parents_up_to_the_first_it_made(
        tmp_path, made, stranger_at, contents, results, recorded):
    """``made`` folders were created (the outermost first); a stranger's file may sit in one of them."""
    root = fresh(tmp_path)
    existing = root / "existing"
    chain = [existing.joinpath(*[f"d{i}" for i in range(depth + 1)]) for depth in range(made)]
    run_dir = chain[-1]
    run_dir.mkdir(parents=True)
    make(run_dir, contents | results, as_dirs={"checkpoints", "best", "last"})
    keeper = chain[stranger_at] if stranger_at is not None and stranger_at < made - 1 else None
    if keeper:
        (keeper / "stranger.txt").write_text("not ours")
    with variables() as mp:
        if recorded != "unset":
            mp.setenv(rundir.CREATED_ENV, str(run_dir if recorded == "this" else root / "another"))
        mp.setenv(rundir.CREATED_TOP_ENV, str(chain[0]))
        rundir.remove_created(run_dir)
        assert rundir.CREATED_ENV not in os.environ
        if recorded != "this" or results:
            assert run_dir.is_dir() and {p.name for p in run_dir.iterdir()} == contents | results
            return
        assert rundir.CREATED_TOP_ENV not in os.environ
    assert not run_dir.exists() and existing.is_dir()
    for folder in chain[:-1]:
        assert folder.exists() is (keeper is not None and folder in (keeper, *keeper.parents)), folder
    if keeper:
        assert (keeper / "stranger.txt").read_text() == "not ours"


def test_a_failed_resume_removes_its_hydra_subfolder_and_keeps_the_run(tmp_path):
    run_dir = tmp_path / "run"
    as_run({"model": {"name": "bert", "size": 1}}, run_dir)
    subdir = run_dir / ".hydra" / "resume-20260101-000000-1"
    subdir.mkdir(parents=True)
    (subdir / "config.yaml").write_text("x")
    with variables() as mp:
        mp.setenv(rundir.RESUME_SUBDIR_ENV, str(subdir))
        rundir.remove_created(run_dir)
        assert rundir.RESUME_SUBDIR_ENV not in os.environ
    assert not subdir.exists() and (run_dir / ".hydra").is_dir() and (run_dir / CONFIG_FILE).is_file()


# ---- plan_single_run: the whole preflight of one run ---------------------------------------------------------------

SECRET_OVERRIDES = st.one_of(
    st.tuples(st.sampled_from(["logger.api_key", "+model.hf_token", "hydra.job.env_set.WANDB_API_KEY", "~db.password"]),
              st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=10).filter(
                  lambda value: value != "null")).map("=".join),
    st.text(alphabet=string.ascii_letters + string.digits, min_size=34, max_size=40).map(
        lambda s: f"model.name=hf_{s}"),
)


@PROPERTY
@given(SECRET_OVERRIDES, st.booleans())
def test_an_override_with_a_secret_is_refused_before_any_folder_is_made(tmp_path, secret, secret_first):
    root = fresh(tmp_path)
    overrides = [f"hydra.run.dir={root}/run", "trainer.lr=0.1"]
    overrides.insert(0 if secret_first else 2, secret)
    with variables():
        with pytest.raises(ExperimentError, match="looks like a secret"):
            rundir.plan_single_run(overrides)
        assert list(root.iterdir()) == [] and not any(os.environ.get(name) for name in VARIABLES)


def test_a_new_run_gets_its_run_dir_pinned_locked_and_recorded_as_made_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = rundir.plan_single_run(["mode=train"])
    assert len(extra) == 1 and extra[0].startswith("hydra.run.dir=outputs/")
    run_dir = Path(extra[0].split("=", 1)[1])
    assert run_dir.is_dir() and locks.held(run_dir)
    assert os.environ[rundir.CREATED_ENV] == str((tmp_path / run_dir).resolve())
    rundir.remove_created(run_dir)
    assert not run_dir.exists()
    pinned = tmp_path / "pinned" / "run"
    assert rundir.plan_single_run([f"hydra.run.dir={pinned}"]) == []
    assert locks.held(pinned) and os.environ[rundir.CREATED_ENV] == str(pinned.resolve())


def test_a_new_run_records_the_outermost_folder_it_made_and_a_failed_start_removes_them_all(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = rundir.plan_single_run(["mode=train"])
    run_dir = Path(extra[0].split("=", 1)[1])
    assert os.environ[rundir.CREATED_TOP_ENV] == str(tmp_path / "outputs")
    rundir.remove_created(run_dir)
    assert list(tmp_path.iterdir()) == []


def test_a_new_run_into_a_directory_with_files_is_refused_and_the_files_kept(tmp_path):
    run_dir = tmp_path / "run"
    make(run_dir.parent, ["run"], as_dirs=["run"])
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(ExperimentError, match=r"already holds files \(notes.txt\).*add trainer.resume=true$"):
        rundir.plan_single_run([f"hydra.run.dir={run_dir}"])
    assert (run_dir / "notes.txt").read_text() == "mine" and not os.environ.get(rundir.CREATED_ENV)


def test_a_node_above_0_must_name_node_0s_run_dir_and_gets_node_local_log_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "node-local"))
    node = ["trainer.machine_rank=1", "trainer.num_machines=2", "trainer.main_process_ip=10.0.0.1",
            "trainer.main_process_port=29500"]
    with pytest.raises(ExperimentError, match="joins node 0's run: give it the same hydra.run.dir=<dir>"):
        rundir.plan_single_run(node)
    run_dir = tmp_path / "shared" / "run"
    extra = rundir.plan_single_run([*node, f"hydra.run.dir={run_dir}"])
    log_file = rundir.node_settings(run_dir, 1)["hydra.job_logging.handlers.file.filename"]
    assert extra == ["hydra.output_subdir=null", f"hydra.job_logging.handlers.file.filename={log_file}"]
    assert not (tmp_path / "shared").exists() and not os.environ.get(rundir.CREATED_ENV)


def test_a_resume_in_place_of_the_same_experiment_gets_its_own_hydra_subdir_and_loses_stale_temporaries(tmp_path):
    run_dir = tmp_path / "run"
    cfg, _ = compose_with_hydra([f"hydra.run.dir={run_dir}"])
    start_run(cfg, run_dir)
    config = (run_dir / CONFIG_FILE).read_bytes()
    stale = run_dir / f".metrics.json.{os.getpid() + 1}.tmp"
    stale.write_text("{")
    extra = rundir.plan_single_run([f"hydra.run.dir={run_dir}", "trainer.resume=true", "logger.project=again"])
    assert len(extra) == 1 and extra[0].startswith("hydra.output_subdir=.hydra/resume-")
    assert extra[0].endswith(f"-{os.getpid()}")
    subdir = extra[0].split("=", 1)[1]
    assert os.environ[rundir.RESUME_SUBDIR_ENV] == str(run_dir.resolve() / subdir)
    assert not stale.exists() and (run_dir / CONFIG_FILE).read_bytes() == config
    assert locks.held(run_dir) and not os.environ.get(rundir.CREATED_ENV)
    with pytest.raises(ExperimentError, match=r"config differs from the run in .*trainer.lr: 5e-05 -> 0.001"):
        rundir.plan_single_run([f"hydra.run.dir={run_dir}", "trainer.resume=true", "trainer.lr=0.001"])
    with pytest.raises(ExperimentError, match=r"holds no run \(no config.yaml\)"):
        rundir.plan_single_run([f"hydra.run.dir={tmp_path / 'empty'}", "trainer.resume=true"])
