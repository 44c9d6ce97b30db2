"""Files sqltune writes: atomic writes, and ownership before anything is deleted or replaced.

- `write_text` / `write_json` write to a temporary sibling and rename it into place, so a crash or a
  Ctrl-C never leaves half a file; the file gets the user's normal permissions (umask), not the
  0600 of a `mkstemp` file.
- A folder that sqltune created carries `OWNER_FILE` (`.sqltune`, a small JSON). sqltune deletes or
  replaces a folder only when it carries that marker (or is a finished sqltune checkpoint), and never
  `/`, the home folder, the current folder or one of its parents (`remove_owned`).
- `check_writable(path)` says in one line, before any work, that an output cannot be written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from .errors import SqltuneError

OWNER_FILE = ".sqltune"
LOCK_FILE = ".sqltune.lock"  # held by the process writing the folder (`hold`)
CHECKPOINT_META = "sqltune_checkpoint.json"  # also written only by sqltune (checkpoint.py)


# ---------------------------------------------------------------- atomic writes
def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif os.path.lexists(p):
        p.unlink(missing_ok=True)  # another process cleaning the same leftover may be first


def _alive(pid: int) -> bool:
    """True unless process `pid` surely no longer runs (where that cannot be asked, it runs)."""
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        pass
    return True


def _recover(path: Path) -> None:
    """Clear what killed writers of `path` left behind (see `atomic_path`)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.(tmp|old)")
    for p in path.parent.iterdir():
        m = pattern.fullmatch(p.name)
        if m is None or _alive(int(m[1])):
            continue
        if m[2] == "old" and not os.path.lexists(path):
            try:
                os.replace(p, path)
            except FileNotFoundError:  # another process put it back first
                pass
        else:
            _remove(p)


@contextmanager
def atomic_path(path: str | os.PathLike, folder: bool = False):
    """The one way sqltune writes a file or folder: yields a temporary sibling to fill; when the block
    ends without error the sibling replaces `path` (a folder: the old one is moved aside first), else
    it is removed. A crash or Ctrl-C never leaves half a file or a half-written folder at `path`. Missing
    parent folders are created (an `--out` in a new folder).

    The sibling is `.NAME.PID.tmp` (the old folder goes aside as `.NAME.PID.old`), so processes writing
    siblings never meet. A killed process leaves these behind: the next write of `path` removes those of
    processes that no longer run, and when `path` itself is missing (killed between the two renames of a
    folder swap) puts the old folder back first. Files of a running process are never touched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)  # `check_writable` let a missing parent through as creatable
    _recover(path)
    _remove(tmp)
    if folder:
        tmp.mkdir()
    try:
        yield tmp
        if folder and os.path.lexists(path):
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            _remove(old)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kw):
    """`open(path, mode)` whose content appears at `path` only once the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kw) as f:
        yield f


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data, indent: int | None = 2) -> Path:
    """Write `data` as JSON (non-ASCII kept as is) atomically."""
    return write_text(path, json.dumps(data, indent=indent, default=str, ensure_ascii=False) + "\n")


def write_lines(path: str | os.PathLike, rows) -> Path:
    """Write one JSON object per line (JSONL) atomically."""
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


# ---------------------------------------------------------------- checking outputs before work
def check_writable(path: str | os.PathLike, what: str = "--out", folder: bool = False, inputs=()) -> Path:
    """One clear line now, instead of a traceback after the work, when `path` cannot be written.

    `folder`: the path is a folder to create (or reuse); else a file whose parent folder must exist
    (or be creatable) and be writable. `inputs`: files the command reads (None and names that are not
    files are skipped); an output that is one of them would replace it, so it is refused.
    """
    p = Path(path)
    if str(path).strip() == "":
        raise SqltuneError(f"{what}: empty path")
    for i in inputs:
        if i is not None and _same_file(p, i):
            raise SqltuneError(f"{what} {p} is also an input ({i}); writing it would replace that file")
    if folder:
        if p.exists() and not p.is_dir():
            raise SqltuneError(f"{what} {p} is a file, not a folder")
    elif p.is_dir():
        raise SqltuneError(f"{what} {p} is a folder; name a file")
    target = p if (folder and p.exists()) else p.parent
    probe = target
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise SqltuneError(f"{what} {p}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SqltuneError(f"{what} {p}: {probe} is not writable")
    if p.exists() and not folder and not os.access(p, os.W_OK):
        raise SqltuneError(f"{what} {p} is not writable")
    return p


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # either is missing (or not a path): nothing to replace
        return False


# ---------------------------------------------------------------- ownership
def claim(folder: str | os.PathLike, kind: str) -> Path:
    """Create `folder` (if needed) and mark it as sqltune's, so that sqltune may later replace it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / OWNER_FILE
    if not marker.is_file():
        write_json(marker, {"written_by": "sqltune", "kind": kind})
    return folder


def hold(folder: str | os.PathLike) -> object:
    """Refuse (one line) a folder another sqltune process is writing: a lock on `LOCK_FILE` in it, held by this
    process while the returned file stays open (a killed process's lock goes with it)."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): the folder is not held
        return None
    f = open(Path(folder) / LOCK_FILE, "a")
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise SqltuneError(f"{folder} is in use by another sqltune process; wait for it to end "
                           f"(or stop it), then --resume") from None
    return f


def owned(folder: str | os.PathLike) -> bool:
    """True for a folder sqltune wrote (its marker, or a finished checkpoint's metadata)."""
    p = Path(folder)
    legacy_work = p.name.endswith(".work") and (p / "run.json").is_file()  # training work folder from before markers
    return p.is_dir() and not p.is_symlink() and ((p / OWNER_FILE).is_file() or (p / CHECKPOINT_META).is_file()
                                                  or legacy_work)


def _protected(p: Path) -> str | None:
    """Why `p` must never be deleted, or None."""
    try:
        r = p.resolve()
    except OSError:
        return "it cannot be resolved"
    if r == Path(r.anchor):
        return "it is the root folder"
    if r == Path.home().resolve():
        return "it is the home folder"
    cwd = Path.cwd().resolve()
    if r == cwd or r in cwd.parents:
        return "it holds the current folder"
    return None


def check_replaceable(path: str | os.PathLike, what: str = "--out") -> None:
    """Refuse (one line) to delete or replace `path` unless sqltune wrote it; nothing is deleted here."""
    p = Path(path)
    if not os.path.lexists(p):
        return
    why = _protected(p)
    if why:
        raise SqltuneError(f"refusing to delete {what} {p}: {why}")
    if p.is_symlink() or not p.is_dir():
        raise SqltuneError(f"refusing to replace {what} {p}: it is not a folder sqltune wrote")
    if not any(p.iterdir()):
        return  # an empty folder loses nothing
    if not owned(p):
        raise SqltuneError(f"refusing to replace {what} {p}: it holds files sqltune did not write "
                           f"(no {OWNER_FILE} marker); choose another folder or remove it yourself")


def remove_owned(path: str | os.PathLike, what: str = "--out") -> None:
    """Delete a folder sqltune wrote (see `check_replaceable`); a missing path is fine."""
    p = Path(path)
    check_replaceable(p, what)
    if p.is_dir():
        shutil.rmtree(p)
