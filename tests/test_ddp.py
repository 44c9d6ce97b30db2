"""`sqltune train` under `accelerate launch` with two CPU processes (DDP over gloo) against one process
at the same global batch (8 = 2 x 4): both finish, rank 0 alone writes the output folder (one
metrics.jsonl, one line per evaluation, one report), the ranks agree with the one-process run on the
chosen step, and the train-loss curves agree (benchmarks/gpu_train.py's `compare`, the one used on GPUs).

The one-process run takes the shared-prefix step; the two-process run whole sequences (the
shared-prefix step is single-process): the curves agreeing also says the two losses are the same.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from repo_scripts import load_script

from sqltune.checkpoint import is_complete, read_info

REPO = Path(__file__).resolve().parents[1]
PAIRS = [
    ("How many authors are there?", "SELECT COUNT(*) FROM authors;"),
    ("List all book titles.", "SELECT title FROM books;"),
    ("Which authors are from the UK?", "SELECT name FROM authors WHERE country = 'UK';"),
    ("What is the total number of copies sold?", "SELECT SUM(copies) FROM sales;"),
    ("How many books are there?", "SELECT COUNT(*) FROM books;"),
    ("List all author names.", "SELECT name FROM authors;"),
    ("Which books were written before 1900?", "SELECT title FROM books WHERE year < 1900;"),
    ("What is the most expensive book?", "SELECT title FROM books ORDER BY price DESC LIMIT 1;"),
    ("How many sales rows are there?", "SELECT COUNT(*) FROM sales;"),
    ("Which authors are from Argentina?", "SELECT name FROM authors WHERE country = 'AR';"),
    ("What is the average book price?", "SELECT AVG(price) FROM books;"),
    ("List the months with sales.", "SELECT DISTINCT month FROM sales;"),
    ("Which book is the oldest?", "SELECT title FROM books ORDER BY year LIMIT 1;"),
    ("How many countries do authors come from?", "SELECT COUNT(DISTINCT country) FROM authors;"),
    ("What is the cheapest book?", "SELECT title FROM books ORDER BY price LIMIT 1;"),
    ("List books with a price above 10.", "SELECT title FROM books WHERE price > 10;"),
]


def write_items(path: Path, pairs, prefix: str) -> Path:
    path.write_text("".join(json.dumps({"id": f"{prefix}{i}", "question": q, "sql": s}) + "\n"
                            for i, (q, s) in enumerate(pairs)))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_compare():
    return load_script("benchmarks/gpu_train.py", "gpu_train").compare


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """One process at batch 8 and two processes at batch 4 each: 16 examples, 2 epochs, evaluated every 2 steps."""
    from conftest import make_tiny_db

    tmp = tmp_path_factory.mktemp("ddp")
    db = make_tiny_db(tmp / "tiny.sqlite")
    train = write_items(tmp / "train.jsonl", PAIRS, "t")
    valid = write_items(tmp / "valid.jsonl", PAIRS[:4], "v")
    common = ["-m", "sqltune", "train", "--db", str(db), "--train", str(train), "--valid", str(valid),
              "--model", str(tiny_model_dir), "--device", "cpu", "--epochs", "2", "--set", "train.top_layers=null",
              "--set", "train.dropout=0", "--set", "train.lr=1e-2", "--set", "train.eval_every=2",
              "--set", "eval.max_new_tokens=8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    one = subprocess.run([sys.executable, *common, "--batch-size", "8", "--out", str(tmp / "one")],
                         env=env, capture_output=True, text=True, timeout=600)
    ddp = subprocess.run(launch(common, "--batch-size", "4", "--out", str(tmp / "ddp")),
                         env=env, capture_output=True, text=True, timeout=600)
    return tmp, one, ddp, common, env


def launch(*args) -> list[str]:
    """`accelerate launch` of two CPU processes (torchrun: `--cpu` would start one), then `python` ARGS."""
    flat = [a for x in args for a in (x if isinstance(x, list) else [x])]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(REPO / "configs" / "accelerate" / "ddp-cpu.yaml"), "--num_processes", "2",
            "--main_process_port", str(free_port()), *flat]


def test_both_finish_and_two_processes_ran_whole_sequences(runs):
    tmp, one, ddp = runs[:3]
    assert one.returncode == 0, one.stderr[-3000:]
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "shared prefix of" in one.stderr
    assert "whole sequences (several processes" in ddp.stderr  # the world size reached the trainer


def test_rank_zero_alone_writes_the_output_once(runs):
    tmp, one, ddp = runs[:3]
    out = tmp / "ddp"
    assert is_complete(out)
    assert not out.with_name("ddp.work").exists()  # the work folder is gone (removed once, by rank 0)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(x)["step"] for x in lines]
    assert steps == [0, 2, 4]  # one line per evaluation, not one per rank
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("ddp")) == ["ddp"]
    assert ddp.stderr.count(f"wrote {out} (step") == 1  # the trainer's log: rank 0's
    assert ddp.stdout.count("chose step") + ddp.stderr.count("chose step") == 1  # the CLI's report: rank 0's
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp / "one").iterdir())


def test_same_choice_and_same_loss_curve_as_one_process(runs, capsys):
    tmp, one, ddp = runs[:3]
    a, b = read_info(tmp / "one"), read_info(tmp / "ddp")
    assert a["chosen"]["step"] == b["chosen"]["step"]
    assert a["tokens"]["example_tokens"] == b["tokens"]["example_tokens"]  # counted over both ranks
    hist_a = [json.loads(x) for x in (tmp / "one" / "metrics.jsonl").read_text().splitlines()]
    hist_b = [json.loads(x) for x in (tmp / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in hist_a] == [r["step"] for r in hist_b]
    assert [r["epoch"] for r in hist_a] == [r["epoch"] for r in hist_b]  # same global batch: same steps per epoch
    compare = load_compare()
    assert compare(str(tmp / "one" / "metrics.jsonl"), str(tmp / "ddp" / "metrics.jsonl"), 1e-3) == 0
    assert "2 common steps" in capsys.readouterr().out
    for ra, rb in zip(hist_a, hist_b):  # the valid loss too: shared-prefix vs whole-sequence forward
        assert rb["valid_loss"] == pytest.approx(ra["valid_loss"], rel=1e-3)


@pytest.mark.slow  # two more launches (~40 s here)
def test_resume_under_two_processes_ends_as_the_uninterrupted_run(runs):
    """Killed once a checkpoint is complete, then `--resume`d: the same curve and the same weights."""
    tmp, _, ddp, common, env = runs
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    out = tmp / "res"
    args = launch(common, "--batch-size", "4", "--out", str(out))
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = tmp / "res.work" / "trainer" / "checkpoint-2" / "COMPLETE"
    deadline = time.monotonic() + 300
    while not marker.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # torchrun passes it on to both ranks (SIGKILL would orphan them)
    proc.wait(timeout=60)
    time.sleep(1)
    assert marker.is_file() and not (out / "metrics.jsonl").exists()  # interrupted after step 2, before the end
    resumed = subprocess.run(args + ["--resume"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "resuming from checkpoint-2" in resumed.stdout
    assert read_info(out)["timing"]["resumed"] is True
    a = [json.loads(x) for x in (tmp / "ddp" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["train_loss"], r["valid_loss"]) for r in a] == [(r["step"], r["train_loss"], r["valid_loss"]) for r in b]
    assert (out / "adapter_model.safetensors").read_bytes() == (tmp / "ddp" / "adapter_model.safetensors").read_bytes()


@pytest.mark.slow  # ~2 minutes here: every step of the GPU script, on the CPU with the tiny model
def test_gpu_issue13_script_dry_run_on_the_cpu(tiny_model_dir, tmp_path):
    """benchmarks/gpu_issue13.sh (one GPU call for the lead) runs end to end with DEVICE=cpu: every
    command line in it parses and runs, and the small files it promises come back."""
    out = tmp_path / "out"
    env = {**os.environ, "MODEL": str(tiny_model_dir), "DEVICE": "cpu", "PY": sys.executable, "OUT": str(out),
           "WORK": str(tmp_path / "work"), "SET": "train.top_layers=null eval.max_new_tokens=8",
           "GPU_TRAIN_EPOCHS": "0.05", "DDP_STEPS": "2", "DDP_EVERY": "1", "DDP_BATCH": "2", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_issue13.sh")], env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()[1:]]
    assert [s[0] for s in steps] == ["gpu_train", "decoder", "train_one_gpu", "train_ddp_2", "compare"]
    assert all(s[1] == "0" for s in steps), steps
    assert sorted(p.name for p in out.iterdir()) == ["ddp.json", "ddp_compare.md", "decoder.json", "gpu_train.json",
                                                    "log.txt", "steps.tsv"]
    rows = json.loads((out / "gpu_train.json").read_text())["rows"]
    assert [(r["method"], r["lr"]) for r in rows] == [("lora", 5e-4), ("full", 1e-5)]
    assert {"valid", "test"} <= rows[0]["eval"].keys()
    ddp = json.loads((out / "ddp.json").read_text())
    assert ddp["one"]["summary"]["shared_prefix_tokens"] > 0 and ddp["ddp"]["summary"]["shared_prefix_tokens"] == 0
    assert "2 common steps" in (out / "ddp_compare.md").read_text()
