"""What every fault-injection case asserts: the exit code, a one-line message naming the problem, and
(by hashing files before and after) that nothing outside the new run's own directory changed."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, Optional

from cli_helpers import REPO

TINY = ["debug=tiny", "logger=csv"]


def snapshot(root: Path) -> Dict[str, str]:
    """relative path -> sha256 of every file below ``root`` (symlinks by target name)."""
    digests: Dict[str, str] = {}
    root = Path(root)
    if not root.exists():
        return digests
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            digests[str(path.relative_to(root))] = "link:" + os.readlink(path)
        elif path.is_file():
            digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def changed(before: Dict[str, str], after: Dict[str, str], allowed: Iterable[str] = ()) -> Dict[str, str]:
    """Files changed, removed or added outside the ``allowed`` relative folders: {path: how}."""
    allowed = [a.rstrip("/") + "/" for a in allowed]

    def outside(rel: str) -> bool:
        return not any(rel.startswith(a) for a in allowed)

    diff = {}
    for rel, digest in before.items():
        if outside(rel) and rel not in after:
            diff[rel] = "removed"
        elif outside(rel) and after[rel] != digest:
            diff[rel] = "modified"
    for rel in after:
        if outside(rel) and rel not in before:
            diff[rel] = "added"
    return diff


def run(*args: str, cwd: Path, env: Optional[dict] = None, timeout: int = 600,
        multirun: bool = False) -> subprocess.CompletedProcess:
    """``python run.py <args>`` from ``cwd`` (relative outputs/ and multirun/ land there), offline."""
    cmd = [sys.executable, str(REPO / "run.py")] + (["-m"] if multirun else []) + list(args)
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The user-facing message: the last non-empty stderr line."""
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def assert_user_error(result: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """Exit ``code``, no traceback on the console, and a last line ``error: …`` naming every needle."""
    explain = f"exit {result.returncode}\n--- stderr ---\n{result.stderr[-3000:]}\n--- stdout ---\n{result.stdout[-1500:]}"
    assert result.returncode == code, explain
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, explain
    line = error_line(result)
    assert line.startswith("error: "), explain
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line
