"""Read the history rows of an offline ``run-*.wandb`` file (wandb's LevelDB-style record log).

wandb >= 0.19 no longer ships a Python reader for its transaction log, so the tests parse the documented
format here: a 7-byte file header (":W&B", magic 0xBEE1, version), then 32 KiB blocks of records, each with a
7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last), payloads being protobuf ``Record``s.
"""
import json
import struct
import time
from pathlib import Path
from typing import Dict, List

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7


def records(path: Path) -> List[bytes]:
    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert ident == b":W&B" and magic == 0xBEE1, (ident, magic)
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        payload = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        if kind == 1:
            out.append(payload)
        elif kind == 2:
            pending = payload
        elif kind == 3:
            pending += payload
        elif kind == 4:
            out.append(pending + payload)
            pending = b""
    return out


def history(path: Path) -> List[Dict[str, object]]:
    rows = []
    for raw in records(path):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in rec.history.item})
    return rows


def _parsed(path: Path) -> List["wandb_internal_pb2.Record"]:
    parsed = []
    for raw in records(path):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        parsed.append(rec)
    return parsed


def summary(path: Path) -> Dict[str, object]:
    """The run's summary as a sync rebuilds it: every summary update and removal, in the order written."""
    final: Dict[str, object] = {}
    for rec in _parsed(path):
        if rec.WhichOneof("record_type") == "summary":
            for item in rec.summary.update:
                final[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            for item in rec.summary.remove:
                final.pop(item.key or "/".join(item.nested_key), None)
    return final


def config(path: Path) -> Dict[str, object]:
    """The run's config as a sync rebuilds it: the run record's, then every config update and removal in order."""
    final: Dict[str, object] = {}
    for rec in _parsed(path):
        kind = rec.WhichOneof("record_type")
        if kind in ("run", "config"):
            changes = rec.run.config if kind == "run" else rec.config
            for item in changes.update:
                final[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            for item in changes.remove:
                final.pop(item.key or "/".join(item.nested_key), None)
    return final


def ending(path: Path) -> Dict[str, object]:
    """How the run ended: ``exit_code`` (None without an exit record) and whether it was marked preempting."""
    kinds = [(rec.WhichOneof("record_type"), rec) for rec in _parsed(path)]
    exits = [rec.exit.exit_code for kind, rec in kinds if kind == "exit"]
    return {"exit_code": exits[-1] if exits else None, "preempting": any(kind == "preempting" for kind, _ in kinds)}


def run_id(path: Path) -> str:
    return next(rec.run.run_id for rec in _parsed(path) if rec.WhichOneof("record_type") == "run")


def written(path: Path, timeout_s: float = 60.0) -> Path:
    """``path`` once its run's exit record is in it: wandb's service process writes the log on its own time, so a
    file read just after ``finish()`` returned may still lack records (a test read one without its run record)."""
    deadline = time.time() + timeout_s
    while True:
        try:
            if any(rec.WhichOneof("record_type") == "exit" for rec in _parsed(path)):
                return path
        except (AssertionError, struct.error, ValueError):  # caught mid-write: no header yet, a cut record
            pass
        if time.time() > deadline:
            raise AssertionError(f"{path} holds no exit record after {timeout_s:.0f} s")
        time.sleep(0.1)
