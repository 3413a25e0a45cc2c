"""experiments.worker, directly: the parts of one rank of a multi-process run that need no process group. The
process group itself (``process_state``), the nodes' agreement and the training are replaced by recorders
here (tests/train/test_ddp.py and test_multinode.py launch real ranks); what is checked is the worker's own
work: which config file it reads and what it makes of it, its logging per rank, that it installs the signal
handlers first, runs the steps in order, turns every user error into one line and its exit code (on stderr,
or in the launcher's error file, written by the first process of a node only), and lets a bug through with
its traceback."""
from __future__ import annotations

import errno
import io
import logging
import os
import signal
import string
import tempfile
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, Optional

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from experiments import interrupts, worker
from experiments.config import schema
from experiments.config.validate import compose_with_hydra
from experiments.errors import ExperimentError, TrainingDiverged, WriteFailed
from experiments.runs import CONFIG_FILE, start_run
from experiments.tracking import flatten
from experiments.train.launch import ERROR_FILE_ENV
from experiments.train.nodes import CONFIG_FILE_ENV

# Each example gets its own folder under the test's tmp_path (``fresh``).
PROPERTY = settings(max_examples=min(settings.default.max_examples, 40),
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
# Examples that load a config (the schema built and checked: a tenth of a second each): fewer of them.
LOADING = settings(PROPERTY, max_examples=min(settings.default.max_examples, 8))
RANKS = st.integers(0, 15)
MESSAGE = st.text(alphabet=string.ascii_letters + string.digits + " .,:'=/", min_size=1, max_size=40).filter(
    lambda text: text.strip() == text)


@pytest.fixture(scope="session")
def run_config(tmp_path_factory) -> dict:
    """The config.yaml a run's parent writes (the default experiment, composed once), as a container."""
    run_dir = tmp_path_factory.mktemp("composed")
    cfg, _ = compose_with_hydra([f"hydra.run.dir={run_dir}"])
    start_run(cfg, run_dir)
    return OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG_FILE))


@pytest.fixture(scope="session")
def loaded(run_config, tmp_path_factory) -> schema.ExperimentConfig:
    """That config as a worker loads it (once: the tests of what follows the load reuse it)."""
    run_dir = tmp_path_factory.mktemp("loaded")
    write_config(run_dir / CONFIG_FILE, run_config)
    return worker.load_run_config(run_dir)


def fresh(tmp_path: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=tmp_path))


def write_config(path: Path, container: dict, **trainer) -> Path:
    config = {**container, "trainer": {**container["trainer"], **trainer}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    return path


@contextmanager
def worker_process(rank: Optional[int] = 0, local_rank: Optional[int] = None, error_file: Optional[Path] = None,
                   config_file: Optional[str] = None) -> Iterator[SimpleNamespace]:
    """This process as one rank under the launcher: its environment, a fresh signal state (the handlers put back
    afterwards), ``logging.basicConfig`` recorded rather than applied, stderr captured."""
    seen = SimpleNamespace(logging=[], stop=interrupts.StopRequest(), stderr=io.StringIO(), calls=[])
    handlers = {signum: signal.getsignal(signum) for signum in interrupts.STOP_SIGNALS}

    def basic_config(**kwargs):
        seen.logging.append(kwargs)

    with pytest.MonkeyPatch.context() as mp:
        for name, value in (("RANK", rank), ("LOCAL_RANK", local_rank), (ERROR_FILE_ENV, error_file),
                            (CONFIG_FILE_ENV, config_file)):
            mp.setenv(name, "")
            if value is None:
                mp.delenv(name)
            else:
                mp.setenv(name, str(value))
        mp.setattr(logging, "basicConfig", basic_config)
        mp.setattr(interrupts, "_CURRENT", seen.stop)
        try:
            with redirect_stderr(seen.stderr):
                yield seen
        finally:
            for call in seen.logging:
                for handler in call.get("handlers", []):
                    handler.close()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)


def record_steps(mp: pytest.MonkeyPatch, seen: SimpleNamespace, failure: Optional[BaseException] = None,
                 loaded: Optional[schema.ExperimentConfig] = None) -> None:
    """The steps after loading the config, recorded (``failure``: what training raises); ``loaded``: the config
    the load returns, instead of reading the run dir's."""
    if loaded is not None:
        mp.setattr(worker, "load_run_config", lambda run_dir: loaded)

    def step(name):
        def call(*args):
            seen.calls.append((name, args))
            if name == "train" and failure is not None:
                raise failure
            return {}
        return call

    for name in ("process_state", "announce_rendezvous", "agree_on_config", "train"):
        mp.setattr(worker, name, step(name))


# ---- the config a worker reads -------------------------------------------------------------------------------------


@LOADING
@given(st.integers(0, 2 ** 31 - 1), st.floats(1e-8, 1.0), st.integers(0, 2 ** 31 - 1), st.floats(1e-8, 1.0),
       st.sampled_from(["unset", "empty", "node copy"]))
