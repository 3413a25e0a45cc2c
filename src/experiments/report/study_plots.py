"""Optuna's own plots of a search's study for ``report.html``: optimisation history, parameter importances,
parallel coordinates, and the Pareto front of a multi-objective study (``optuna.visualization.matplotlib``).

The study is found through ``<sweep dir>/optuna_study.json`` (``study_name``, ``storage``: a journal file
relative to the sweep dir, or an RDB URL; ``objectives``). Nothing here ever fails the report: a study that
cannot be loaded, or a plot that cannot be drawn (fewer than two complete trials, a space with one value,
Optuna not installed), is left out with a one-line note."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from experiments.sweep.records import error_line
from experiments.sweep.search import STUDY_FILE

MIN_COMPLETE_TRIALS = 2


def read_study_info(sweep_dir: Path) -> Optional[Dict[str, Any]]:
    """``optuna_study.json`` of a sweep as a dict, or None when the sweep has none (or it is unreadable)."""
    try:
        info = json.loads((Path(sweep_dir) / STUDY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def storage_for(storage: str, sweep_dir: Path) -> Tuple[Any, Optional[str]]:
    """(what ``optuna.load_study`` takes as storage, or None; why not). A journal file is relative to the
    sweep dir; a SQLite file that is not there is not created by looking at it."""
    import optuna

    if "://" not in storage:
        path = Path(sweep_dir) / storage
        if not path.is_file():
            return None, f"the study's journal {path} is missing"
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path))), None
    if storage.startswith("sqlite:///"):
        database = Path(storage[len("sqlite:///"):])
        if not database.is_absolute() and not database.is_file() and (Path(sweep_dir) / database).is_file():
            database = Path(sweep_dir) / database  # relative to the sweep dir rather than the current one
        if not database.is_file():
            return None, f"the study's database {database} is missing"
        return f"sqlite:///{database}", None
    return storage, None


def load_study(sweep_dir: Path, info: Optional[Dict[str, Any]]) -> Tuple[Any, Optional[str]]:
    """(the Optuna study ``info`` (:func:`read_study_info`) describes, or None; a note saying why not). No
    ``optuna_study.json``: (None, None)."""
    if info is None:
        return None, None
    try:
        import optuna
    except ImportError:
        return None, "Optuna is not installed (the [sweep] extra): the study's plots are left out."
    try:
        storage, why = storage_for(str(info["storage"]), sweep_dir)
        if storage is None:
            return None, f"Optuna study not loaded: {why}."
        return optuna.load_study(study_name=str(info["study_name"]), storage=storage), None
    except Exception as exc:  # noqa: BLE001 - a broken study must not break the report
        return None, f"Optuna study not loaded: {error_line(exc)}."


def objective_names(study, info: Optional[Dict[str, Any]]) -> List[str]:
    """The objectives' names: from ``optuna_study.json``, else the study's metric names, else Optuna's."""
    names = list((info or {}).get("objectives") or study.metric_names or [])
    if len(names) != len(study.directions):
        names = ["Objective Value"] if len(study.directions) == 1 else \
            [f"Objective {i}" for i in range(len(study.directions))]
    return [str(n) for n in names]


def plot_makers(study, names: List[str]) -> List[Tuple[str, Callable[[], Any]]]:
    """(title, function drawing it) for each of Optuna's plots that suits the study."""
    from optuna.visualization import matplotlib as vis

    multi = len(study.directions) > 1
    first = (lambda trial: trial.values[0]) if multi else None  # multi-objective: the first objective
    makers = [
        (f"optimization history ({names[0]})",
         lambda: vis.plot_optimization_history(study, target=first, target_name=names[0])),
        ("parameter importances", lambda: vis.plot_param_importances(study)),
        (f"parallel coordinates ({names[0]})",
         lambda: vis.plot_parallel_coordinate(study, target=first, target_name=names[0])),
    ]
    if multi:
        makers.append(("Pareto front (Optuna)", lambda: vis.plot_pareto_front(study, target_names=names)))
    return makers


def _figure_of(drawn) -> Any:
    """The matplotlib figure of what an Optuna plot function returned (Axes, an array of Axes, a Figure)."""
    if hasattr(drawn, "flat"):
        drawn = drawn.flat[0]
    return getattr(drawn, "figure", drawn)


def study_figures(sweep_dir: Path, to_image: Callable[[Any], str]) -> Tuple[List[Tuple[str, str]], List[str]]:
    """([(title, image)], [notes]) of the sweep's study, each figure turned into an image by ``to_image``
    (which closes it); both lists empty when the sweep has no study."""
    info = read_study_info(sweep_dir)
    study, note = load_study(sweep_dir, info)
    if study is None:
        return [], [note] if note else []
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_COMPLETE_TRIALS:
        return [], [f"Optuna's plots need at least {MIN_COMPLETE_TRIALS} complete trials; "
                    f"the study has {len(complete)}."]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, notes = [], []
    for title, draw in plot_makers(study, objective_names(study, info)):
        before = set(plt.get_fignums())
        with matplotlib.rc_context(), warnings.catch_warnings():  # Optuna sets its own style sheet
            warnings.simplefilter("ignore")
            try:
                images.append((title, to_image(_figure_of(draw()))))
            except Exception as exc:  # noqa: BLE001 - one plot that cannot be drawn is a note, not a failure
                for number in set(plt.get_fignums()) - before:
                    plt.close(number)
                notes.append(f"{title}: not drawn ({error_line(exc)}).")
    return images, notes
