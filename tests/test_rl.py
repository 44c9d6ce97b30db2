"""GRPO (issue 16): the execution reward on fixed (prediction, gold) pairs, and `sqltune run` with the rl
stage: a CPU smoke run of `train_grpo` on the tiny model whose checkpoint loads through the normal loader."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sqltune.checkpoint import load_trained, read_info
from sqltune.errors import DatasetError, SqltuneError
from sqltune.rl import (ADAPTER_WEIGHTS, ExecutionReward, RLConfig, average_adapters, components, join_rows,
                        prompt_texts, train_grpo)
from sqltune.train import TrainConfig

GOLD = [
    {"id": "uk", "question": "Name and country of the UK authors?",
     "sql": "SELECT name, country FROM authors WHERE country = 'UK'"},
    {"id": "n", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books"},
]

# (prediction as the model wrote it, gold index, expected outcome)
CASES = [
    ("SELECT name, country FROM authors WHERE country = 'UK';", 0, "exact"),
    ("```sql\nSELECT a.country AS c, a.name AS who FROM authors a WHERE a.country = 'UK'\n```", 0, "exact"),  # order, names
    ("SELECT name AS x, country AS y FROM authors WHERE country IN ('UK') ORDER BY name DESC", 0, "exact"),
    ("SELECT id, name, country FROM authors WHERE country = 'UK'", 0, "fuzzy"),  # the gold columns + one more
    ("SELECT name, country FROM authors", 0, "executed"),  # another result
    ("SELECT COUNT(*) FROM authors", 1, "executed"),
    ("SELECT nope FROM books", 1, "error"),
    ("SELECT COUNT(* FROM books", 1, "error"),
    ("I cannot answer that.", 1, "no_sql"),
    ("", 1, "no_sql"),
    ("DELETE FROM books", 1, "no_sql"),  # a write: not even taken for a query
    ("DROP TABLE books", 1, "no_sql"),
    ("WITH x AS (SELECT 1) DELETE FROM books", 1, "error"),  # a write the executor must refuse
    ("WITH x AS (SELECT 1) UPDATE books SET price = 0", 1, "error"),
    ("SELECT COUNT(*) FROM books; DELETE FROM books", 1, "exact"),  # only the first statement is ever run
    ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c", 1, "error"),  # hangs
    ("SELECT replace(hex(zeroblob(2000000000)), '0', 'ab')", 1, "error"),  # one huge value: refused, not computed
]


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def reward(tiny_db):
    r = ExecutionReward(tiny_db, GOLD, RLConfig(timeout=0.5, num_generations=2))
    yield r
    r.close()


def test_reward_of_fixed_pairs(reward, tiny_db):
    before = sha(tiny_db)
    w = RLConfig().weights()
    logged = {}
    got = reward(prompts=["p"] * len(CASES), completions=[c for c, _, _ in CASES], item=[g for _, g, _ in CASES],
                 log_metric=lambda k, v: logged.__setitem__(k, v))
    assert got == [w[o] for _, _, o in CASES]
    assert got[0] == 1.0 and got[1] == 1.0  # full reward whatever the column names/order
    assert 0 < w["executed"] < w["fuzzy"] < w["exact"] and w["error"] < 0 and w["no_sql"] < 0
    assert sha(tiny_db) == before  # nothing was written
    assert logged["rl/exact"] == pytest.approx(4 / len(CASES))
    assert logged["rl/timeout"] == pytest.approx(1 / len(CASES))  # the recursive query was stopped, not waited for


def test_hanging_query_is_a_timeout_within_the_budget(reward):
    import time

    t = time.monotonic()
    outcome = reward.grade(["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"], [1])
    assert outcome == [("error", "timeout")]
    assert time.monotonic() - t < 20


def test_components_count_groups_with_a_correct_sample():
    outs = [("exact", None), ("error", "syntax"), ("executed", None), ("no_sql", None)]
    c = components(outs, group=2)
    assert c["any_correct"] == 0.5 and c["all_correct"] == 0.0
    assert c["exact"] == c["error"] == c["executed"] == c["no_sql"] == 0.25
    outs = [("exact", None)] * 2 + [("exact", None), ("error", "syntax")] + [("no_sql", None)] * 2
    c = components(outs, group=2)
    assert c["any_correct"] == 2 / 3 and c["all_correct"] == 1 / 3


def test_failing_gold_query_stops_before_training(tiny_db):
    r = ExecutionReward(tiny_db, [{"id": "bad", "question": "?", "sql": "SELECT nope FROM books"}], RLConfig(timeout=0.5))
    try:
        with pytest.raises(DatasetError, match="bad"):
            r.check_gold()
    finally:
        r.close()


def test_bad_rl_config_is_one_clear_error():
    with pytest.raises(SqltuneError, match="num_generations"):
        RLConfig(num_generations=1).validate()
    with pytest.raises(SqltuneError, match="micro_batch"):
        RLConfig(prompts_per_step=3, num_generations=2, micro_batch=4).validate()
    with pytest.raises(SqltuneError, match="choose must be noise or last"):
        RLConfig(choose="best").validate()
    from sqltune.recipe import load_recipe

    assert load_recipe("default").rl.choose == "last"  # the default since the devsuite sweep of session 6
    assert load_recipe("default", {"rl.choose": "noise"}).rl.choose == "noise"
    with pytest.raises(SqltuneError, match="rl.choose"):
        load_recipe("default", {"rl.choose": "best"})
    for w in (0, -0.5, 1.5):
        with pytest.raises(SqltuneError, match=r"average must be in \(0, 1\]"):
            RLConfig(average=w).validate()
    assert load_recipe("default", {"rl.average": "0.5"}).rl.average == 0.5


# ---------------------------------------------------------------- a CPU smoke run on the tiny model
ITEMS = [
    {"id": "a", "question": "How many authors are there?", "sql": "SELECT COUNT(*) FROM authors;"},
    {"id": "c", "question": "Which authors are from the UK?", "sql": "SELECT name FROM authors WHERE country = 'UK';"},
]


@pytest.fixture
def one_table_db(tmp_path):
    """A one-table DB: a short prompt keeps trl's CPU log-prob pass (vocabulary x every token) quick."""
    import sqlite3

    path = tmp_path / "one.sqlite"
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT, country TEXT);"
                      "INSERT INTO authors VALUES (1,'Ada','UK'),(2,'Borges','AR'),(3,'Dickens','UK');")
    con.commit()
    con.close()
    return path


