"""Secrets never reach a file or a tracker: how to recognise one, and how to mask a config copy.

A secret is recognised by its key (``api_key``, ``hf_token``, ``password`` …, whole key components
only: ``tokenizer`` and ``max_new_tokens`` are not secrets), by the shape of well-known tokens
(Hugging Face ``hf_…``), or by being the value of a secret-named environment variable of this process
(``WANDB_API_KEY``, ``HF_TOKEN`` …) — so a key pasted into any config value is caught too.
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterator, List

from experiments.errors import ExperimentError

SECRET_KEY = re.compile(r"(^|[_-])(api[_-]?key|token|secret|secret[_-]?key|password|passwd|credentials?|auth)$",
                        re.IGNORECASE)
_TOKEN_SHAPES = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b|\bsk-[A-Za-z0-9_-]{20,}\b")
_URL_CREDENTIALS = re.compile(r"://[^/\s:@]+:[^@\s/]+@")  # postgresql://user:password@host/db
MASK = "***"
ENV_HINT = "set it in the environment instead (WANDB_API_KEY, HF_TOKEN) or use `wandb login` / `hf auth login`"


def is_secret_key(key: Any) -> bool:
    return bool(SECRET_KEY.search(str(key).split(".")[-1].lstrip("+~")))


def _env_secrets() -> List[str]:
    return [v for k, v in os.environ.items() if is_secret_key(k) and len(v) >= 8]


def is_secret_value(value: Any) -> bool:
    if not isinstance(value, str) or len(value) < 8:
        return False
    return bool(_TOKEN_SHAPES.search(value) or _URL_CREDENTIALS.search(value)) or \
        any(secret in value for secret in _env_secrets())


def find(value: Any, prefix: str = "") -> Iterator[str]:
    """The dotted key of every secret in a nested dict/list (a config container)."""
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{prefix}{key}"
            if is_secret_key(key) and item not in (None, "", MASK):
                yield name
            else:
                yield from find(item, f"{name}.")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from find(item, f"{prefix}{index}.")
    elif is_secret_value(value):
        yield prefix.rstrip(".")


def refusal(key: str):
    """The one-line error for a secret found at ``key`` (the value itself is never shown)."""
    return ExperimentError(f"'{key}' looks like a secret: secrets are never put in the config (it is written to "
                           f"the run dir and sent to trackers); {ENV_HINT}, or for a URL with a password give "
                           f"{key}='${{oc.env:MY_URL}}'")


def check_override(override: str) -> None:
    """Refuse a command-line override that carries a secret (Hydra would write it to .hydra/)."""
    key, _, value = override.partition("=")
    if (is_secret_key(key) and value not in ("", "null", MASK)) or is_secret_value(value):
        raise refusal(key.lstrip("+~"))


def scrub(value: Any) -> Any:
    """A copy of a config container with secret-looking keys and values masked."""
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(k) and v not in (None, "") else scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return MASK if is_secret_value(value) else value
