"""End to end: `sqltune run` on a tiny model and a tiny DB; the files it writes agree."""

import json

import pytest

from sqltune.cli import main
from sqltune.dataset import write_jsonl
from sqltune.errors import DatasetError, SqltuneError
from sqltune.run import _flat, run

TRAIN = [
    {"id": "t1", "question": "How many authors are there?", "sql": "SELECT COUNT(*) FROM authors"},
    {"id": "t2", "question": "List all book titles.", "sql": "SELECT title FROM books"},
    {"id": "t3", "question": "Which authors are from the UK?", "sql": "SELECT name FROM authors WHERE country = 'UK'"},
    {"id": "t4", "question": "What is the total number of copies sold?", "sql": "SELECT SUM(copies) FROM sales"},
]
VALID = [{"id": "v1", "question": "How many books are there?", "sql": "SELECT COUNT(*) FROM books"},
         {"id": "v2", "question": "Name every author.", "sql": "SELECT name FROM authors"}]
TEST = [{"id": "x1", "question": "What is the highest book price?", "sql": "SELECT MAX(price) FROM books"},
        {"id": "x2", "question": "Which months had sales?", "sql": "SELECT DISTINCT month FROM sales"}]


pytestmark = pytest.mark.usefixtures("one_thread")


def overrides(model, db, tmp_path, **data):
    files = {}
    for name, rows in (("train", TRAIN), ("valid", VALID), ("test", TEST)):
        files[name] = str(write_jsonl(tmp_path / f"{name}.jsonl", data.get(name, rows)))
    return {"model": str(model), "device": "cpu", "dtype": "float32",
            "data": {"db": str(db), **files},
            "train": {"method": "lora", "rank": 8, "alpha": 16, "dropout": 0.0, "lr": 1e-2, "epochs": 2,
                      "batch_size": 2, "top_layers": None, "seed": 0},
            "eval": {"batch_size": 4, "max_new_tokens": 12}}