def test_prompts_are_the_builders(tiny_model_dir, tiny_db):
    from sqltune.model import load_tokenizer
    from sqltune.prompt import PromptBuilder, encode
    from sqltune.schema import schema_text

    tok = load_tokenizer(str(tiny_model_dir))
    b = PromptBuilder(schema_text(tiny_db), "chat")
    [text] = prompt_texts(b, tok, ["How many books?"])
    assert tok(text)["input_ids"] == encode(tok, b.prompt(tok, "How many books?"))  # as trl tokenises it


def _rl_run_overrides(tiny_model_dir, db, tmp_path, valid: list[dict], **rl) -> dict:
    """`sqltune run` overrides for a CPU smoke run of SFT + GRPO on the tiny model (2 steps, groups of 2)."""
    from sqltune.dataset import write_jsonl

    test = [{"id": "x1", "question": "Which countries?", "sql": "SELECT DISTINCT country FROM authors"}]
    files = {n: str(write_jsonl(tmp_path / f"{n}.jsonl", rows)) for n, rows in (("train", ITEMS), ("valid", valid),
                                                                                   ("test", test))}
    return {"model": str(tiny_model_dir), "device": "cpu", "dtype": "float32", "data": {"db": str(db), **files},
            "train": {"method": "lora", "rank": 4, "alpha": 8, "dropout": 0.0, "lr": 1e-2, "max_steps": 1,
                      "batch_size": 2, "top_layers": None, "seed": 0},
            "eval": {"batch_size": 4, "max_new_tokens": 8},
            "rl": {"enabled": True, "steps": 2, "eval_every": 1, "num_generations": 2, "prompts_per_step": 2,
                   "max_completion_length": 8, "beta": 0.1, "lr": 1e-3, "workers": 1, "timeout": 1.0,
                   "choose": "last", "probe": 0, **rl}}  # the tiny model writes no SQL: a probe would (rightly)
    #                                                        leave no step to smoke-test


