"""Fault injection around the CLI: ``python inject.py <run.py overrides…>`` with the plan in the environment.

Every *event* of the run is counted: a file opened for writing, ``os.replace`` / ``os.rename``, ``torch.save``,
a safetensors save, ``shutil.rmtree`` (all only for paths under ``INJECT_ROOT``), and a call of one of the
``POINTS`` below (start-up, a train step, an evaluation, a checkpoint, the run record, the sweep summary).
``INJECT_LOG`` (if set) gets one JSON line per event: ``{"n", "op", "path"}``. At event number ``INJECT_AT``
(1-based; among the events whose op or path contains ``INJECT_MATCH``) the ``INJECT_ACTION`` happens:

- ``enospc`` / ``eacces`` / ``erofs``: that write fails as the kernel would make it fail (a half-written file
  for ``torch.save``, which then raises torch's own RuntimeError, as on a full disk);
- ``kill``: SIGKILL, after leaving a half-written file where the event writes one (a killed writer).
"""
import builtins
import errno
import io
import json
import os
import shutil
import signal
import sys
import time

ACTION = os.environ.get("INJECT_ACTION", "count")
AT = int(os.environ.get("INJECT_AT", "0"))
MATCH = os.environ.get("INJECT_MATCH", "")
ROOT = os.path.realpath(os.environ.get("INJECT_ROOT", os.getcwd()))
LOG = os.environ.get("INJECT_LOG")
ERRNO = {"enospc": errno.ENOSPC, "eacces": errno.EACCES, "erofs": errno.EROFS}
# Points of a run's life: (module, attribute path), counted when called.
POINTS = [("experiments.cli", "run_job"), ("experiments.train.loop", "Recipe.train_step"),
          ("experiments.train.loop", "evaluate"), ("experiments.train.checkpoints", "save"),
          ("experiments.record", "write_record"), ("experiments.sweep.summary", "write_summary")]

_count = 0
_real = {"open": builtins.open, "replace": os.replace, "rename": os.rename, "rmtree": shutil.rmtree}


def _mine(path) -> bool:
    try:
        return os.path.realpath(os.fspath(path)).startswith(ROOT + os.sep)
    except TypeError:
        return False  # a file descriptor or a buffer


def _event(op: str, path="", partial=None) -> None:
    """Count an event; at the chosen one, fail it or kill the process."""
    global _count
    where = os.path.relpath(os.path.realpath(os.fspath(path)), ROOT) if path else ""
    if MATCH and MATCH not in op and MATCH not in "/" + where:
        return
    _count += 1
    if LOG:
        with _real["open"](LOG, "a") as handle:
            handle.write(json.dumps({"n": _count, "op": op, "path": str(path)}) + "\n")
    if _count != AT or ACTION == "count":
        return
    if partial is not None:
        partial()
    if ACTION == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    code = ERRNO[ACTION]
    if op == "torch.save":  # what torch raises on a full disk (its C++ writer, not an OSError)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    raise OSError(code, os.strerror(code), os.fspath(path))


def _half(path, keep: bool = False):
    def write():
        if not keep:
            with _real["open"](path, "wb") as handle:
                handle.write(b"\x80\x02half")
    return write


def _open(file, mode="r", *args, **kwargs):
    if isinstance(mode, str) and any(c in mode for c in "wax+") and _mine(file):
        _event(f"open-{mode.replace('b', '').replace('t', '')}", file, _half(file, keep="a" in mode or "+" in mode))
    return _real["open"](file, mode, *args, **kwargs)


def _replace(src, dst, *args, **kwargs):
    if _mine(dst):
        _event("replace", dst)
    return _real["replace"](src, dst, *args, **kwargs)


def _rename(src, dst, *args, **kwargs):
    if _mine(dst):
        _event("rename", dst)
    return _real["rename"](src, dst, *args, **kwargs)


def _rmtree(path, *args, **kwargs):
    if _mine(path):
        _event("rmtree", path)
    return _real["rmtree"](path, *args, **kwargs)


