"""Loading datasets: the packaged splits, JSONL, CSV, the original Hugging Face layout, hub ids."""

import json
import sys
import types

import pytest

from sqltune.cli import main
from sqltune.dataset import dataset_path, load_items
from sqltune.errors import SqltuneError, UnknownNameError


def test_packaged_splits():
    folder = dataset_path("exoplanets")
    assert {p.name for p in folder.glob("*.jsonl")} >= {"train.jsonl", "valid.jsonl", "test.jsonl"}
    sizes = {}
    for split in ("train", "valid", "test"):
        items = load_items(f"exoplanets:{split}")
        sizes[split] = len(items)
        ids = [it["id"] for it in items]
        assert len(set(ids)) == len(ids)
        assert all(it["question"].strip() and it["sql"].strip() for it in items)
        assert all(set(it) <= {"id", "question", "sql", "notes"} for it in items)
    assert sizes["valid"] == 10 and sizes["train"] >= 150 and sizes["test"] >= 50


def test_packaged_valid_keeps_the_original_questions():
    valid = load_items("exoplanets:valid")
    assert valid[0]["question"].startswith("Determine the number of exoplanets discovered each year")
    v3, v7 = valid[3], valid[7]  # 0-based #3 and #7 of the original
    assert "RANK() OVER (PARTITION BY discovery_year" in v3["sql"]
    assert "now" not in v7["sql"] and "MAX(discovery_year)" in v7["sql"] and "notes" in v7


def test_basic_count_is_in_train():
    train = load_items("exoplanets:train")
    assert any(it["question"] == "How many exoplanets were discovered in 2016?" for it in train)


def test_unknown_names():
    with pytest.raises(UnknownNameError):
        dataset_path("nosuch")
    with pytest.raises(SqltuneError, match="name a split"):
        load_items("exoplanets")
    with pytest.raises(SqltuneError, match="unknown split"):
        load_items("exoplanets:dev")
    with pytest.raises(SqltuneError, match="file not found"):
        load_items("missing.jsonl")


