import json

import pytest

from sqltune.report import compare_runs, markdown_to_html, outcomes, shape_lines, write_report
from sqltune.stats import compare_paired, mcnemar_exact, paired_bootstrap_ci


def test_mcnemar_exact_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)  # 5 of 10 fixed is not significant
    assert mcnemar_exact(3, 3) == 1.0


def test_bootstrap_ci_contains_delta_and_is_degenerate_without_change():
    a = [False] * 5 + [True] * 5
    assert paired_bootstrap_ci(a, a) == (0.0, 0.0)
    c = compare_paired([False] * 10, [True] * 4 + [False] * 6)
    assert c.delta == pytest.approx(0.4) and c.ci_low <= 0.4 <= c.ci_high
    assert c.ci_low > 0 and c.fixed == 4 and c.broken == 0


def _report(flags):
    ex = [{"id": f"q{i}", "question": f"question {i}", "gold_sql": "SELECT 1", "pred_sql": "SELECT 1" if f else "SELECT 2",
           "executed": f is not None, "error_kind": None if f is not None else "syntax",
           "exact": bool(f), "set": bool(f), "fuzzy": bool(f), "vacuous": False} for i, f in enumerate(flags)]
    n = len(ex)
    summary = {"n": n, "execution_rate": sum(e["executed"] for e in ex) / n, "exact": sum(e["exact"] for e in ex) / n,
               "set": sum(e["set"] for e in ex) / n, "fuzzy": sum(e["fuzzy"] for e in ex) / n, "vacuous": 0.0}
    return {"summary": summary, "examples": ex}


JOIN = "SELECT s.name FROM song AS t JOIN singer AS s ON t.singer_id = s.id"
SINGLE = "SELECT name FROM song"


def _shaped(pairs):
    """A report from (gold SQL, predicted SQL, exact) triples."""
    ex = [{"id": f"q{i}", "question": f"question {i}", "gold_sql": g, "pred_sql": p, "executed": p is not None,
           "error_kind": None if p else "no_sql", "exact": ok, "set": ok, "fuzzy": ok, "vacuous": False}
          for i, (g, p, ok) in enumerate(pairs)]
    n, right = len(ex), sum(e["exact"] for e in ex) / len(ex)
    return {"summary": {"n": n, "execution_rate": 1.0, "exact": right, "set": right, "fuzzy": right, "vacuous": 0.0},
            "examples": ex}


def test_shape_lines_show_a_stage_that_stopped_writing_joins(tmp_path):
    """Session 14's singer: the untuned model joined, the GRPO model dropped the joins and lost those answers."""
    base = _shaped([(JOIN, JOIN, True), (JOIN, JOIN, True), (SINGLE, SINGLE, True), (SINGLE, None, False)])
    rl = _shaped([(JOIN, SINGLE, False), (JOIN, JOIN, True), (SINGLE, SINGLE, True), (SINGLE, SINGLE, True)])
    lines = shape_lines({"base": {"test": base}, "rl": {"test": rl}})
    assert lines[0] == "## By query shape"
    assert "| test: shape | gold n | base exact | rl exact | base wrote | rl wrote |" in lines
    assert "| join | 2 | 100.0% | 50.0% | 2 | 1 |" in lines
    assert "| single | 2 | 50.0% | 100.0% | 1 | 3 |" in lines
    assert "| unparsed | 0 | – | – | 1 | 0 |" in lines  # a stage that wrote no SQL is counted too
    # one shape everywhere: nothing to add to the accuracy table
    assert shape_lines({"base": {"test": _shaped([(SINGLE, SINGLE, True)])}}) == []
    md = (tmp_path / "r" / "report.md")
    write_report(tmp_path / "r", {"base": {"test": base}, "rl": {"test": rl}})
    assert "| join | 2 | 100.0% | 50.0% | 2 | 1 |" in md.read_text()
    assert "over the questions, not over training runs" in md.read_text()  # a GRPO stage: its run-to-run spread