def test_run_end_to_end_files_agree(tiny_model_dir, tiny_db, tmp_path):
    out = tmp_path / "run"
    metrics = run("default", out, overrides=overrides(tiny_model_dir, tiny_db, tmp_path))
    on_disk = json.loads((out / "metrics.json").read_text())
    for stage in ("base", "tuned"):
        for split in ("valid", "test"):
            summary = on_disk[stage][split]
            assert set(summary) == {"n", "execution_rate", "exact", "set", "fuzzy", "vacuous", "retried", "retry_fixed",
                                    "fallback_used", "fallback_fixed", "pool_voted", "pool_changed", "pool_fixed",
                                    "pool_hurt"} | ({"repaired", "repair_exact"} if stage == "tuned" else set())
            # the default recipe's eval.fallback: panel, and eval.repair (not in the base stage: the model as it is)
            report = json.loads((out / f"{stage}_{split}_report.json").read_text())
            assert report["summary"] == summary == metrics[stage][split]
            preds = [json.loads(line) for line in (out / f"{stage}_{split}_pred.jsonl").read_text().splitlines()]
            assert [p["id"] for p in preds] == [e["id"] for e in report["examples"]]
    md = (out / "report.md").read_text()
    exact = on_disk["tuned"]["valid"]["exact"]
    assert f"| valid | exact | {on_disk['base']['valid']['exact']:.1%} | {exact:.1%} |" in md
    assert "McNemar" in md and "only 2 questions" in md
    for png in ("chart_metrics.png", "chart_outcomes_valid.png", "chart_outcomes_test.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert (out / "adapter" / "COMPLETE").is_file()
    # training's step 0 ("no training") is the base model's valid report, not a second generation
    step0 = json.loads((out / "adapter" / "metrics.jsonl").read_text().splitlines()[0])
    assert step0["step"] == 0 and step0["exact"] == on_disk["base"]["valid"]["exact"]
    assert step0["execution_rate"] == on_disk["base"]["valid"]["execution_rate"]
    # metrics.json says which step training chose, and at step 0 which stage the tuned one is (its reports say so too)
    chosen = json.loads((out / "adapter" / "sqltune_checkpoint.json").read_text())["chosen"]
    same = json.loads((out / "tuned_valid_report.json").read_text()).get("same_model_as")
    assert on_disk["chosen"] == metrics["chosen"] == {"tuned": {"step": chosen["step"], **({"same_model_as": same}
                                                                                           if same else {})}}
    assert (same == "base") == (chosen["step"] == 0)
    # a finished run resumes to the same metrics without redoing work
    again = run("default", out, resume=True, overrides=overrides(tiny_model_dir, tiny_db, tmp_path))
    assert again["tuned"] == metrics["tuned"] and again["base"] == metrics["base"] and again["chosen"] == metrics["chosen"]
    with pytest.raises(SqltuneError, match="--resume"):
        run("default", out, overrides=overrides(tiny_model_dir, tiny_db, tmp_path))
    # and `sqltune report` compares it with itself: nothing fixed, nothing broken
    assert main(["report", str(out), str(out)]) == 0


def test_run_hands_the_base_stages_answers_to_the_tuned_stages_fallback(tiny_model_dir, tiny_db, tmp_path, monkeypatch):
    """The untuned model's answers are decoded once, in the base stage: the tuned stage's fallback (`eval.fallback`)
    gets them as `EvalConfig.untuned`, per split, keyed by question, as the base stage wrote them."""
    import sqltune.evaluate as ev

    seen = []
    real = ev.evaluate

    def spy(model, tok, builder, items, db, cfg=None):
        seen.append(([it["question"] for it in items], cfg.untuned))
        return real(model, tok, builder, items, db, cfg)

    monkeypatch.setattr(ev, "evaluate", spy)
    import sqltune.run as run_mod  # score the tuned stage even where training kept the untuned model

    monkeypatch.setattr(run_mod, "_same_model_scores", lambda *a, **k: None)
    out = tmp_path / "run"
    run("default", out, overrides=overrides(tiny_model_dir, tiny_db, tmp_path))
    by_split = {"valid": VALID, "test": TEST}
    stages = [(qs, u) for qs, u in seen if qs in ([it["question"] for it in v] for v in by_split.values())]
    assert len(stages) >= 2 and stages[0][1] is None  # the base stage decodes them itself
    tuned = stages[-2:]  # the tuned stage's valid and test
    for (qs, untuned), split in zip(tuned, ("valid", "test")):
        base = [json.loads(line) for line in (out / f"base_{split}_pred.jsonl").read_text().splitlines()]
        assert untuned == {r["question"]: r for r in base} and set(untuned) == set(qs)


def test_untuned_answers_are_a_cache_that_never_stops_a_run(tmp_path):
    """`untuned_answers` reads what the base stage wrote; a missing or damaged file leaves its split out (the fallback
    then decodes those answers), it does not stop the run."""
    from sqltune.run import RunFolder, untuned_answers

    run_dir = RunFolder(tmp_path)
    write_jsonl(tmp_path / "base_valid_pred.jsonl", [{"id": "v1", "question": "Q1?", "sql": "SELECT 1"},
                                                     {"id": "v2", "sql": "SELECT 2"}])
    (tmp_path / "base_test_pred.jsonl").write_text('{"question": "Q2?", "sql": "SELECT 2"}\n{"question": "Q3', encoding="utf-8")
    got = untuned_answers(run_dir, ("valid", "test", "train"))
    assert got == {"valid": {"Q1?": {"id": "v1", "question": "Q1?", "sql": "SELECT 1"}}}


def test_run_stops_on_a_failing_gold_query(tiny_model_dir, tiny_db, tmp_path):
    bad = [dict(VALID[0], sql="SELECT nope FROM books")]
    with pytest.raises(DatasetError, match="data check failed"):
        run("default", tmp_path / "run", overrides=overrides(tiny_model_dir, tiny_db, tmp_path, valid=bad))
    assert not (tmp_path / "run" / "base_valid_report.json").exists()


def test_run_with_augment_round(tiny_model_dir, tiny_db, tmp_path, monkeypatch):
    import sqltune.augment as aug

    # A random tiny model writes empty questions, so the round would keep nothing and prove nothing:
    # the question writer is replaced by one that numbers its questions; the rest runs for real.
    monkeypatch.setattr(aug, "_chat", lambda m, tok, prompts, **kw: [f"Question: what does query {i} return?"
                                                                     for i in range(len(prompts))])
    ov = overrides(tiny_model_dir, tiny_db, tmp_path)
    # no round trip: a random tiny model never reads a question back
    ov["augment"] = {"enabled": True, "max": 3, "roundtrip": False}
    ov["train"]["epochs"] = 1
    out = tmp_path / "run"
    metrics = run("default", out, overrides=ov)
    assert set(metrics["augmented"]) == {"valid", "test"}
    summary = json.loads((out / "augment_summary.json").read_text())
    kept = summary["kept"]
    assert 1 <= kept == len((out / "augmented.jsonl").read_text().splitlines()) <= 3, summary
    info = json.loads((out / "adapter_augmented" / "sqltune_checkpoint.json").read_text())
    assert info["data"]["train"]["n"] == len(TRAIN) + kept  # the second training saw the new pairs
    assert "augmented" in (out / "report.md").read_text()


def test_cli_run_set_overrides_and_bad_keys(tiny_model_dir, tiny_db, tmp_path, capsys):
    ov = overrides(tiny_model_dir, tiny_db, tmp_path)
    args = ["run", "--out", str(tmp_path / "bad"), "--set", f"model={tiny_model_dir}", "--set", "train.nonsense=1"]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "nonsense" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    assert main(["run", "--out", str(tmp_path / "x"), "--set", "train.epochs"]) != 0  # no '='
    assert "KEY=VALUE" in capsys.readouterr().err
    # good overrides reach the run: the recipe it records has them
    sets = [f"model={tiny_model_dir}", "device=cpu", "dtype=float32", f"data.db={tiny_db}",
            f"data.train={ov['data']['train']}", f"data.valid={ov['data']['valid']}", f"data.test={ov['data']['test']}",
            "train.epochs=1", "train.batch_size=2", "train.top_layers=null", "train.lr=1e-2", "eval.max_new_tokens=8"]
    out = tmp_path / "good"
    assert main(["run", "--out", str(out)] + [a for kv in sets for a in ("--set", kv)]) == 0
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["train"]["epochs"] == 1 and recipe["train"]["top_layers"] is None
    assert recipe["eval"]["max_new_tokens"] == 8 and recipe["model"] == str(tiny_model_dir)


def test_run_on_your_own_db_with_one_file(tiny_model_dir, tiny_db, tmp_path, capsys):
    """`sqltune run --db DB --train PAIRS`: valid and test are split off the one file by gold SQL."""
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, TRAIN + VALID + TEST + [dict(t, id=t["id"] + "b", question=t["question"] + " (again)")
                                               for t in TRAIN])
    out = tmp_path / "mine"
    sets = [f"model={tiny_model_dir}", "device=cpu", "dtype=float32", "train.epochs=1", "train.batch_size=2",
            "train.top_layers=null", "eval.max_new_tokens=8"]
    code = main(["run", "--db", str(tiny_db), "--train", str(pairs), "--out", str(out)]
                + [a for kv in sets for a in ("--set", kv)])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "split off" in printed
    # each stage says it starts, in order (the progress bars under it say how far it is)
    heads = [ln.split(":")[0] for ln in printed.splitlines() if ln.startswith("> ")]
    assert heads[0] == f"> {out}" and heads[1:3] == ["> base", "> train"], printed
    assert heads[3:] in ([], ["> tuned"])  # no tuned line when training kept the untuned model (its scores copied)
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["data"]["split"] is True and recipe["data"]["valid"] is None
    splits = {s: [json.loads(x) for x in (out / f"split_{s}.jsonl").read_text().splitlines()]
              for s in ("train", "valid", "test")}
    assert sum(map(len, splits.values())) == len(TRAIN) * 2 + len(VALID) + len(TEST)
    sql_of = {s: {it["sql"] for it in items} for s, items in splits.items()}
    assert not (sql_of["train"] & sql_of["valid"] or sql_of["train"] & sql_of["test"] or sql_of["valid"] & sql_of["test"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tuned"]["test"]["n"] == len(splits["test"])
    report = (out / "report.md").read_text()
    assert str(tiny_model_dir) in report and "split off data.train" in report
    assert (out / ".sqltune").is_file()
    # a second run into the same folder without --resume is refused; with --resume it finds everything done
    assert main(["run", "--db", str(tiny_db), "--train", str(pairs), "--out", str(out)]
                + [a for kv in sets for a in ("--set", kv)]) == 2
    assert main(["run", "--db", str(tiny_db), "--train", str(pairs), "--out", str(out), "--resume"]
                + [a for kv in sets for a in ("--set", kv)]) == 0


def test_a_voting_run_gives_training_the_greedy_step_0(tiny_model_dir, tiny_db, tmp_path, monkeypatch):
    """Training scores candidates greedily; with eval.vote the base report is voted, and its greedy half
    (not the vote) must be step 0, else the checkpoint choice compares a vote with greedy answers."""
    import sqltune.train
    from sqltune.run import greedy_view

    seen = {}

    def fake_train(cfg, train_items, valid_items, db, out, resume=False, baseline=None, choose=None):
        seen["baseline"] = baseline
        raise KeyboardInterrupt  # stop the run here: only the hand-over matters

    monkeypatch.setattr(sqltune.train, "train", fake_train)
    ov = overrides(tiny_model_dir, tiny_db, tmp_path)
    ov["eval"] = {**ov["eval"], "vote": 3}
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run("default", out, overrides=ov)
    base = json.loads((out / "base_valid_report.json").read_text())
    assert base["vote"]["n"] == 3
    assert seen["baseline"]["summary"] == base["vote"]["greedy"]
    assert seen["baseline"]["examples"] == base["vote"]["greedy_examples"]
    plain = {"summary": {"exact": 0.5}, "examples": []}
    assert greedy_view(plain) is plain


def test_a_run_folder_another_process_is_writing_is_refused(tiny_model_dir, tiny_db, tmp_path, monkeypatch):
    """Two `run --out X` at once (two `--resume`s, or two fresh runs started together) interleaved their stages in one
    folder: the second would score, train into X/adapter.work and delete it under the first. The process writing
    the folder holds it; another is refused in one line before any model time, and a killed holder frees it."""
    import subprocess
    import sys

    import sqltune.model

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from sqltune.run import RunFolder; f = RunFolder(Path(sys.argv[1])); "
                               "print('holding', flush=True); time.sleep(60)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"

        def no_model(*a, **k):
            raise AssertionError("a second run went on in a folder another process is writing")

        monkeypatch.setattr(sqltune.model, "load_model", no_model)
        with pytest.raises(SqltuneError, match="in use by another sqltune process"):
            run("default", out, resume=True, overrides=overrides(tiny_model_dir, tiny_db, tmp_path))
        assert not (out / "recipe.json").exists()
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(AssertionError, match="a second run"):  # the killed process's hold is gone
        run("default", out, resume=True, overrides=overrides(tiny_model_dir, tiny_db, tmp_path))


def test_an_interrupted_copy_of_step_0s_scores_leaves_no_stage_without_its_predictions(tmp_path, monkeypatch):
    """When training keeps step 0, the base stage's report and predictions are copied as the tuned stage's. The
    report marks the stage done (a resume skips it), so it is written last: before, a Ctrl-C or kill after it left
    tuned_valid_report.json with no (or half a) tuned_valid_pred.jsonl, which no resume wrote again."""
    from pathlib import Path

    from sqltune.run import RunFolder, _same_model_scores

    run_dir = RunFolder(tmp_path / "run")
    ck = tmp_path / "run" / "adapter"
    ck.mkdir()
    (ck / "sqltune_checkpoint.json").write_text(json.dumps({"prompt": {}, "chosen": {"step": 0, "untrained": True}}))
    (ck / "COMPLETE").write_text("")
    (run_dir.path / "base_valid_report.json").write_text(json.dumps({"summary": {"exact": 0.5}, "examples": []}))
    write_jsonl(run_dir.path / "base_valid_pred.jsonl", [{"id": "v1", "sql": "SELECT 1"}, {"id": "v2", "sql": None}])
    real = Path.read_bytes

    def interrupted(self):
        if self.name == "base_valid_pred.jsonl":
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _same_model_scores(run_dir, ck, "base", "tuned", ["valid"])
    assert not (run_dir.path / "tuned_valid_report.json").exists()  # not done: the resume copies both
    monkeypatch.setattr(Path, "read_bytes", real)
    _same_model_scores(run_dir, ck, "base", "tuned", ["valid"])
    assert json.loads((run_dir.path / "tuned_valid_report.json").read_text())["same_model_as"] == "base"
    assert (run_dir.path / "tuned_valid_pred.jsonl").read_bytes() == (run_dir.path / "base_valid_pred.jsonl").read_bytes()


def test_ctrl_c_while_a_finished_run_prints_its_scores_does_not_say_nothing_was_written(tmp_path, monkeypatch, capsys):
    """A Ctrl-C after `run` wrote metrics.json and the report, while the CLI printed the scores, said
    'interrupted; nothing written' about a complete run folder; it says what was kept, as for any stage."""
    import sqltune.cli
    import sqltune.run
    from sqltune.run import RunFolder

    out = tmp_path / "run"

    def finished(recipe, out_dir, resume=False, overrides=None):
        RunFolder(out_dir)
        return {"base": {"valid": {"n": 1}}, "timings": {}, "out": str(out_dir)}

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sqltune.run, "run", finished)
    monkeypatch.setattr(sqltune.cli, "print_summary", interrupted)
    assert main(["run", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "nothing written" not in err and f"{out} keeps the finished stages" in " ".join(err.split())


def test_chosen_steps_name_each_trained_stages_step_in_the_reports_order(tmp_path):
    """metrics.json's `chosen`: per stage scored from a checkpoint, the step its training chose (a soup of GRPO runs:
    each run's too), and at step 0 the stage it is the same model as, from its reports; base has no checkpoint."""
    from sqltune.checkpoint import CHECKPOINT_META, COMPLETE
    from sqltune.run import chosen_steps

    def checkpoint(name, chosen):
        (tmp_path / name).mkdir()
        (tmp_path / name / CHECKPOINT_META).write_text(json.dumps({"prompt": {}, "chosen": chosen}))
        (tmp_path / name / COMPLETE).write_text("")
        return tmp_path / name

    reports = {"base": {"valid": {}}, "tuned": {"valid": {"same_model_as": "base"}, "test": {"same_model_as": "base"}},
               "rl_run1": {"valid": {}}, "rl": {"valid": {}}}
    checkpoints = {"rl": checkpoint("rl", {"step": 6, "untrained": False, "steps": [6, 0]}),
                   "tuned": checkpoint("tuned", {"step": 0, "untrained": True}),
                   "rl_run1": checkpoint("rl_run1", {"step": 6})}
    got = chosen_steps(reports, checkpoints)
    assert got == {"tuned": {"step": 0, "same_model_as": "base"}, "rl_run1": {"step": 6}, "rl": {"step": 6, "steps": [6, 0]}}
    assert list(got) == ["tuned", "rl_run1", "rl"]


def test_the_cli_says_a_step_0_stage_from_metrics_json(tmp_path, monkeypatch, capsys):
    """The closing line "tuned is the base model ..." comes from metrics.json's `chosen` (it re-read each stage's
    valid report before), and `chosen` is no stage: no score table for it."""
    import sqltune.run

    def finished(recipe, out_dir, resume=False, overrides=None):
        return {"base": {"valid": {"n": 1, **dict.fromkeys(("execution_rate", "exact", "set", "fuzzy", "vacuous"), 0.0)}},
                "chosen": {"tuned": {"step": 0, "same_model_as": "base"}, "rl": {"step": 4}}, "timings": {},
                "out": str(out_dir)}

    monkeypatch.setattr(sqltune.run, "run", finished)
    assert main(["run", "--out", str(tmp_path / "run")]) == 0  # no report file there to read
    printed = " ".join(capsys.readouterr().out.split())
    assert printed.count("tuned is the base model: training did not beat it on valid, so the run kept it (step 0)") == 1
    assert "rl is" not in printed and "chosen" not in printed and "base / valid" in printed


def test_a_run_folder_from_before_chosen_resumes_to_the_same_closing_line(tiny_model_dir, tiny_db, tmp_path, capsys):
    """A run folder written before metrics.json held `chosen` (its step-0 stage marked only in the copied reports)
    resumes to the same closing line, and its metrics.json gains `chosen`."""
    ov = overrides(tiny_model_dir, tiny_db, tmp_path)
    ov["train"]["choose"] = "noise"  # the tiny model gains nothing: the noise rule keeps step 0 (the default's `last` would not)
    ov["eval"]["fallback"] = "base"  # with the default's panel the step-0 model answers with its own panel instead
    ov["eval"]["repair"] = False  # and with the repair, the base answers repaired (the next test)
    args = [a for k, v in _flat(ov).items() for a in ("--set", f"{k}={'null' if v is None else v}")]
    out = tmp_path / "run"
    assert main(["run", "--out", str(out)] + args) == 0
    line = "tuned is the base model: training did not beat it on valid, so the run kept it (step 0)"
    assert line in " ".join(capsys.readouterr().out.split())  # the tiny model's training keeps step 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["chosen"] == {"tuned": {"step": 0, "same_model_as": "base"}}
    (out / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "chosen"}))
    assert main(["run", "--out", str(out), "--resume"] + args) == 0
    assert line in " ".join(capsys.readouterr().out.split())
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_a_run_that_keeps_step_0_answers_with_the_untuned_models_own_panel(tiny_model_dir, tiny_db, tmp_path,
                                                                           capsys):
    """With the panel (the default's `eval.fallback`), a run whose training keeps step 0 does not copy the base
    stage's scores: the tuned stage is the untuned model answering with its own panel (`evaluate.untuned_panel`),
    its answers without examples taken from the base stage (the same SQL), the others decoded; metrics.json, the
    closing line and report.md say so. The base stage stays the plain untuned model."""
    ov = overrides(tiny_model_dir, tiny_db, tmp_path)
    ov["train"]["choose"] = "noise"
    args = [a for k, v in _flat(ov).items() for a in ("--set", f"{k}={'null' if v is None else v}")]
    out = tmp_path / "run"
    assert main(["run", "--out", str(out)] + args) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "tuned is the untuned model: training did not beat it on valid, so the run kept step 0" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["chosen"] == {"tuned": {"step": 0, "untuned_panel": True}}
    for split in ("valid", "test"):
        base = json.loads((out / f"base_{split}_report.json").read_text())
        tuned = json.loads((out / f"tuned_{split}_report.json").read_text())
        assert "same_model_as" not in tuned and tuned["eval_config"]["untuned_model"] is True
        assert base["eval_config"]["untuned_model"] is False and base["summary"]["pool_voted"] == 0
        assert tuned["summary"]["pool_voted"] == len(tuned["examples"])
        base_sql = [e["pred_sql"] for e in base["examples"]]
        assert [e["pool"]["sql"] for e in tuned["examples"]] == base_sql  # the untuned answers, not decoded again
        assert all(e["pool"]["untuned"] and "4" in e["pool"]["answers"] for e in tuned["examples"])
    assert "tuned is the untuned model answering with its own panel" in (out / "report.md").read_text()
    assert main(["run", "--out", str(out), "--resume"] + args) == 0  # a resume scores nothing again
    assert json.loads((out / "metrics.json").read_text())["tuned"] == metrics["tuned"]


def test_a_run_that_keeps_step_0_repairs_the_base_answers_where_they_fail(tiny_model_dir, tiny_db, tmp_path, capsys,
                                                                          monkeypatch):
    """`eval.repair` without the panel: a run whose training keeps step 0 does not copy the base stage's scores
    either; its tuned stage is the base stage's answers (not decoded again) with the last-resort repair. The base
    stage stays the model as written. Generation is stubbed to one repairable query (a swapped alias)."""
    import sqltune.generate as gen
    from sqltune.generate import Generation

    wrote = "SELECT T1.title FROM authors AS T1 JOIN books AS T2 ON T1.id = T2.author_id"
    calls = []

    def fake(model, tok, builder, questions, **kw):
        calls.append(len(questions))
        return [Generation(q, raw=wrote, sql=wrote, seconds=0.01) for q in questions]

    monkeypatch.setattr(gen, "generate_sql", fake)
    ov = overrides(tiny_model_dir, tiny_db, tmp_path)
    ov["train"]["choose"] = "noise"  # every checkpoint writes the same: step 0 is kept
    ov["eval"]["fallback"] = "none"
    args = [a for k, v in _flat(ov).items() for a in ("--set", f"{k}={'null' if v is None else v}")]
    out = tmp_path / "run"
    assert main(["run", "--out", str(out)] + args) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "tuned is the untuned model: training did not beat it on valid, so the run kept step 0; its answers are " \
           "the base stage's, where they fail repaired against the schema" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["chosen"] == {"tuned": {"step": 0, "untuned": True}}
    for split in ("valid", "test"):
        base = json.loads((out / f"base_{split}_report.json").read_text())
        tuned = json.loads((out / f"tuned_{split}_report.json").read_text())
        assert "same_model_as" not in tuned and tuned["eval_config"]["repair"] is True
        assert base["eval_config"]["repair"] is False and "repaired" not in base["summary"]
        assert all(e["pred_sql"] == wrote and not e["executed"] for e in base["examples"])
        assert all(e["model_sql"] == wrote and e["executed"] and "T2.title" in e["pred_sql"] for e in tuned["examples"])
        assert tuned["summary"]["repaired"] == len(tuned["examples"]) and tuned["summary"]["execution_rate"] == 1.0
    n_decoded = sum(calls)
    md = (out / "report.md").read_text()
    assert "tuned is the untuned model*" in md and "answers repaired against the schema" in md
    assert main(["run", "--out", str(out), "--resume"] + args) == 0  # a resume decodes and scores nothing again
    assert sum(calls) == n_decoded and json.loads((out / "metrics.json").read_text())["tuned"] == metrics["tuned"]


def test_a_run_on_a_relative_db_records_its_absolute_path_for_use_from_elsewhere(tiny_model_dir, tiny_db, tmp_path,
                                                                                   monkeypatch):
    """`sqltune run --db my.sqlite` keeps the path as given (recipe.json: `--resume` compares it) and records the
    absolute one beside the fingerprints (inputs.json `db_path`, not compared: a run from before it, or whose database
    was found from another folder, still resumes); `load(run=...)` and `serve --run` from another folder find it. The
    folder the run was started in is recorded so too (`started_in`: where `augment --run` finds the item files)."""
    import shutil
    from pathlib import Path

    import sqltune
    import sqltune.evaluate as ev
    import sqltune.model
    from sqltune.checkpoint import CHECKPOINT_META, COMPLETE
    from sqltune.serve import run_settings

    def stop(*a, **k):
        raise KeyboardInterrupt  # only the files written before the base model loads matter here

    monkeypatch.setattr(sqltune.model, "load_model", stop)
    monkeypatch.chdir(tmp_path)
    db = shutil.copy(tiny_db, tmp_path / "my.sqlite").resolve()
    ov, out = overrides(tiny_model_dir, "my.sqlite", tmp_path), tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run("default", out, overrides=ov)
    assert json.loads((out / "recipe.json").read_text())["data"]["db"] == "my.sqlite"
    inputs = json.loads((out / "inputs.json").read_text())
    assert inputs["db_path"] == str(db) and Path(inputs["started_in"]).samefile(tmp_path)
    for old in ({k: v for k, v in inputs.items() if k not in ("db_path", "started_in")},
                {**inputs, "db_path": "/moved/my.sqlite", "started_in": "/moved"}):
        (out / "inputs.json").write_text(json.dumps(old))
        with pytest.raises(KeyboardInterrupt):  # not refused as another run's folder
            run("default", out, resume=True, overrides=ov)
        assert json.loads((out / "inputs.json").read_text()) == inputs
    (out / "adapter").mkdir()
    (out / "adapter" / COMPLETE).write_text("")
    (out / "adapter" / CHECKPOINT_META).write_text("{}")
    monkeypatch.setattr(ev, "load_for_inference", lambda *a, **k: (None, None, None))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert sqltune.load(run=out).db == str(db) and run_settings(out)[1] == str(db)


def test_a_valid_split_the_untuned_model_aces_is_said_before_training():
    from sqltune.run import nothing_to_beat

    valid = [{"question": "q1", "sql": "SELECT 1"}, {"question": "q2", "sql": "SELECT 2"}]
    aced, not_aced = {"summary": {"exact": 1.0}}, {"summary": {"exact": 0.5}}
    assert "all 2 valid questions" in nothing_to_beat(aced, valid, valid)
    assert nothing_to_beat(not_aced, valid, valid) is None
    assert nothing_to_beat(aced, valid + [{"question": "syn", "sql": "SELECT 3"}], valid) is None  # + synthetic slice
    assert nothing_to_beat(aced, valid, valid, "last") is None  # `train.choose: last` needs no gain


def test_run_with_no_pairs_writes_them_from_the_database(tiny_model_dir, tiny_db, tmp_path, capsys, monkeypatch):
    """`sqltune run --db DB` with no --train: synthesis writes pairs from the database alone (no seeds), valid is
    split off them, the given --test is held out of all of them; interrupted during synthesis, the run resumes."""
    import sqltune.synth as synth_mod

    test = write_jsonl(tmp_path / "test.jsonl", TEST)
    out = tmp_path / "nopairs"
    sets = [f"model={tiny_model_dir}", "device=cpu", "dtype=float32", "train.epochs=1", "train.batch_size=2",
            "train.top_layers=null", "eval.max_new_tokens=8", "synth.k=12", "synth.questions=template"]
    args = ["run", "--db", str(tiny_db), "--test", str(test), "--out", str(out)] + [a for kv in sets for a in ("--set", kv)]
    real, calls = synth_mod.synth, []

    def interrupted(*a, **kw):
        calls.append((a, kw))
        raise KeyboardInterrupt

    monkeypatch.setattr(synth_mod, "synth", interrupted)
    assert main(args) == 130  # Ctrl-C during synthesis: the run folder is kept for --resume, no pairs written
    (db, pairs_file, seeds, held), _ = calls[0]
    assert seeds == [] and [it["id"] for it in held["test"]] == [t["id"] for t in TEST]
    assert (out / "recipe.json").is_file() and not (out / "synth_pairs.jsonl").exists()
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(synth_mod, "synth", real)
    assert main(args) == 2  # the folder holds the started run: without --resume it is refused
    assert main(args + ["--resume"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "no pairs given" in printed and "split off the pairs written from" in printed
    pairs = [json.loads(x) for x in (out / "synth_pairs.jsonl").read_text().splitlines()]
    assert 0 < len(pairs) <= 12
    splits = {s: [json.loads(x) for x in (out / f"split_{s}.jsonl").read_text().splitlines()] for s in ("train", "valid")}
    assert sorted(it["id"] for s in splits.values() for it in s) == sorted(p["id"] for p in pairs)
    assert splits["train"] and splits["valid"]
    assert not {p["sql"] for p in pairs} & {t["sql"] for t in TEST}
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["data"]["train"] == "synth" and recipe["data"]["split"] is True
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["base"]["test"]["n"] == len(TEST) and "synth" in metrics["timings"]
    assert not (out / "synth.jsonl").exists()  # the recipe's synth stage does not run again on synthetic pairs
    assert "no pairs given" in (out / "report.md").read_text()
    assert main(args + ["--resume"]) == 0  # everything done: nothing runs again
    assert json.loads((out / "synth_pairs.jsonl").read_text().splitlines()[0]) == pairs[0]


def test_no_pairs_needs_synthesis_and_a_run(tiny_model_dir, tiny_db, tmp_path, capsys, monkeypatch):
    """synth.k = 0 with no pairs is nothing to train on; synthesis that keeps nothing says why and leaves no empty
    pairs file behind as the run's pairs; `data.train: synth` outside `run` names what to give."""
    import sqltune.synth as synth_mod
    from sqltune.pairs import write_pairs

    monkeypatch.setattr(synth_mod, "synth", lambda db, out, *a, **kw: write_pairs(out, [], {"kept": 0}))
    out = tmp_path / "empty"
    code = main(["run", "--db", str(tiny_db), "--out", str(out), "--set", f"model={tiny_model_dir}", "--set", "device=cpu"])
    printed = capsys.readouterr()
    assert code == 2 and "synth kept no pairs from" in printed.err
    assert "note: on a CPU this is slow" in printed.out  # the model writes the questions here, on the CPU
    assert (out / "synth_pairs.summary.json").is_file() and not (out / "synth_pairs.jsonl").exists()
    out = tmp_path / "r"
    assert main(["run", "--db", str(tiny_db), "--out", str(out), "--set", "synth.k=0"]) == 2
    assert "synth.k is 0: nothing to train on" in capsys.readouterr().err and not out.exists()
    assert main(["train", "--db", str(tiny_db), "--train", "synth", "--valid", "synth", "--out", str(tmp_path / "a")]) == 2
    assert "no pairs of one's own" in capsys.readouterr().err
    assert main(["run", "--valid", "v.jsonl"]) == 2
    assert "--valid/--test go with --train" in capsys.readouterr().err


def test_db_without_train_writes_pairs_only_where_the_recipe_has_none(tiny_db, tmp_path, capsys, monkeypatch):
    """`run RECIPE --db DB` with no --train writes pairs from the database only where the recipe's own training pairs
    are still the exoplanets questions: a recipe naming pairs of its own keeps them (and its valid/test), and --test
    is never dropped silently where --set gives the training pairs."""
    import sqltune.run as run_mod

    calls = []
    monkeypatch.setattr(run_mod, "run", lambda recipe, out, resume=False, overrides=None: calls.append(overrides) or {})
    files = {s: str(write_jsonl(tmp_path / f"{s}.jsonl", rows)) for s, rows in (("train", TRAIN), ("valid", VALID),
                                                                                ("test", TEST))}
    own = tmp_path / "own.yaml"
    own.write_text(json.dumps({"name": "own", "data": {"db": str(tiny_db), **files}}))
    assert main(["run", str(own), "--db", str(tiny_db), "--out", str(tmp_path / "a")]) == 0
    assert "data.train" not in calls[-1] and "data.valid" not in calls[-1] and "data.test" not in calls[-1]
    assert main(["run", "--db", str(tiny_db), "--test", files["test"], "--out", str(tmp_path / "b")]) == 0
    assert calls[-1]["data.train"] == "synth" and calls[-1]["data.test"] == files["test"]  # no pairs at all
    n = len(calls)
    for args in ([str(own), "--db", str(tiny_db), "--test", files["test"]],
                 ["--db", str(tiny_db), "--set", f"data.train={files['train']}", "--test", files["test"]]):
        assert main(["run", *args, "--out", str(tmp_path / "c")]) == 2
        assert "--valid/--test go with --train" in capsys.readouterr().err
    assert len(calls) == n
    # a recipe that says `data.train: synth` itself: --test / --valid are the questions held out, in place of its own
    mine = tmp_path / "mine.yaml"
    mine.write_text(json.dumps({"name": "mine", "data": {"db": str(tiny_db), "train": "synth", "valid": None,
                                                         "test": None, "split": True}, "synth": {"k": 5}}))
    assert main(["run", str(mine), "--test", files["test"], "--out", str(tmp_path / "d")]) == 0
    assert calls[-1]["data.test"] == files["test"] and "data.train" not in calls[-1] and "data.split" not in calls[-1]
    assert main(["run", str(mine), "--valid", files["valid"], "--out", str(tmp_path / "e")]) == 0
    assert calls[-1]["data.valid"] == files["valid"] and calls[-1]["data.split"] is False
    assert main(["run", str(mine), "--out", str(tmp_path / "f")]) == 0
    assert not any(k.startswith("data.") for k in calls[-1])  # the recipe's own data section, untouched


def test_no_pairs_checks_the_given_questions_before_synthesis_and_names_another_run(tiny_model_dir, tiny_db, tmp_path,
                                                                                     capsys, monkeypatch):
    """A --test whose gold SQL fails is refused before synthesis (minutes), with nothing written, not after it with
    the pairs kept and "nothing written" said; a folder holding a run given pairs of its own, resumed as one with no
    pairs, is said to hold another run, not to have lost the pairs it never had."""
    import sqltune.synth as synth_mod
    from sqltune.files import claim

    calls = []
    monkeypatch.setattr(synth_mod, "synth", lambda *a, **kw: calls.append(a))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "x1", "question": "Top price?", "sql": "SELECT MAX(prize) FROM books"}])
    out = tmp_path / "r"
    assert main(["run", "--db", str(tiny_db), "--test", str(bad), "--out", str(out), "--set", f"model={tiny_model_dir}"]) == 2
    err = capsys.readouterr().err
    assert "data check failed" in err and "no such column: prize" in " ".join(err.split()), err
    assert not calls and not out.exists()

    other = tmp_path / "other"
    claim(other, "run")
    (other / "recipe.json").write_text(json.dumps({"data": {"db": str(tiny_db), "train": "pairs.jsonl", "valid": None,
                                                            "test": None, "split": True}}))
    (other / "inputs.json").write_text(json.dumps({"db": "0" * 64, "train": "1" * 64, "valid": "2" * 64}))
    assert main(["run", "--db", str(tiny_db), "--out", str(other), "--resume", "--set", f"model={tiny_model_dir}"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "holds a run with other settings" in err and "data.train" in err and "missing" not in err, err
    assert not calls


def test_no_pairs_reads_the_extra_pairs_before_synthesis(tiny_model_dir, tiny_db, tmp_path, capsys, monkeypatch):
    """data.extra (pairs trained on beside the written ones) that cannot be read, or whose gold SQL fails, is refused
    before synthesis, not minutes after it with the folder left holding its pairs."""
    import sqltune.synth as synth_mod

    calls = []
    monkeypatch.setattr(synth_mod, "synth", lambda *a, **kw: calls.append(a))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "e1", "question": "Top price?", "sql": "SELECT MAX(prize) FROM books"}])
    for extra, said in ((tmp_path / "missing.jsonl", "file not found"), (bad, "no such column: prize")):
        out = tmp_path / extra.stem
        assert main(["run", "--db", str(tiny_db), "--out", str(out), "--set", f"model={tiny_model_dir}",
                     "--set", f"data.extra=[{extra}]"]) == 2
        assert said in " ".join(capsys.readouterr().err.split())
        assert not calls and not out.exists()