@pytest.mark.usefixtures("one_thread")
def test_run_with_the_rl_stage(tiny_model_dir, one_table_db, tmp_path):
    """`sqltune run` with `rl.enabled`: SFT, then a CPU smoke run of `train_grpo` on the tiny model (2 steps,
    groups of 2) from the SFT adapter, then the `rl` evaluation; the checkpoint loads through the normal loader."""
    from sqltune.run import run

    valid = [{"id": "v1", "question": "Name every author.", "sql": "SELECT name FROM authors"}]
    ov = _rl_run_overrides(tiny_model_dir, one_table_db, tmp_path, valid)
    before = sha(one_table_db)
    out = tmp_path / "run"
    metrics = run("default", out, overrides=ov)
    assert sha(one_table_db) == before
    assert set(metrics["rl"]) == {"valid", "test"}
    assert json.loads((out / "rl_test_report.json").read_text())["summary"] == metrics["rl"]["test"]
    assert "| tuned | rl |" in (out / "report.md").read_text()

    ckpt = out / "adapter_rl"
    loaded = load_trained(ckpt, "cpu")  # the normal loader
    info = loaded.info
    assert info["trained_with"] == "grpo" and info["base_model"] == str(tiny_model_dir)
    assert info["init_checkpoint"] == str((out / "adapter").resolve())
    assert info["prompt"]["sha256"] == read_info(out / "adapter")["prompt"]["sha256"]  # the SFT prompt, unchanged
    assert not (ckpt / "ref").exists()  # trl's frozen reference adapter is not part of the checkpoint
    lines = [json.loads(x) for x in (ckpt / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "reward" in x]
    evals = [x for x in lines if "exact" in x]
    assert [x["step"] for x in steps] == [1, 2]
    assert all(x["kl"] is not None and x["any_correct"] is not None and x["frac_no_sql"] is not None for x in steps)
    assert all(x["frac_reward_zero_std"] == 1.0 for x in steps)  # trl's count: the tiny model's groups are all no_sql
    assert [x["step"] for x in evals] == [0, 1, 2]  # the start model is a candidate...
    assert evals[0]["exact"] == metrics["tuned"]["valid"]["exact"]  # ...scored once, by the run's tuned stage
    # rl.choose=last reaches the trainer: valid reads 0 at every step (no loss), so the latest step; the
    # default rule would keep step 0 (no gain), as test_a_checkpoint_rule_chooses_the_grpo_step shows
    assert info["chosen"]["step"] == 2
    with pytest.raises(SqltuneError, match="already exists"):
        train_grpo(RLConfig(), ITEMS, valid, one_table_db, ckpt, init_adapter=out / "adapter",
                   train_config=TrainConfig(model=str(tiny_model_dir)))


def test_cli_init_needs_grpo(tmp_path, capsys):
    from sqltune.cli import main

    assert main(["train", "--out", str(tmp_path / "o"), "--init", str(tmp_path), "--method", "lora"]) != 0
    err = capsys.readouterr().err
    assert "--method grpo" in err and "Traceback" not in err


def test_a_checkpoint_rule_chooses_the_grpo_step(tiny_model_dir, one_table_db, tmp_path):
    """`choose` (the noise-aware rule `run` passes when synthetic pairs pool with valid) decides, not the
    highest exact: the tiny model scores 0 everywhere, where the default keeps the earliest step (0), and
    a rule that takes the last evaluation gets step 2."""
    valid = [{"id": "v1", "question": "Name every author.", "sql": "SELECT name FROM authors"}]
    seen = []

    def last(history):
        seen.append([h["step"] for h in history])
        return history[-1]

    rl = RLConfig(steps=2, eval_every=1, num_generations=2, prompts_per_step=2, max_completion_length=8,
                  lr=1e-3, workers=1, timeout=1.0, probe=0)
    tc = TrainConfig(model=str(tiny_model_dir), device="cpu", dtype="float32", method="lora", rank=4, alpha=8,
                     top_layers=None, eval_batch_size=4, eval_max_new_tokens=8)
    train_grpo(rl, ITEMS, valid, one_table_db, tmp_path / "rl", train_config=tc, choose=last, progress=False)
    assert seen and seen[-1] == [0, 1, 2]  # the rule saw every evaluation, the start model's first
    assert read_info(tmp_path / "rl")["chosen"]["step"] == 2
    train_grpo(rl, ITEMS, valid, one_table_db, tmp_path / "rl0", train_config=tc, progress=False)
    assert read_info(tmp_path / "rl0")["chosen"]["step"] == 0  # the default: ties go to the earlier step


# ---------------------------------------------------------------- the probe (rl.probe)
def test_probe_keeps_the_questions_whose_samples_differ_in_reward(tiny_db, monkeypatch):
    """`probe` grades every sampled candidate with the reward and keeps a question only when its rewards
    are not all equal (the others have zero advantage in every GRPO group). Sampling is replaced by fixed
    candidates here; grading runs for real on the tiny DB."""
    import sqltune.vote as vote
    from sqltune.rl import probe
    from sqltune.vote import Candidate

    items = GOLD + [{"id": "uk2", "question": "UK authors again?", "sql": GOLD[0]["sql"]}]
    fixed = [["SELECT name, country FROM authors WHERE country = 'UK'"] * 3,  # all right: nothing to learn
             ["SELECT COUNT(*) FROM books", "SELECT nope FROM books", "SELECT COUNT(*) FROM books"],  # mixed
             ["SELECT nope", "SELECT nope FROM x", None]]  # all wrong, but error (-0.2) vs no SQL (-0.5): a gradient
    seen = {}

    def fake_sample(model, tok, builder, questions, n, **kw):
        seen.update(n=n, questions=questions, temperature=kw["temperature"])
        return [[Candidate(sql=q, raw=q or "", mean_logprob=0.0) for q in qs] for qs in fixed]

    monkeypatch.setattr(vote, "sample_sql", fake_sample)
    r = ExecutionReward(tiny_db, items, RLConfig(timeout=1.0, probe=3, temperature=0.9))
    try:
        keep, counts = probe(None, None, None, r, r.cfg)
    finally:
        r.close()
    assert seen == {"n": 3, "questions": [it["question"] for it in items], "temperature": 0.9}
    assert keep == [1, 2]
    assert counts == {"questions": 3, "samples": 3, "informative": 2, "all_exact": 1, "none_exact": 1, "of": 3,
                      "shapes": {"aggregate": 1, "single": 1}}  # what GRPO trains on, by the gold's shape


def test_the_probe_samples_at_most_probe_cap_questions(tiny_db, monkeypatch):
    """More training questions than the steps can use: a seeded random subset of `probe_cap()` is probed,
    and the indices it keeps point into the full list."""
    import sqltune.vote as vote
    from sqltune.rl import probe
    from sqltune.vote import Candidate

    items = [{"id": f"q{i}", "question": f"How many books? ({i})", "sql": "SELECT COUNT(*) FROM books"}
             for i in range(10)]
    asked = []

    def fake_sample(model, tok, builder, questions, n, **kw):
        asked.append(questions)  # right then wrong for every question: all informative
        return [[Candidate(sql="SELECT COUNT(*) FROM books", raw="", mean_logprob=0.0),
                 Candidate(sql="SELECT nope", raw="", mean_logprob=0.0)] for _ in questions]

    monkeypatch.setattr(vote, "sample_sql", fake_sample)
    assert RLConfig().probe_cap() == 4 * 30 * 8 and RLConfig(probe_max=0).probe_cap() is None
    assert RLConfig(steps=1, prompts_per_step=2).probe_cap() == 8
    r = ExecutionReward(tiny_db, items, RLConfig(timeout=1.0, probe=2, probe_max=4))
    try:
        keep, counts = probe(None, None, None, r, r.cfg)
        keep2, _ = probe(None, None, None, r, r.cfg)
    finally:
        r.close()
    assert len(asked[0]) == 4 and counts["questions"] == 4 and counts["of"] == 10
    assert keep == keep2 and len(keep) == 4 and keep == sorted(keep)  # seeded: the same subset again
    assert [items[i]["question"] for i in keep] == asked[0]  # indices into the full list
    assert keep != [0, 1, 2, 3]  # a random subset, not the first four
    r = ExecutionReward(tiny_db, items, RLConfig(timeout=1.0, probe=2, probe_max=0))
    try:
        keep, counts = probe(None, None, None, r, r.cfg)
    finally:
        r.close()
    assert keep == list(range(10)) and counts["questions"] == counts["of"] == 10


def test_a_probe_that_finds_nothing_to_learn_skips_the_steps(tiny_model_dir, one_table_db, tmp_path):
    """The tiny random model writes no SQL for any sample: every reward is equal, so no GRPO step runs;
    the output is the start model (step 0), a complete checkpoint that loads, with the probe's counts."""
    valid = [{"id": "v1", "question": "Name every author.", "sql": "SELECT name FROM authors"}]
    rl = RLConfig(steps=2, eval_every=1, num_generations=2, prompts_per_step=2, max_completion_length=8,
                  lr=1e-3, workers=1, timeout=1.0, probe=2)
    tc = TrainConfig(model=str(tiny_model_dir), device="cpu", dtype="float32", method="lora", rank=4, alpha=8,
                     top_layers=None, eval_batch_size=4, eval_max_new_tokens=8)
    res = train_grpo(rl, ITEMS, valid, one_table_db, tmp_path / "rl", train_config=tc, progress=False)
    info = read_info(tmp_path / "rl")
    assert res.chosen_step == 0 and info["chosen"]["untrained"] and info["timing"]["steps"] == 0
    assert info["probe"]["questions"] == 2 and info["probe"]["informative"] == 0
    lines = [json.loads(x) for x in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "exact" in x] == [0] and not any("reward" in x for x in lines)
    assert load_trained(tmp_path / "rl", "cpu").info["trained_with"] == "grpo"


def test_fewer_questions_than_a_step_still_train(tiny_model_dir, one_table_db, tmp_path, capsys):
    """trl's sampler drops a partial step: with 2 training questions and `prompts_per_step` 4, no step ran
    (found with the 0.5B on poker_player, where the probe kept 5 of 16 seeds). They are repeated to fill one."""
    valid = [{"id": "v1", "question": "Name every author.", "sql": "SELECT name FROM authors"}]
    rl = RLConfig(steps=1, eval_every=1, num_generations=2, prompts_per_step=4, max_completion_length=8,
                  lr=1e-3, workers=1, timeout=1.0, probe=0, join_floor=0.5)  # no join among ITEMS: rows unchanged
    tc = TrainConfig(model=str(tiny_model_dir), device="cpu", dtype="float32", method="lora", rank=4, alpha=8,
                     top_layers=None, eval_batch_size=4, eval_max_new_tokens=8)
    assert len(ITEMS) < rl.prompts_per_step
    train_grpo(rl, ITEMS, valid, one_table_db, tmp_path / "rl", train_config=tc, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "reward" in x] == [1]
    assert read_info(tmp_path / "rl")["timing"]["steps"] == 1
    out, err = capsys.readouterr()  # the step's log is one line (trainer.readable_logs), not trl's raw dict
    assert "'reward'" not in out + err
    assert re.search(r"\nstep 1/1  epoch [\d.]+  loss \S+  reward -?[\d.]+  kl ", err)


def test_bad_probe_setting():
    with pytest.raises(SqltuneError, match="probe"):
        RLConfig(probe=1).validate()
    with pytest.raises(SqltuneError, match="probe_max"):
        RLConfig(probe_max=-1).validate()


def test_grpo_on_the_cpu_with_a_real_model_warns():
    """A real model on the CPU gets a warning naming the measured cost and the way out; a GPU or the tiny
    test models (the CPU smoke runs above) do not."""
    from sqltune.rl import cpu_warning

    w = cpu_warning("cpu", 494_000_000, RLConfig(prompts_per_step=4, num_generations=4))
    assert w.startswith("warning:") and "16 completions a step" in w and "CUDA GPU" in w
    assert cpu_warning("cuda", 494_000_000, RLConfig()) is None
    assert cpu_warning("cpu", 1_000_000, RLConfig()) is None


# ---------------------------------------------------------------- the join floor of GRPO's prompts
JOIN = "SELECT s.name FROM singer s JOIN song t ON t.singer_id = s.id"
ONE = "SELECT name FROM singer"


def test_join_rows_repeat_the_joins_up_to_the_floor():
    items = [{"sql": JOIN}] + [{"sql": ONE}] * 9  # 10 % joins
    rows, times = join_rows(list(range(10)), items, 0.3)
    # 9 others once; the join 4 times: 4/13 = 31 % >= 30 %, while 3 times (3/12 = 25 %) would not be
    assert times == 4 and rows.count(0) == 4 and sorted(set(rows)) == list(range(10)) and len(rows) == 13
    assert rows[:4] == [0, 0, 0, 0] and rows[4:] == list(range(1, 10))  # order kept


def test_join_rows_leave_the_rows_alone_where_nothing_can_or_need_change():
    joins, ones = [{"sql": JOIN}] * 4, [{"sql": ONE}] * 6
    items = joins + ones
    assert join_rows(list(range(10)), items, 0.4) == (list(range(10)), 1)  # already at the floor
    assert join_rows(list(range(10)), items, 0.0) == (list(range(10)), 1)  # off
    assert join_rows([4, 5, 6], items, 0.5) == ([4, 5, 6], 1)  # no join to repeat
    assert join_rows([0, 1], items, 0.5) == ([0, 1], 1)  # only joins
    assert join_rows([], items, 0.5) == ([], 1)


@given(n_join=st.integers(1, 30), n_other=st.integers(1, 300), floor=st.floats(0.01, 0.9))
def test_join_rows_meet_the_floor_with_the_fewest_repeats(n_join, n_other, floor):
    items = [{"sql": JOIN}] * n_join + [{"sql": ONE}] * n_other
    rows, times = join_rows(list(range(len(items))), items, floor)
    joins = sum(r < n_join for r in rows)
    assert joins >= floor * len(rows) - 1e-9 and len(rows) - joins == n_other
    if times > 1:  # one repeat fewer would miss it
        assert (times - 1) * n_join < floor * ((times - 1) * n_join + n_other)
    assert all(rows.count(r) == times for r in range(n_join))


def test_bad_join_floor():
    with pytest.raises(SqltuneError, match="join_floor"):
        RLConfig(join_floor=1.0).validate()
    with pytest.raises(SqltuneError, match="join_floor"):
        RLConfig(join_floor=-0.1).validate()
    from sqltune.recipe import load_recipe

    assert load_recipe("qwen1.5b-gpu", {"rl.join_floor": 0.3}).rl.join_floor == 0.3


# ---------------------------------------------------------------- rl.average: the RL model averaged with its start


def _adapter(folder, tensors: dict, config: str = '{"r": 2}'):
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / ADAPTER_WEIGHTS))
    (folder / "adapter_config.json").write_text(config)
    return folder