def test_no_training_run_caveat_without_a_grpo_stage(tmp_path):
    base = _shaped([(SINGLE, SINGLE, True), (SINGLE, None, False)])
    write_report(tmp_path / "r", {"base": {"test": base}, "tuned": {"test": base}})
    assert "not over training runs" not in (tmp_path / "r" / "report.md").read_text()


def test_outcomes_classify_pairs():
    rows = outcomes(_report([True, True, False, False]), _report([True, False, True, None]))
    assert [r["outcome"] for r in rows] == ["still right", "broken", "fixed", "still wrong"]
    assert rows[3]["after_error"] == "syntax"


def test_write_report_files_agree(tmp_path):
    reports = {"base": {"valid": _report([False] * 8 + [True, None]), "test": _report([False, True] * 10)},
               "tuned": {"valid": _report([True] * 9 + [False]), "test": _report([True] * 15 + [False] * 5)}}
    history = [{"epoch": 0, "exact": 0.1, "execution_rate": 0.9, "fuzzy": 0.1},
               {"epoch": 1, "loss": 0.8}, {"epoch": 1, "exact": 0.9, "execution_rate": 1.0, "fuzzy": 0.9}]
    files = write_report(tmp_path, reports, history, {"train": 12.5})
    for key in ("markdown", "html", "metrics", "outcomes_valid", "outcomes_test", "training"):
        assert files[key].is_file() and files[key].stat().st_size > 0
    md = files["markdown"].read_text()
    assert "| valid | exact | 10.0% | 90.0% |" in md
    assert "only 10 questions" in md  # says how little 10 questions can show
    assert "McNemar" in md and "fixed" in md
    html = files["html"].read_text()
    assert html.count("data:image/png;base64,") == 4  # self-contained
    assert "<table>" in html and "90.0%" in html


def test_training_table_shows_train_loss_of_metrics_jsonl(tmp_path):
    """The checkpoint's metrics.jsonl rows (what `sqltune run` passes) carry `train_loss`, not `loss`: the report's
    Training table showed '–' for every epoch of a real run."""
    reports = {"base": {"valid": _report([True, False])}, "tuned": {"valid": _report([True, True])}}
    history = [{"step": 0, "epoch": 0.0, "train_loss": None, "valid_loss": 0.09, "exact": 0.5, "execution_rate": 1.0,
                "fuzzy": 0.5},
               {"step": 1, "epoch": 1.0, "train_loss": 0.2782, "valid_loss": 0.08, "exact": 1.0, "execution_rate": 1.0,
                "fuzzy": 1.0}]
    md = write_report(tmp_path, reports, history, {})["markdown"].read_text()
    assert "| 0.0 | – | 100.0% | 50.0% | 50.0% |" in md
    assert "| 1.0 | 0.2782 | 100.0% | 100.0% | 100.0% |" in md


def test_smallest_detectable_small_splits():
    from sqltune.stats import smallest_detectable

    assert "by 12.5%" in smallest_detectable(8) and "at least 6 questions change" in smallest_detectable(8)
    # a 2-question valid split (a small own-DB run) cannot have 6 questions change
    two = smallest_detectable(2)
    assert "by 50%" in two and "fewer than 6 questions" in two and "at least 6" not in two


def test_a_stage_that_kept_step_0_says_so(tmp_path):
    """`sqltune run` copies base's reports to tuned (marked `same_model_as`) when training kept the untuned model:
    the report showed equal base/tuned columns without saying why."""
    base = _report([True, False])
    reports = {"base": {"valid": base}, "tuned": {"valid": {**base, "same_model_as": "base"}}}
    md = write_report(tmp_path, reports, [], {})["markdown"].read_text()
    assert md.count("*tuned is the base model*: training did not beat it on valid") == 1
    assert "is the base model" not in write_report(tmp_path, {"base": {"valid": base}, "tuned": {"valid": base}},
                                                   [], {})["markdown"].read_text()


def test_markdown_to_html_escapes():
    out = markdown_to_html("# T\n\n| a | b |\n|---|---|\n| `<x>` | y |\n", {})
    assert "&lt;x&gt;" in out and "<script" not in out


