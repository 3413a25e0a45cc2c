"""A sweep's search space as Hydra's sweepers read it: the overrides parsed, and the config's
``hydra.sweeper.params`` merged with the command line. The sweep preflight checks it; the search turns it
into Optuna distributions."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from experiments.errors import ExperimentError

PARAMS = "hydra.sweeper.params."


def parse(overrides: List[str]) -> list:
    """Hydra's parsed overrides; a line it cannot parse is one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise ExperimentError(f"cannot parse overrides: {str(exc).splitlines()[0]}") from None


def choice(composed: DictConfig, group: str) -> Optional[str]:
    """The option chosen for a config group (``hydra/sweeper``, ``hparams_search``), if any."""
    choices = OmegaConf.select(composed, "hydra.runtime.choices", default=None) or {}
    return choices.get(group)


def search_space(composed: DictConfig, plain: list) -> Tuple[Dict[str, Tuple[str, Any]], List[str]]:
    """({key: (where it is set, parsed override)}, fixed overrides from the config's params), merged as the
    Optuna sweeper merges them: a command-line sweep replaces a key's range, a plain value fixes the key."""
    node = OmegaConf.select(composed, "hydra.sweeper.params", default=None)
    params = OmegaConf.to_container(node, resolve=False) if node is not None else {}
    option = choice(composed, "hparams_search")
    where = f"hydra.sweeper.params of conf/hparams_search/{option}.yaml" if option else "hydra.sweeper.params"
    space: Dict[str, Tuple[str, Any]] = {}
    fixed: List[str] = []
    for key, value in (params or {}).items():
        try:
            entry = parse([f"{key}={value}"])[0]
        except ExperimentError as exc:
            raise ExperimentError(f"search space entry '{key}: {value}' in {where}: {exc}") from None
        if entry.is_sweep_override():
            space[entry.get_key_element()] = (where, entry)
        else:
            fixed.append(entry.input_line)
    for entry in plain:
        if entry.is_sweep_override():
            space[entry.get_key_element()] = ("the command line", entry)
        else:
            space.pop(entry.get_key_element(), None)
    return space, fixed