@given(w=st.floats(min_value=0.01, max_value=1.0),
       a=st.lists(st.floats(-4, 4, allow_nan=False, width=32), min_size=4, max_size=4),
       b=st.lists(st.floats(-4, 4, allow_nan=False, width=32), min_size=4, max_size=4))
def test_average_adapters_is_the_weighted_mean_of_each_tensor(tmp_path_factory, w, a, b):
    import torch
    from safetensors.torch import load_file

    d = tmp_path_factory.mktemp("avg")
    ta, tb = torch.tensor(a).reshape(2, 2), torch.tensor(b).reshape(2, 2)
    start = _adapter(d / "s", {"x.lora_A.weight": ta, "x.lora_B.weight": ta.to(torch.bfloat16)})
    end = _adapter(d / "e", {"x.lora_A.weight": tb, "x.lora_B.weight": tb.to(torch.bfloat16)}, '{"r": 2, "end": 1}')
    out = average_adapters(start, end, w, d / "o")
    got = load_file(str(out / ADAPTER_WEIGHTS))
    assert torch.allclose(got["x.lora_A.weight"], w * tb + (1 - w) * ta, atol=1e-6)
    assert got["x.lora_B.weight"].dtype == torch.bfloat16  # stored as the end adapter stores it
    assert (out / "adapter_config.json").read_text() == '{"r": 2, "end": 1}'  # the rest of the folder is end's
    if w == 1.0:
        assert torch.equal(got["x.lora_A.weight"], tb)