def _patch_savers() -> None:
    import safetensors.torch
    import torch

    real_torch_save, real_safe_save = torch.save, safetensors.torch.save_file

    def torch_save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and _mine(f):
            _event("torch.save", f, _half(f))
        return real_torch_save(obj, f, *args, **kwargs)

    def safe_save(tensors, filename, *args, **kwargs):
        if _mine(filename):
            _event("safetensors.save", filename, _half(filename))
        return real_safe_save(tensors, filename, *args, **kwargs)

    torch.save, safetensors.torch.save_file = torch_save, safe_save


def _counted(name: str, func):
    def wrapper(*args, **kwargs):
        _event(f"call:{name}")
        return func(*args, **kwargs)
    return wrapper


def _patch_points() -> None:
    import importlib

    for module_name, attr in POINTS:
        owner = importlib.import_module(module_name)
        *parents, name = attr.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, name)
        wrapped = _counted(attr, original)
        setattr(owner, name, wrapped)
        if not parents:  # a function other modules imported by name (at their top) is counted there too
            for module in list(sys.modules.values()):
                if getattr(module, "__name__", "").startswith("experiments") and vars(module).get(name) is original:
                    setattr(module, name, wrapped)


def _run_case(case: dict) -> None:
    """In a forked child: one run of the CLI under this case's plan; never returns."""
    global ACTION, AT, MATCH, ROOT, LOG, _count
    plan = case.get("env", {})
    ACTION, AT, MATCH = plan.get("INJECT_ACTION", "count"), int(plan.get("INJECT_AT", 0)), plan.get("INJECT_MATCH", "")
    ROOT, LOG, _count = os.path.realpath(plan.get("INJECT_ROOT", case["cwd"])), plan.get("INJECT_LOG"), 0
    if plan.get("INJECT_OPEN") == "real":  # a launcher that pickles the job needs the real open
        builtins.open = io.open = _real["open"]
    os.chdir(case["cwd"])
    for fd, name in ((1, "stdout"), (2, "stderr")):
        target = os.open(os.path.join(case["out"], name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
    sys.argv = ["run.py", *case["argv"]]
    code = 0
    try:
        from experiments.cli import main

        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    import atexit

    atexit._run_exitfuncs()  # a sweep finishes its summary at exit
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def batch(plan_file: str, results_file: str) -> None:
    """Many runs for the price of one start-up: import everything once, then fork one child per case
    (``{"argv", "cwd", "out", "env"}``, and ``"keep"``: where to copy its ``"run_dir"`` afterwards); writes each
    case's exit status (negative: killed by that signal) and wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import importlib

    for name in ("datasets", "evaluate", "sklearn.metrics", "matplotlib.pyplot", "transformers",
                 "transformers.models.bert.modeling_bert", "accelerate", "experiments.cli", "experiments.tracking",
                 "experiments.train.common", "experiments.tasks.registry", "experiments.data.prepare",
                 "experiments.rundir", "experiments.sweep.summary", "experiments.report.html"):
        importlib.import_module(name)

    results = []
    for case in json.load(_real["open"](plan_file)):
        os.makedirs(case["out"], exist_ok=True)
        tic = time.time()
        pid = os.fork()
        if pid == 0:
            _run_case(case)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if case.get("keep") and os.path.isdir(case["run_dir"]):  # the run dir as the fault left it
            shutil.copytree(case["run_dir"], case["keep"], symlinks=True)
        results.append({"rc": code, "wall_s": round(time.time() - tic, 2)})
    with _real["open"](results_file, "w") as handle:
        json.dump(results, handle)


builtins.open = io.open = _open
os.replace, os.rename, shutil.rmtree = _replace, _rename, _rmtree
_patch_savers()
_patch_points()
if sys.argv[1:2] == ["--batch"]:
    batch(sys.argv[2], sys.argv[3])
else:
    sys.argv = ["run.py", *sys.argv[1:]]
    from experiments.cli import main  # noqa: E402

    main()
