"""benchmarks/untuned_panel.py: the untuned model's own panel against its plain answer, per DB and pooled, with the
shipped evaluator on a real (tiny) model; U0 is each row's answer before the panel, scored by the same scorer."""

from __future__ import annotations

import json

import pytest
from repo_scripts import load_script

from sqltune.dataset import write_jsonl
from sqltune.score import score_pairs

TRAIN = [{"question": "How many authors are there?", "sql": "SELECT COUNT(*) FROM authors"},
         {"question": "List all book titles.", "sql": "SELECT title FROM books"},
         {"question": "Which authors are from the UK?", "sql": "SELECT name FROM authors WHERE country = 'UK'"}]
TEST = [{"id": "x1", "question": "How many books are there?", "sql": "SELECT COUNT(*) FROM books"},
        {"id": "x2", "question": "Name every author.", "sql": "SELECT name FROM authors"}]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_table_pairs_the_panel_with_the_untuned_answer_on_each_db(tiny_model_dir, tiny_db, tmp_path, capsys):
    bench = load_script("benchmarks/untuned_panel.py")
    suite = tmp_path / "suite"
    for name in ("one", "two"):
        (suite / name).mkdir(parents=True)
        (suite / name / f"{name}.sqlite").write_bytes(tiny_db.read_bytes())
        write_jsonl(suite / name / "train.jsonl", TRAIN)
        write_jsonl(suite / name / "test.jsonl", TEST)
    out = tmp_path / "out"
    args = ["--devsuite", str(suite), "--no-exoplanets", "--out", str(out), "--set", f"model={tiny_model_dir}",
            "device=cpu", "dtype=float32", "eval.max_new_tokens=12", "eval.batch_size=4"]
    assert bench.main(args) == 0
    table = json.loads((out / "table.json").read_text())
    assert [r["db"] for r in table["rows"]] == ["one", "two"]
    for r in table["rows"]:
        rep = json.loads((out / f"{r['db']}_report.json").read_text())
        assert rep["eval_config"]["untuned_model"] and rep["eval_config"]["fallback"] == "panel"
        assert all(p["pool"]["untuned"] and set(p["pool"]["answers"]) >= {"4", "0"} for p in rep["predictions"])
        u0 = score_pairs(suite / r["db"] / f"{r['db']}.sqlite", TEST, [p["pool"]["sql"] for p in rep["predictions"]])
        assert r["u0"] == sum(e["exact"] for e in u0["examples"])
        assert r["panel"] == round(rep["summary"]["exact"] * 2) and r["n"] == 2
        assert r["compare"]["fixed"] - r["compare"]["broken"] == r["panel"] - r["u0"]
    pooled = table["devsuite_pooled"]
    assert pooled["n"] == 4 and pooled["u0"] == sum(r["u0"] for r in table["rows"])
    assert "| devsuite pooled | 4 |" in (out / "table.md").read_text()
    before = (out / "one_report.json").read_text()
    assert bench.main(args) == 0  # a finished DB's report is reused, not decoded again
    assert (out / "one_report.json").read_text() == before
    assert [r["u0"] for r in json.loads((out / "table.json").read_text())["rows"]] == [r["u0"] for r in table["rows"]]
