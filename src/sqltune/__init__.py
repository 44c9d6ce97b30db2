"""sqltune: teach small open LLMs to write correct SQL for one SQLite database.

Public API (the CLI is a thin layer over these):

    from sqltune import build_exoplanets_db, schema_text, execute, score_pairs
    m = sqltune.load(run="runs/mine")        # a model loaded once (`sqltune.answer`); m.ask("...") -> Answer

Names are imported on first use, so `import sqltune.model` (or any one stage) loads only what that
stage needs (no sqlglot for loading a model).
"""

import sys
import types
from importlib import import_module

from .errors import DatasetError, SqltuneError, UnknownNameError

__version__ = "0.1.0"

_LAZY = {
    "build_exoplanets_db": "db", "default_db": "db", "resolve_db": "db",
    "Result": "execute", "execute": "execute",
    "describe": "schema", "schema_text": "schema",
    "score_pairs": "score",
    "Answer": "answer", "SQLModel": "answer", "load": "answer",
}

__all__ = ["DatasetError", "SqltuneError", "UnknownNameError", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """`sqltune.execute` is the function, as it was when this file imported it eagerly: importing the
    submodule `sqltune.execute` (which the import system records on the package) does not replace it."""

    @property
    def execute(self):
        return import_module(".execute", __name__).execute

    @execute.setter
    def execute(self, value):
        pass


sys.modules[__name__].__class__ = _Package
