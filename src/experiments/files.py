"""The one way the framework writes a file or a folder of its records: whole or not at all, flushed to disk,
and a failure (disk full, permission denied, read-only) one :class:`~experiments.errors.WriteFailed` naming
the path."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict

from experiments.errors import WriteFailed, reason_of


def atomic_write(path: Path, data) -> None:
    """The one way a record is written: a temporary file in the same folder, flushed to disk, then renamed
    over ``path``, so a reader (or a resume after a crash) sees the old file or the new one, never half.
    A failure (disk full, permission denied, read-only) removes the temporary file and raises
    :class:`~experiments.errors.WriteFailed` naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise WriteFailed(path, reason_of(exc)) from None


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def replace_dir(directory: Path, write) -> None:
    """Write a folder (``best/``, ``last/``) whole or not at all: ``write(tmp_dir)`` fills a sibling folder,
    which then takes the old one's place; a failed write leaves the old folder as it was."""
    import shutil

    directory = Path(directory)
    tmp, old = directory.with_name(f".{directory.name}.tmp"), directory.with_name(f".{directory.name}.old")
    if old.exists() and not directory.exists():  # a crash between the two renames below
        os.replace(old, directory)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
    except Exception as exc:  # torch / safetensors / tokenizers raise their own types on a full disk
        failed = WriteFailed(directory, reason_of(exc, directory))  # (before freeing space: is the disk full?)
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not directory.exists():
            os.replace(old, directory)
        raise failed from None
    shutil.rmtree(old, ignore_errors=True)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, payload: Dict[str, Any]) -> None:
    """Atomic write: a reader never sees half a file."""
    atomic_write(path, json.dumps(_clean(payload), indent=2, sort_keys=False) + "\n")
