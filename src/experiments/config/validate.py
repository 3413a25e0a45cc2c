"""Compose-and-check before anything is written: turns Hydra/OmegaConf failures into one-line errors."""
from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any, Iterable, List, Optional

from omegaconf import DictConfig, OmegaConf, open_dict

from experiments import secrets
from experiments.config import schema
from experiments.errors import ExperimentError


def to_typed(composed: DictConfig) -> schema.ExperimentConfig:
    """Instantiate the schema dataclasses (runs every ``__post_init__`` check), after refusing keys the
    schema does not know (``+trainer.typo=1`` is added past Hydra's struct check) and secrets."""
    check_known_keys(composed)
    check_no_secrets(composed)
    try:
        return OmegaConf.to_object(composed)
    except schema.ConfigValueError as exc:
        raise ExperimentError(f"invalid config: {exc}") from None
    except Exception as exc:  # OmegaConf validation / interpolation errors
        raise ExperimentError(describe(exc)) from None


def _unknown_keys(node: Any, cls: type, prefix: str = "") -> Iterable[tuple]:
    """(dotted key, allowed names) for keys of ``node`` that the dataclass ``cls`` has no field for."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in node.items():
        if key not in names:
            yield f"{prefix}{key}", names
        elif dataclasses.is_dataclass(hints.get(key)) and isinstance(value, dict):
            yield from _unknown_keys(value, hints[key], f"{prefix}{key}.")


def check_known_keys(composed: DictConfig) -> None:
    container = OmegaConf.to_container(composed, resolve=False)
    container.pop("hydra", None)
    for key, allowed in _unknown_keys(container, schema.ExperimentConfig):
        parent = key.rsplit(".", 1)[0] if "." in key else "config"
        raise ExperimentError(f"unknown config key '{key}' (allowed keys in '{parent}': {', '.join(allowed)})")


def check_no_secrets(composed: DictConfig) -> None:
    """A secret in any config value or under a secret-named key stops the run before anything is written."""
    try:
        container = OmegaConf.to_container(composed, resolve=True)
    except Exception:  # interpolation errors are reported by to_typed with their key
        return
    container.pop("hydra", None)
    for key in secrets.find(container):
        raise secrets.refusal(key)


def _schema_fields(dotted: str) -> Optional[List[str]]:
    """Field names of the schema node at ``dotted`` (e.g. 'trainer' -> TrainerConfig's fields)."""
    node: Any = schema.ExperimentConfig
    for part in [p for p in dotted.split(".") if p]:
        fields = {f.name: f for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else {}
        if part not in fields:
            return None
        default = fields[part].default_factory() if fields[part].default_factory is not dataclasses.MISSING else None
        node = type(default) if dataclasses.is_dataclass(default) else None
    return [f.name for f in dataclasses.fields(node)] if node is not None and dataclasses.is_dataclass(node) else None


def describe(exc: BaseException) -> str:
    """One line saying what is wrong with the config and what is allowed."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, ValidationError

    cause = exc
    while cause.__cause__ is not None and not isinstance(cause, (MissingConfigException,)):
        cause = cause.__cause__
    text = str(cause).strip()
    if isinstance(cause, MissingConfigException) or "Could not find '" in text:
        group = None
        match = re.search(r"Could not find '([^']+)/([^']+)'", text)
        if match:
            group, option = match.group(1), match.group(2)
            options = getattr(cause, "options", None) or available_options(group)
            return f"unknown {group} option '{option}' (choose from: {', '.join(options)})"
        match = re.search(r"Could not load '([^']+)/([^']+)'", text)
        if match:
            group, option = match.group(1), match.group(2)
            return f"unknown {group} option '{option}' (choose from: {', '.join(available_options(group))})"
        return text.splitlines()[0]
    full_key = getattr(cause, "full_key", None)
    overridden = re.search(r"Could not override '([^']+)'", str(exc))
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) or "not in struct" in text:
        key = (overridden.group(1) if overridden else None) or full_key or _first_quoted(text)
        parent = key.rsplit(".", 1)[0] if key and "." in key else ""
        allowed = _schema_fields(parent)
        hint = f" (allowed keys in '{parent or 'config'}': {', '.join(allowed)})" if allowed else ""
        if allowed is None and _is_mapping_field(parent):
            hint = f" (a new key in the mapping '{parent}' takes a leading '+': +{key}=...)"
        return f"unknown config key '{key}'{hint}"
    if isinstance(cause, MissingMandatoryValue):
        return f"missing value for '{full_key}' (set it on the command line: {full_key}=...)"
    if isinstance(cause, ValidationError):
        first = text.splitlines()[0]
        return f"invalid value for '{full_key}': {first}" if full_key else first
    match = re.search(r"Could not override '([^']+)'", text)
    if match:
        return f"could not override '{match.group(1)}': " + " ".join(text.splitlines()[1:2]).strip()
    first = text.splitlines()[0] if text else type(cause).__name__
    return f"invalid value for '{full_key}': {first}" if full_key else first  # e.g. an interpolation that fails


def _is_mapping_field(dotted: str) -> bool:
    """Is ``dotted`` a free-form mapping of the schema (``dataset.read_options``, ``task.options``)?"""
    if "." not in dotted:
        return False
    parent, name = dotted.rsplit(".", 1)
    node: Any = schema.ExperimentConfig
    for part in [p for p in parent.split(".") if p]:
        node = typing.get_type_hints(node).get(part) if dataclasses.is_dataclass(node) else None
    hint = typing.get_type_hints(node).get(name) if dataclasses.is_dataclass(node) else None
    return typing.get_origin(hint) is dict or "Dict[" in str(hint)  # Optional[Dict[...]] too


def _first_quoted(text: str) -> Optional[str]:
    match = re.search(r"'([^']+)'", text)
    return match.group(1) if match else None


def available_options(group: str) -> List[str]:
    conf = conf_dir() / group
    return sorted(p.stem for p in conf.glob("*.yaml")) if conf.is_dir() else []


def conf_dir() -> Path:
    """The ``conf/`` folder: $EXPERIMENTS_CONF, else the one beside ``src/`` in this checkout."""
    import os

    env = os.environ.get("EXPERIMENTS_CONF")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[3] / "conf"


def compose(overrides: Iterable[str], output_dir: str = "<preflight>") -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` outside of a Hydra run (no run dir is made)."""
    cfg = compose_full(overrides, with_hydra=False)
    _set_output_dir(cfg, output_dir)
    return cfg


def _set_output_dir(composed: DictConfig, output_dir: str) -> None:
    """``paths.output_dir`` is ``${hydra:runtime.output_dir}``, which resolves only inside a Hydra run."""
    OmegaConf.set_struct(composed, False)
    composed.paths.output_dir = output_dir
    OmegaConf.set_struct(composed, True)


def compose_full(overrides: Iterable[str], with_hydra: bool = True) -> DictConfig:
    """The config (with its ``hydra`` node: run/sweep dir, sweeper, launcher), composed without running;
    a composition error is one line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    schema.register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=with_hydra)
    except ExperimentError:
        raise
    except Exception as exc:
        raise ExperimentError(describe(exc)) from None
    finally:
        GlobalHydra.instance().clear()


def compose_with_hydra(overrides: Iterable[str]):
    """(config, hydra config) of a single run, as Hydra would compose it, without making a run dir."""
    cfg = compose_full(overrides)
    hydra_cfg = cfg.hydra
    with open_dict(cfg):
        del cfg["hydra"]
    _set_output_dir(cfg, str(hydra_cfg.run.dir))
    return cfg, hydra_cfg


def check_overrides(overrides: List[str]) -> None:
    """Compose and validate every job the overrides describe; raise ExperimentError on the first bad one."""
    for override in overrides:
        secrets.check_override(override)
    jobs = expand_sweep(overrides)
    for job in jobs:
        to_typed(compose(job))


def expand_sweep(overrides: List[str]) -> List[List[str]]:
    """The jobs of a grid sweep (``a=1,2 b=x,y`` -> 4 override lists), as Hydra's basic sweeper builds
    them (its cartesian product, through the public override parser); a plain run is one job."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise ExperimentError(f"cannot parse overrides: {str(exc).splitlines()[0]}") from None
    choices = []
    for override in (o for o in parsed if not o.is_hydra_override()):
        if not override.is_sweep_override():
            choices.append([override.input_line])
            continue
        try:
            values = list(override.sweep_string_iterator())
        except Exception:  # interval() and friends: only a search sweeper can sample them
            raise ExperimentError(f"{override.input_line}: a grid sweep takes lists and ranges; to search an "
                                  f"interval add hparams_search=optuna") from None
        choices.append([f"{override.get_key_element()}={value}" for value in values])
    return [list(job) for job in itertools.product(*choices)]
