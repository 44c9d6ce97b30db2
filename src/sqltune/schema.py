"""Stage: read a SQLite schema and serialise it compactly for prompts.

Shows tables, columns, types, primary and foreign keys, row counts, a few sample values per
column (all values for low-cardinality text columns) and the user's notes.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from .errors import SqltuneError
from .execute import connect_readonly

MAX_SAMPLES = 3
MAX_CATEGORIES = 12  # text columns with at most this many distinct values list them all
MAX_VALUE_CHARS = 40


@dataclass
class Column:
    name: str
    type: str
    pk: bool = False
    ref: tuple[str, str] | None = None  # (table, column) the foreign key points at
    key_position: int = 0  # 1-based place in the table's primary key (0: not in it)
    samples: list = field(default_factory=list)
    categories: list | None = None  # the full value list of a low-cardinality text column
    nulls: int = 0

    @property
    def fk(self) -> str | None:
        """The foreign key as "table.column" (what the serve API shows)."""
        return ".".join(self.ref) if self.ref else None


@dataclass
class Table:
    name: str
    rows: int
    columns: list[Column]


@dataclass
class Schema:
    tables: list[Table]
    notes: str = ""

    def render(self) -> str:
        return render(self)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@lru_cache(maxsize=4096)
def _bare_ok(name: str) -> bool:
    """Whether SQLite reads `name` unquoted as that identifier: plain characters, and not a keyword SQLite
    refuses there (`order`, `group`, `values`; `date`, `type`, `name` are fine). Asked of SQLite itself."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return False
    con = sqlite3.connect(":memory:")
    try:
        con.execute(f"SELECT {name} FROM (SELECT 1 AS {_q(name)})").fetchall()
        return True
    except sqlite3.Error:
        return False
    finally:
        con.close()


def ident(name: str) -> str:
    """An identifier as SQL must write it: bare where SQLite reads it so, double-quoted otherwise (a column
    `Order Date` or `Official_ratings_(millions)` shown bare reads as other SQL, and the model copies it)."""
    return name if _bare_ok(name) else _q(name)


