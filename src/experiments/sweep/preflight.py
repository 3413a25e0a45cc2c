"""Checks a multirun passes before Hydra writes anything (called by :func:`experiments.cli.main` for ``-m``).

* **The sweep folder.** Without ``hydra.launcher.resume=true``, a sweep into a ``hydra.sweep.dir`` that
  already holds an earlier sweep would write its jobs into the earlier jobs' folders: it is refused.
* **The search space** (``hparams_search=...`` or any sweeper but Hydra's basic one). A typo in a
  searched key, or a value the schema rejects, would fail every trial the sampler draws it for; each
  searched key is checked with the values a trial can get (every choice, both ends of an interval or
  range), and the plain overrides of the command are checked like a grid sweep's.

A refusal is an :class:`~experiments.errors.ExperimentError`: one line, exit code 2.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional

from omegaconf import DictConfig, OmegaConf

from experiments import locks, secrets
from experiments.config.validate import check_overrides, compose_full
from experiments.errors import ExperimentError
from experiments.sweep.records import SUMMARY_JSON, used_job_numbers
from experiments.sweep.search import check_search
from experiments.sweep.space import PARAMS, choice, parse, search_space


def check_sweep_or_exit(overrides: Optional[List[str]], multirun: bool) -> None:
    """CLI entry: for a multirun, run :func:`check_sweep`; a refusal prints ``error: ...`` and exits."""
    if overrides is None or not multirun:
        return
    try:
        check_sweep(overrides, lock=True)
    except ExperimentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def check_sweep(overrides: List[str], lock: bool = False) -> None:
    """Every check of this module, in the order a user would fix them: config, search space, folder (with
    ``lock``, the sweep folder is locked for this process first: :func:`lock_sweep_dir`)."""
    for override in overrides:  # Hydra's own settings too (a storage URL with a password, say)
        secrets.check_override(override)
    parsed = parse(overrides)
    plain = [o for o in parsed if not o.is_hydra_override()]
    fixed = [o.input_line for o in plain if not o.is_sweep_override()]
    for override in parsed:
        if override.is_hydra_override() and override.is_sweep_override():
            _refuse_hydra_sweep(override, fixed)
        elif override.key_or_group.startswith(PARAMS) and "." in override.key_or_group[len(PARAMS):]:
            _refuse_dotted_param(override, override.value(), fixed)

    cfg = compose_full([o.input_line for o in parsed if not o.is_sweep_override()])
    check_plugins(cfg)
    if choice(cfg, "hydra/sweeper") not in (None, "basic"):
        check_search_space(cfg, plain)
    if choice(cfg, "hydra/sweeper") == "optuna":
        check_search(cfg, [o.input_line for o in parsed if not o.is_hydra_override()])
    if lock:
        lock_sweep_dir(cfg)
    check_sweep_dir(cfg)


# -- the launcher and the sweeper ----------------------------------------------------------------------------
PLUGIN_GROUPS = {"hydra.launcher": "hydra/launcher", "hydra.sweeper": "hydra/sweeper"}


def check_plugins(composed: DictConfig) -> None:
    """The launcher and the sweeper the sweep names are plugins Hydra will load: Hydra takes a plugin only from
    the ``hydra_plugins`` namespace package (a launcher of one's own is a module there plus its YAML,
    docs/architecture.md) and stops with a traceback otherwise. Asked of Hydra's own plugin registry."""
    from hydra.core.plugins import Plugins

    for key, group in PLUGIN_GROUPS.items():
        target = OmegaConf.select(composed, f"{key}._target_", default=None)
        chosen = f"{group}={choice(composed, group)}"
        if not target:
            raise ExperimentError(f"{chosen}: its config names no {key}._target_ (the plugin class to run)")
        if not Plugins.is_in_toplevel_plugins_module(str(target)):
            raise ExperimentError(f"{chosen}: {key}._target_={target} is outside the hydra_plugins package, and "
                                  f"Hydra loads plugins only from there: put the module in a hydra_plugins/ folder "
                                  f"on the Python path (no __init__.py in it) and name it hydra_plugins.<module>.<class>")
        try:
            found = str(target) in Plugins.instance().class_name_to_class
        except Exception as exc:  # a plugin module that fails to import (Hydra imports every one)
            raise ExperimentError(f"{chosen}: the hydra_plugins modules could not all be imported "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
        if not found:
            raise ExperimentError(f"{chosen}: {key}._target_={target}: no such plugin class in the hydra_plugins "
                                  f"packages on the Python path (check the module and class names)")


# -- the search space --------------------------------------------------------------------------------
def _refuse_hydra_sweep(override, fixed: List[str]) -> None:
    """Hydra cannot sweep its own settings; ``hydra.sweeper.params.a.b=...`` is the usual way there."""
    key = override.key_or_group
    if key.startswith(PARAMS) and "." in key[len(PARAMS):]:
        _refuse_dotted_param(override, override.input_line.split("=", 1)[1], fixed)
    raise ExperimentError(f"'{override.input_line}' sweeps over a Hydra setting, which Hydra cannot do: give "
                          f"{key} one value (quote text that has commas: {key}='a,b')")


def _refuse_dotted_param(override, value: Any, fixed: List[str]) -> None:
    """``hydra.sweeper.params.trainer.lr=...`` is read by Hydra as nested keys, never as the search-space
    key ``trainer.lr``: check that key as searched, then say how to change the space instead."""
    key = override.key_or_group[len(PARAMS):]
    spec = f"{key}={value}"
    entry = parse([spec])[0]
    _check_entry(key, entry, f"{override.key_or_group} on the command line", fixed)
    raise ExperimentError(f"'{override.key_or_group}' cannot change the search space (Hydra reads the dots "
                          f"as nested keys): give '{spec}' as an override instead (it replaces that key's "
                          "range), or edit hydra.sweeper.params in conf/hparams_search/")


def check_search_space(composed: DictConfig, plain: list) -> None:
    """The plain overrides as one job, then one job per value a trial can draw for each searched key."""
    space, config_fixed = search_space(composed, plain)
    base = config_fixed + [o.input_line for o in plain if not o.is_sweep_override()]
    check_overrides(base)
    for key, (where, entry) in space.items():
        _check_entry(key, entry, where, base)


def _check_entry(key: str, entry, where: str, base: List[str]) -> None:
    """Validate a job for each value a trial can get for ``key``; the error names the key and the value."""
    for value in trial_values(key, entry, where):
        try:
            check_overrides([*base, f"{key}={value}"])
        except ExperimentError as exc:
            raise ExperimentError(f"searched value {key}={value} (from {where}): {exc}") from None


def trial_values(key: str, entry, where: str) -> List[Any]:
    """The values to check for a searched key, as the Optuna sweeper writes them into a trial's overrides:
    every choice, and both ends of an interval or a range."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep, Transformer

    value = entry.value()
    if not entry.is_sweep_override():
        return [entry.get_value_element_as_str()]
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        return list(entry.sweep_iterator(transformer=Transformer.encode))
    if isinstance(value, RangeSweep):
        values = list(entry.sweep_iterator())
        if not values:
            raise ExperimentError(f"search space {key}={_spec(entry)} (from {where}) is an empty range")
        return [values[0], values[-1]]
    if isinstance(value, IntervalSweep):
        if value.start > value.end or ("log" in value.tags and value.start <= 0):
            raise ExperimentError(f"search space {key}={_spec(entry)} (from {where}): an interval needs "
                                  "start <= end, and start > 0 on a log scale")
        return [value.start, value.end]
    raise ExperimentError(f"search space {key}={_spec(entry)} (from {where}) is not supported by the "
                          "sweeper: use choice(...), range(...) or interval(...)")


def _spec(entry) -> str:
    return entry.input_line.split("=", 1)[1] if "=" in entry.input_line else entry.input_line


# -- the sweep folder -------------------------------------------------------------------------------------
def _fixed_sweep_dir(composed: DictConfig) -> str:
    """``hydra.sweep.dir`` as given, or '' for the default (``multirun/<date>/<time>``, new every time)."""
    node = OmegaConf.select(composed, "hydra.sweep", default=None)
    raw = str(OmegaConf.to_container(node, resolve=False).get("dir", "")) if node is not None else ""
    return "" if "${" in raw else raw


def lock_sweep_dir(composed: DictConfig) -> None:
    """One sweep at a time in a given ``hydra.sweep.dir``: this process (the sweep's parent) holds its lock
    until it ends (``experiments.locks``); each job locks its own run dir (``callbacks``)."""
    raw = _fixed_sweep_dir(composed)
    if raw and (not Path(raw).exists() or Path(raw).is_dir()):
        locks.hold(Path(raw), "hydra.sweep.dir")


def check_sweep_dir(composed: DictConfig) -> None:
    """Refuse to start a sweep (without resume) in a folder that holds an earlier sweep's jobs or files."""
    node = OmegaConf.select(composed, "hydra.sweep", default=None)
    raw = str(OmegaConf.to_container(node, resolve=False).get("dir", "")) if node is not None else ""
    if not raw or "${" in raw:  # the default, multirun/<date>/<time>: a new folder every time
        return
    path = Path(raw)
    if path.exists() and not path.is_dir():
        raise ExperimentError(f"hydra.sweep.dir={raw} is a file: choose a folder for hydra.sweep.dir")
    found = earlier_sweep(path)
    if found is None or OmegaConf.select(composed, "hydra.launcher.resume", default=False):
        return
    if OmegaConf.select(composed, "hydra.launcher.resume", default=None) is None:
        hint = f"choose a new hydra.sweep.dir (hydra/launcher={choice(composed, 'hydra/launcher')} cannot resume)"
    else:
        hint = "add hydra.launcher.resume=true to continue it, or choose a new hydra.sweep.dir"
    raise ExperimentError(f"hydra.sweep.dir={raw} already holds a sweep ({found}); {hint}")


def earlier_sweep(path: Path) -> Optional[str]:
    """What of an earlier sweep ``path`` holds (``jobs 0-2``, ``multirun.yaml``), or None."""
    if not path.is_dir():
        return None
    numbers = sorted(used_job_numbers(path))
    if numbers:
        return f"job {numbers[0]}" if len(numbers) == 1 else f"jobs {_ranges(numbers)}"
    files = [n for n in ("multirun.yaml", SUMMARY_JSON, ".launcher") if (path / n).exists()]
    return ", ".join(files) or None


def _ranges(numbers: List[int]) -> str:
    """[0, 1, 2, 5] -> ``0-2, 5``."""
    spans: List[List[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)
