"""The options several commands share, defined once (help texts and allowed ranges included)."""

from __future__ import annotations

import typer

DB = typer.Option(None, "--db", help="SQLite database (default: the embedded exoplanets DB).")
MODEL = typer.Option(None, "--model", "-m", help="Packaged name, model folder, .gguf file or hub id "
                     "(default: qwen2.5-coder-0.5b, or the adapter's base model).")
ADAPTER = typer.Option(None, "--adapter", help="Trained adapter (or fine-tuned model) folder.")
PROMPT_STYLE = typer.Option(None, "--prompt-style", help="chat (default), premsql or seed; an adapter's own by default.")
NOTES = typer.Option(None, "--notes", help="Notes file for the schema (default: the first of DB.notes.md, "
                     "DB.notes.yaml, DB.md, DB.yaml beside the DB).")
DEVICE = typer.Option(None, "--device", help="cuda, mps or cpu (default: the best available).")
DTYPE = typer.Option(None, "--dtype", help="bfloat16, float16 or float32 (default: per device).")
BATCH_SIZE = typer.Option(64, "--batch-size", min=1, help="Questions decoded together (more is faster, up to memory).")
RETRIES = typer.Option(0, "--retries", min=0, help="Re-prompt failing SQL with its error up to N times.")
REPAIR = typer.Option(True, "--repair/--no-repair", help="Where the answer fails with a column the schema has "
                      "elsewhere, rewrite it (the column qualified with the table that has it, a join along a foreign "
                      "key, a near spelling) and take the rewrite if it runs; --no-repair: the SQL as the model wrote it.")
FEWSHOT = typer.Option(0, "--fewshot", min=0, help="K similar training examples in each prompt.")
FEWSHOT_POOL = typer.Option(None, "--fewshot-pool", help="Training items for --fewshot (default NAME:train for NAME:SPLIT).")
MERGE = typer.Option(True, "--merge/--no-merge", help="Merge an adapter into the weights (faster), or use it unmerged "
                     "as `sqltune run` and training score it: under bf16 the two can differ in a few answers.")
FALLBACK = typer.Option("none", "--fallback", help="base: where the adapter's answer (voted or not) does not execute, "
                        "the model under it answers, and its answer is taken if it executes. vote (with --vote N): "
                        "where the answer fails or its result differs from the untuned model's greedy one, both "
                        "models draw N candidates and the majority result wins. panel: the adapter's answer, the "
                        "untuned model's and the untuned model's with 4 retrieved training examples (--fewshot-pool) "
                        "vote by result, ties to the adapter's; with no adapter (or one where training kept step 0) the "
                        "untuned model's answers with 4, 0 and 2 retrieved examples vote. All load an adapter unmerged.")
PANEL_JUDGE = typer.Option(None, "--panel-judge", help="With --fallback panel: vote (the most-voted result wins) or "
                           "reviewer (where the answers disagree, the untuned model scores how likely each query makes "
                           "the question, and the likeliest wins). Default: vote, or the run's eval.panel_judge with --run.")
MAX_NEW_TOKENS = typer.Option(256, "--max-new-tokens", min=1, help="Most tokens of SQL written per question.")
TIMEOUT = typer.Option(5.0, "--timeout", min=0.001, help="Seconds allowed per query (> 0).")
MAX_ROWS = typer.Option(10_000, "--max-rows", min=1, help="Row cap per query (>= 1).")
SET = typer.Option([], "--set", help="Any recipe setting as KEY=VALUE, e.g. --set train.epochs=2 (repeatable).")
