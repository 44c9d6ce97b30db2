"""Fine-tuning on a tiny random model with a real tokenizer: learning judged by execution, saving and
reloading (LoRA, DoRA, full), the prompt lock, resume, merge (the shared-prefix step's exactness:
test_shared_prefix.py)."""

from __future__ import annotations

import json
import re

import pytest

from sqltune.checkpoint import check_prompt, load_trained, merge, read_info
from sqltune.errors import SqltuneError
from sqltune.model import pick_device
from sqltune.prompt import PromptBuilder
from sqltune.schema import schema_text
from sqltune.score import score_pairs
from sqltune.train import TrainConfig, train

ITEMS = [
    {"id": "a", "question": "How many authors are there?", "sql": "SELECT COUNT(*) FROM authors;"},
    {"id": "b", "question": "List all book titles.", "sql": "SELECT title FROM books;"},
    {"id": "c", "question": "Which authors are from the UK?", "sql": "SELECT name FROM authors WHERE country = 'UK';"},
    {"id": "d", "question": "What is the total number of copies sold?", "sql": "SELECT SUM(copies) FROM sales;"},
]


pytestmark = pytest.mark.usefixtures("one_thread")


def cfg(model, **kw) -> TrainConfig:
    base = dict(model=str(model), method="lora", rank=8, alpha=16, dropout=0.0, lr=1e-2, epochs=2, batch_size=2,
                device="cpu", eval_max_new_tokens=16, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def predictions(loaded, db, items=ITEMS):
    """The evaluator's predictions, with the settings training evaluated with (cfg below)."""
    from sqltune.evaluate import EvalConfig, predict

    ecfg = EvalConfig(batch_size=64, max_new_tokens=16, progress=False, autocast=pick_device("cpu").autocast)
    return [r["sql"] for r in predict(loaded.model, loaded.tokenizer, loaded.builder, items, db, ecfg)]


def saved_predictions(out):
    report = json.loads((out / "valid_report.json").read_text())
    return [e["pred_sql"] for e in report["examples"]]


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    """One short LoRA run shared by the tests that only read its output."""
    from conftest import make_tiny_db

    tmp = tmp_path_factory.mktemp("lora_run")
    db = make_tiny_db(tmp / "tiny.sqlite")
    # `last`: a trained adapter to save and reload (the tiny model's 2 epochs are no gain that `noise` would keep)
    result = train(cfg(tiny_model_dir, choose="last"), ITEMS, ITEMS, db, tmp / "out", progress=False)
    return result, db


# ---------------------------------------------------------------- learning, judged by execution
def test_tiny_model_learns_sql_judged_by_execution(tiny_model_dir, tiny_db, tmp_path):
    config = cfg(tiny_model_dir, method="full", lr=5e-3, batch_size=1, epochs=60, eval_every=120)
    result = train(config, ITEMS, ITEMS, tiny_db, tmp_path / "out", progress=False)
    steps = [r["step"] for r in result.history]
    assert steps == [0, 120, 240]
    assert result.history[0]["exact"] == 0.0  # random weights write no SQL
    assert result.chosen_step == 240 and result.best["exact"] == 1.0

    # The scorer's verdicts on what the saved model generates now, not the training log.
    loaded = load_trained(tmp_path / "out", "cpu")
    preds = predictions(loaded, tiny_db)
    report = score_pairs(tiny_db, ITEMS, preds)
    assert [e["exact"] for e in report["examples"]] == [True] * 4
    assert report["summary"]["execution_rate"] == 1.0
    assert preds == saved_predictions(tmp_path / "out")  # full fine-tuning reloads with identical predictions

    info = read_info(tmp_path / "out")
    assert info["method"] == "full" and info["chosen"]["step"] == 240
    assert info["data"]["train"]["n"] == 4 and len(info["data"]["train"]["sha256"]) == 64
    assert info["prompt"]["style"] == "chat" and info["tokens"]["tokens_per_s"] > 0
    lines = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == steps and {"train_loss", "exact", "fuzzy", "execution_rate"} <= set(lines[1])
    assert not (tmp_path / "out.work").exists()


# ---------------------------------------------------------------- saving and reloading
def test_lora_saves_and_reloads_with_identical_predictions(lora_run):
    result, db = lora_run
    out = result.out_dir
    assert result.chosen_step > 0  # a trained adapter, not the identity one from step 0
    assert (out / "adapter_config.json").is_file() and (out / "COMPLETE").is_file()
    assert (out / "recipe.yaml").is_file() and (out / "tokenizer_config.json").is_file()
    assert predictions(load_trained(out, "cpu"), db) == saved_predictions(out)


def test_dora_saves_and_reloads_with_identical_predictions(tiny_model_dir, tiny_db, tmp_path):
    result = train(cfg(tiny_model_dir, method="dora", choose="last"), ITEMS, ITEMS, tiny_db, tmp_path / "out",
                   progress=False)
    assert result.chosen_step > 0
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["use_dora"] is True
    assert predictions(load_trained(tmp_path / "out", "cpu"), tiny_db) == saved_predictions(tmp_path / "out")


def test_adapter_refuses_another_prompt_style(lora_run):
    result, db = lora_run
    seed_builder = PromptBuilder(schema_text(db), style="seed")
    with pytest.raises(SqltuneError, match="prompt style 'chat'"):
        load_trained(result.out_dir, "cpu", builder=seed_builder)
    other_schema = PromptBuilder(schema_text(db) + "\n-- a changed schema", style="chat")
    with pytest.raises(SqltuneError, match="different prompt template"):
        load_trained(result.out_dir, "cpu", builder=other_schema)


def test_merge_makes_a_standalone_model_that_keeps_the_prompt_lock(lora_run, tmp_path):
    import torch

    from sqltune.model import load_model, pick_device, resolve_model

    result, db = lora_run
    merged = merge(result.out_dir, tmp_path / "merged")
    assert resolve_model(str(merged)) == str(merged)  # what --model OUT does
    model, tok, _ = load_model(str(merged), pick_device("cpu", "float32"))
    adapter = load_trained(result.out_dir, "cpu")
    ids = torch.tensor([tok(adapter.builder.prompt(tok, ITEMS[0]["question"]))["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, adapter.model(ids).logits, atol=1e-4)
    assert check_prompt(merged, adapter.builder, tok)["method"] == "merged"
    with pytest.raises(SqltuneError, match="prompt style"):
        check_prompt(merged, PromptBuilder(schema_text(db), style="premsql"), tok)
    with pytest.raises(SqltuneError, match="nothing to merge"):
        merge(merged, tmp_path / "again")


# ---------------------------------------------------------------- interruption and resume
def test_resume_after_an_interruption_gives_the_same_checkpoint(tiny_model_dir, tiny_db, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    import sqltune.shared_prefix as T

    config = cfg(tiny_model_dir, dropout=0.1, epochs=3)  # dropout: the resumed run must restore the RNG too
    a = train(config, ITEMS, ITEMS, tiny_db, tmp_path / "a", progress=False)

    real, calls = T.SharedPrefix.loss, {"n": 0}

    def interrupted(self, model, batch):
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 5:  # first step of epoch 3 (2 steps an epoch)
                raise KeyboardInterrupt
        return real(self, model, batch)

    monkeypatch.setattr(T.SharedPrefix, "loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, ITEMS, ITEMS, tiny_db, tmp_path / "b", progress=False)
    monkeypatch.setattr(T.SharedPrefix, "loss", real)

    assert not (tmp_path / "b").exists()  # nothing half-written where the output goes
    with pytest.raises(SqltuneError, match="not found"):
        load_trained(tmp_path / "b", "cpu")
    with pytest.raises(SqltuneError, match="--resume"):
        train(config, ITEMS, ITEMS, tiny_db, tmp_path / "b", progress=False)
    with pytest.raises(SqltuneError, match="other config"):
        train(cfg(tiny_model_dir, dropout=0.1, epochs=3, lr=1e-3), ITEMS, ITEMS, tiny_db, tmp_path / "b",
              resume=True, progress=False)

    b = train(config, ITEMS, ITEMS, tiny_db, tmp_path / "b", resume=True, progress=False)
    assert b.info["timing"]["resumed"] is True
    assert (a.chosen_step, a.best["exact"]) == (b.chosen_step, b.best["exact"])
    keys = ("step", "train_loss", "valid_loss", "exact", "exact_ids")
    assert [[r[k] for k in keys] for r in a.history] == [[r[k] for k in keys] for r in b.history]
    wa = load_file(tmp_path / "a" / "adapter_model.safetensors")
    wb = load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # resuming a finished run returns it; a finished output is never overwritten without --force
    assert train(config, ITEMS, ITEMS, tiny_db, tmp_path / "b", resume=True, progress=False).chosen_step == b.chosen_step
    with pytest.raises(SqltuneError, match="already exists"):
        train(config, ITEMS, ITEMS, tiny_db, tmp_path / "b", progress=False)


def test_untuned_model_wins_when_training_does_not_beat_it(tiny_model_dir, tiny_db, tmp_path):
    # A baseline report (here: perfect answers) stands in for step 0; training cannot beat it, so the
    # output is the untuned model and says so.
    perfect = score_pairs(tiny_db, ITEMS, [it["sql"] for it in ITEMS])
    result = train(cfg(tiny_model_dir, epochs=1), ITEMS, ITEMS, tiny_db, tmp_path / "out", progress=False,
                   baseline=perfect)
    assert result.untrained and result.chosen_step == 0 and result.best["exact"] == 1.0
    assert read_info(tmp_path / "out")["chosen"]["untrained"] is True
    with pytest.raises(SqltuneError, match="baseline"):
        train(cfg(tiny_model_dir, epochs=1), ITEMS, ITEMS[:2], tiny_db, tmp_path / "o2", progress=False, baseline=perfect)


def test_without_a_rule_train_applies_the_configs_choose(tiny_model_dir, tiny_db, tmp_path):
    # step 0 answers nothing (a baseline of wrong answers); the tiny model after one epoch answers nothing either:
    # `noise` keeps the untuned model (no gain), `last` the latest step (no loss)
    wrong = score_pairs(tiny_db, ITEMS, ["SELECT 1"] * len(ITEMS))
    noise = train(cfg(tiny_model_dir, epochs=1), ITEMS, ITEMS, tiny_db, tmp_path / "noise", progress=False,
                  baseline=wrong)
    last = train(cfg(tiny_model_dir, epochs=1, choose="last"), ITEMS, ITEMS, tiny_db, tmp_path / "last",
                 progress=False, baseline=wrong)
    assert [r["exact"] for r in last.history] == [0.0, 0.0]
    assert noise.chosen_step == 0 and last.chosen_step == 2 == last.history[-1]["step"]
    assert read_info(tmp_path / "last")["chosen"]["untrained"] is False
    with pytest.raises(SqltuneError, match="choose must be noise or last"):
        train(cfg(tiny_model_dir, choose="best"), ITEMS, ITEMS, tiny_db, tmp_path / "o", progress=False)


@pytest.mark.parametrize("progress", [True, False])
def test_the_training_log_is_one_readable_line_per_logging_step(tiny_model_dir, tiny_db, tmp_path, capsys, progress):
    train(cfg(tiny_model_dir, epochs=1), ITEMS, ITEMS, tiny_db, tmp_path / "out", progress=progress)
    out, err = capsys.readouterr()
    assert "'loss'" not in out + err  # not transformers' raw dict, with or without the progress bar
    assert re.search(r"step 2/2  epoch 1\.00  loss [\d.]+  grad norm [\d.e+-]+  lr [\d.e+-]+\n", err)
    assert re.search(r"trained 2 steps in \d+ s, mean train loss [\d.]+\n", err)
    # stderr is no terminal here (a log file): the checkpoint's line starts a line, after no cursor move ('\x1b[A') of
    # the evaluator's bar, which scored it under the Trainer's bar
    assert "\x1b" not in err and re.search(r"(?m)^step 2 \(epoch 1\.00\): exact ", err.replace("\r", "\n"))


@pytest.mark.parametrize("terminal", [True, False])
def test_a_bar_under_another_takes_its_own_line_only_on_a_terminal(monkeypatch, terminal):
    """The evaluator's bar opens under the Trainer's as training scores a checkpoint: on a terminal it takes the next
    line (tqdm moves the cursor there and back up, '\\x1b[A'); in a log file such moves are junk before the next line,
    so there every bar keeps to one line."""
    import io
    import sys

    from sqltune.console import progress

    class Stderr(io.StringIO):
        def isatty(self):
            return terminal

    monkeypatch.setattr(sys, "stderr", Stderr())
    with progress(2, "training") as outer:
        with progress(2, "generating", unit="q") as inner:
            inner.update(2)
        outer.update(2)
    text = sys.stderr.getvalue()
    assert "training: " in text and "generating: " in text  # both bars are shown
    assert ("\x1b[A" in text) is terminal


def _screen(text: str) -> list[str]:
    """The lines a terminal shows after `text`: '\\r' goes to the line's start, '\\n' to the next line's, '\\x1b[A' up
    one line; other characters overwrite what is under the cursor."""
    rows, row, col = [[]], 0, 0
    for tok in re.findall(r"\x1b\[[0-9;]*[A-Za-z]|.", text, flags=re.S):
        if tok == "\r":
            col = 0
        elif tok == "\n":
            row, col = row + 1, 0
        elif tok == "\x1b[A":
            row = max(0, row - 1)
        elif tok.startswith("\x1b"):
            continue
        else:
            while len(rows) <= row:
                rows.append([])
            line = rows[row]
            line.extend(" " * max(0, col + 1 - len(line)))
            line[col] = tok
            col += 1
    return ["".join(r).rstrip() for r in rows]


@pytest.mark.parametrize("terminal", [True, False])
@pytest.mark.parametrize("writer", ["train", "grpo"])
def test_the_checkpoint_line_goes_above_the_trainers_bar(monkeypatch, terminal, writer):
    """Training prints each checkpoint's scores ('step N (epoch ...): exact ...', `trainer.echo`) while the Trainer's
    progress bar is open: on a terminal a plain print landed on the bar's line ('... 1/2 [00:00<...]step 1 (epoch'),
    and in a log file after the bar's text. Written as `LogLines` writes, it takes a line of its own, above the bar.
    GRPO's 'grpo step N: valid exact ...' lines (`rl._echo`) the same."""
    import io
    import sys

    from transformers import TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_callback import ProgressCallback

    from sqltune.rl import _echo
    from sqltune.trainer import echo

    class Stderr(io.StringIO):
        def isatty(self):
            return terminal

    echo = echo if writer == "train" else _echo
    monkeypatch.setattr(sys, "stderr", Stderr())
    state, bar = TrainerState(max_steps=2, global_step=1, is_world_process_zero=True), ProgressCallback()
    bar.on_train_begin(TrainingArguments(output_dir="unused", report_to=[]), state, TrainerControl())
    bar.training_bar.update(1)
    line = "step 1 (epoch 0.50): exact 25.0%, executed 100.0%"
    echo(line)
    bar.training_bar.close()
    text = sys.stderr.getvalue()
    assert "\n" + line + "\n" in text.replace("\r", "\n")  # a line of its own, in a file as on a terminal
    if terminal:
        screen = _screen(text)
        assert line in screen and not any(line in s and s != line for s in screen)


def test_unfinished_checkpoint_folder_is_refused(tmp_path):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "sqltune_checkpoint.json").write_text(json.dumps({"prompt": {"style": "chat"}}))
    with pytest.raises(SqltuneError, match="unfinished"):
        read_info(tmp_path / "ck")


def test_qlora_needs_cuda_and_bitsandbytes(tiny_model_dir, tiny_db, tmp_path):
    with pytest.raises(SqltuneError, match="qlora.*CUDA"):
        train(cfg(tiny_model_dir, method="qlora"), ITEMS, ITEMS, tiny_db, tmp_path / "out", progress=False)


def test_bad_config_is_one_clear_error(tiny_model_dir, tiny_db, tmp_path):
    with pytest.raises(SqltuneError, match="unknown method 'lorra'"):
        train(cfg(tiny_model_dir, method="lorra"), ITEMS, ITEMS, tiny_db, tmp_path / "o", progress=False)
    with pytest.raises(SqltuneError, match="top_layers=9"):
        train(cfg(tiny_model_dir, top_layers=9), ITEMS, ITEMS, tiny_db, tmp_path / "o", progress=False)
    with pytest.raises(SqltuneError, match="could not add lora adapters"):
        train(cfg(tiny_model_dir, target_modules=["nope_proj"]), ITEMS, ITEMS, tiny_db, tmp_path / "o", progress=False)


def test_an_interruption_while_run_json_is_written_leaves_a_resumable_work_folder(tiny_model_dir, tiny_db, tmp_path,
                                                                                   monkeypatch):
    """OUT.work/run.json (the settings a resume must match) was written in place: a Ctrl-C or kill between the
    file's creation and its text left it empty, and `--resume` died in a JSONDecodeError traceback."""
    import builtins
    import io

    real = builtins.open

    def interrupted(file, mode="r", *a, **k):
        f = real(file, mode, *a, **k)
        if "w" in mode and "run.json" in str(file):
            f.close()  # created, not yet written: where a Ctrl-C lands
            raise KeyboardInterrupt
        return f

    monkeypatch.setattr(builtins, "open", interrupted)
    monkeypatch.setattr(io, "open", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(tiny_model_dir, epochs=1), ITEMS, ITEMS, tiny_db, tmp_path / "out", progress=False)
    monkeypatch.setattr(builtins, "open", real)
    monkeypatch.setattr(io, "open", real)
    result = train(cfg(tiny_model_dir, epochs=1), ITEMS, ITEMS, tiny_db, tmp_path / "out", resume=True, progress=False)
    assert read_info(result.out_dir)["data"]["train"]["n"] == len(ITEMS)


def test_a_work_folder_another_process_is_training_in_is_refused(tiny_model_dir, tiny_db, tmp_path):
    """Two `train --out D --resume` at once trained into one D.work, and the first to end deleted it under the other:
    the process training holds D.work, and another is refused in one line before it writes there (run.json
    included); a killed holder frees it."""
    import subprocess
    import sys

    from sqltune.files import claim

    out = tmp_path / "ad"
    work = claim(tmp_path / "ad.work", "training work folder")  # an interrupted run's folder, as a resume finds it
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from sqltune.files import hold; "
                               "f = hold(sys.argv[1]); print('holding', flush=True); time.sleep(60)", str(work)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(SqltuneError, match="in use by another sqltune process"):
            train(cfg(tiny_model_dir), ITEMS, ITEMS, tiny_db, out, resume=True, progress=False)
        assert not (work / "run.json").exists() and not out.exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(cfg(tiny_model_dir), ITEMS, ITEMS, tiny_db, out, resume=True, progress=False).chosen_step is not None


def test_an_adapter_on_a_relative_model_folder_loads_from_another_folder(tiny_model_dir, tiny_db, tmp_path, monkeypatch):
    """The base model given as a relative folder is recorded as given (`base_model`) and as the absolute path it was
    found at (`base_model_path`), so `load_trained` finds it from any folder, without a `base=`."""
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "work" / "models" / "tiny")
    monkeypatch.chdir(tmp_path / "work")
    train(cfg("models/tiny", epochs=1, choose="last"), ITEMS, ITEMS, tiny_db, tmp_path / "out", progress=False)
    info = read_info(tmp_path / "out")
    assert info["base_model"] == "models/tiny"
    assert info["base_model_path"] == str((tmp_path / "work" / "models" / "tiny").resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert predictions(load_trained(tmp_path / "out", "cpu"), tiny_db) == saved_predictions(tmp_path / "out")


def test_checkpoint_base_prefers_the_name_and_falls_back_to_the_recorded_path(tmp_path, monkeypatch):
    from sqltune.model import checkpoint_base, local_model_path

    (tmp_path / "m").mkdir()
    monkeypatch.chdir(tmp_path)
    saved = local_model_path("m")
    assert saved == str((tmp_path / "m").resolve())
    assert local_model_path("qwen2.5-coder-0.5b") is None and local_model_path("org/name") is None
    assert checkpoint_base({"base_model": "m", "base_model_path": saved}) == "m"  # found as named: as named
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    assert checkpoint_base({"base_model": "m", "base_model_path": saved}) == saved  # not found here: the recorded path
    assert checkpoint_base({"base_model": "m"}) == "m"  # a checkpoint from before the path was recorded
    assert checkpoint_base({"base_model": "org/name", "base_model_path": None}) == "org/name"  # a hub id
    (tmp_path / "m").rmdir()
    assert checkpoint_base({"base_model": "m", "base_model_path": saved}) == "m"  # gone there too: as named, to fail clearly


def test_is_untuned_names_the_models_that_answer_as_the_untuned_one(tmp_path, tiny_model_dir):
    """`checkpoint.is_untuned` (which panel `--fallback panel` runs): a model that is no sqltune checkpoint is the
    untuned model unless an adapter is given; a checkpoint is, where its training kept step 0 from the untuned model
    (SFT), or from a checkpoint that is (GRPO's step 0 is its start); a trained step, an unfinished or unreadable
    checkpoint is not."""
    import json

    from sqltune.checkpoint import CHECKPOINT_META, COMPLETE, is_untuned

    def checkpoint(name, chosen, **info):
        d = tmp_path / name
        d.mkdir()
        (d / CHECKPOINT_META).write_text(json.dumps({"prompt": {}, "chosen": chosen, **info}))
        (d / COMPLETE).write_text("")
        return d

    sft0 = checkpoint("sft0", {"step": 0, "untrained": True})
    sft4 = checkpoint("sft4", {"step": 4, "untrained": False})
    assert is_untuned() and is_untuned("qwen2.5-coder-0.5b") and is_untuned(str(tiny_model_dir))
    assert is_untuned(adapter=sft0) and is_untuned("qwen2.5-coder-0.5b", sft0) and is_untuned(sft0)  # a merged one too
    assert not is_untuned(adapter=sft4) and not is_untuned(sft4)
    assert is_untuned(adapter=checkpoint("rl0_from_sft0", {"step": 0, "untrained": True}, trained_with="grpo",
                                         init_checkpoint=str(sft0)))
    assert not is_untuned(adapter=checkpoint("rl0_from_sft4", {"step": 0, "untrained": True}, trained_with="grpo",
                                             init_checkpoint=str(sft4)))
    assert not is_untuned(adapter=checkpoint("rl0_from_gone", {"step": 0, "untrained": True}, trained_with="grpo",
                                             init_checkpoint=str(tmp_path / "gone")))
    assert not is_untuned(adapter=checkpoint("rl3", {"step": 3, "untrained": False}, init_checkpoint=str(sft0)))
    unfinished = checkpoint("unfinished", {"step": 0, "untrained": True})
    (unfinished / COMPLETE).unlink()
    assert not is_untuned(adapter=unfinished)
    plain = tmp_path / "plain_adapter"  # an adapter folder without sqltune's metadata: not known to be untuned
    plain.mkdir()
    assert not is_untuned(adapter=plain)
