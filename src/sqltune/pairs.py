"""The one validation pipeline for generated question → SQL pairs (used by `augment` and `synth`).

A candidate pair is kept only if its SQL runs through the safe executor, returns a non-empty,
deterministic result (the `data check` rules) that is not one row of zeros / NULLs (`zero_result`:
nearly any wrong SQL returns COUNT 0 too, so no read-back can check such a pair), has a question that
asks for no extreme the SQL does not compute (`extreme_not_computed`) and quotes no value the SQL does not use
(`quoted_value_missing`), leaks nothing into
the held-out splits (same normalised question, SQL or SQL skeleton: `check.LeakIndex`), and is not
trivially equivalent to a pair already kept (same normalised SQL, or same skeleton *and* same result).
Kept pairs join the indexes, so later candidates cannot duplicate them. Optionally a model reads each
question back into SQL and the pair survives only if that SQL returns the candidate's result
(`roundtrip_agrees`).
`write_pairs` writes the kept pairs atomically; every pair carries its `provenance`. `sql_shape` names a
query's shape (join, nested, window, compound, aggregate, single): the summaries count the kept pairs by it, and
`balanced_cut` cuts a set to k taking the shapes in turn, so the rare shapes are not the ones cut.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlglot import exp

from .check import LeakIndex, _parse, check_items, normalize_sql, sql_skeleton
from .execute import execute


def result_hash(rows: list) -> str:
    """Order-free fingerprint of a result (what "same result" means for duplicates)."""
    return hashlib.sha256(json.dumps(sorted(json.dumps(list(r), default=str) for r in rows)).encode()).hexdigest()[:16]


def zero_result(rows: list) -> bool:
    """One row whose every value is 0 or NULL: `COUNT(*)` of nothing, `MAX` over no rows, a zero sum.

    Such a result says nothing about the SQL: a filter on a value the column does not hold, a join on the
    wrong key, or the wrong table give the same 0, so the round-trip check (the reader's SQL must return the
    candidate's result) passes whatever the reader wrote. Session 9's hand read of flight_2's kept pairs
    (BENCHMARKS.md, "Session 9 lease"): 7 of the 8 pairs whose question did not mean the SQL had this result."""
    return (len(rows) == 1 and len(rows[0]) > 0
            and all(v is None or isinstance(v, (int, float)) and v == 0 for v in rows[0]))


# words that ask for an extreme value; "at most" / "at least" are bounds, not extremes
SUPERLATIVES = frozenset("highest lowest largest smallest biggest greatest maximum minimum most least fewest top "
                         "earliest latest newest oldest youngest longest shortest cheapest best worst".split())
# of them, those with one direction whatever the column (not "oldest": the largest age or the smallest date)
TOWARDS_MAX = frozenset("highest largest biggest greatest maximum most latest".split())
TOWARDS_MIN = frozenset("lowest smallest minimum least fewest earliest".split())


def name_words(names) -> frozenset:
    """The lower-case words of table/column names (`Best_Finish` -> best, finish; `FlightNo` -> flight, no)."""
    return frozenset(w.lower() for n in names for w in re.split(r"[_\W]+|(?<=[a-z])(?=[A-Z])", n) if w)


def extreme_not_computed(question: str, sql: str, skip: frozenset = frozenset()) -> bool:
    """The question asks for an extreme ("the highest rank", "made the most money") and the SQL computes none:
    no MAX/MIN, no ORDER BY, no window function. Words in `skip` (the schema's own names: a `Best_Finish`
    column) do not count. SQL that does not parse is not judged here.

    Why: a small writer turns `SELECT rank FROM t WHERE x > v` into "What is the highest rank where x > v?",
    and its own read-back returns the same rows, so the round trip passes (session 9's hand read of the 0.5B's
    pairs: 8 of its 9 wrong ones; none among 782 gold pairs of the devsuite and exoplanets but one ordering
    phrase, which ORDER BY now answers).

    Also when every extreme the question asks for points one way (highest, most, latest ...) and every one the
    SQL computes the other (MIN, ascending ORDER BY): "Which country has the most airports?" for `ORDER BY
    count(*) LIMIT 1` (session 11's flight_2 read; 2 of the 1,507 pairs of that lease, none of the gold)."""
    tokens = re.findall(r"[a-z]+", question.lower())
    words = [w for i, w in enumerate(tokens) if w in SUPERLATIVES and w not in skip
             and not (w in ("most", "least") and i and tokens[i - 1] == "at")]
    if not words:
        return False
    tree = _parse(sql)
    if tree is None:
        return False
    if not tree.find(exp.Max, exp.Min, exp.Window, exp.Order):
        return True
    asked = {"max" for w in words if w in TOWARDS_MAX} | {"min" for w in words if w in TOWARDS_MIN}
    computed = ({"max"} if tree.find(exp.Max) else set()) | ({"min"} if tree.find(exp.Min) else set()) | \
        {"max" if o.args.get("desc") else "min" for o in tree.find_all(exp.Ordered)}
    return len(asked) == 1 and bool(computed) and asked.isdisjoint(computed)


# a value in quotes: the quote opens after a space or bracket and closes before one or end punctuation, so the
# apostrophes of "What's the airline's name" quote nothing, and an apostrophe inside quotes is part of the value
# ("Do They Know It's Christmas": session 14's CPU synth kept a pair quoting it for SQL that never names it)
_QUOTED = re.compile(r"""(?:^|(?<=[\s(\[]))['"“‘]([^\n]{1,80}?)['"”’](?=$|[\s,.;:?!)\]])""")


def _bare(value: str) -> str:
    """A value as compared: lower case, without LIKE's % and the surrounding spaces and end punctuation."""
    return value.strip().strip("%").strip().rstrip(".!?,;:").strip().lower()


def quoted_value_missing(question: str, sql: str) -> str | None:
    """The first value the question puts in quotes ('UAL', "Delta") that is none of the SQL's literals or names
    (compared by `_bare`); None when every quoted value is there, or the SQL does not parse.

    Why: a writer that swaps the value keeps the question's wording ("with the abbreviation 'UAL'" for
    `WHERE Airline = 'Frontier Airlines'`), and when both values give the same rows (the same country) the
    read-back cannot tell. Session 11's hand read of flight_2 (BENCHMARKS.md, "Session 11 lease"): 2 of its 5
    wrong or partly wrong pairs; it flags 5 of the 1,507 pairs the `scale2` lease kept (4 of them wrong, all on
    flight_2) and none of the 782 gold pairs of the devsuite and exoplanets."""
    quoted = [_bare(m.group(1).replace("''", "'")) for m in _QUOTED.finditer(question)]  # a SQL-escaped '' copied
    if not any(quoted):
        return None
    tree = _parse(sql)
    if tree is None:
        return None
    present = ({_bare(str(x.this)) for x in tree.find_all(exp.Literal)}
               | {_bare(x.name) for x in tree.find_all(exp.Identifier)})
    return next((v for v in quoted if v and v not in present), None)


@dataclass
class Validator:
    """The filters every candidate passes: executes, non-empty and not all zero, deterministic, no leakage,
    no duplicate.

    `against`: the items nothing may leak into (skeleton hits count). `dedupe_results`: a candidate
    whose skeleton matches a kept (or `seen`) pair is rejected only when its result is the same too,
    so one skeleton with other values giving other rows is kept (what synthesis wants); without it a
    skeleton match against `against` is enough (augment's rule)."""

    db: Path
    against: LeakIndex
    timeout: float = 5.0
    dedupe_results: bool = False
    check_questions: bool = True  # False: SQL filters only (questions are written later: `question_reason`)
    _sql: set = field(default_factory=set)
    _questions: set = field(default_factory=set)
    _shape: set = field(default_factory=set)
    _names: frozenset | None = None

    def reject_reason(self, cand: dict) -> str | None:
        if not cand.get("sql") or self.check_questions and not cand.get("question"):
            return "incomplete"
        if reasons := self.against.leaks(cand if self.check_questions else {"sql": cand["sql"]}):
            return "leak: " + reasons[0].split(" as ")[0]
        if normalize_sql(cand["sql"]) in self._sql:
            return "duplicate: same SQL as a kept pair"
        if self.check_questions and (reason := self.question_reason(cand)):
            return reason
        report = check_items(self.db, {"candidate": [dict(cand, id="candidate")]}, timeout=self.timeout)
        if report.errors:
            return "fails"
        kinds = {f.kind for f in report.findings}
        if "empty" in kinds:
            return "empty result"
        if kinds:  # volatile calls, ties at a LIMIT cut, tied ORDER BY rows, …
            return "nondeterministic"
        res = execute(self.db, cand["sql"], timeout=self.timeout)
        if res.ok and zero_result(res.rows):
            return "zero result (0 or NULL: the read-back cannot check it)"
        if self.dedupe_results and self._shape_key(cand["sql"], res.rows if res.ok else None) in self._shape:
            return "duplicate: same skeleton and result as a kept pair"
        return None

    def question_reason(self, cand: dict) -> str | None:
        """The question's own filters: present, leaks into no held-out question, not a kept pair's, and asks
        for no extreme that the SQL does not compute (`extreme_not_computed`) and quotes no value it does not use
        (`quoted_value_missing`)."""
        from .check import normalize_question

        q = normalize_question(cand.get("question") or "")
        if len(q.split()) < 3:
            return "incomplete"
        if self.against.leaks({"question": cand["question"]}):
            return "leak: same question"
        if q in self._questions:
            return "duplicate: same question as a kept pair"
        if cand.get("sql") and extreme_not_computed(cand["question"], cand["sql"], self.names()):
            return "question asks for an extreme (highest, most, ...) that the SQL does not compute"
        if cand.get("sql") and quoted_value_missing(cand["question"], cand["sql"]) is not None:
            return "question quotes a value the SQL does not use"
        return None

    def names(self) -> frozenset:
        """The words of the database's table and column names (read once)."""
        if self._names is None:
            from .schema import table_names

            self._names = name_words(n for t, cols in table_names(self.db).items() for n in [t, *cols])
        return self._names

    def add_question(self, cand: dict) -> None:
        from .check import normalize_question

        self._questions.add(normalize_question(cand["question"]))

    def _shape_key(self, sql: str, rows: list | None = None) -> tuple:
        if rows is None:
            res = execute(self.db, sql, timeout=self.timeout)
            rows = res.rows if res.ok else []
        return (sql_skeleton(sql), result_hash(rows))

    def add(self, cand: dict, label: str = "kept") -> None:
        """Remember a kept (or seed) pair, so later candidates cannot duplicate it."""
        self._sql.add(normalize_sql(cand["sql"]))
        if cand.get("question") and self.check_questions:
            self.add_question(cand)
        if self.dedupe_results:
            self._shape.add(self._shape_key(cand["sql"]))
        else:
            self.against.add(cand, label, cand.get("id"))


SHAPES = ("join", "nested", "window", "compound", "aggregate", "single")  # sql_shape's labels, first match wins


def sql_shape(sql: str) -> str:
    """The query's shape, named by the first of `SHAPES` it has: `join` (a JOIN anywhere), `nested` (a subquery),
    `window` (OVER), `compound` (UNION / INTERSECT / EXCEPT), `aggregate` (an aggregate or GROUP BY), else
    `single`; `unparsed` when sqlglot cannot read it. What a synthetic set holds of each, beside its seeds
    (session 14: the kept pairs held 5-17 % joins where the seeds held 29-60 % and test 12-65 %)."""
    tree = _parse(sql)
    if not isinstance(tree, exp.Query):
        return "unparsed"
    if tree.find(exp.Join):
        return "join"
    if tree.find(exp.Subquery) or any(s is not tree and not isinstance(s.parent, exp.SetOperation)
                                      for s in tree.find_all(exp.Select)):
        return "nested"
    if tree.find(exp.Window):
        return "window"
    if isinstance(tree, exp.SetOperation):
        return "compound"
    if tree.find(exp.AggFunc) or tree.find(exp.Group):
        return "aggregate"
    return "single"


def shape_counts(pairs) -> dict[str, int]:
    """{shape: how many} of `pairs` (dicts with "sql"), in `SHAPES` order."""
    c = Counter(sql_shape(p["sql"]) for p in pairs)
    return {s: c[s] for s in (*SHAPES, "unparsed") if c[s]}


def balanced_cut(pairs: list[dict], k: int) -> list[dict]:
    """At most `k` of `pairs`: when there are more, the cut takes the shapes in turn (each shape's pairs in their
    order), so a rare shape (joins, subqueries) is not the one cut; the kept pairs keep their order."""
    if len(pairs) <= k:
        return list(pairs)
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(sql_shape(p["sql"]), []).append(i)
    keep = set(interleave(*groups.values())[:k])
    return [p for i, p in enumerate(pairs) if i in keep]


def interleave(*pools: list) -> list:
    """a0, b0, a1, b1, ...: every pool represented where a budget cuts the list; none cut short."""
    return [p[i] for i in range(max((len(p) for p in pools), default=0)) for p in pools if i < len(p)]


@dataclass
class PairResult:
    """What a generator tried, kept, and rejected (by reason)."""

    kept: list[dict] = field(default_factory=list)
    tried: int = 0
    rejected: Counter = field(default_factory=Counter)
    seconds: dict = field(default_factory=dict)  # wall time per stage (synth fills it)
    rejected_pairs: list[dict] = field(default_factory=list)  # pairs rejected once they had a question (synth)

    def summary(self) -> dict:
        by_source = Counter((c.get("provenance") or {}).get("method", "?") for c in self.kept)
        return {"tried": self.tried, "kept": len(self.kept), "rejected": dict(self.rejected),
                "kept_by_source": dict(by_source), "kept_by_shape": shape_counts(self.kept),
                "seconds": {k: round(v, 2) for k, v in self.seconds.items()}}


def filter_candidates(candidates: list[dict], validator: Validator, max_keep: int, progress: bool = False,
                      desc: str = "validating") -> PairResult:
    """Apply every filter; kept pairs join the validator's indexes so later ones can't duplicate them."""
    res = PairResult()
    bar = _bar(len(candidates), progress, desc)
    for cand in candidates:
        if len(res.kept) >= max_keep:
            break
        res.tried += 1
        bar.update(1)
        reason = validator.reject_reason(cand)
        if reason:
            res.rejected[reason] += 1
            continue
        res.kept.append(cand)
        validator.add(cand, "augmented")
    bar.close()
    return res


def _bar(total: int, enabled: bool, desc: str):
    from .console import progress

    return progress(total, desc, enabled)


def roundtrip_agrees(db, candidates: list[dict], model_sql: list[str | None], timeout: float = 5.0) -> list[bool]:
    """For each candidate: does the SQL a model wrote for its question return the candidate's result
    (the scorer's `fuzzy`: same rows; column names, order and extra columns free)?"""
    from .score import score_pairs

    if not candidates:
        return []
    items = [{"id": str(i), "question": c["question"], "sql": c["sql"]} for i, c in enumerate(candidates)]
    report = score_pairs(db, items, model_sql, timeout=timeout)
    return [bool(e["fuzzy"]) for e in report["examples"]]


ROUNDTRIP_REJECT = "round trip: the model's SQL for the question returns another result"


READER_REJECT = "second reader: its SQL for the question returns another result"


def apply_roundtrip(res: PairResult, db, model_sql: list[str | None], max_keep: int, *,
                    reason: str = ROUNDTRIP_REJECT, key: str = "roundtrip_sql") -> PairResult:
    """Drop the kept pairs whose round trip disagrees (counted under `reason`); keep at most `max_keep` of
    the rest, the read-back SQL in their provenance under `key`."""
    agree = roundtrip_agrees(db, res.kept, model_sql)
    kept = []
    for cand, ok, sql in zip(res.kept, agree, model_sql):
        if not ok:
            res.rejected[reason] += 1
        elif len(kept) < max_keep:
            kept.append(dict(cand, provenance=dict(cand.get("provenance", {}), **{key: sql})))
    res.kept = kept
    return res


def summary_path(path) -> Path:
    """Where `write_pairs` puts the summary it is given: `PATH.summary.json` (PATH without its suffix)."""
    path = Path(path)
    return path.with_name(path.stem + ".summary.json")


def rejected_path(path) -> Path:
    """Where `write_pairs` puts the rejected pairs it is given: `PATH.rejected.jsonl` (PATH without its suffix)."""
    path = Path(path)
    return path.with_name(path.stem + ".rejected.jsonl")


def write_pairs(path, pairs: list[dict], summary: dict | None = None, rejected: list[dict] | None = None) -> Path:
    """The kept pairs as JSONL (atomic: a crash never leaves half a file), plus `PATH.summary.json` and, when
    given, the rejected pairs as `PATH.rejected.jsonl` (each atomic; the pairs file is written last)."""
    from .dataset import write_jsonl
    from .files import write_json

    path = Path(path)
    if summary is not None:
        write_json(summary_path(path), summary)
    if rejected is not None:
        write_jsonl(rejected_path(path), rejected)
    return write_jsonl(path, pairs)


# ----------------------------------------------------------------------------- model text helpers
def chat(model, tok, prompts: list[str], max_new_tokens: int = 160, batch_size: int = 64,
         desc: str = "writing", progress: bool = True, temperature: float = 0.0, top_p: float = 0.95,
         seed: int = 0, stop=None, stats=None) -> list[str]:
    """Replies to single-turn chat prompts: greedy, or sampled at `temperature` > 0 (top-p `top_p`,
    torch seeded with `seed`, so the same call gives the same replies). Prompts sharing an
    instruction+schema prefix share its KV cache across the batch (`generate_texts`). `stop`: a row
    also ends when `stop(text)` is true (`generate.is_complete`: where a reply that is SQL ends). `stats`: a
    `generate.GenerationStats` to fill (decode steps, why rows ended)."""
    from .generate import generate_texts

    if not prompts:
        return []
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]

    def run():
        return [text for text, _, _ in generate_texts(model, tok, texts, batch_size=batch_size,
                                                       max_new_tokens=max_new_tokens, stop=stop, desc=desc,
                                                       progress=progress, temperature=temperature, top_p=top_p,
                                                       stats=stats)]

    if temperature <= 0:
        return run()
    import torch

    # seeded without touching the caller's random state (training seeds its own afterwards)
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
        torch.manual_seed(seed)
        return run()


def clean_question(text: str) -> str:
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    return line.removeprefix("Question:").strip().strip('"')
