"""Stage: report. Tables, charts and honest paired comparisons of base vs tuned (vs augmented).

Inputs are plain data (score reports, training metrics, timings), so any two runs can be compared.
Outputs: report.md, a self-contained report.html (charts inlined), and PNG charts.
"""

from __future__ import annotations

import base64
import html
import json
import os
import platform
import re
from collections import Counter
from pathlib import Path

from .files import write_text
from .stats import compare_paired, smallest_detectable

METRICS = ("execution_rate", "exact", "set", "fuzzy")
OUTCOME = {(True, True): "still right", (False, True): "fixed", (True, False): "broken", (False, False): "still wrong"}


def machine_info() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def outcomes(before: dict, after: dict, key: str = "exact") -> list[dict]:
    """Per question: fixed / broken / still right / still wrong, paired by id."""
    b = {e["id"]: e for e in before["examples"]}
    rows = []
    for e in after["examples"]:
        if e["id"] not in b:
            continue
        x = b[e["id"]]
        rows.append({
            "id": e["id"], "question": e["question"], "outcome": OUTCOME[(bool(x[key]), bool(e[key]))],
            "before_sql": x["pred_sql"], "after_sql": e["pred_sql"],
            "before_error": x["error_kind"], "after_error": e["error_kind"], "gold_sql": e["gold_sql"],
        })
    return rows


def paired(before: dict, after: dict, key: str = "exact"):
    b = {e["id"]: bool(e[key]) for e in before["examples"]}
    ids = [e["id"] for e in after["examples"] if e["id"] in b]
    a_map = {e["id"]: bool(e[key]) for e in after["examples"]}
    return compare_paired([b[i] for i in ids], [a_map[i] for i in ids])