def test_a_synthesis_model_that_cannot_be_found_stops_the_run_before_its_folder(tiny_model_dir, tiny_db, tmp_path, capsys):
    """synth.teacher / synth.reader are found before the run folder is made (as the run's model is), in a run with no
    pairs and in the synth stage of a run with pairs: not minutes later, a started folder left to --resume."""
    missing = tmp_path / "no-such-model"
    base = ["--set", f"model={tiny_model_dir}", "--set", "device=cpu"]
    for i, (args, key) in enumerate([([], "teacher"), ([], "reader"),
                                     (["--train", str(write_jsonl(tmp_path / "p.jsonl", TRAIN + VALID + TEST))
                                       ], "teacher")]):
        out = tmp_path / f"r{i}"
        code = main(["run", "--db", str(tiny_db), "--out", str(out), *args, *base, "--set", "synth.enabled=true",
                     "--set", f"synth.{key}={missing}"])
        assert code == 2 and "no-such-model" in capsys.readouterr().err and not out.exists(), (args, key)


def test_a_run_with_training_off_answers_as_sqltune_answer_does(tiny_model_dir, tiny_db, tmp_path, capsys):
    """`train.enabled: false`: no synth, no adapter, no GRPO; after the base stage, stage `answer` is the untuned model
    answering with the recipe's panel over the base stage's answers (not decoded again), as `sqltune answer` does
    without an adapter. metrics.json, report.md and the closing lines say so; a resume scores nothing again."""
    ov = overrides(tiny_model_dir, tiny_db, tmp_path)
    ov["train"]["enabled"] = False
    ov["synth"] = {"enabled": True, "k": 5}  # on in the recipe, skipped: its pairs would serve training alone
    ov["rl"] = {"enabled": True}
    args = [a for k, v in _flat(ov).items() for a in ("--set", f"{k}={'null' if v is None else v}")]
    out = tmp_path / "run"
    assert main(["run", "--out", str(out)] + args) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "answer: the untuned model answers valid and test as `sqltune answer` does" in printed
    assert "note: train.enabled is false, so train.method, train.rank" in printed  # the skipped stages' settings
    assert "answer / test" in printed and "tuned / " not in printed and "train:" not in printed
    assert not any((out / f).exists() for f in ("adapter", "adapter_rl", "synth.jsonl", "tuned_valid_report.json"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert [k for k in metrics if k in ("base", "tuned", "rl", "answer")] == ["base", "answer"]
    assert metrics["chosen"] == {}
    for split in ("valid", "test"):
        base = json.loads((out / f"base_{split}_report.json").read_text())
        answer = json.loads((out / f"answer_{split}_report.json").read_text())
        assert answer["eval_config"]["untuned_model"] is True and answer["eval_config"]["fallback"] == "panel"
        assert [e["pool"]["sql"] for e in answer["examples"]] == [e["pred_sql"] for e in base["examples"]]
        assert all(e["pool"]["untuned"] for e in answer["examples"])
    report = " ".join((out / "report.md").read_text().split())
    assert "answer is the untuned model as `sqltune answer` answers without an adapter" in report
    assert "none (train.enabled: false)" in report
    assert main(["run", "--out", str(out), "--resume"] + args) == 0
    assert "answer: the untuned model" not in capsys.readouterr().out  # every stage was done: nothing scored again
    assert json.loads((out / "metrics.json").read_text())["answer"] == metrics["answer"]


def test_a_run_with_training_off_and_no_panel_or_repair_copies_the_base_answers(tiny_model_dir, tiny_db, tmp_path):
    """With neither the panel nor the repair, what `sqltune answer` gives is the untuned model's own answer: stage
    `answer` is the base stage's reports and answers, copied and marked so (not decoded again)."""
    ov = overrides(tiny_model_dir, tiny_db, tmp_path)
    ov["train"]["enabled"] = False
    ov["eval"].update(fallback="none", repair=False)
    out = tmp_path / "run"
    metrics = run("default", out, overrides=ov)
    assert metrics["answer"] == metrics["base"] and not (out / "adapter").exists()
    for split in ("valid", "test"):
        answer = json.loads((out / f"answer_{split}_report.json").read_text())
        assert answer["same_model_as"] == "base"
        assert (out / f"answer_{split}_pred.jsonl").read_bytes() == (out / f"base_{split}_pred.jsonl").read_bytes()


def test_a_run_with_training_off_is_served_with_its_untuned_model(tiny_model_dir, tiny_db, tmp_path, monkeypatch):
    """`sqltune.load(run=...)` (and so `ask --run`, `serve --run`) of a run that trained nothing loads the run's own
    model with no adapter and answers with the untuned model's panel, as the run scored; a run that trains but has no
    finished adapter is still refused."""
    import sqltune
    import sqltune.evaluate as ev

    ov = overrides(tiny_model_dir, tiny_db, tmp_path)
    ov["train"]["enabled"] = False
    out = tmp_path / "run"
    (out).mkdir()
    (out / "recipe.json").write_text(json.dumps({**ov, "eval": {"fallback": "panel", "panel_judge": "reviewer"}}))
    seen = {}

    def fake_load(model, adapter, device, style, dbp, notes, merge=True, base=None):
        seen.update(model=model, adapter=adapter)
        return None, None, None

    monkeypatch.setattr(ev, "load_for_inference", fake_load)
    m = sqltune.load(run=out)
    assert seen == {"model": str(tiny_model_dir), "adapter": None}
    assert m.untuned_model and m.fallback == "panel" and m.panel["panel_judge"] == "reviewer"
    ov["train"]["enabled"] = True
    (out / "recipe.json").write_text(json.dumps(ov))
    with pytest.raises(SqltuneError, match="has no finished adapter"):
        sqltune.load(run=out)
