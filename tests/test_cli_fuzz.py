"""Property: every command that reads a file answers any file (random bytes, JSON of any shape, CSV of
any shape, YAML) with one line and a non-zero exit: no traceback, nothing written, nothing changed.
No model is loaded: `--model /nonexistent` makes input that happens to be valid stop at the model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqltune.cli import main

KEYS = st.sampled_from(["question", "sql", "id", "answer", "context", "x", ""])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                    max_leaves=12)
CELL = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=10)


@st.composite
def contents(draw) -> tuple[str, bytes]:
    """(suffix, bytes) of a file of some shape."""
    kind = draw(st.sampled_from(["bytes", "json", "jsonl", "csv", "yaml"]))
    if kind == "bytes":
        return draw(st.sampled_from([".jsonl", ".json", ".csv", ".sqlite", ".yaml"])), draw(st.binary(max_size=200))
    if kind == "json":
        return ".json", json.dumps(draw(JSON)).encode()
    if kind == "jsonl":
        return ".jsonl", "\n".join(json.dumps(v) for v in draw(st.lists(JSON, max_size=4))).encode()
    if kind == "csv":
        import csv
        import io

        buf = io.StringIO()
        csv.writer(buf).writerows(draw(st.lists(st.lists(CELL | KEYS, max_size=4), max_size=4)))
        return ".csv", buf.getvalue().encode()
    import yaml

    return ".yaml", yaml.safe_dump(draw(JSON)).encode()


def _commands(f: Path, db: Path, tmp: Path) -> list[list[str]]:
    nomodel = "/nonexistent-model"
    return [
        ["score", "--gold", f, "--pred", f, "--db", db],
        ["data", "check", "--data", f, "--db", db],
        ["predict", "--data", f, "--out", tmp / "p.jsonl", "--db", db, "--model", nomodel],
        ["eval", "--data", f, "--out-dir", tmp / "ev", "--db", db, "--model", nomodel],
        ["train", "--train", f, "--valid", f, "--out", tmp / "ad", "--db", db, "--model", nomodel],
        ["train", "--config", f, "--out", tmp / "ad", "--model", nomodel],
        ["run", "--db", db, "--train", f, "--out", tmp / "run", "--set", f"model={nomodel}"],
        ["run", f, "--out", tmp / "run", "--set", f"model={nomodel}"],
        ["schema", "--db", f],
        ["schema", "--db", db, "--notes", f],
        ["ask", "how many?", "--db", f, "--model", nomodel],
        ["score", "--gold", "exoplanets:valid", "--pred", f, "--db", db],
        ["report", f.parent / "runa", f.parent / "runa"],
        ["augment", "--run", f.parent / "runa", "--out", tmp / "aug.jsonl", "--model", nomodel],
    ]


def _run_folder(tmp: Path, data: bytes) -> None:
    """A run folder whose every file holds the random content."""
    run = tmp / "runa"
    run.mkdir()
    for name in ("metrics.json", "recipe.json", "tuned_valid_report.json", "base_valid_report.json"):
        (run / name).write_bytes(data)


@pytest.mark.parametrize("which", range(14))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=contents())
def test_any_file_is_one_line_and_changes_nothing(which, content, tiny_db, tmp_path_factory, capsys, monkeypatch):
    tmp = tmp_path_factory.mktemp("fuzz")
    monkeypatch.chdir(tmp)
    suffix, data = content
    f = tmp / f"input{suffix}"
    f.write_bytes(data)
    _run_folder(tmp, data)
    db_bytes = tiny_db.read_bytes()
    before = {p: p.read_bytes() for p in tmp.rglob("*") if p.is_file()}
    argv = [str(a) for a in _commands(f, tiny_db, tmp)[which]]
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    after = {p: p.read_bytes() for p in tmp.rglob("*") if p.is_file()}
    assert tiny_db.read_bytes() == db_bytes
    if which in (0, 9, 11) and code == 0:  # a score or empty notes can be valid: nothing is written anyway
        assert after == before
        return
    assert code != 0, (argv, out, err)
    assert after == before, (argv, err, sorted(set(after) - set(before)))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, (argv, err)
    assert os.getcwd() == str(tmp)
