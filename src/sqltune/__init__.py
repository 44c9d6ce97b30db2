"""sqltune: teach small open LLMs to write correct SQL for one SQLite database.

Public API (the CLI is a thin layer over these):

    from sqltune import build_exoplanets_db, schema_text, execute, score_pairs
"""

from .db import build_exoplanets_db, default_db, resolve_db
from .errors import DatasetError, SqltuneError, UnknownNameError
from .execute import Result, execute
from .schema import describe, schema_text
from .score import score_pairs

__version__ = "0.1.0"

__all__ = [
    "DatasetError",
    "Result",
    "SqltuneError",
    "UnknownNameError",
    "build_exoplanets_db",
    "default_db",
    "describe",
    "execute",
    "resolve_db",
    "schema_text",
    "score_pairs",
]
