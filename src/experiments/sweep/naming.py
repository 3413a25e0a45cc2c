"""Names a sweep job carries into its trackers: the sweep id (W&B group), a run name from the
overrides, and tags from the chosen config-group options."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

from experiments.runs import run_name_from_overrides

if TYPE_CHECKING:  # annotations only
    from omegaconf import DictConfig

# Override prefixes that never describe the experiment itself.
# Config groups whose choice says nothing about the run (framework plumbing).
_PLUMBING_GROUPS = ("paths", "inference", "collator", "tokenizer", "task")


def sweep_id(sweep_dir: str, cwd: Optional[Path] = None) -> str:
    """A short, stable id for a sweep folder: ``multirun/2026-11-22/10-11-12-000001`` ->
    ``2026-11-22_10-11-12-000001``; a named folder ``multirun/lr-sweep`` -> ``lr-sweep``."""
    path = Path(sweep_dir)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to((cwd or Path.cwd()).resolve())
        except ValueError:
            path = Path(*path.parts[-2:])
    parts = [p for p in path.parts if p not in (".", "..")]
    if len(parts) > 1 and parts[0] == "multirun":
        parts = parts[1:]
    name = "_".join(parts[-3:]) or "sweep"
    return re.sub(r"[^\w.=+-]", "_", name)[:128]


def swept_keys(hydra_cfg: DictConfig) -> List[str]:
    """Keys the sweep varies: the sweeper's ``params`` (a search space, or a grid given in config) and
    the sweep overrides (``a=1,2``) of the command line, read from the sweep's ``multirun.yaml``."""
    from omegaconf import OmegaConf

    keys: List[str] = []
    params = OmegaConf.select(hydra_cfg, "sweeper.params", default=None)
    if params:
        keys += [str(k) for k in params]
    multirun_file = Path(str(hydra_cfg.sweep.dir)) / "multirun.yaml"
    if multirun_file.is_file():
        try:
            from hydra.core.override_parser.overrides_parser import OverridesParser

            task = OmegaConf.select(OmegaConf.load(multirun_file), "hydra.overrides.task", default=[]) or []
            parsed = OverridesParser.create().parse_overrides([str(o) for o in task])
            keys += [o.key_or_group for o in parsed if o.is_sweep_override() and not o.is_hydra_override()]
        except Exception:  # naming is cosmetic: never fail a job over it
            pass
    return list(dict.fromkeys(keys))


def choice_tags(choices: Dict[str, Optional[str]]) -> List[str]:
    """``group:option`` tags for the config-group options a job uses (model, dataset, trainer, ...)."""
    tags = []
    for group, option in sorted(choices.items()):
        if option is None or group.startswith("hydra") or group in _PLUMBING_GROUPS or group == "experiment_schema":
            continue
        tags.append(f"{group}:{option}"[:64])
    return tags


def apply_sweep_context(composed: DictConfig, hydra_cfg: DictConfig) -> None:
    """Inside a multirun job: group = sweep id, run name from the overrides, tags from the chosen
    group options. Values set explicitly in ``logger.*`` win. Mutates ``composed`` in place, before the
    config is written to the run dir, so multi-process workers and trackers see the same values."""
    logger = composed.logger
    if not logger.group:
        logger.group = sweep_id(str(hydra_cfg.sweep.dir))
    if not logger.job_type:
        logger.job_type = str(composed.mode)
    if not logger.run_name:
        overrides = [str(o) for o in hydra_cfg.overrides.task]
        swept = swept_keys(hydra_cfg)
        varied = [o for o in overrides if o.partition("=")[0].lstrip("+~") in swept]

        name = run_name_from_overrides(varied or overrides)
        if name:
            logger.run_name = name
    choices = {str(k): (None if v is None else str(v)) for k, v in dict(hydra_cfg.runtime.choices).items()}
    logger.tags = sorted(set(logger.tags) | set(choice_tags(choices)))
