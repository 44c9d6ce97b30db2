"""Stage: datasets of question -> SQL pairs.

An item is a dict with `question`, `sql`, optional `id` and `notes`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .errors import SqltuneError


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # \ud800-\udfff: half of a UTF-16 pair, if alone


def is_text(value) -> bool:
    """Whether `value` (a string, or data holding strings) is text that UTF-8 can hold: not a lone surrogate, which
    JSON can escape ("\\ud800") and a terminal makes of bytes it could not decode, and which no UTF-8 file,
    tokenizer or SQLite string can hold."""
    try:
        json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(value, where: str) -> None:
    if not is_text(value):
        raise SqltuneError(f"{where}: holds a lone surrogate escape (\\ud800-\\udfff), which is not text")


def read_jsonl(path: str | os.PathLike, required: tuple[str, ...] = ()) -> list[dict]:
    """Read a JSONL file; a bad line is a SqltuneError naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise SqltuneError(f"file not found: {path}")
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SqltuneError(f"{path}: not UTF-8 text") from None
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise SqltuneError(f"{path}, line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise SqltuneError(f"{path}, line {n}: expected a JSON object")
        if _SURROGATE_ESCAPE.search(line):
            _check_text(row, f"{path}, line {n}")
        for key in required:
            if key not in row:
                raise SqltuneError(f"{path}, line {n}: missing field '{key}'")
        rows.append(row)
    return rows


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write rows atomically (temp file + rename), so a crash never leaves half a file."""
    from .files import write_lines

    return write_lines(path, rows)


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


# ---------------------------------------------------------------- loading datasets by name or path
PACKAGED_SPLITS = ("train", "valid", "test")
# a recipe's `data.train` for a user with no pairs of their own: `sqltune run` writes them from the database alone
# (`sqltune.synth`) into the run folder first (`recipe.Recipe.items`)
NO_PAIRS = "synth"
ITEM_FILE_SUFFIXES = (".jsonl", ".json", ".csv")  # a spec ending so is a local file to `load_items`, never a name
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def packaged_datasets() -> list[str]:
    """Names of the datasets shipped inside the package (folders holding train/valid/test.jsonl)."""
    from .paths import PACKAGE_DATA

    return sorted(p.name for p in PACKAGE_DATA.iterdir() if (p / "train.jsonl").is_file())


def dataset_path(name: str) -> Path:
    """The folder that holds a packaged dataset's train.jsonl, valid.jsonl and test.jsonl."""
    from .errors import UnknownNameError
    from .paths import PACKAGE_DATA

    folder = PACKAGE_DATA / name
    if not name or "/" in name or "\\" in name or not (folder / "train.jsonl").is_file():
        known = ", ".join(packaged_datasets()) or "none"
        raise UnknownNameError(f"unknown dataset '{name}' (packaged: {known})")
    return folder


def _finish(rows: list[dict], prefix: str, where: list[str], question_field: str, sql_field: str,
            need_sql: bool = True) -> list[dict]:
    """Map the configured fields to `question`/`sql`, check them, and give missing ids."""
    out = []
    width = max(3, len(str(len(rows))))
    for i, (row, loc) in enumerate(zip(rows, where), 1):
        for field in (question_field, sql_field) if need_sql or sql_field in row else (question_field,):
            if field not in row:
                raise SqltuneError(f"{loc}: missing field '{field}'")
            if not isinstance(row[field], str) or not row[field].strip():
                raise SqltuneError(f"{loc}: field '{field}' must be a non-empty string")
        rid = row.get("id")
        item = {"id": f"{prefix}-{i:0{width}d}" if rid is None or str(rid).strip() == "" else str(rid)}
        for k, v in row.items():
            if k == question_field:
                item["question"] = v
            elif k == sql_field:
                item["sql"] = v
            elif k not in ("id", "question", "sql"):
                item[k] = v
        out.append(item)
    return out


def _read_csv(path: Path) -> tuple[list[dict], list[str]]:
    import csv

    rows, where = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise SqltuneError(f"{path}: empty CSV file (no header line)")
            for row in reader:
                if None in row:
                    raise SqltuneError(f"{path}, line {reader.line_num}: more fields than header columns")
                if not any((v or "").strip() for v in row.values()):
                    continue
                rows.append({k: v for k, v in row.items() if v is not None})
                where.append(f"{path}, line {reader.line_num}")
    except csv.Error as e:
        raise SqltuneError(f"{path}: not valid CSV ({e})") from None
    except UnicodeDecodeError:
        raise SqltuneError(f"{path}: not UTF-8 text") from None
    return rows, where


def _read_json(path: Path) -> tuple[list[dict], list[str]]:
    """A .json file: a list of records, a dict of columns, or JSON Lines (what `Dataset.to_json` writes)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SqltuneError(f"{path}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if text.lstrip().startswith("{"):  # several objects: JSON Lines
            return read_jsonl(path), _jsonl_lines(path)
        raise SqltuneError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from None
    if _SURROGATE_ESCAPE.search(text):
        _check_text(data, str(path))
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise SqltuneError(f"{path}: columns have different lengths {sorted(lengths)}")
        data = [{k: col[i] for k, col in data.items()} for i in range(lengths.pop())]
        return data, [f"{path}, row {i}" for i in range(1, len(data) + 1)]
    if isinstance(data, dict):
        return [data], [f"{path}, line 1"]
    if not isinstance(data, list):
        raise SqltuneError(f"{path}: expected a list of records, a dict of columns, or JSON Lines")
    for i, row in enumerate(data, 1):
        if not isinstance(row, dict):
            raise SqltuneError(f"{path}, record {i}: expected a JSON object")
    return data, [f"{path}, record {i}" for i in range(1, len(data) + 1)]


def _hf_layout(rows: list[dict], question_field: str, sql_field: str) -> list[dict]:
    """`answer` -> `sql` when every row is in the original project's Hugging Face layout
    (`context`, `question`, `answer`; dataset dpv/exoplanets-sql) and no other SQL field was asked for."""
    if sql_field != "sql" or not rows:
        return rows
    if all("answer" in r and "sql" not in r for r in rows):
        return [{("sql" if k == "answer" else k): v for k, v in r.items()} for r in rows]
    return rows


def _load_hub(name: str, split: str, question_field: str, sql_field: str, need_sql: bool = True) -> list[dict]:
    try:
        import datasets  # optional extra: pip install 'sqltune[hub]'
    except ImportError:
        raise SqltuneError(
            f"loading the hub dataset '{name}' needs the 'datasets' package: pip install 'sqltune[hub]'"
        ) from None
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # offline, unknown name, unknown split: one line for the user
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SqltuneError(f"could not load hub dataset '{name}' (split '{split}'): {first}") from None
    rows = _hf_layout([dict(r) for r in ds], question_field, sql_field)
    label = f"{name}:{split}"
    return _finish(rows, split, [f"{label}, row {i}" for i in range(1, len(rows) + 1)], question_field, sql_field,
                   need_sql)


def load_items(spec: str | os.PathLike, question_field: str = "question", sql_field: str = "sql",
               need_sql: bool = True) -> list[dict]:
    """Items ({id, question, sql, ...}) from a packaged name, a file, or a hub dataset id.

    `spec` is one of:
    - `NAME:SPLIT`, a packaged dataset, e.g. `exoplanets:train` (splits: train, valid, test);
    - a `.jsonl` file; a `.csv` file with a header line; a `.json` file (records, columns or JSON
      Lines). Rows in the original project's Hugging Face layout (`context`, `question`,
      `answer`) have their `answer` read as `sql`;
    - a hub dataset `owner/name[:split]` (or `hf:owner/name[:split]`; split defaults to train),
      read with the optional `datasets` library.
    `question_field`/`sql_field` name the source columns; they come back as `question`/`sql`.
    Items without an `id` get one (`<split or file stem>-001`, ...). Bad input, and a source with
    no items, is a SqltuneError naming the file and line. `need_sql=False` accepts questions alone.
    """
    items = _load_items(spec, question_field, sql_field, need_sql)
    if not items:
        raise SqltuneError(f"{spec}: no items (an empty file?)")
    return items


def _load_items(spec, question_field: str, sql_field: str, need_sql: bool) -> list[dict]:
    text = str(spec)
    path = Path(text)
    hub = text[3:] if text.startswith("hf:") else None
    if hub is None and not path.exists():
        name, sep, split = text.partition(":")
        if sep and not re.search(r"[/\\]|\.(jsonl|json|csv)$", name):
            folder = dataset_path(name)
            if split not in PACKAGED_SPLITS:
                raise SqltuneError(f"unknown split '{split}' of {name} (splits: {', '.join(PACKAGED_SPLITS)})")
            path = folder / f"{split}.jsonl"
            rows = read_jsonl(path)
            return _finish(rows, split, _jsonl_lines(path), "question", "sql")
        if text in packaged_datasets():
            raise SqltuneError(f"name a split: {text}:train, {text}:valid or {text}:test")
        if path.suffix.lower() in ITEM_FILE_SUFFIXES or not _HUB_ID.fullmatch(name):
            raise SqltuneError(f"file not found: {path}")
        hub = text  # OWNER/NAME with no such local file: a hub dataset id (the error says both)
    if hub is not None:
        name, _, split = hub.partition(":")
        if not _HUB_ID.fullmatch(name):
            raise SqltuneError(f"not a hub dataset id (owner/name): {name}")
        try:
            return _load_hub(name, split or "train", question_field, sql_field, need_sql)
        except SqltuneError as e:
            if text.startswith("hf:"):
                raise
            raise SqltuneError(f"no such file {path}; as a hub dataset id: {e}") from None
    if path.is_dir():
        raise SqltuneError(f"{path} is a folder; name a file (or use NAME:SPLIT for a packaged dataset)")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = read_jsonl(path)
        where = _jsonl_lines(path)
    elif suffix == ".csv":
        rows, where = _read_csv(path)
    elif suffix == ".json":
        rows, where = _read_json(path)
    else:
        raise SqltuneError(f"{path}: unknown file type '{path.suffix}' (expected .jsonl, .json or .csv)")
    return _finish(_hf_layout(rows, question_field, sql_field), path.stem, where, question_field, sql_field,
                   need_sql)


def _jsonl_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [f"{path}, line {n}" for n, line in enumerate(text.split("\n"), 1) if line.strip()]


# ---------------------------------------------------------------- one file -> train / valid / test
def _norm_sql(sql: str) -> str:
    return re.sub(r"\s+", " ", sql.lower().strip().rstrip(";"))


def _leak_groups(items: list[dict]) -> list[str]:
    """Each item's group: items that `sqltune data check` would call a leak across two files (the same normalised
    question, SQL or SQL skeleton: `check.leak_keys`) are joined, directly or through others; a group is named by
    the smallest normalised SQL among its items."""
    from .check import leak_keys

    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple, int] = {}
    for i, it in enumerate(items):
        for key in leak_keys(it):
            j = first.setdefault(key, i)
            parent[root(i)] = root(j)
    name: dict[int, str] = {}
    for i, it in enumerate(items):
        r, q = root(i), _norm_sql(it["sql"])
        name[r] = min(name.get(r, q), q)
    return [name[root(i)] for i in range(len(items))]


def split_by_sql(items: list[dict], with_test: bool = True) -> dict[str, list[dict]]:
    """Split one set of pairs by gold SQL, so no query (nor a paraphrase of it) is in two splits.

    The devsuite's rule: distinct normalised SQLs, sorted, shuffled with `random.Random(0)`; the first
    half trains, the rest is test (`with_test`); of the training half (sorted) the first quarter (at
    least one query) is valid. Every item follows its SQL, and so do the items the data check would call
    a leak between two splits (the same question, or the same SQL skeleton with other values: "singers
    from France" / "from Chile"), which go as one group (`_leak_groups`): a run never stops at the data
    check over a split it made itself. Where no two queries share a question or skeleton, the groups are
    the distinct SQLs and the split is the plain rule's.
    """
    import random

    groups = _leak_groups(items)
    queries = sorted(set(groups))
    need = 3 if with_test else 2
    if len(queries) < need:
        raise SqltuneError(f"splitting needs at least {need} gold queries that differ in more than their values, "
                           f"got {len(queries)}; give --valid" + (" and --test" if with_test else "") + " files")
    if with_test:
        random.Random(0).shuffle(queries)
        half, test = sorted(queries[: len(queries) // 2]), set(queries[len(queries) // 2:])
    else:
        half, test = queries, set()
    valid = set(half[: max(1, len(half) // 4)])
    out: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    for it, q in zip(items, groups):
        out["test" if q in test else "valid" if q in valid else "train"].append(it)
    if not with_test:
        del out["test"]
    return out
