"""Stage: datasets of question -> SQL pairs.

An item is a dict with `question`, `sql`, optional `id` and `notes`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import SqltuneError


def read_jsonl(path: str | os.PathLike, required: tuple[str, ...] = ()) -> list[dict]:
    """Read a JSONL file; a bad line is a SqltuneError naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise SqltuneError(f"file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SqltuneError(f"{path}, line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise SqltuneError(f"{path}, line {n}: expected a JSON object")
            for key in required:
                if key not in row:
                    raise SqltuneError(f"{path}, line {n}: missing field '{key}'")
            rows.append(row)
    return rows


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write rows atomically (temp file + rename), so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def pair(gold: list[dict], pred: list[dict]) -> list[str | None]:
    """Predicted SQL aligned to gold: by `id` when both have ids, else by line order."""
    if len(gold) != len(pred):
        raise SqltuneError(f"{len(gold)} gold rows but {len(pred)} predicted rows")
    if all("id" in g for g in gold) and all("id" in p for p in pred):
        by_id = {}
        for p in pred:
            if str(p["id"]) in by_id:
                raise SqltuneError(f"duplicate id in predictions: {p['id']}")
            by_id[str(p["id"])] = p.get("sql")
        missing = [str(g["id"]) for g in gold if str(g["id"]) not in by_id]
        if missing:
            raise SqltuneError(f"no prediction for gold id {missing[0]} ({len(missing)} missing)")
        return [by_id[str(g["id"])] for g in gold]
    return [p.get("sql") for p in pred]