def _fmt(v) -> str:
    if isinstance(v, str):
        s = v if len(v) <= MAX_VALUE_CHARS else v[: MAX_VALUE_CHARS - 1] + "…"
        s = re.sub(r"[\r\n\t]+", " ", s)  # a sample stays inside its comment line
        return "'" + s.replace("'", "''") + "'"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, bytes):  # a BLOB as SQL writes it, cut short: a 2 KB image would fill the prompt
        head = v[: (MAX_VALUE_CHARS - 4) // 2].hex().upper()
        return f"X'{head}{'…' if 2 * len(v) > len(head) else ''}'"
    return str(v)


def find_notes(db_path: Path) -> Path | None:
    """Notes beside the DB: DB.notes.md / DB.notes.yaml / DB.md / DB.yaml."""
    for suffix in (".notes.md", ".notes.yaml", ".notes.yml", ".md", ".yaml", ".yml"):
        cand = db_path.with_suffix(suffix) if not suffix.startswith(".notes") else db_path.parent / (db_path.stem + suffix)
        if cand.is_file():
            return cand
    return None


def read_notes(path: str | os.PathLike) -> str:
    path = Path(path)
    if not path.is_file():
        raise SqltuneError(f"notes file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SqltuneError(f"notes file {path} is not UTF-8 text") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise SqltuneError(f"notes file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
        return _yaml_notes(data)
    return text.strip()


def _yaml_notes(data, indent: str = "") -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return indent + data.strip()
    if isinstance(data, list):
        return "\n".join(_yaml_notes(x, indent) if isinstance(x, (dict, list)) else f"{indent}- {x}" for x in data)
    if isinstance(data, dict):
        lines = []
        for k, v in data.items():
            if isinstance(v, (dict, list)):
                lines.append(f"{indent}{k}:")
                lines.append(_yaml_notes(v, indent + "  "))
            else:
                lines.append(f"{indent}- {k}: {v}")
        return "\n".join(lines)
    return indent + str(data)


def _names(con) -> list[str]:
    """The tables and views of a database, in the order they were made (SQLite's own tables left out)."""
    return [r[0] for r in con.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]


def _refs(con, table: str) -> dict[str, tuple[str, str]]:
    """{column: (table, column) it references} of `table`'s foreign keys (a bare `REFERENCES t`: `_key_of(t)`)."""
    return {r[3]: (r[2], r[4] or _key_of(con, r[2])) for r in con.execute(f"PRAGMA foreign_key_list({_q(table)})")}


def table_names(db_path: str | os.PathLike) -> dict[str, list[str]]:
    """{table: [column, ...]} of a SQLite database, read-only, from the catalogue alone (no table scans)."""
    con = connect_readonly(Path(db_path))
    con.set_authorizer(None)  # our own trusted queries read sqlite_master and pragmas
    out, t = {}, None
    try:
        for t in _names(con):
            out[t] = [r[1] for r in con.execute(f"PRAGMA table_info({_q(t)})")]
        return out
    except sqlite3.Error as e:
        raise _unreadable(db_path, t, e) from None
    finally:
        con.close()


def foreign_keys(db_path: str | os.PathLike) -> list[tuple[str, str, str, str]]:
    """(table, column, referenced table, referenced column) of every foreign key, read-only, from the catalogue
    alone; the referenced table as the key spells it (SQLite matches table names without regard to case)."""
    con = connect_readonly(Path(db_path))
    con.set_authorizer(None)  # our own trusted queries read sqlite_master and pragmas
    t = None
    try:
        return [(t, c, rt, rc) for t in _names(con) for c, (rt, rc) in _refs(con, t).items()]
    except sqlite3.Error as e:
        raise _unreadable(db_path, t, e) from None
    finally:
        con.close()


def _unreadable(db_path, table: str | None, e: sqlite3.Error) -> SqltuneError:
    """An SQLite error reading a table (a view over a dropped table, a virtual table of a module this SQLite lacks,
    a damaged page) as one line naming it, instead of a traceback."""
    return SqltuneError(f"cannot read {_q(table) if table is not None else 'the schema'} in {db_path}: {e}")


def _key_of(con, table: str) -> str:
    """The column a bare `REFERENCES table` points at: the table's one-column primary key, else rowid."""
    key = [r[1] for r in con.execute(f"PRAGMA table_info({_q(table)})") if r[5]]
    return key[0] if len(key) == 1 else "rowid"


def describe(db_path: str | os.PathLike, notes: str | os.PathLike | None = None) -> Schema:
    """Read the schema (and notes) of a SQLite database, read-only."""
    db_path = Path(db_path)
    con = connect_readonly(db_path)
    con.set_authorizer(None)  # our own trusted queries read sqlite_master and pragmas
    t = None
    try:
        tables = []
        for t in _names(con):
            info = con.execute(f"PRAGMA table_info({_q(t)})").fetchall()
            refs = _refs(con, t)
            nrows = con.execute(f"SELECT COUNT(*) FROM {_q(t)}").fetchone()[0]
            cols = []
            for _, cname, ctype, _, _, pk in info:
                col = Column(cname, (ctype or "").upper(), bool(pk), refs.get(cname), key_position=int(pk or 0))
                qc = _q(cname)
                col.nulls = con.execute(f"SELECT COUNT(*) FROM {_q(t)} WHERE {qc} IS NULL").fetchone()[0]
                distinct = con.execute(
                    f"SELECT COUNT(*) FROM (SELECT DISTINCT {qc} FROM {_q(t)} WHERE {qc} IS NOT NULL LIMIT {MAX_CATEGORIES + 1})"
                ).fetchone()[0]
                is_text = "CHAR" in col.type or "TEXT" in col.type or col.type == ""
                if is_text and distinct <= MAX_CATEGORIES and nrows > distinct:
                    col.categories = [r[0] for r in con.execute(
                        f"SELECT {qc}, COUNT(*) c FROM {_q(t)} WHERE {qc} IS NOT NULL GROUP BY {qc} ORDER BY c DESC, {qc}"
                    )]
                else:
                    col.samples = [r[0] for r in con.execute(
                        f"SELECT DISTINCT {qc} FROM {_q(t)} WHERE {qc} IS NOT NULL LIMIT {MAX_SAMPLES}"
                    )]
                cols.append(col)
            tables.append(Table(t, nrows, cols))
    except sqlite3.Error as e:
        raise _unreadable(db_path, t, e) from None
    finally:
        con.close()
    if notes is None:
        found = find_notes(db_path)
        notes_text = read_notes(found) if found else ""
    else:
        notes_text = read_notes(notes)
    return Schema(tables, notes_text)


def render(schema: Schema) -> str:
    """Compact text: one CREATE TABLE-like block per table, samples as comments, then notes."""
    out = []
    for t in schema.tables:
        out.append(f"CREATE TABLE {ident(t.name)} (  -- {t.rows} rows")
        # a key of several columns is one table constraint, as SQL writes it: `PRIMARY KEY` on each column
        # would claim that each one alone is unique (flight_2's flights, network_1's Friend and Likes)
        key = sorted((c for c in t.columns if c.pk), key=lambda c: c.key_position)
        composite = len(key) > 1
        for i, c in enumerate(t.columns):
            parts = [ident(c.name), c.type or "ANY"]
            if c.pk and not composite:
                parts.append("PRIMARY KEY")
            if c.ref:
                parts.append(f"REFERENCES {ident(c.ref[0])}({ident(c.ref[1])})")
            line = "  " + " ".join(parts) + ("," if i < len(t.columns) - 1 or composite else "")
            if c.nulls and not c.samples and not c.categories:  # nothing but NULL to show
                line += "  -- NULL in every row"
                out.append(line)
                continue
            if c.categories is not None:
                line += "  -- one of: " + ", ".join(_fmt(v) for v in c.categories)
            elif c.samples:
                line += "  -- e.g. " + ", ".join(_fmt(v) for v in c.samples)
            if c.nulls:
                line += f" ({c.nulls} NULL)"
            out.append(line)
        if composite:
            out.append("  PRIMARY KEY (" + ", ".join(ident(c.name) for c in key) + ")")
        out.append(");")
    text = "\n".join(out)
    if schema.notes:
        text += "\n\nNotes:\n" + schema.notes
    return text


def schema_text(db_path: str | os.PathLike, notes: str | os.PathLike | None = None) -> str:
    return render(describe(db_path, notes))