def test_a_worker_reads_the_run_dirs_config_unless_its_node_parent_names_another_file(tmp_path, run_config, seed, lr,
                                                                                    node_seed, node_lr, named):
    root = fresh(tmp_path)
    run_dir = root / "run"
    write_config(run_dir / CONFIG_FILE, run_config, seed=seed, lr=lr)
    node_copy = write_config(root / "node-local" / CONFIG_FILE, run_config, seed=node_seed, lr=node_lr)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CONFIG_FILE_ENV, {"unset": "", "empty": "", "node copy": str(node_copy)}[named])
        if named == "unset":
            mp.delenv(CONFIG_FILE_ENV)
        cfg = worker.load_run_config(run_dir)
    assert isinstance(cfg, schema.ExperimentConfig) and isinstance(cfg.trainer, schema.TrainerConfig)
    assert (cfg.trainer.seed, cfg.trainer.lr) == ((node_seed, node_lr) if named == "node copy" else (seed, lr))
    assert cfg.model.name == run_config["model"]["name"]


@LOADING
@given(st.data())
def test_a_saved_config_without_any_one_key_is_refused_never_filled_with_a_default(tmp_path, run_config, data):
    """The parent writes every key: one missing means the file was damaged since (cut short), and a worker that
    trained on the schema's default instead would run another experiment than the one recorded."""
    key = data.draw(st.sampled_from(list(flatten(run_config))))
    config = OmegaConf.create(run_config)
    *parents, leaf = key.split(".")
    section = OmegaConf.select(config, ".".join(parents)) if parents else config
    del section[leaf]
    run_dir = fresh(tmp_path)
    (run_dir / CONFIG_FILE).write_text(OmegaConf.to_yaml(config))
    with pytest.raises(ExperimentError) as caught:
        worker.load_run_config(run_dir)
    message = str(caught.value)
    assert message.startswith(f"cannot read {run_dir / CONFIG_FILE}: ") and "\n" not in message
    assert f"no {key}:" in message or any(f"no {other}:" in message for other in list(flatten(run_config))
                                           if other.startswith(f"{key}."))


# ---- what a failed start prints, and where -------------------------------------------------------------------------

NOT_A_MAPPING = st.one_of(
    st.lists(st.integers(), min_size=1).map(yaml.safe_dump),
    st.integers().map(yaml.safe_dump),
    st.sampled_from(["trainer: [1, 2", "{model: {name: x}", "a: b: c", "- [", "\t\ttrainer:\n  x"]),
)


@LOADING
@given(st.one_of(st.none(), NOT_A_MAPPING), RANKS)
def test_a_missing_or_damaged_config_stops_a_worker_with_one_line_naming_it_and_exit_2(tmp_path, content, rank):
    run_dir = fresh(tmp_path)
    if content is not None:
        (run_dir / CONFIG_FILE).write_text(content)
    with worker_process(rank=rank) as seen, pytest.MonkeyPatch.context() as mp:
        record_steps(mp, seen)
        assert worker.main([str(run_dir)]) == 2
    lines = seen.stderr.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read {run_dir / CONFIG_FILE}: "), lines
    assert ("the file is missing" in lines[0]) is (content is None)
    assert seen.calls == [], "a worker without its config joined the process group"


@LOADING
@given(st.data())
@example(data=None)
def test_a_config_cut_short_anywhere_stops_a_worker_with_one_line_never_a_traceback(tmp_path, run_config, data):
    text = OmegaConf.to_yaml(OmegaConf.create(run_config))
    cut = "trainer:\n  l" if data is None else text[:data.draw(st.integers(0, len(text) - 1))]
    run_dir = fresh(tmp_path)
    (run_dir / CONFIG_FILE).write_text(cut)
    with worker_process(rank=0) as seen, pytest.MonkeyPatch.context() as mp:
        record_steps(mp, seen)
        code = worker.main([str(run_dir)])
    lines = seen.stderr.getvalue().splitlines()
    assert code == 0 or (code == 2 and len(lines) == 1 and lines[0].startswith("error: ")), (code, lines)


@PROPERTY
@given(RANKS, st.one_of(st.none(), st.integers(0, 7)), MESSAGE)
def test_under_the_launcher_only_the_first_process_of_a_node_writes_the_error_and_none_prints_it(
        tmp_path, loaded, rank, local_rank, message):
    root = fresh(tmp_path)
    error_file = root / "error.txt"
    with worker_process(rank=rank, local_rank=local_rank, error_file=error_file) as seen, \
            pytest.MonkeyPatch.context() as mp:
        record_steps(mp, seen, failure=ExperimentError(message), loaded=loaded)
        assert worker.main([str(root)]) == 2
    assert seen.stderr.getvalue() == ""
    first_of_node = (local_rank if local_rank is not None else rank) == 0
    assert error_file.exists() is first_of_node
    if first_of_node:
        code, _, said = error_file.read_text().strip().partition(" ")  # as the launcher reads it
        assert (code, said) == ("2", message) and error_file.read_text().endswith("\n")


