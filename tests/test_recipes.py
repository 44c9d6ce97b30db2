"""Recipes: every shipped one loads, validates and starts (on a tiny model of its family); bad keys and
values are one clear error; the CLI's train / merge / recipes commands."""

from __future__ import annotations

import json

import pytest
import yaml

from sqltune.cli import main
from sqltune.dataset import write_jsonl
from sqltune.errors import SqltuneError, UnknownNameError
from sqltune.paths import PACKAGED_RECIPES
from sqltune.recipe import list_recipes, load_recipe, parse_set
from sqltune.train import TrainConfig, train

SHIPPED = sorted(p.stem for p in PACKAGED_RECIPES.glob("*.yaml"))
ITEMS = [
    {"id": "a", "question": "How many authors are there?", "sql": "SELECT COUNT(*) FROM authors;"},
    {"id": "b", "question": "List all book titles.", "sql": "SELECT title FROM books;"},
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Tiny random models of the shipped recipes' families (Llama; Qwen2 for `default`), 4 layers so that
    `top_layers` recipes fit, with SmolLM2's real tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from tiny import make_tiny_model, real_tokenizer_dir

    root = tmp_path_factory.mktemp("tiny_family")
    llama = make_tiny_model(root / "llama", layers=4)
    tok = AutoTokenizer.from_pretrained(real_tokenizer_dir())
    torch.manual_seed(0)
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    qwen.save_pretrained(root / "qwen2")
    tok.save_pretrained(root / "qwen2")
    return {"llama": llama, "qwen2": root / "qwen2"}


@pytest.fixture
def items_file(tmp_path):
    return write_jsonl(tmp_path / "items.jsonl", ITEMS)


# ---------------------------------------------------------------- shipped recipes
def test_the_original_experiments_and_the_default_are_shipped():
    assert {"default", "prem-1b-full", "llama3.2-3b-lora", "llama3.2-3b-dora", "llama3.2-3b-full",
            "llama3.1-8b-lora", "llama3.2-3b-dora-extra"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_loads_and_validates(name):
    r = load_recipe(name)
    cfg = r.train_config().validate()
    assert r.name == name and r.description
    text = (PACKAGED_RECIPES / f"{name}.yaml").read_text()
    assert text.startswith("#") and f"--config {name}" in text  # header: the launch command (+ one override)
    assert yaml.safe_load(r.to_yaml())["train"]["method"] == cfg.method
    assert isinstance(cfg.lr, float)


def test_original_hyperparameters():
    for name in ("llama3.2-3b-lora", "llama3.2-3b-dora", "llama3.1-8b-lora", "llama3.2-3b-dora-extra"):
        c = load_recipe(name).train_config()
        assert (c.rank, c.alpha, c.dropout, c.lr, c.scheduler, c.prompt_style) == (128, 32, 0.1, 2e-4, "cosine", "seed")
        assert set(c.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
        assert c.method == ("dora" if "dora" in name else "lora") and 10 <= c.epochs <= 20
    for name in ("llama3.2-3b-full", "prem-1b-full"):
        c = load_recipe(name).train_config()
        assert (c.method, c.lr, c.epochs) == ("full", 2e-6, 25)
    assert load_recipe("prem-1b-full").train_config().prompt_style == "premsql"
    assert load_recipe("prem-1b-full").model == "premai-io/prem-1B-SQL"
    assert load_recipe("llama3.2-3b-dora-extra").augment.enabled


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_starts_on_a_tiny_model_of_its_family(name, tiny_models, tiny_db, items_file, tmp_path):
    family = "qwen2" if load_recipe(name).model.startswith("qwen") else "llama"
    r = load_recipe(name, {"model": str(tiny_models[family]), "device": "cpu", "data.db": str(tiny_db),
                           "data.train": str(items_file), "data.valid": str(items_file), "train.max_steps": 1,
                           "train.batch_size": 2, "eval.max_new_tokens": 4})
    result = train(r, r.train_items(), ITEMS, tiny_db, tmp_path / "out", progress=False)
    assert [h["step"] for h in result.history] == [0, 1]
    assert result.info["prompt"]["style"] == r.prompt.style
    assert result.info["method"] == r.train["method"]
    saved = yaml.safe_load((tmp_path / "out" / "recipe.yaml").read_text())
    assert saved["train"]["lr"] == r.train["lr"] and saved["prompt"]["style"] == r.prompt.style


# ---------------------------------------------------------------- errors and overrides
def test_bad_recipes_are_one_clear_error(tmp_path):
    def write(data):
        p = tmp_path / "r.yaml"
        p.write_text(yaml.safe_dump(data))
        return p

    cases = [
        ({"train": {"lrr": 1e-4}}, r"unknown key 'train.lrr' \(did you mean train.lr\?\)"),
        ({"trian": {}}, r"unknown key 'trian' \(did you mean train\?\)"),
        ({"train": {"epochs": "many"}}, r"train.epochs must be a number, got 'many'"),
        ({"train": {"rank": 1.5}}, r"train.rank must be an integer"),
        ({"train": {"method": "lorra"}}, r"unknown method 'lorra'"),
        ({"train": {"model": "x"}}, r"train.model is set as model"),
        ({"data": ["x"]}, r"section 'data' must be a mapping"),
        ({"prompt": {"style": "fancy"}}, r"prompt style 'fancy'"),
        ({"eval": {"batch_size": None}}, r"eval.batch_size must be an integer"),
        ({"eval": {"timeout": -1}}, r"eval_timeout must be a positive number of seconds, got -1"),
        ({"eval": {"timeout": 0}}, r"eval_timeout must be a positive number of seconds, got 0"),
        ({"eval": {"timeout": float("nan")}}, r"eval.timeout must be a finite number, got nan"),
        ({"train": {"lr": float("inf")}}, r"train.lr must be a finite number, got inf"),
        ({"train": {"epochs": "1e400"}}, r"train.epochs must be a finite number, got '1e400'"),
        ({"rl": {"beta": float("nan")}}, r"rl.beta must be a finite number, got nan"),
        ({"train": {"warmup": -1}}, r"warmup must be >= 0"),
        (["not", "a", "mapping"], r"expected a mapping"),
        ({"synth": {"sql_temperature": -0.5}}, r"synth.sql_temperature must be >= 0"),
        ({"synth": {"heldout_fraction": 1.0}}, r"synth.heldout_fraction must be in \[0, 1\)"),
        ({"synth": {"readback_samples": 0}}, r"synth.readback_samples must be at least 1"),
        ({"synth": {"question_attempts": 0}}, r"synth.question_attempts must be at least 1"),
        ({"synth": {"overgenerate": 0.5}}, r"synth.overgenerate must be at least 1"),
        ({"synth": {"sql_max_new_tokens": 8}}, r"synth.sql_max_new_tokens must be at least 16"),
        ({"synth": {"sources": ["schema", "web"]}}, r"synth.sources: unknown web"),
        ({"synth": {"styles": []}}, r"synth.styles: unknown \(none\)"),
        ({"synth": {"questions": "llm"}}, r"synth.questions must be model or template"),
        ({"synth": {"reader": "qwen2.5-coder-0.5b", "readback": False}}, r"synth.reader checks the model's read-back"),
        ({"train": {"enabled": "sometimes"}}, r"train.enabled must be true or false, got 'sometimes'"),
        ({"train": {"enabled": False}, "augment": {"enabled": True}}, r"augment.enabled retrains the run's adapter, "
                                                                       r"but train.enabled is false"),
    ]
    for data, message in cases:
        with pytest.raises(SqltuneError, match=message):
            load_recipe(write(data))
    (tmp_path / "broken.yaml").write_text("train: [1, 2\n")
    with pytest.raises(SqltuneError, match="not valid YAML"):
        load_recipe(tmp_path / "broken.yaml")
    with pytest.raises(UnknownNameError, match=r"unknown recipe 'defualt' \(did you mean default\?\)"):
        load_recipe("defualt")
    with pytest.raises(SqltuneError, match="recipe file not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_a_value_that_is_not_text_is_one_line_before_any_write(tmp_path, capsys, tiny_db):
    """A lone surrogate: a YAML escape ("\\ud800"), or a value the terminal could not decode."""
    for overrides, key in [({"description": "caf\udce9"}, "description"), ({"data.extra": ["a\udce9.jsonl"]}, "data.extra")]:
        with pytest.raises(SqltuneError, match=f"{key} is not UTF-8 text"):
            load_recipe("default", overrides)
    assert load_recipe("default", {"description": "café \U0001f600"}).description == "café \U0001f600"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(f'{{"question": "q{i}?", "sql": "SELECT {i} FROM books"}}\n' for i in range(8)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text('description: "caf\\ud800"\n')
    out = tmp_path / "run"  # before: the run folder was made, then writing recipe.json raised UnicodeEncodeError
    assert main(["run", str(recipe), "--db", str(tiny_db), "--train", str(pairs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "description is not UTF-8 text" in err and "Traceback" not in err and not out.exists()


def test_overrides_dotted_nested_and_from_the_command_line():
    r = load_recipe("default", {"train.lr": "1e-4", "train": {"epochs": 2}, "eval": {"batch_size": "4"}, "model": "m"})
    c = r.train_config()
    assert (c.lr, c.epochs, c.eval_batch_size, c.model) == (1e-4, 2.0, 4, "m")
    sets = parse_set(["train.top_layers=null", "train.target_modules=[q_proj, v_proj]", "prompt.style=seed"])
    c = load_recipe("default", sets).train_config()
    assert c.top_layers is None and c.target_modules == ["q_proj", "v_proj"] and c.prompt_style == "seed"
    with pytest.raises(SqltuneError, match="KEY=VALUE"):
        parse_set(["lr"])


def test_train_config_from_dict_rejects_unknown_keys():
    assert TrainConfig.from_dict({"lr": 1e-3}).lr == 1e-3
    with pytest.raises(SqltuneError, match="unknown key"):
        TrainConfig.from_dict({"learning_rate": 1e-3})


def test_list_recipes_describes_each():
    rows = {r["name"]: r for r in list_recipes()}
    assert set(rows) == set(SHIPPED) and rows["default"]["method"] == "lora"


# ---------------------------------------------------------------- the CLI
def test_cli_train_merge_and_recipes(tiny_models, tiny_db, items_file, tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"model": str(tiny_models["llama"]), "device": "cpu",
                                      "data": {"db": str(tiny_db), "train": str(items_file), "valid": str(items_file)},
                                      "train": {"method": "lora", "rank": 4, "epochs": 1, "batch_size": 2},
                                      "eval": {"max_new_tokens": 4}}))
    out = tmp_path / "adapter"
    assert main(["train", "--config", str(recipe), "--out", str(out), "--lr", "1e-3", "--set", "train.seed=3"]) == 0
    info = json.loads((out / "sqltune_checkpoint.json").read_text())
    assert info["hyperparameters"]["lr"] == 1e-3 and info["hyperparameters"]["seed"] == 3
    assert "chose step" in capsys.readouterr().out

    assert main(["train", "--config", str(recipe), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["train", "--config", str(recipe), "--out", str(tmp_path / "x"), "--set", "train.lrr=1"]) == 2
    assert "unknown key 'train.lrr'" in capsys.readouterr().err

    assert main(["merge", str(out), str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "config.json").is_file() and (tmp_path / "merged" / "COMPLETE").is_file()
    assert main(["recipes"]) == 0
    assert "llama3.2-3b-dora-extra" in capsys.readouterr().out


def test_the_05b_gpu_recipe_is_the_15b_pipeline_with_the_pooled_vote():
    """qwen0.5b-gpu is qwen1.5b-gpu with another model and `eval.fallback: vote` (chosen on a dev read, BENCHMARKS.md
    "Session 20"), where the 1.5B has the panel with the reviewer (session 32, read on the 1.5B only); anything else
    that differs is drift between two recipes meant to be one pipeline."""
    import dataclasses

    small, large = (dataclasses.asdict(load_recipe(n)) for n in ("qwen0.5b-gpu", "qwen1.5b-gpu"))
    differ = {k for k in small if small[k] != large[k]} - {"name", "description", "source"}
    assert differ == {"model", "eval", "train"}
    # the 1.5B trains nothing by default (session 38's read on the dev halves); the rest of its training is the 0.5B's
    assert (small["train"]["enabled"], large["train"]["enabled"]) == (True, False)
    assert {k for k in small["train"] if small["train"][k] != large["train"][k]} == {"enabled"}
    assert (small["model"], large["model"]) == ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
    assert {k for k in small["eval"] if small["eval"][k] != large["eval"][k]} == {"fallback", "panel_judge",
                                                                                    "panel_tuned_fewshot"}
    assert (small["eval"]["fallback"], large["eval"]["fallback"]) == ("vote", "panel")
    assert large["eval"]["panel_judge"] == "reviewer" and large["eval"]["panel_tuned_fewshot"] == 0  # session 32
    assert small["eval"]["vote"] >= 2  # the pool needs candidates
