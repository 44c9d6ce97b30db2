"""Stage 1: the database. Builds the embedded exoplanets DB from its packaged CSV.

The CSV is the Kaggle dataset `adityamishraml/nasaexoplanets` (drawn from the NASA Exoplanet
Archive) as committed in github.com/dapopov-st/sql-finetune (MIT); see data/exoplanets/PROVENANCE.md.
"""

from __future__ import annotations

import csv
import os
import sqlite3
from pathlib import Path

from .errors import SqltuneError
from .paths import PACKAGE_DATA, cache_dir

EXOPLANETS_DIR = PACKAGE_DATA / "exoplanets"
EXOPLANETS_CSV = EXOPLANETS_DIR / "cleaned_5250.csv"
EXOPLANETS_NOTES = EXOPLANETS_DIR / "notes.md"

# column -> SQLite type, in CSV order
EXOPLANETS_COLUMNS: dict[str, str] = {
    "name": "TEXT",
    "distance": "REAL",
    "stellar_magnitude": "REAL",
    "planet_type": "TEXT",
    "discovery_year": "INTEGER",
    "mass_multiplier": "REAL",
    "mass_wrt": "TEXT",
    "radius_multiplier": "REAL",
    "radius_wrt": "TEXT",
    "orbital_radius": "REAL",
    "orbital_period": "REAL",
    "eccentricity": "REAL",
    "detection_method": "TEXT",
}
REFERENCE_PLANETS = [("Jupiter", 1.898e27), ("Earth", 5.972e24)]  # masses in kg
APPLICATION_ID = 0x73716C74  # "sqlt": marks a database that build_exoplanets_db wrote (PRAGMA application_id)


def _convert(value: str, sql_type: str):
    if value == "":
        return None
    if sql_type == "INTEGER":
        return int(float(value))
    if sql_type == "REAL":
        return float(value)
    return value


def build_exoplanets_db(out: str | os.PathLike, force: bool = False) -> Path:
    """Build the exoplanets database at `out`. Refuses to overwrite unless `force`.

    The file is written to a temporary name and renamed, so an interrupted build never leaves a
    half-written database behind.
    """
    from .files import check_writable

    out = Path(out)
    if os.path.lexists(out):
        if not force:
            raise SqltuneError(f"{out} already exists; pass --force to overwrite it")
        if not _built_here(out):
            raise SqltuneError(f"refusing to overwrite {out}: it is not an exoplanets database that "
                               f"sqltune build-db wrote; choose another path or remove it yourself")
    if out.parent and not out.parent.exists():
        raise SqltuneError(f"folder {out.parent} does not exist")
    check_writable(out, "OUT")
    with open(EXOPLANETS_CSV, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if list(reader.fieldnames or []) != list(EXOPLANETS_COLUMNS):
            raise SqltuneError(f"unexpected columns in {EXOPLANETS_CSV}: {reader.fieldnames}")
        rows = [tuple(_convert(r[c], t) for c, t in EXOPLANETS_COLUMNS.items()) for r in reader]
    from .files import atomic_path, write_text

    with atomic_path(out) as tmp:  # created by sqlite with the user's normal permissions
        con = sqlite3.connect(tmp)
        try:
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            cols = ",\n  ".join(
                f"{c} {t}" + (" REFERENCES reference_planets(name)" if c == "mass_wrt" else "")
                for c, t in EXOPLANETS_COLUMNS.items()
            )
            con.executescript(
                "CREATE TABLE reference_planets (name TEXT PRIMARY KEY, mass REAL);\n"
                f"CREATE TABLE exoplanets (\n  {cols}\n);"
            )
            con.executemany("INSERT INTO reference_planets VALUES (?, ?)", REFERENCE_PLANETS)
            marks = ",".join("?" * len(EXOPLANETS_COLUMNS))
            con.executemany(f"INSERT INTO exoplanets VALUES ({marks})", rows)
            con.commit()
        finally:
            con.close()
    notes = out.parent / (out.stem + ".notes.md")
    if not notes.exists():  # an existing notes file is the user's: never replaced
        write_text(notes, EXOPLANETS_NOTES.read_text(encoding="utf-8"))
    return out


def _built_here(path: Path) -> bool:
    """True for a SQLite file that build_exoplanets_db wrote (its application_id)."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(72)
    except OSError:
        return False
    return head[:16] == b"SQLite format 3\x00" and int.from_bytes(head[68:72], "big") == APPLICATION_ID


def default_db() -> Path:
    """The exoplanets DB in the cache folder, built on first use."""
    path = cache_dir() / "exoplanets.sqlite"
    if not path.exists():
        build_exoplanets_db(path)
    return path


def resolve_db(db: str | os.PathLike | None, need_tables: bool = True) -> Path:
    """`None` or "exoplanets" means the embedded default; anything else must be an existing SQLite
    file with at least one table (`need_tables`)."""
    if db is None or str(db) == "exoplanets":
        return default_db()
    path = Path(db)
    if not path.is_file():
        raise SqltuneError(f"database not found: {path}")
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise SqltuneError(f"not a SQLite database: {path}")
    if need_tables:
        try:
            from .execute_worker import readonly_uri

            con = sqlite3.connect(readonly_uri(path.resolve()), uri=True)
            try:
                n = con.execute("SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view')").fetchone()[0]
            finally:
                con.close()
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):  # a writer holds it: the file is fine
                raise SqltuneError(f"{path} is locked by another program writing it ({e}); try again when it is "
                                   "done") from None
            raise SqltuneError(f"not a readable SQLite database: {path} ({e})") from None
        if not n:
            raise SqltuneError(f"{path} has no tables")
    return path
