"""Trackers (W&B, TensorBoard, CSV) as Accelerate tracker objects, shared by both training backends."""
from __future__ import annotations

import logging
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from experiments.config.schema import LoggerConfig
from experiments.errors import ExperimentError
from experiments.files import atomic_write
from experiments.secrets import scrub  # noqa: F401  (re-exported: trackers get scrubbed configs)

log = logging.getLogger(__name__)


def flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return out


def wandb_mode(configured: str) -> str:
    """auto: online when an API key is configured (env or ~/.netrc), else offline."""
    if configured != "auto":
        return configured
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "online" if netrc.is_file() and "api.wandb.ai" in netrc.read_text() else "offline"
    except OSError:
        return "offline"


WANDB_DEFAULT_URL = "https://api.wandb.ai"
WANDB_PROBE_TIMEOUT_S = 3.0
_KEY_SHAPE = ("a W&B API key is 40 or more letters, digits or underscores (on-prem: '<prefix>-' before them); "
              "copy yours from https://wandb.ai/authorize")
_OFFLINE_HINT = "or use logger.wandb_mode=offline and upload later with `wandb sync <run dir>/wandb/offline-run-*`"


def check_wandb(logger_cfg: LoggerConfig) -> Optional[str]:
    """The W&B mode this run will really use, decided before any training step (None: W&B is not a tracker).

    Why: ``wandb.init`` with a malformed key, or with no reachable server, fails only after ~90 s and with a
    traceback. Here a bad key or (for an explicit ``online``) an unreachable server stops the run with one line;
    ``auto`` falls back to offline with one warning and records that in ``WANDB_MODE``, so later calls (and
    worker processes started after this one) agree without probing again. The key itself is never printed.
    """
    if "wandb" not in logger_cfg.trackers:
        return None
    mode = wandb_mode(logger_cfg.wandb_mode)
    if mode != "online":
        return mode
    asked = ("logger.wandb_mode=online" if logger_cfg.wandb_mode == "online"
             else "WANDB_MODE=online" if os.environ.get("WANDB_MODE") == "online" else None)
    url = os.environ.get("WANDB_BASE_URL") or WANDB_DEFAULT_URL
    _check_api_key(url)
    problem = _server_problem(url)
    if problem is None:
        return "online"
    if asked:
        raise ExperimentError(f"{asked} but the W&B server cannot be reached: {problem}; "
                              f"check the network or WANDB_BASE_URL, {_OFFLINE_HINT}")
    log.warning("W&B server unreachable (%s): logging OFFLINE into <run dir>/wandb/ instead; upload later with "
                "`wandb sync <run dir>/wandb/offline-run-*`", problem)
    os.environ["WANDB_MODE"] = "offline"
    return "offline"


def _api_key(url: str) -> Tuple[Optional[str], str]:
    """(key, where it came from): ``WANDB_API_KEY``, else the netrc entry for the server's host."""
    import netrc

    if os.environ.get("WANDB_API_KEY"):  # empty counts as unset, as for wandb itself
        return os.environ["WANDB_API_KEY"].strip(), "WANDB_API_KEY"
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    host = urlsplit(url).hostname or ""
    try:
        entry = netrc.netrc(str(path)).authenticators(host) if path.is_file() else None
    except netrc.NetrcParseError as exc:  # its message may quote a token (a password): only the line is named
        raise ExperimentError(f"{path} line {exc.lineno} cannot be parsed while looking for the W&B API key: "
                              f"fix it or run `wandb login --relogin`") from None
    except OSError as exc:
        raise ExperimentError(f"{path} cannot be read while looking for the W&B API key ({exc.strerror}): "
                              f"fix its permissions or set WANDB_API_KEY") from None
    return (entry[2], f"{path} (machine {host})") if entry else (None, "")


def _check_api_key(url: str) -> None:
    """A key in the shape W&B accepts (wandb's own format check), without ever echoing the key."""
    key, where = _api_key(url)
    if key is None:
        if os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
            return  # identity-token auth: wandb checks it itself
        raise ExperimentError(f"W&B is to log online but no W&B API key for {urlsplit(url).hostname} is configured: "
                              f"set WANDB_API_KEY or run `wandb login`, {_OFFLINE_HINT}")
    try:
        from wandb.sdk.lib.wbauth import check_api_key
    except ImportError:  # an older wandb: the same rule, by hand
        check_api_key = _check_key_shape
    problem = check_api_key(key)
    if problem:
        name = "WANDB_API_KEY" if where == "WANDB_API_KEY" else f"the W&B API key in {where}"
        raise ExperimentError(f"{name} is not a valid W&B API key ({problem.rstrip('.')}): {_KEY_SHAPE}; "
                              f"unset it for an offline run")


def _check_key_shape(key: str) -> Optional[str]:
    secret = key.split("-", 1)[-1]
    if not re.fullmatch(r"[\w-]+", secret or "-"):
        return "API key may only contain the letters A-Z, digits and underscores."
    return None if len(secret) >= 40 else f"API key must have 40+ characters, has {len(secret)}."


def _server_problem(url: str, timeout: float = WANDB_PROBE_TIMEOUT_S) -> Optional[str]:
    """None when a TCP connection to the W&B server (or the HTTPS proxy in front of it) opens in ``timeout``."""
    from urllib.request import getproxies, proxy_bypass

    parts = urlsplit(url)
    if not parts.hostname:
        raise ExperimentError(f"WANDB_BASE_URL={url!r} is not a URL (expected e.g. {WANDB_DEFAULT_URL})")
    server = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    host, port, via = server[0], server[1], ""
    proxy = getproxies().get(parts.scheme or "https")
    if proxy and not proxy_bypass(parts.hostname):
        target = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = target.hostname or host, target.port or 80
        via = f" via proxy {host}:{port}"
    problem = _tcp_connect(host, port, timeout)
    return None if problem is None else f"{server[0]}:{server[1]}{via}: {problem}"


