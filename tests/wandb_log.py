"""Read an offline W&B run file (``run-*.wandb``) back into protobuf records, for assertions in tests.

The file is a LevelDB-style log (32 KiB blocks, 7-byte record headers: crc32c, length, type) after a
7-byte W&B header; each record's payload is a ``wandb_internal_pb2.Record``.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Dict, Iterator

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(path: Path) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        body = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        if kind == FULL:
            yield body
        elif kind == FIRST:
            pending = body
        elif kind == MIDDLE:
            pending += body
        elif kind == LAST:
            yield pending + body
            pending = b""


def read_run(path: Path) -> Dict[str, Any]:
    """config (nested dict), group, name, tags, history keys and whether the run was finished."""
    from wandb.proto import wandb_internal_pb2

    out: Dict[str, Any] = {"config": {}, "group": None, "name": None, "tags": [], "history_keys": set(),
                           "finished": False}
    for payload in payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(group=record.run.run_group or None, name=record.run.display_name, tags=list(record.run.tags))
            out["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            out["history_keys"] |= {i.key or "/".join(i.nested_key) for i in record.history.item}
        elif kind == "exit":
            out["finished"] = True
    return out