def test_average_adapters_refuses_what_is_not_two_states_of_one_adapter(tmp_path):
    import torch

    t = torch.zeros(2, 2)
    start = _adapter(tmp_path / "s", {"x.lora_A.weight": t})
    with pytest.raises(SqltuneError, match="not states of one adapter"):
        average_adapters(start, _adapter(tmp_path / "e1", {"y.lora_A.weight": t}), 0.5, tmp_path / "o")
    with pytest.raises(SqltuneError, match="has shape"):
        average_adapters(start, _adapter(tmp_path / "e2", {"x.lora_A.weight": torch.zeros(4, 2)}), 0.5, tmp_path / "o")
    (tmp_path / "full").mkdir()
    with pytest.raises(SqltuneError, match="needs LoRA/DoRA adapter weights"):
        average_adapters(start, tmp_path / "full", 0.5, tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing half-written
    keep = tmp_path / "mine"
    (keep / "notes.txt").parent.mkdir()
    (keep / "notes.txt").write_text("years of work")
    with pytest.raises(SqltuneError, match="already exists"):
        average_adapters(start, start, 0.5, keep)
    assert (keep / "notes.txt").read_text() == "years of work" and sorted(p.name for p in keep.iterdir()) == ["notes.txt"]


def test_grpo_writes_the_average_of_the_chosen_step_and_its_start(tiny_model_dir, one_table_db, tmp_path, monkeypatch):
    """`rl.average: 0.5`: the written checkpoint holds exactly what `average_adapters` made of step 0 and the chosen
    step, its valid score is recorded beside the step's own, and it loads through the normal loader. (The tiny model
    writes no SQL, so its adapter barely moves: the averaging itself is checked on known tensors above.)"""
    import torch
    from safetensors.torch import load_file

    import sqltune.rl as rl_mod

    calls = []
    real = rl_mod.average_adapters

    def spy(start, end, weight, out):
        calls.append((start.name, end.name, weight))
        made = real(start, end, weight, out)
        calls.append(load_file(str(made / ADAPTER_WEIGHTS)))
        calls.append(load_file(str(end / ADAPTER_WEIGHTS)))
        return made

    monkeypatch.setattr(rl_mod, "average_adapters", spy)
    valid = [{"id": "v1", "question": "Name every author.", "sql": "SELECT name FROM authors"}]
    rl = RLConfig(steps=2, eval_every=1, num_generations=2, prompts_per_step=2, max_completion_length=8,
                  lr=1e-3, workers=1, timeout=1.0, probe=0, average=0.5)
    tc = TrainConfig(model=str(tiny_model_dir), device="cpu", dtype="float32", method="lora", rank=4, alpha=8,
                     top_layers=None, eval_batch_size=4, eval_max_new_tokens=8)
    train_grpo(rl, ITEMS, valid, one_table_db, tmp_path / "rl", train_config=tc, choose=lambda h: h[-1],
               progress=False)
    assert calls[0] == ("step-0", "step-2", 0.5)
    written = load_file(str(tmp_path / "rl" / ADAPTER_WEIGHTS))
    assert set(written) == set(calls[1]) and all(torch.equal(written[k], calls[1][k]) for k in written)
    info = read_info(tmp_path / "rl")
    assert info["chosen"]["step"] == 2 and info["average"]["weight"] == 0.5
    assert set(info["average"]) == {"weight", "exact", "execution_rate", "fuzzy", "set"}
    assert load_trained(tmp_path / "rl", "cpu").info["average"]["weight"] == 0.5
    # the chosen step as it was, a loadable checkpoint inside the output
    plain = tmp_path / "rl" / "unaveraged"
    assert torch.equal(load_file(str(plain / ADAPTER_WEIGHTS))["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"],
                       calls[2]["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"])
    pinfo = load_trained(plain, "cpu").info
    assert pinfo["average"] is None and pinfo["chosen"]["step"] == 2 and pinfo["unaveraged_of"] == str((tmp_path / "rl").resolve())
    # the start model chosen: nothing to average, the start model as it is
    calls.clear()
    train_grpo(rl, ITEMS, valid, one_table_db, tmp_path / "rl0", train_config=tc, progress=False)
    assert calls == [] and read_info(tmp_path / "rl0")["average"] is None


@pytest.mark.usefixtures("one_thread")
def test_run_scores_the_unaveraged_step_beside_the_averaged_one(tiny_model_dir, one_table_db, tmp_path):
    """`sqltune run` with `rl.average`: the GRPO step before averaging is scored too (stage `rl_unaveraged`), placed
    before `rl` in the report, so that tuned -> rl_unaveraged shows what GRPO did and rl_unaveraged -> rl what the
    averaging did; `--resume` scores nothing again."""
    from sqltune.run import run

    valid = [{"id": "v1", "question": "Name every author.", "sql": "SELECT name FROM authors"}]
    ov = _rl_run_overrides(tiny_model_dir, one_table_db, tmp_path, valid, average=0.5)
    out = tmp_path / "run"
    metrics = run("default", out, overrides=ov)
    assert list(metrics)[:4] == ["base", "tuned", "rl_unaveraged", "rl"]
    assert list(metrics["chosen"]) == ["tuned", "rl_unaveraged", "rl"]  # metrics.json's chosen step per checkpoint
    for stage in ("rl_unaveraged", "rl"):
        assert all((out / f"{stage}_{s}_report.json").is_file() for s in ("valid", "test"))
    md = (out / "report.md").read_text()
    assert "| tuned | rl_unaveraged | rl |" in md and "**test, rl_unaveraged → rl**" in md
    assert "## Per question: test (base → rl)" in md  # the final model is the averaged one
    assert read_info(out / "adapter_rl")["average"]["weight"] == 0.5
    stamp = (out / "rl_unaveraged_test_report.json").stat().st_mtime_ns
    run("default", out, resume=True, overrides=ov)
    assert (out / "rl_unaveraged_test_report.json").stat().st_mtime_ns == stamp


# ---------------------------------------------------------------- rl.runs: a soup of GRPO runs
def _lora_product(tensors: dict, cfg: dict, name: str = "x"):
    """scale * B @ A of one LoRA layer, as peft applies it."""
    import math

    scale = cfg["lora_alpha"] / (math.sqrt(cfg["r"]) if cfg.get("use_rslora") else cfg["r"])
    return scale * tensors[f"{name}.lora_B.weight"].float() @ tensors[f"{name}.lora_A.weight"].float()


@given(n=st.integers(2, 3), r=st.integers(1, 3), rslora=st.booleans(), seed=st.integers(0, 2**16))
def test_soup_adapters_is_the_mean_of_the_runs_weight_changes(tmp_path_factory, n, r, rslora, seed):
    """The soup's B @ A (with its own scale) is the mean of the runs' B_i @ A_i exactly, whatever their A: a
    mean of A and of B separately would not be (the product is bilinear)."""
    import torch
    from safetensors.torch import load_file

    from sqltune.rl import soup_adapters

    g = torch.Generator().manual_seed(seed)
    d = tmp_path_factory.mktemp("soup")
    cfg = {"r": r, "lora_alpha": 2 * r, "use_rslora": rslora, "target_modules": ["x"]}
    parts, products = [], []
    for i in range(n):
        t = {"x.lora_A.weight": torch.randn(r, 5, generator=g), "x.lora_B.weight": torch.randn(4, r, generator=g),
             "x.bias": torch.full((4,), float(i))}
        parts.append(_adapter(d / f"run{i}", t, json.dumps(cfg)))
        products.append(_lora_product(t, cfg))
    out = soup_adapters(parts, d / "soup")
    got, got_cfg = load_file(str(out / ADAPTER_WEIGHTS)), json.loads((out / "adapter_config.json").read_text())
    assert got_cfg["r"] == n * r and got["x.lora_A.weight"].shape == (n * r, 5)
    assert torch.allclose(_lora_product(got, got_cfg), sum(products) / n, atol=1e-5)
    assert torch.allclose(got["x.bias"], torch.full((4,), (n - 1) / 2))  # anything else: the plain mean


def test_soup_of_two_peft_adapters_merges_to_the_mean_of_their_merged_weights(tiny_model_dir, tmp_path):
    """Through peft itself: two adapters with random A and B on the tiny model, merged one by one, and their soup
    merged: every projection of the soup's merged model is the mean of the two merged models'."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from sqltune.rl import soup_adapters

    def merged(adapter):
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().state_dict()

    parts = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        m = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))  # B random too: a real weight change
        m.save_pretrained(tmp_path / f"run{seed}")
        parts.append(tmp_path / f"run{seed}")
    soup = soup_adapters(parts, tmp_path / "soup")
    w1, w2, ws = merged(parts[0]), merged(parts[1]), merged(soup)
    keys = [k for k in ws if "q_proj" in k or "v_proj" in k]
    assert keys and any(not torch.allclose(w1[k], w2[k]) for k in keys)
    for k in keys:
        assert torch.allclose(ws[k], (w1[k] + w2[k]) / 2, atol=1e-5), k


def test_soup_adapters_refuses_what_it_cannot_average(tmp_path):
    import torch

    from sqltune.rl import soup_adapters

    t = {"x.lora_A.weight": torch.ones(2, 3), "x.lora_B.weight": torch.ones(3, 2)}
    a = _adapter(tmp_path / "a", t, '{"r": 2, "lora_alpha": 4}')
    with pytest.raises(SqltuneError, match="at least two runs"):
        soup_adapters([a], tmp_path / "o")
    b = _adapter(tmp_path / "b", t, '{"r": 4, "lora_alpha": 4}')
    with pytest.raises(SqltuneError, match=r"different shapes \(r\)"):
        soup_adapters([a, b], tmp_path / "o")
    dora = _adapter(tmp_path / "d", t, '{"r": 2, "lora_alpha": 4, "use_dora": true}')
    with pytest.raises(SqltuneError, match="DoRA"):
        soup_adapters([dora, dora], tmp_path / "o")
    c = _adapter(tmp_path / "c", {"y.lora_A.weight": torch.ones(2, 3)}, '{"r": 2, "lora_alpha": 4}')
    with pytest.raises(SqltuneError, match="different tensors"):
        soup_adapters([a, c], tmp_path / "o")
    (tmp_path / "full").mkdir()
    with pytest.raises(SqltuneError, match="needs LoRA adapter weights"):
        soup_adapters([a, tmp_path / "full"], tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing half-written
    (tmp_path / "mine").mkdir()
    with pytest.raises(SqltuneError, match="already exists"):
        soup_adapters([a, a], tmp_path / "mine")


def test_bad_runs_setting_is_one_clear_error():
    with pytest.raises(SqltuneError, match="runs must be at least 1"):
        RLConfig(runs=0).validate()
    with pytest.raises(SqltuneError, match="do not combine"):
        RLConfig(runs=2, average=0.5).validate()


def _soup_configs(**rl):
    rl = RLConfig(steps=2, eval_every=1, num_generations=2, prompts_per_step=2, max_completion_length=8,
                  lr=1e-3, workers=1, timeout=1.0, probe=0, runs=2, **rl)
    return rl, TrainConfig(device="cpu", dtype="float32", method="lora", rank=4, alpha=8, top_layers=None,
                           eval_batch_size=4, eval_max_new_tokens=8)


def test_grpo_runs_writes_the_soup_with_each_run_inside(tiny_model_dir, one_table_db, tmp_path, monkeypatch):
    """`rl.runs: 2`: two GRPO runs (seeds 42, 43) from one start, each a loadable checkpoint inside the output;
    the output is their soup (rank 2 x 4) and loads through the normal loader; nothing is left beside it; an
    interrupted soup keeps the run that finished (`resume`)."""
    import dataclasses

    import sqltune.rl as rl_mod

    valid = [{"id": "v1", "question": "Name every author.", "sql": "SELECT name FROM authors"}]
    rl, tc = _soup_configs()
    tc = dataclasses.replace(tc, model=str(tiny_model_dir))
    seeds = []
    real = rl_mod._single_run

    def spy(tc_, one, *a, **k):
        seeds.append(one.seed)
        assert one.runs == 1
        return real(tc_, one, *a, **k)

    monkeypatch.setattr(rl_mod, "_single_run", spy)
    out = tmp_path / "rl"
    res = train_grpo(rl, ITEMS, valid, one_table_db, out, train_config=tc, choose=lambda h: h[-1], progress=False)
    assert seeds == [42, 43] and res.out_dir == out
    info = read_info(out)
    assert [r["seed"] for r in info["soup"]["runs"]] == [42, 43] and info["chosen"]["steps"] == [2, 2]
    assert info["rl"]["runs"] == 2 and not info["chosen"]["untrained"]
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8
    assert load_trained(out, "cpu").info["soup"]["runs"][1]["seed"] == 43
    for i in (1, 2):
        assert read_info(out / f"run-{i}")["rl"]["seed"] == 41 + i and load_trained(out / f"run-{i}", "cpu")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("rl.")]  # no .runs or .work folder left
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {x["run"] for x in lines} == {1, 2}
    # interrupted after run 1: a resumed call trains run 2 only
    import shutil

    runs = tmp_path / "again.runs"
    from sqltune.files import claim

    claim(runs, "grpo-runs")
    shutil.copytree(out / "run-1", runs / "run-1")
    seeds.clear()
    train_grpo(rl, ITEMS, valid, one_table_db, tmp_path / "again", train_config=tc, choose=lambda h: h[-1],
               progress=False, resume=True)
    assert seeds == [43] and read_info(tmp_path / "again")["soup"]["runs"][0]["seed"] == 42


def test_grpo_runs_refuses_a_whole_model(tiny_model_dir, one_table_db, tmp_path):
    import dataclasses

    rl, tc = _soup_configs()
    tc = dataclasses.replace(tc, model=str(tiny_model_dir), method="dora")
    valid = [{"id": "v1", "question": "Name every author.", "sql": "SELECT name FROM authors"}]
    with pytest.raises(SqltuneError, match="rl.runs > 1 averages LoRA adapters; this GRPO run trains dora"):
        train_grpo(rl, ITEMS, valid, one_table_db, tmp_path / "rl", train_config=tc, progress=False)
    assert not (tmp_path / "rl").exists()


@pytest.mark.usefixtures("one_thread")
def test_run_scores_each_grpo_run_beside_their_soup(tiny_model_dir, one_table_db, tmp_path, monkeypatch):
    """`sqltune run` with `rl.runs: 2`: stages rl_run1 and rl_run2 before `rl` (the soup), so one job shows two runs
    of the recipe and what the soup made of them, question by question; run 1 is scored before run 2 starts (a job
    cut short keeps what it finished)."""
    import sqltune.rl as rl_mod
    from sqltune.run import run

    valid = [{"id": "v1", "question": "Name every author.", "sql": "SELECT name FROM authors"}]
    out = tmp_path / "run"
    scored_before = []
    real = rl_mod._single_run

    def spy(tc_, one, *a, **k):
        scored_before.append(sorted(p.name for p in out.glob("rl_run*_test_report.json")))
        return real(tc_, one, *a, **k)

    monkeypatch.setattr(rl_mod, "_single_run", spy)
    metrics = run("default", out, overrides=_rl_run_overrides(tiny_model_dir, one_table_db, tmp_path, valid, runs=2))
    assert scored_before == [[], ["rl_run1_test_report.json"]]
    assert list(metrics)[:5] == ["base", "tuned", "rl_run1", "rl_run2", "rl"]
    md = (out / "report.md").read_text()
    assert "| tuned | rl_run1 | rl_run2 | rl |" in md
    assert "**test, rl_run1 → rl_run2**" in md and "*rl_run1 → rl_run2 above is two GRPO runs of this recipe" in md
    assert read_info(out / "adapter_rl")["rl"]["runs"] == 2
    assert list(metrics["chosen"]) == ["tuned", "rl_run1", "rl_run2", "rl"]
    assert metrics["chosen"]["rl"]["steps"] == read_info(out / "adapter_rl")["chosen"]["steps"]  # each run's step
