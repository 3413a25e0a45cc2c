"""One sweep job in its own process: ``python -m hydra_plugins.experiments_launcher._child JOB RESULT [NODE]``.

JOB holds the parent's ``sys.path`` (pickle) followed by the Hydra context, the job's composed config,
the task function and Hydra's singletons (cloudpickle). The JobReturn goes to RESULT. Exit code 0
means a result was written (the job itself may still have failed).

NODE (a JSON object of dotted keys, e.g. ``{"trainer.machine_rank": 1, ...}``) is this machine's share of a
job that runs on several: merged into the job's config, not its overrides, so its name and record stay
the job's. A node of rank > 0 writes nothing into the run dir and no record (node 0 does)."""
from __future__ import annotations

import pickle
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    from omegaconf import DictConfig


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


def _on_node(config: DictConfig, settings) -> None:
    """Merge this node's settings into the job's config; rank > 0 also gets ``rundir.node_settings``."""
    import os
    from pathlib import Path

    from omegaconf import OmegaConf, open_dict

    from experiments.callbacks import NODE_RANK_ENV
    from experiments.rundir import node_settings

    rank = int(settings.get("trainer.machine_rank", 0))
    with open_dict(config):
        for key, value in settings.items():
            OmegaConf.update(config, key, value, merge=False)
        if rank:
            run_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
            for key, value in node_settings(run_dir, rank).items():
                OmegaConf.update(config, key, value, merge=False)
    os.environ[NODE_RANK_ENV] = str(rank)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job_file, result_file, *node = argv
    with open(job_file, "rb") as handle:
        parent_path = pickle.load(handle)
        sys.path.extend(p for p in parent_path if p not in sys.path)
        import cloudpickle

        payload = cloudpickle.load(handle)
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals

    Singleton.set_state(payload["singletons"])
    setup_globals()
    if node:
        import json

        _on_node(payload["config"], json.loads(node[0]))
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