def test_compare_runs(tmp_path):
    for name, flags in (("a", [False] * 10), ("b", [True] * 7 + [False] * 3)):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.json").write_text("{}")
        (d / "tuned_valid_report.json").write_text(json.dumps(_report(flags)))
    rows = compare_runs(tmp_path / "a", tmp_path / "b")
    exact = next(r for r in rows if r["metric"] == "exact")
    assert exact["fixed"] == 7 and exact["p_value"] < 0.05
    from sqltune.errors import SqltuneError

    with pytest.raises(SqltuneError, match="not a finished"):
        compare_runs(tmp_path / "a", tmp_path / "nope")


def test_fallback_lines_count_what_the_untuned_model_answered():
    from sqltune.report import fallback_lines

    summ = lambda **kw: {"summary": {"n": 10, "exact": 0.5, **kw}, "examples": []}  # noqa: E731
    reports = {"base": {"test": summ()}, "tuned": {"valid": summ(fallback_used=0, fallback_fixed=0),
                                                   "test": summ(fallback_used=3, fallback_fixed=2)}}
    lines = fallback_lines(reports)
    assert lines[0].startswith("## Fallback to the untuned model")
    assert "| tuned | test | 3 | 2 |" in lines and not any("| valid |" in x or "| base |" in x for x in lines)
    assert fallback_lines({"base": {"test": summ()}}) == []


def test_fallback_lines_describe_the_pooled_vote_as_what_it_is():
    """`eval.fallback: vote` reports are not described as the `base` fallback: their own section, with what the pool
    weighed, changed, took from the untuned model, fixed and broke; a stage where it voted on nothing has no row."""
    from sqltune.report import fallback_lines

    summ = lambda **kw: {"summary": {"n": 10, "exact": 0.5, **kw}, "examples": []}  # noqa: E731
    pool = dict(fallback_used=2, fallback_fixed=2, pool_voted=5, pool_changed=3, pool_fixed=2, pool_hurt=1)
    reports = {"base": {"test": summ(fallback_used=0, fallback_fixed=0, pool_voted=0, pool_changed=0, pool_fixed=0,
                                     pool_hurt=0)},
               "rl": {"test": summ(**pool)}}
    lines = fallback_lines(reports)
    assert not any("fallback: base" in x for x in lines)
    assert lines[0] == "## Both models vote where they disagree (`eval.fallback: vote`)"
    assert "| rl | test | 5 | 3 | 2 | 2 | 1 |" in lines and not any("| base |" in x for x in lines)
    # one run of each kind (two recipes' reports side by side): both sections
    both = fallback_lines({**reports, "tuned": {"test": summ(fallback_used=3, fallback_fixed=1)}})
    assert both[0].startswith("## Fallback to the untuned model") and "| tuned | test | 3 | 1 |" in both
    assert any(x.startswith("## Both models vote") for x in both)


def test_fallback_lines_describe_the_panel_as_what_it_is():
    """`eval.fallback: panel` reports (the default recipe's) get their own section, not the pooled vote's."""
    from sqltune.report import fallback_lines

    panel = {"summary": {"n": 55, "exact": 0.3, "fallback_used": 6, "fallback_fixed": 3, "pool_voted": 55,
                         "pool_changed": 6, "pool_fixed": 3, "pool_hurt": 1},
             "examples": [], "eval_config": {"fallback": "panel"}}
    lines = fallback_lines({"tuned": {"test": panel}})
    assert lines[0] == "## Three answers vote (`eval.fallback: panel`)"
    assert "| tuned | test | 55 | 6 | 6 | 3 | 1 |" in lines and not any(x.startswith("## Both models") for x in lines)
    panel["eval_config"]["panel_tuned_fewshot"] = 2  # the default recipe's since session 31
    lines = fallback_lines({"tuned": {"test": panel}})
    assert lines[0] == "## Four answers vote (`eval.fallback: panel`)" and "tuned model's with retrieved" in lines[2]