USER_ERRORS = st.one_of(
    MESSAGE.map(lambda m: (ExperimentError(m), 2, m)),
    MESSAGE.map(lambda m: (TrainingDiverged(m), 3, m)),
    st.tuples(MESSAGE, st.sampled_from([errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM])).map(
        lambda t: (OSError(t[1], os.strerror(t[1]), f"/data/{t[0]}"), 4, f"could not write /data/{t[0]}: "
                   f"{os.strerror(t[1])}")),
    MESSAGE.map(lambda m: (WriteFailed(f"/run/{m}", "disk full"), 4, f"could not write /run/{m}: disk full")),
    st.sampled_from(interrupts.STOP_SIGNALS).map(
        lambda s: (interrupts.Interrupted(s), 128 + s, f"interrupted by {interrupts.signal_name(s)}")),
    MESSAGE.map(lambda m: (RuntimeError(f"CUDA out of memory. {m}"), 2, f"out of memory (CUDA out of memory. {m})")),
    st.just((MemoryError(), 2, "out of memory (MemoryError)")),
)


@PROPERTY
@given(USER_ERRORS, st.booleans())
def test_every_user_error_stops_a_worker_with_its_own_exit_code_and_one_line(tmp_path, loaded, case, launched):
    """``launched``: under the launcher (the error goes to its file) or run by hand (to stderr)."""
    error, code, start = case
    root = fresh(tmp_path)
    with worker_process(rank=0, error_file=root / "error.txt" if launched else None) as seen, \
            pytest.MonkeyPatch.context() as mp:
        record_steps(mp, seen, failure=error, loaded=loaded)
        assert worker.main([str(root)]) == code
    said = (root / "error.txt").read_text() if launched else seen.stderr.getvalue()
    head = f"{code} " if launched else "error: "
    assert said.startswith(head + start) and said.endswith("\n") and said.count("\n") == 1, said
    assert [name for name, _ in seen.calls] == ["process_state", "announce_rendezvous", "agree_on_config", "train"]


@PROPERTY
@given(st.sampled_from([ValueError, KeyError, AssertionError, TypeError, AttributeError, ZeroDivisionError]),
       MESSAGE, RANKS)
def test_a_bug_goes_through_with_its_traceback_and_no_error_line_is_written(tmp_path, loaded, kind, message, rank):
    root = fresh(tmp_path)
    bug = kind(message)
    with worker_process(rank=rank, local_rank=0, error_file=root / "error.txt") as seen, \
            pytest.MonkeyPatch.context() as mp:
        record_steps(mp, seen, failure=bug, loaded=loaded)
        with pytest.raises(kind) as caught:
            worker.main([str(root)])
    assert caught.value is bug
    assert not (root / "error.txt").exists() and seen.stderr.getvalue() == ""


# ---- a run that starts ---------------------------------------------------------------------------------------------


def test_a_worker_installs_the_signal_handlers_then_loads_joins_agrees_and_trains_on_the_loaded_config(
        tmp_path, run_config):
    write_config(tmp_path / CONFIG_FILE, run_config, seed=1234)
    load = worker.load_run_config
    with worker_process(rank=0) as seen, pytest.MonkeyPatch.context() as mp:
        record_steps(mp, seen)

        def loading(run_dir):
            seen.calls.append(("load_run_config", (run_dir, signal.getsignal(signal.SIGTERM))))
            return load(run_dir)

        mp.setattr(worker, "load_run_config", loading)
        assert worker.main([str(tmp_path)]) == 0
    assert [name for name, _ in seen.calls] == ["load_run_config", "process_state", "announce_rendezvous",
                                                "agree_on_config", "train"]
    calls = dict(seen.calls)
    assert calls["load_run_config"] == (tmp_path, seen.stop._handle), "the handlers came after the config"
    (agreed,), (trained, run_dir) = calls["agree_on_config"], calls["train"]
    assert agreed is trained and trained.trainer.seed == 1234 and run_dir == tmp_path
    assert seen.stderr.getvalue() == ""


def test_without_arguments_a_worker_takes_the_run_dir_from_its_command_line(tmp_path, run_config):
    write_config(tmp_path / CONFIG_FILE, run_config)
    with worker_process(rank=0) as seen, pytest.MonkeyPatch.context() as mp:
        record_steps(mp, seen)
        mp.setattr("sys.argv", ["python -m experiments.worker", str(tmp_path)])
        assert worker.main() == 0
    assert dict(seen.calls)["train"][1] == tmp_path


@PROPERTY
@given(RANKS)
def test_rank_0_logs_info_to_the_console_and_run_log_other_ranks_only_warnings_to_the_console(tmp_path, loaded,
                                                                                               rank):
    root = fresh(tmp_path)
    with worker_process(rank=rank) as seen, pytest.MonkeyPatch.context() as mp:
        record_steps(mp, seen, loaded=loaded)
        assert worker.main([str(root)]) == 0
        (call,) = seen.logging
        assert call["level"] == (logging.INFO if rank == 0 else logging.WARNING)
        assert call["format"].startswith(f"[rank {rank}]")
        files = [h for h in call["handlers"] if isinstance(h, logging.FileHandler)]
        consoles = [h for h in call["handlers"] if type(h) is logging.StreamHandler]
        assert len(consoles) == 1
        assert [Path(h.baseFilename) for h in files] == ([root / "run.log"] if rank == 0 else [])
    assert (root / "run.log").exists() is (rank == 0)