def _tcp_connect(host: str, port: int, timeout: float) -> Optional[str]:
    """A bounded connect (name lookup included, which ignores socket timeouts): None, or why it failed."""
    outcome: List[Optional[str]] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc.strerror or str(exc) or type(exc).__name__)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def build_trackers(logger_cfg: LoggerConfig, run_dir: Path, run_name: str, tags: List[str],
                   resume_step: Optional[int] = None) -> list:
    """Tracker objects for ``Accelerator(log_with=…)`` (or direct use by the HF Trainer backend).

    ``resume_step``: the run continues from that step's checkpoint. What the trackers logged after it (the
    killed attempt's last steps, which the resumed run logs again) is dropped, so no row appears twice:
    metrics.csv is cut back, TensorBoard purges the later events, W&B continues the same run id.
    """
    from experiments.csv_tracker import (  # accelerate: imported when a run starts
        CSV_LOG,
        CSVTracker,
        trim_csv_log,
    )

    trackers = []
    for name in logger_cfg.trackers:
        if name == "csv":
            if resume_step is not None:
                trim_csv_log(run_dir / CSV_LOG, resume_step)
            trackers.append(CSVTracker(run_name, str(run_dir)))
        elif name == "tensorboard":
            from accelerate.tracking import TensorBoardTracker

            purge = {} if resume_step is None else {"purge_step": resume_step + 1}
            trackers.append(TensorBoardTracker(run_name, str(run_dir / "tensorboard"), **purge))
        elif name == "wandb":
            from accelerate.tracking import WandBTracker

            mode = check_wandb(logger_cfg)  # a no-op re-check when train start-up already called it
            (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
            init = dict(name=run_name, dir=str(run_dir), mode=mode, group=logger_cfg.group, job_type=logger_cfg.job_type,
                        tags=sorted(set(logger_cfg.tags) | set(tags)) or None, entity=logger_cfg.entity, reinit="finish_previous",
                        id=wandb_run_id(run_dir), resume="allow")
            trackers.append(WandBTracker(logger_cfg.project, **{k: v for k, v in init.items() if v is not None}))
    return trackers


WANDB_ID_FILE = "wandb_run_id"


def wandb_run_id(run_dir: Path) -> str:
    """The run's W&B id, kept in the run dir so a resumed run continues the same W&B run."""
    path = Path(run_dir) / "wandb" / WANDB_ID_FILE
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    from wandb.sdk.lib.runid import generate_id

    run_id = generate_id()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, run_id + "\n")
    return run_id


def _start_error(name: str, exc: Exception) -> Exception:
    """W&B failures the pre-check cannot see (a key the server rejects) as one line, key masked; others re-raised."""
    try:
        from wandb.errors import Error as WandbError
    except ImportError:
        return exc
    if name != "wandb" or not isinstance(exc, WandbError):
        return exc
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    key = os.environ.get("WANDB_API_KEY", "").strip()
    if len(key) >= 8:
        detail = detail.replace(key, "***")
    return ExperimentError(f"W&B could not start the run ({type(exc).__name__}: {detail}); check WANDB_API_KEY "
                           f"and WANDB_BASE_URL, {_OFFLINE_HINT}")


class Tracking:
    """Start, log to and always finish a list of trackers (used where there is no Accelerator to do it)."""

    def __init__(self, trackers: list, run_config: Dict[str, Any]):
        self.trackers = trackers
        flat = {k: ("null" if v is None else v) for k, v in flatten(run_config).items()}
        for index, tracker in enumerate(trackers):
            try:
                tracker.start()
            except Exception as exc:
                self.trackers = trackers[:index]
                self.finish()
                raise _start_error(tracker.name, exc) from None
            # TensorBoard's hparams take flat scalars only; W&B keeps the nested run_config.
            tracker.store_init_configuration(flat if tracker.name == "tensorboard" else run_config)

    def log(self, values: Dict[str, float], step: Optional[int] = None) -> None:
        for tracker in self.trackers:
            tracker.log(values, step=step)

    def mark_stopped(self, stopped: Optional[Dict[str, Any]]) -> None:
        """How the run ended, where a tracker keeps it: the W&B run's summary gets ``stopped`` (completed,
        early_stopping, pruned) and a pruned trial the tag ``pruned``, so a study's runs can be filtered."""
        if not stopped:
            return
        for tracker in self.trackers:
            run = getattr(tracker, "run", None) if tracker.name == "wandb" else None
            if run is None:
                continue
            run.summary["stopped"] = stopped.get("reason")
            if stopped.get("reason") == "pruned":
                run.tags = tuple(sorted(set(run.tags or ()) | {"pruned"}))

    def finish(self) -> None:
        for tracker in self.trackers:
            try:
                tracker.finish()
            except Exception as exc:  # finishing must never mask the run's own outcome
                log.warning("tracker %s did not finish cleanly: %s", tracker.name, exc)


def add_to_wandb_summary(run_dir: Path, logger_cfg: LoggerConfig, values: Dict[str, Any]) -> None:
    """Add ``values`` to the summary of the run's W&B run (its kept id, resumed in the mode the run would use):
    for what is known only after the run, such as a sweep's verdict against its best configuration."""
    import wandb

    mode = check_wandb(logger_cfg)
    init = dict(project=logger_cfg.project, entity=logger_cfg.entity, id=wandb_run_id(run_dir), resume="allow", dir=str(run_dir),
                mode=mode, reinit="finish_previous", settings=wandb.Settings(silent=True))
    run = wandb.init(**{k: v for k, v in init.items() if v is not None})
    try:
        run.summary.update(values)
    finally:
        run.finish()
