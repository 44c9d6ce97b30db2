"""Load a benchmark or script of the repository (not a package) as a module, for the tests that call it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_script(relpath: str, name: str | None = None):
    """`REPO/relpath` imported as module `name` (default: its file stem + "_script"), registered in
    sys.modules so that dataclasses and pickling inside it resolve their module."""
    path = REPO / relpath
    name = name or f"{path.stem}_script"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