# ------------------------------------------------------------------------------------------ charts
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart_metrics(summaries: dict, path: Path) -> Path:
    """summaries: {stage: {split: SUMMARY}} -> grouped bars per split and metric."""
    plt = _plt()
    stages = list(summaries)
    splits = sorted({s for st in summaries.values() for s in st})
    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 3.6), squeeze=False)
    width = 0.8 / max(1, len(stages))
    for ax, split in zip(axes[0], splits):
        for i, stage in enumerate(stages):
            s = summaries[stage].get(split)
            if not s:
                continue
            xs = [m + i * width for m in range(len(METRICS))]
            bars = ax.bar(xs, [s[m] for m in METRICS], width, label=stage)
            ax.bar_label(bars, labels=[f"{s[m]:.0%}" for m in METRICS], fontsize=7)
        ax.set_xticks([m + width * (len(stages) - 1) / 2 for m in range(len(METRICS))], METRICS)
        ax.set_ylim(0, 1.1)
        n = next((summaries[st][split]["n"] for st in stages if split in summaries[st]), 0)
        ax.set_title(f"{split} (n = {n})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def chart_outcomes(reports: dict, split: str, path: Path) -> Path:
    """Grid: one row per question, one column per stage; green exact, orange ran, red error."""
    plt = _plt()
    from matplotlib.colors import ListedColormap

    stages = [s for s in reports if split in reports[s]]
    ids = [e["id"] for e in reports[stages[0]][split]["examples"]]
    grid = []
    for qid in ids:
        row = []
        for st in stages:
            e = next(x for x in reports[st][split]["examples"] if x["id"] == qid)
            row.append(2 if e["exact"] else 1 if e["executed"] else 0)
        grid.append(row)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(stages), 0.8 + 0.18 * len(ids)))
    ax.imshow(grid, cmap=ListedColormap(["#d9534f", "#f0ad4e", "#5cb85c"]), vmin=0, vmax=2, aspect="auto")
    ax.set_xticks(range(len(stages)), stages)
    ax.set_yticks(range(len(ids)), ids, fontsize=6)
    ax.set_title(f"{split}: green exact, orange ran but wrong, red error", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _train_loss(h: dict):
    """A history row's training loss: `loss` (a Trainer log row) or `train_loss` (an evaluation row of the
    checkpoint's metrics.jsonl, as `sqltune train` writes it)."""
    return h.get("loss") if h.get("loss") is not None else h.get("train_loss")


def chart_training(history: list[dict], path: Path) -> Path:
    """Loss and valid exact per evaluation (epoch); GRPO's mean reward per step when the history has it."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    evals = [h for h in history if "exact" in h]
    losses = [h for h in history if _train_loss(h) is not None]
    if losses:
        ax.plot([h.get("epoch", i) for i, h in enumerate(losses)], [_train_loss(h) for h in losses], "o-",
                label="train loss")
    rewards = [h for h in history if h.get("reward") is not None]  # GRPO steps (rl.py)
    if rewards:
        ax.plot([h.get("epoch", i) for i, h in enumerate(rewards)], [h["reward"] for h in rewards], "-", color="purple",
                label="GRPO mean reward")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss / reward" if rewards else "loss")
    ax2 = ax.twinx()
    if evals:
        ax2.plot([h.get("epoch", i) for i, h in enumerate(evals)], [h["exact"] for h in evals], "s--", color="green",
                 label="valid exact")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("valid exact")
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ text
def _pct(x) -> str:
    return f"{x:.1%}" if isinstance(x, (int, float)) else "–"


def accuracy_table(summaries: dict) -> str:
    stages = list(summaries)
    splits = sorted({s for st in summaries.values() for s in st})
    head = "| split | metric | " + " | ".join(stages) + " |\n|---|---|" + "---|" * len(stages) + "\n"
    rows = []
    suite = any("suite" in sm for st in summaries.values() for sm in st.values() if isinstance(sm, dict))
    for split in splits:
        for m in METRICS + (("suite",) if suite else ()):
            vals = [_pct(summaries[st].get(split, {}).get(m)) for st in stages]
            rows.append(f"| {split} | {m} | " + " | ".join(vals) + " |")
    return head + "\n".join(rows)


def _code(s) -> str:
    return "`" + " ".join(str(s or "∅").split()).replace("|", "\\|").replace("`", "'") + "`"


def vote_lines(reports: dict) -> list[str]:
    """Greedy vs voted per stage and split, for the evaluations that voted (issue 15)."""
    rows = [(st, sp, r["vote"]) for st, splits in reports.items() for sp, r in splits.items() if r.get("vote")]
    if not rows:
        return []
    lines = ["## Voting (greedy vs voted)", "",
             "| stage | split | N | greedy exact | voted exact | overruled | helped | hurt | best of N |",
             "|---|---|---|---|---|---|---|---|---|"]
    for st, sp, v in rows:
        lines.append(f"| {st} | {sp} | {v['n']} | {_pct(v['greedy']['exact'])} | {_pct(v['voted']['exact'])} | "
                     f"{v['overruled']} | {v['helped']} | {v['hurt']} | {_pct(v['best_of_n'])} |")
    fixed = [(st, sp, v["correction"]) for st, sp, v in rows if v.get("correction")]
    if fixed:  # the correction step on close votes (--vote-correct)
        lines += ["", "| stage | split | close votes corrected | answer changed | helped | hurt | voted exact | "
                  "after correction |", "|---|---|---|---|---|---|---|---|"]
        for st, sp, c in fixed:
            v = next(v for s_, p_, v in rows if (s_, p_) == (st, sp))
            lines.append(f"| {st} | {sp} | {c['ran']} | {c['changed']} | {c['helped']} | {c['hurt']} | "
                         f"{_pct(v['voted']['exact'])} | {_pct(c['corrected']['exact'])} |")
    return lines + [""]


def fallback_lines(reports: dict) -> list[str]:
    """Per stage and split, what the fallback did: with `eval.fallback: base`, the answers the untuned model gave where
    the tuned one's did not execute, and how many of them are right; with `eval.fallback: vote` (or `panel`), the
    questions both models (or the three answers) voted on (`pool_*`), the answers that changed, fixed and broke."""
    summaries = [(st, sp, r["summary"]) for st, splits in reports.items() for sp, r in splits.items()]
    rows = [(st, sp, s) for st, sp, s in summaries if s.get("fallback_used") and "pool_voted" not in s]
    pooled = [(st, sp, s) for st, sp, s in summaries if s.get("pool_voted")]
    lines = []
    if rows:
        lines += ["## Fallback to the untuned model (`eval.fallback: base`)", "",
                  "Where the tuned model's answer did not execute (a wrong answer), the untuned model answered the "
                  "question too, and its answer was taken if it executed.", "",
                  "| stage | split | answered by the untuned model | right |", "|---|---|---|---|"]
        lines += [f"| {st} | {sp} | {s['fallback_used']} | {s['fallback_fixed']} |" for st, sp, s in rows] + [""]
    def is_panel(st, sp) -> bool:
        return reports[st][sp].get("eval_config", {}).get("fallback") == "panel"

    fourth = any(reports[st][sp].get("eval_config", {}).get("panel_tuned_fewshot") for st, sp, _ in pooled
                 if is_panel(st, sp))
    reviewer = any(reports[st][sp].get("eval_config", {}).get("panel_judge") == "reviewer" for st, sp, _ in pooled
                   if is_panel(st, sp))
    sections = (  # the panel's and the pooled vote's: the same counts, under their own title and words
        (True, f"## {'Four' if fourth else 'Three'} answers vote (`eval.fallback: panel`)",
         "The tuned model's answer, the untuned model's and the untuned model's with retrieved training examples "
         + ("(and, where the tuned answer had no second vote, the tuned model's with retrieved examples) " if fourth
            else "") + ("were grouped by result; where they disagreed, the untuned model judged which query the "
                        "question fits best (log P(question | SQL), `eval.panel_judge: reviewer`), votes aside."
                        if reviewer else "voted by result; ties went to the tuned answer."),
         ("questions", "not the tuned model's")),
        (False, "## Both models vote where they disagree (`eval.fallback: vote`)",
         "The untuned model answered every question too; where the tuned answer did not execute or gave another "
         "result, both models drew candidates and the result most of them agreed on was taken.",
         ("questions voted on", "the untuned model's taken")))
    for panel, title, words, (weighed, taken) in sections:
        these = [(st, sp, s) for st, sp, s in pooled if is_panel(st, sp) == panel]
        if these:
            lines += [title, "", words + " Fixed and broken are against the tuned model's own answer.", "",
                      f"| stage | split | {weighed} | answer changed | {taken} | fixed | broken |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| {st} | {sp} | {s['pool_voted']} | {s['pool_changed']} | {s.get('fallback_used', 0)} | "
                      f"{s['pool_fixed']} | {s['pool_hurt']} |" for st, sp, s in these] + [""]
    return lines


def shape_lines(reports: dict) -> list[str]:
    """Per split: exact by the gold query's shape (join, nested, ...; `pairs.sql_shape`) for every stage, and how
    many of each shape every stage wrote. Session 14: after GRPO the 1.5B wrote 1 join on singer's test where the
    untuned model wrote 5 (its synthetic prompts held 8 % joins), and lost 3 of the 8 join questions; the accuracy
    table alone did not say why."""
    from .pairs import SHAPES, sql_shape

    stages = list(reports)
    lines = []
    for split in sorted({sp for st in stages for sp in reports[st]}):
        have = [st for st in stages if split in reports[st]]
        gold = {str(e["id"]): sql_shape(e.get("gold_sql") or "") for e in reports[have[0]][split]["examples"]}
        wrote = {st: Counter(sql_shape(e.get("pred_sql") or "") for e in reports[st][split]["examples"]) for st in have}
        shapes = [s for s in (*SHAPES, "unparsed") if s in gold.values() or any(w[s] for w in wrote.values())]
        if len(shapes) < 2:
            continue  # one shape only: the accuracy table says it all
        if not lines:
            lines = ["## By query shape", "", "Exact by the shape of the gold query, and how many queries of each "
                     "shape each stage wrote (a stage that writes fewer joins than the gold has lost them).", ""]
        lines += [f"| {split}: shape | gold n | " + " | ".join(f"{st} exact" for st in have) + " | " +
                  " | ".join(f"{st} wrote" for st in have) + " |", "|---|---|" + "---|" * (2 * len(have))]
        for shape in shapes:
            ids = {i for i, g in gold.items() if g == shape}
            acc = []
            for st in have:
                right = [bool(e.get("exact")) for e in reports[st][split]["examples"] if str(e["id"]) in ids]
                acc.append(_pct(sum(right) / len(right)) if right else "–")
            lines.append(f"| {shape} | {len(ids)} | " + " | ".join(acc) + " | " +
                         " | ".join(str(wrote[st][shape]) for st in have) + " |")
        lines.append("")
    return lines


def build_markdown(title: str, summaries: dict, reports: dict, history: list[dict], timings: dict,
                   machine: dict, charts: dict, about: dict | None = None) -> str:
    stages = list(reports)
    lines = [f"# {title}", ""]
    if about:  # what the results came from: model, recipe, method, data
        lines += [f"- **{k}**: {_code(v)}" for k, v in about.items() if v is not None] + [""]
    lines += ["## Accuracy", "", accuracy_table(summaries), ""]
    lines += ["## Is the change real?", ""]
    first, last = stages[0], stages[-1]
    for split in sorted(reports[last]):
        if split not in reports[first]:
            continue
        for a, b in zip(stages, stages[1:]):
            if split in reports[a] and split in reports[b]:
                cmp = paired(reports[a][split], reports[b][split])
                lines.append(f"- **{split}, {a} → {b}**: {cmp.sentence()}")
        n = len(reports[last][split]["examples"])
        if n <= 20:
            lines.append(f"- *{split} has only {n} questions*: {smallest_detectable(n)}.")
    for st, before in dict.fromkeys((st, rep["same_model_as"]) for st in stages for rep in reports[st].values()
                                    if rep.get("same_model_as")):
        lines.append(f"- *{st} is the {before} model*: training did not beat it on valid, so the checkpoint kept is "
                     f"step 0 (no training) and its answers are {before}'s.")
    untuned = {st: rep["eval_config"] for st in stages for rep in reports[st].values()
               if (rep.get("eval_config") or {}).get("untuned_model")}
    for st, ec in untuned.items():
        if st == "answer":  # `train.enabled: false`: nothing was trained (`run.answer_stage`)
            k = ec.get("panel_fewshot")
            lines.append("- *answer is the untuned model as `sqltune answer` answers without an adapter*: the recipe "
                         "trains nothing (`train.enabled: false`); "
                         + ((("each answer is the result that, of" if ec.get("panel_judge") == "reviewer" else
                              "each answer is the result most of")
                             + f" its answers with {k}, 0 and {(k or 0) // 2} retrieved training examples "
                             + ("fits the question best by the model's own reading (`eval.panel_judge: reviewer`), "
                                if ec.get("panel_judge") == "reviewer" else "agree on (`eval.fallback: panel`), "))
                            if ec.get("fallback") == "panel" else "its answers are the base stage's, ")
                         + "with the last-resort repair where every answer fails.")
        elif ec.get("fallback") == "panel":
            k = ec.get("panel_fewshot")
            lines.append(f"- *{st} is the untuned model answering with its own panel*: training did not beat it on "
                         "valid, so the checkpoint kept is step 0 (no training); each answer is the result "
                         + ("that, of" if ec.get("panel_judge") == "reviewer" else "most of")
                         + f" its answers with {k}, 0 and {(k or 0) // 2} retrieved training examples "
                         + ("fits the question best by the model's own reading (`eval.panel_judge: reviewer`)."
                            if ec.get("panel_judge") == "reviewer" else "agree on (`eval.fallback: panel`)."))
        else:
            lines.append(f"- *{st} is the untuned model*: training did not beat it on valid, so the checkpoint kept is "
                         "step 0 (no training); its answers are the base stage's, with the last-resort repair.")
    for st in stages:
        counts = [(split, rep["summary"]["repaired"], rep["summary"].get("repair_exact", 0))
                  for split, rep in sorted(reports[st].items()) if rep["summary"].get("repaired")]
        if counts:
            lines.append(f"- *{st}: answers repaired against the schema* (`eval.repair`; where every answer failed, a "
                         "column qualified with the table that has it, a join along a foreign key or a near spelling): "
                         + ", ".join(f"{split} {n} ({k} of them right)" for split, n, k in counts) + ".")
    if any(st.startswith("rl") for st in stages):
        lines.append("- *These intervals are over the questions, not over training runs*: GRPO samples its own "
                     "training data, and two runs of one recipe can differ by more than the interval allows "
                     "(BENCHMARKS.md, \"Session 17 lease\": +5.4 points pooled on 5 devsuite DBs); where a "
                     "decision rests on a few points, run it twice.")
    runs = [st for st in stages if st.startswith("rl_run")]
    if len(runs) > 1:  # `rl.runs` > 1: the spread measured on this very database
        lines.append(f"- *{runs[0]} → {runs[1]} above is two GRPO runs of this recipe on this database*: what they "
                     f"differ by is the training's own spread here; `rl` is their soup (the mean of their weight "
                     f"changes).")
    lines.append("")
    for name, path in charts.items():
        lines += [f"![{name}]({Path(path).name})", ""]
    lines += shape_lines(reports)
    for split in sorted(reports[last]):
        if split not in reports[first] or first == last:
            continue
        lines += [f"## Per question: {split} ({first} → {last})", "",
                  "| id | outcome | question | " + first + " SQL | " + last + " SQL | errors |",
                  "|---|---|---|---|---|---|"]
        for r in outcomes(reports[first][split], reports[last][split]):
            errs = f"{r['before_error'] or '–'} → {r['after_error'] or '–'}"
            lines.append(f"| {r['id']} | {r['outcome']} | {r['question']} | {_code(r['before_sql'])} | "
                         f"{_code(r['after_sql'])} | {errs} |")
        lines.append("")
    accidents = [(st, split, e) for st in stages for split in sorted(reports[st])
                 for e in reports[st][split]["examples"] if e.get("exact") and e.get("suite") is False]
    if accidents:
        lines += ["## Right by accident (exact, but the test suite says no)", "",
                  "| stage | split | id | question | predicted SQL | gold SQL |", "|---|---|---|---|---|---|"]
        lines += [f"| {st} | {split} | {e['id']} | {e['question']} | {_code(e['pred_sql'])} | {_code(e['gold_sql'])} |"
                  for st, split, e in accidents]
        lines.append("")
    lines += vote_lines(reports)
    lines += fallback_lines(reports)
    if history:
        lines += ["## Training", "", "| epoch | loss | valid exec | valid exact | valid fuzzy |", "|---|---|---|---|---|"]
        for h in history:
            if "exact" in h:
                loss = f"{_train_loss(h):.4f}" if isinstance(_train_loss(h), (int, float)) else "–"
                lines.append(f"| {h.get('epoch', '–')} | {loss} | {_pct(h.get('execution_rate'))} | "
                             f"{_pct(h.get('exact'))} | {_pct(h.get('fuzzy'))} |")
        lines.append("")
    if timings:
        lines += ["## Stage timings", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
        lines.append("")
    lines += ["## Machine", "", "```", json.dumps(machine, indent=2), "```", ""]
    return "\n".join(lines)


def markdown_to_html(md: str, images: dict[str, Path]) -> str:
    """A small Markdown subset (headings, tables, lists, code, images) to self-contained HTML."""
    out, in_table, in_code, in_list = [], False, False, False

    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"`([^`]*)`", r"<code>\1</code>", s)
        s = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)
        s = re.sub(r"\*([^*]+)\*", r"<i>\1</i>", s)
        return s

    for line in md.splitlines():
        if line.startswith("```"):
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(line))
            continue
        if in_table and not line.startswith("|"):
            out.append("</table>")
            in_table = False
        if in_list and not line.startswith("- "):
            out.append("</ul>")
            in_list = False
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:].removesuffix("|"))]
            if all(set(c) <= {"-", ""} for c in cells):
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
                out.append("<tr>" + "".join(f"<th>{inline(c)}</th>" for c in cells) + "</tr>")
            else:
                out.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in cells) + "</tr>")
        elif line.startswith("!["):
            name = line[2:line.index("]")]
            data = base64.b64encode(Path(images[name]).read_bytes()).decode()
            out.append(f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{inline(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    if in_table:
        out.append("</table>")
    if in_list:
        out.append("</ul>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;font-size:14px}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
             "vertical-align:top}code{font-size:12px}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>sqltune report</title><style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n"


def write_report(out_dir: str | os.PathLike, reports: dict, history: list[dict] | None = None,
                 timings: dict | None = None, title: str = "sqltune run", about: dict | None = None) -> dict:
    """reports: {stage: {split: score report}}. Writes charts, report.md and report.html."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = {st: {sp: r["summary"] for sp, r in splits.items()} for st, splits in reports.items()}
    charts = {"metrics": chart_metrics(summaries, out / "chart_metrics.png")}
    for split in sorted({s for st in reports.values() for s in st}):
        charts[f"outcomes_{split}"] = chart_outcomes(reports, split, out / f"chart_outcomes_{split}.png")
    if history:
        charts["training"] = chart_training(history, out / "chart_training.png")
    md = build_markdown(title, summaries, reports, history or [], timings or {}, machine_info(), charts, about)
    write_text(out / "report.md", md)
    write_text(out / "report.html", markdown_to_html(md, charts))
    return {"markdown": out / "report.md", "html": out / "report.html", **{k: Path(v) for k, v in charts.items()}}


def load_report(path: str | os.PathLike, keys: tuple[str, ...] = ("id", "exact", "executed", "fuzzy")) -> dict:
    """A score report written by sqltune (`score_pairs`), checked: one clear error for anything else."""
    from .errors import SqltuneError

    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SqltuneError(f"{path} is not a sqltune score report (not JSON)") from None
    examples = report.get("examples") if isinstance(report, dict) else None
    if not isinstance(examples, list) or not all(isinstance(e, dict) and all(k in e for k in keys) for e in examples):
        raise SqltuneError(f"{path} is not a sqltune score report (needs examples with {', '.join(keys)})")
    if not all(isinstance(e["id"], (str, int)) for e in examples):
        raise SqltuneError(f"{path}: example ids must be strings")
    return report


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike, stage: str = "tuned",
                 warn=None) -> list[dict]:
    """Paired comparison of two run folders' `stage` predictions per split.

    Questions are paired by id, and only where both runs asked the same question under that id
    (`warn(message)` hears about ids whose questions differ). Runs with no question in common are refused.
    """
    from .errors import SqltuneError

    rows = []
    ra, rb = Path(run_a), Path(run_b)
    for p in (ra, rb):
        if not (p / "metrics.json").is_file():
            raise SqltuneError(f"{p} is not a finished sqltune run (no metrics.json)")
    found = False
    for split in ("valid", "test"):
        fa, fb = ra / f"{stage}_{split}_report.json", rb / f"{stage}_{split}_report.json"
        if not (fa.is_file() and fb.is_file()):
            continue
        found = True
        a, b = load_report(fa), load_report(fb)
        qa = {e["id"]: e.get("question") for e in a["examples"]}
        differ = [e["id"] for e in b["examples"] if e["id"] in qa and qa[e["id"]] != e.get("question")]
        if differ and warn:
            warn(f"{split}: {len(differ)} ids carry different questions in the two runs (e.g. {differ[0]}); "
                 f"they are left out of the comparison")
        keep = {e["id"] for e in b["examples"] if e["id"] in qa and e["id"] not in differ}
        if not keep:
            continue
        a = {**a, "examples": [e for e in a["examples"] if e["id"] in keep]}
        b = {**b, "examples": [e for e in b["examples"] if e["id"] in keep]}
        for key in ("exact", "executed", "fuzzy"):
            cmp = paired(a, b, key)
            rows.append({"split": split, "metric": key, **cmp.to_dict(), "sentence": cmp.sentence(key)})
    if not found:
        def stages(p: Path) -> set[str]:
            return {f.name[: -len(f"_{s}_report.json")] for s in ("valid", "test") for f in p.glob(f"*_{s}_report.json")}

        both = sorted(stages(ra) & stages(rb))
        raise SqltuneError(f"no '{stage}' reports shared by {ra} and {rb}"
                           + (f" (stages both have: {', '.join(both)}; --stage picks one)" if both else ""))
    if not rows:
        raise SqltuneError(f"{ra} and {rb} have no question in common (same id and question): nothing to compare")
    return rows