def test_jsonl_with_field_names_and_ids(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"q": "How many books?", "query": "SELECT COUNT(*) FROM books", "extra": 1}) + "\n\n"
                    + json.dumps({"id": 7, "q": "Titles?", "query": "SELECT title FROM books"}) + "\n")
    items = load_items(path, question_field="q", sql_field="query")
    assert items == [
        {"id": "mine-001", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books", "extra": 1},
        {"id": "7", "question": "Titles?", "sql": "SELECT title FROM books"},
    ]


def test_a_surrogate_pair_is_text_and_a_lone_half_is_refused_wherever_the_row_goes(tmp_path, capsys, tiny_db):
    pair = tmp_path / "emoji.jsonl"
    pair.write_text('{"question": "How many \\ud83d\\ude00 authors?", "sql": "SELECT count(*) FROM authors"}\n')
    assert load_items(pair)[0]["question"] == "How many \U0001f600 authors?"
    lone = tmp_path / "lone.jsonl"
    lone.write_text('{"question": "How many \\ud83d authors?", "sql": "SELECT count(*) FROM authors"}\n')
    out = tmp_path / "report.json"  # before: score wrote the question into its report: UnicodeEncodeError
    assert main(["score", "--db", str(tiny_db), "--gold", str(pair), "--pred", str(lone), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "lone.jsonl, line 1: holds a lone surrogate escape" in err and "\n" not in err and not out.exists()


def test_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('nl,query\n"How many books?","SELECT COUNT(*)\nFROM books"\nTitles?,SELECT title FROM books\n',
                    encoding="utf-8")
    items = load_items(path, question_field="nl", sql_field="query")
    assert [it["id"] for it in items] == ["pairs-001", "pairs-002"]
    assert items[0]["sql"] == "SELECT COUNT(*)\nFROM books"
    with pytest.raises(SqltuneError, match=r"pairs.csv, line 3: missing field 'question'"):
        load_items(path)  # default column names are not there; the record ends on line 3


HF_ROWS = [
    {"context": "CREATE TABLE exoplanets (...)", "question": "How many planets?", "answer": "SELECT COUNT(*) FROM exoplanets"},
    {"context": "CREATE TABLE exoplanets (...)", "question": "Types?", "answer": "SELECT DISTINCT planet_type FROM exoplanets"},
]


@pytest.mark.parametrize("layout", ["records", "json_lines", "columns"])
def test_hugging_face_layout(tmp_path, layout):
    path = tmp_path / "train.json"
    if layout == "records":
        path.write_text(json.dumps(HF_ROWS, indent=2))
    elif layout == "json_lines":  # what datasets' Dataset.to_json writes
        path.write_text("".join(json.dumps(r) + "\n" for r in HF_ROWS))
    else:
        path.write_text(json.dumps({k: [r[k] for r in HF_ROWS] for k in HF_ROWS[0]}))
    items = load_items(path)
    assert [it["sql"] for it in items] == [r["answer"] for r in HF_ROWS]
    assert [it["question"] for it in items] == [r["question"] for r in HF_ROWS]
    assert items[0]["id"] == "train-001" and items[0]["context"].startswith("CREATE TABLE")
    assert "answer" not in items[0]


def test_hub_dataset_through_the_datasets_library(monkeypatch):
    calls = []

    def load_dataset(name, split):
        calls.append((name, split))
        return HF_ROWS

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    items = load_items("dpv/exoplanets-sql:valid")
    assert calls == [("dpv/exoplanets-sql", "valid")]
    assert items[1] == {"id": "valid-002", "context": HF_ROWS[1]["context"], "question": "Types?",
                        "sql": "SELECT DISTINCT planet_type FROM exoplanets"}
    load_items("hf:dpv/exoplanets-sql")
    assert calls[-1] == ("dpv/exoplanets-sql", "train")


def test_hub_errors_are_one_clear_line(monkeypatch):
    def offline(name, split):
        raise ConnectionError("Couldn't reach 'dpv/exoplanets-sql' on the Hub (OfflineModeIsEnabled)\nmore detail")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(SqltuneError, match=r"could not load hub dataset 'dpv/exoplanets-sql' .*OfflineModeIsEnabled\)$"):
        load_items("dpv/exoplanets-sql")
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(SqltuneError, match=r"pip install 'sqltune\[hub\]'"):
        load_items("dpv/exoplanets-sql")


@pytest.mark.parametrize("name,text,message", [
    ("bad.jsonl", '{"question": "a", "sql": "SELECT 1"}\n{"question": "b", "sql": \n', "bad.jsonl, line 2: not valid JSON"),
    ("bad.jsonl", '{"question": "a", "sql": "SELECT 1"}\n{"question": "b"}\n', "bad.jsonl, line 2: missing field 'sql'"),
    ("bad.jsonl", '{"question": "a", "sql": "  "}\n', "bad.jsonl, line 1: field 'sql' must be a non-empty string"),
    ("bad.json", '[{"question": "a", "answer": "SELECT 1"},\n 3]', "bad.json, record 2: expected a JSON object"),
    ("bad.json", '{"question": ["a", "b"], "answer": ["SELECT 1"]}', "bad.json: columns have different lengths"),
    ("bad.csv", "question,sql\nq1,SELECT 1,extra\n", "bad.csv, line 2: more fields than header columns"),
    ("bad.txt", "whatever", "bad.txt: unknown file type '.txt'"),
    ("bad.jsonl", '{"question": "a", "sql": "SELECT 1"}\n{"question": "b \\ud800", "sql": "SELECT 2"}\n',
     "bad.jsonl, line 2: holds a lone surrogate escape"),
    ("bad.json", '[{"question": "a", "sql": "SELECT \'\\uDC80\'"}]', "bad.json: holds a lone surrogate escape"),
])
def test_bad_input_is_one_line_from_the_cli(tmp_path, capsys, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    assert main(["data", "check", "--data", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
