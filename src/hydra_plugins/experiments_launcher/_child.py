"""One sweep job in its own process: ``python -m hydra_plugins.experiments_launcher._child JOB RESULT``.

JOB holds the parent's ``sys.path`` (pickle) followed by the Hydra context, the job's composed config,
the task function and Hydra's singletons (cloudpickle). The JobReturn goes to RESULT. Exit code 0
means a result was written (the job itself may still have failed)."""
from __future__ import annotations

import pickle
import sys


def _portable(ret):
    """The JobReturn, with its exception replaced by a plain one if it cannot be pickled."""
    import cloudpickle

    try:
        cloudpickle.dumps(ret)
        return ret
    except Exception:
        from experiments.sweep.records import error_line, outcome

        value = outcome(ret)
        ret.return_value = RuntimeError(error_line(value) if isinstance(value, BaseException) else repr(value))
        return ret


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job_file, result_file = argv
    with open(job_file, "rb") as handle:
        parent_path = pickle.load(handle)
        sys.path.extend(p for p in parent_path if p not in sys.path)
        import cloudpickle

        payload = cloudpickle.load(handle)
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals

    Singleton.set_state(payload["singletons"])
    setup_globals()
    ret = run_job(hydra_context=payload["hydra_context"], task_function=payload["task_function"],
                  config=payload["config"], job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    from experiments.sweep.records import outcome

    value = outcome(ret)
    from experiments.interrupts import Interrupted

    if isinstance(value, Interrupted):  # stopped by a signal (the sweep was interrupted): one line
        print(f"error: {value}", file=sys.stderr)
    elif isinstance(value, BaseException):  # the job's output file keeps the full traceback
        import traceback

        traceback.print_exception(type(value), value, value.__traceback__)
    import cloudpickle

    with open(result_file + ".tmp", "wb") as handle:
        cloudpickle.dump(_portable(ret), handle)
    import os

    os.replace(result_file + ".tmp", result_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
