"""The one evaluator: a checkpoint's score is reproducible, and every caller reads the same settings."""

import json

import pytest

from sqltune.evaluate import EvalConfig, evaluate
from sqltune.model import pick_device
from sqltune.recipe import load_recipe
from sqltune.run import run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_eval_config_from_a_recipe_and_from_its_train_config_agree():
    recipe = load_recipe("default", {"eval.retries": 2, "eval.batch_size": 7, "eval.timeout": 3, "eval.fewshot": 1})
    dev = pick_device("cpu", "float32")
    pool = [{"question": "q", "sql": "SELECT 1"}]
    a = EvalConfig.from_recipe(recipe, dev, fewshot_pool=pool)
    b = EvalConfig.from_train_config(recipe.train_config(), dev, fewshot_pool=pool)
    assert a == b
    assert (a.retries, a.batch_size, a.timeout, a.fewshot, a.autocast) == (2, 7, 3.0, 1, dev.autocast)
    assert EvalConfig.from_recipe(recipe.to_dict(), dev, fewshot_pool=pool) == a  # the run folder's recipe.json form


def test_eval_config_refuses_fewshot_without_a_pool():
    with pytest.raises(Exception, match="pool"):
        EvalConfig(fewshot=2).validate()


def test_chosen_checkpoint_score_equals_the_runs_evaluation_of_it(tiny_model_dir, tiny_db, tmp_path):
    """The valid score training logged for the checkpoint it chose is what `run` measures for that
    adapter: same evaluator, same precision, same settings (retries included), same predictions."""
    from test_run import overrides

    ov = overrides(tiny_model_dir, tiny_db, tmp_path)
    ov["eval"]["retries"] = 1
    out = tmp_path / "run"
    metrics = run("default", out, overrides=ov)
    info = json.loads((out / "adapter" / "sqltune_checkpoint.json").read_text())
    trained = json.loads((out / "adapter" / "valid_report.json").read_text())
    tuned = json.loads((out / "tuned_valid_report.json").read_text())
    preds = [json.loads(line) for line in (out / "tuned_valid_pred.jsonl").read_text().splitlines()]
    assert info["chosen"]["exact"] == metrics["tuned"]["valid"]["exact"]
    assert info["chosen"]["execution_rate"] == metrics["tuned"]["valid"]["execution_rate"]
    assert [e["pred_sql"] for e in trained["examples"]] == [e["pred_sql"] for e in tuned["examples"]]
    assert [e["raw"] for e in trained["examples"]] == [p["raw"] for p in preds]
    # the recipe's eval section reached training and the run's evaluations alike
    base = json.loads((out / "base_valid_report.json").read_text())
    for rep in (trained, tuned, base):
        assert rep["eval_config"]["retries"] == 1 and rep["eval_config"]["batch_size"] == 4
        assert rep["eval_config"]["autocast"] == pick_device("cpu", "float32").autocast


def test_evaluate_report_has_predictions_timing_and_settings(tiny_model_dir, tiny_db):
    from sqltune.model import load
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text

    loaded = load(str(tiny_model_dir), "cpu", builder=PromptBuilder(schema_text(tiny_db)))
    items = [{"id": "a", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books"}]
    rep = evaluate(loaded.model, loaded.tokenizer, loaded.builder, items, tiny_db,
                   EvalConfig(max_new_tokens=6, progress=False, max_rows=5))
    assert rep["summary"]["n"] == 1 and [p["id"] for p in rep["predictions"]] == ["a"]
    assert rep["eval_config"]["max_rows"] == 5 and rep["timing"]["generation"]["n"] == 1
