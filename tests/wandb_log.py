"""Read an offline W&B run file (``run-*.wandb``) back, for assertions in tests.

The records are decoded by wandb itself: ``wandb leet inspect --json`` runs wandb-core's reader of the
transaction log (the file ``wandb sync`` uploads) and prints one JSON object per record. The
installed wandb (0.31) ships no Python reader any more (``wandb.sdk.internal.datastore`` is gone), so
this is its supported way to look inside an offline run without a W&B server.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List


def records(path: Path) -> List[Dict[str, Any]]:
    """Every record of the run file, in order (``{"num": .., "type": "run" | "config" | ..., <type>: {...}}``)."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_ERROR_REPORTING="false", WANDB_SILENT="true")
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, f"wandb could not read {path}: {out.stderr[-2000:]}"
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def read_run(path: Path) -> Dict[str, Any]:
    """config (nested dict), group, name, tags, history keys and whether the run was finished."""
    out: Dict[str, Any] = {"config": {}, "group": None, "name": None, "tags": [], "history_keys": set(),
                           "finished": False}
    for record in records(path):
        kind, body = record["type"], record.get(record["type"]) or {}
        if kind == "run":
            out.update(group=body.get("run_group") or None, name=body.get("display_name"),
                       tags=list(body.get("tags") or []))
            out["config"].update((body.get("config") or {}).get("update") or {})
        elif kind == "config":
            out["config"].update(body.get("update") or {})
        elif kind == "history":
            out["history_keys"] |= set(body.get("item") or {})
        elif kind == "exit":
            out["finished"] = True
    return out
