"""Where sqltune keeps things: the user cache folder and the packaged data."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DATA = Path(__file__).parent / "data"
PACKAGED_RECIPES = Path(__file__).parent / "recipes"


def cache_dir() -> Path:
    """The user's cache folder: $SQLTUNE_HOME, else $XDG_CACHE_HOME/sqltune, else ~/.cache/sqltune."""
    if os.environ.get("SQLTUNE_HOME"):
        root = Path(os.environ["SQLTUNE_HOME"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "sqltune"
    root.mkdir(parents=True, exist_ok=True)
    return root
