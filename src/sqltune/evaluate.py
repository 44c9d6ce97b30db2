"""Stage: predict and evaluate. Loading for inference, predictions as rows, scores by execution.

- `load_for_inference(model, adapter_dir=...)`: the model (base, or base + a trained checkpoint),
  its tokenizer and the prompt builder for a database. A checkpoint folder carries
  `sqltune_checkpoint.json` (base model, prompt style + rendered template + sha256; see
  `checkpoint.py`); loading refuses one whose template does not match the prompt built now.
- `predict_items` -> rows {id, question, sql, raw, seconds, retries, retry_changed} that
  `sqltune score` reads; `evaluate_items` = predict + `score.score_pairs`, with timing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .errors import SqltuneError
from .generate import GenerationStats, fewshot_for, predict
from .prompt import PromptBuilder


# ---------------------------------------------------------------- loading
def load_for_inference(
    model_name: str | None = None,
    adapter_dir: str | os.PathLike | None = None,
    device=None,
    prompt_style: str | None = None,
    db: str | os.PathLike | None = None,
    notes: str | os.PathLike | None = None,
    merge: bool = True,
):
    """(model, tokenizer, builder) ready to generate SQL for `db`.

    `device`: a `model.DeviceConfig`, a device name, or None (picked automatically). With
    `adapter_dir` (a checkpoint folder written by training: an adapter or a whole model, with
    `sqltune_checkpoint.json`), the base model and prompt style default to the checkpoint's, and the
    prompt rendered now for `db` must match the template it was trained with exactly
    (`checkpoint.load_trained` -> `prompt.check_fingerprint`); adapters are merged into the weights
    for speed unless `merge=False`. A `model_name` folder that is itself a sqltune checkpoint (a
    merged adapter) is checked the same way.
    """
    from .checkpoint import check_prompt, load_trained, read_info
    from .db import resolve_db
    from .model import DeviceConfig, load_model, pick_device
    from .schema import schema_text

    dev = device if isinstance(device, DeviceConfig) else pick_device(device)
    db_path = resolve_db(db)
    schema = schema_text(db_path, notes)
    if adapter_dir is None:
        model, tok, location = load_model(model_name, dev)
        info = read_info(location) if Path(location, "sqltune_checkpoint.json").is_file() else None
        style = prompt_style or (info or {}).get("prompt", {}).get("style") or "chat"
        fewshot = list((info or {}).get("prompt", {}).get("fewshot") or [])
        builder = PromptBuilder(schema, style, fewshot=fewshot)
        builder.prompt(tok, "?")  # fail now, not mid-run, when the style does not suit the tokenizer
        if info is not None:
            check_prompt(location, builder, tok)
        return model, tok, builder

    info = read_info(adapter_dir)
    base = info.get("base_model")
    if model_name and base and str(model_name) != str(base):
        raise SqltuneError(f"checkpoint {adapter_dir} was trained on '{base}', not '{model_name}'; leave out --model")
    style = prompt_style or info["prompt"].get("style") or "chat"
    builder = PromptBuilder(schema, style, fewshot=list(info["prompt"].get("fewshot") or []))
    loaded = load_trained(adapter_dir, dev, builder=builder, merge=merge)
    return loaded.model, loaded.tokenizer, loaded.builder


# ---------------------------------------------------------------- predict and evaluate
def predict_items(
    model,
    tokenizer,
    builder: PromptBuilder,
    items: list[dict],
    db,
    *,
    batch_size: int = 16,
    max_new_tokens: int = 256,
    retries: int = 0,
    fewshot_k: int = 0,
    fewshot_pool: list[dict] | None = None,
    fewshot_exclude: list | tuple = (),
    progress: bool = True,
    autocast: bool = False,
    stats: GenerationStats | None = None,
    vote=None,
) -> list[dict]:
    """One row per item: {id, question, sql, raw, seconds, retries, retry_changed, error, ...}.

    `vote` (a `vote.VoteSettings` with n > 1): execution-guided decoding instead of greedy
    (`vote.predict_rows`); rows then also carry greedy_sql, overruled and the vote's candidates.

    Few-shot examples (`fewshot_k` > 0) come from `fewshot_pool` (training data) only; the items
    being predicted and everything in `fewshot_exclude` are never shown.
    """
    questions = [it["question"] for it in items]
    examples = None
    if fewshot_k > 0:
        if not fewshot_pool:
            raise SqltuneError("few-shot examples need a pool of training items")
        examples = fewshot_for(questions, fewshot_pool, fewshot_k, exclude=list(fewshot_exclude) + list(items))
    if vote is not None and vote.n > 1:
        if retries:
            raise SqltuneError("--retries and --vote do not combine; a vote already executes every candidate")
        from .vote import predict_rows

        return predict_rows(model, tokenizer, builder, items, db, vote, examples=examples, batch_size=batch_size,
                            max_new_tokens=max_new_tokens, progress=progress, autocast=autocast)
    gens = predict(model, tokenizer, builder, questions, db, retries=retries, examples=examples,
                   batch_size=batch_size, max_new_tokens=max_new_tokens, progress=progress,
                   autocast=autocast, stats=stats)
    rows = []
    for i, (it, g) in enumerate(zip(items, gens)):
        row = {"id": str(it.get("id", i)), "question": g.question, "sql": g.sql, "raw": g.raw,
               "seconds": round(g.seconds, 4), "retries": g.retries, "retry_changed": g.retry_changed,
               "error": g.error}
        if g.retries:
            row["first_sql"], row["first_error"] = g.first_sql, g.first_error
        if examples is not None:
            row["fewshot"] = [e["question"] for e in examples[i]]
        rows.append(row)
    return rows


def evaluate_items(
    model,
    tokenizer,
    builder: PromptBuilder,
    items: list[dict],
    db,
    *,
    timeout: float = 5.0,
    test_suite=None,
    **predict_kw,
) -> dict:
    """Predict, then score by execution (and with `test_suite`, a suite folder, the suite metric).

    The report is `score_pairs`'s ({summary, examples}) plus `timing` {seconds, queries_per_s,
    generation: where the time went}, `predictions` (the `predict_items` rows) and, per example,
    the prediction's raw text, latency and retry fields. `summary.retry_fixed` counts questions a
    retry turned from wrong to exact.
    """
    from .score import score_pairs

    stats = GenerationStats()
    t = time.perf_counter()
    rows = predict_items(model, tokenizer, builder, items, db, stats=stats, **predict_kw)
    seconds = time.perf_counter() - t
    report = score_pairs(db, items, [r["sql"] for r in rows], timeout=timeout, test_suite=test_suite)
    retried = [i for i, r in enumerate(rows) if r["retries"]]
    first = {}
    if retried:
        sub = score_pairs(db, [items[i] for i in retried], [rows[i]["first_sql"] for i in retried], timeout=timeout)
        first = dict(zip(retried, sub["examples"]))
    for i, (ex, r) in enumerate(zip(report["examples"], rows)):
        ex.update(raw=r["raw"], seconds=r["seconds"], retries=r["retries"], retry_changed=r["retry_changed"])
        if i in first:
            ex["first_sql"] = r["first_sql"]
            ex["first_exact"] = first[i]["exact"]
    report["summary"]["retried"] = len(retried)
    report["summary"]["retry_fixed"] = sum(1 for i in retried if report["examples"][i]["exact"] and not first[i]["exact"])
    report["timing"] = {"seconds": round(seconds, 3), "queries_per_s": round(len(items) / seconds, 4) if seconds else 0.0,
                        "generation": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.to_dict().items()}}
    if any("greedy_sql" in r for r in rows):
        from .vote import vote_summary

        report["vote"] = vote_summary(db, items, rows, report, timeout=timeout)
    report["predictions"] = rows
    return report
