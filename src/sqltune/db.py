"""Stage 1: the database. Builds the embedded exoplanets DB from its packaged CSV.

The CSV is the Kaggle dataset `adityamishraml/nasaexoplanets` (drawn from the NASA Exoplanet
Archive) as committed in github.com/dapopov-st/sql-finetune (MIT); see data/exoplanets/PROVENANCE.md.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import tempfile
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
    out = Path(out)
    if out.exists() and not force:
        raise SqltuneError(f"{out} already exists; pass --force to overwrite it")
    if out.parent and not out.parent.exists():
        raise SqltuneError(f"folder {out.parent} does not exist")
    with open(EXOPLANETS_CSV, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if list(reader.fieldnames or []) != list(EXOPLANETS_COLUMNS):
            raise SqltuneError(f"unexpected columns in {EXOPLANETS_CSV}: {reader.fieldnames}")
        rows = [tuple(_convert(r[c], t) for c, t in EXOPLANETS_COLUMNS.items()) for r in reader]
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    os.close(fd)
    try:
        con = sqlite3.connect(tmp)
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
        con.close()
        os.replace(tmp, out)
        notes = out.parent / (out.stem + ".notes.md")
        if force or not notes.exists():
            notes.write_text(EXOPLANETS_NOTES.read_text(encoding="utf-8"), encoding="utf-8")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def default_db() -> Path:
    """The exoplanets DB in the cache folder, built on first use."""
    path = cache_dir() / "exoplanets.sqlite"
    if not path.exists():
        build_exoplanets_db(path)
    return path


def resolve_db(db: str | os.PathLike | None) -> Path:
    """`None` or "exoplanets" means the embedded default; anything else must be an existing file."""
    if db is None or str(db) == "exoplanets":
        return default_db()
    path = Path(db)
    if not path.is_file():
        raise SqltuneError(f"database not found: {path}")
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise SqltuneError(f"not a SQLite database: {path}")
    return path
