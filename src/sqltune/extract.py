"""Stage: pull one SQL statement out of whatever a model wrote.

Model output is messy: code fences (```sql ... ```), "SQL Query:" / "SQL:" prefixes, prose before
and after, several statements, chat end tokens, a query wrapped in quotes. `extract_sql` finds the
first statement that looks like a query and cuts it at its end: a `;` outside string literals,
quoted identifiers and comments, a closing fence, a blank line, or a line that starts prose.

`is_complete` answers the question generation asks after every token: would more text change what
`extract_sql` returns? It uses the same scanner, so stopping early never changes the extracted SQL.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Chat end / turn markers of common templates: everything from the first one on is dropped.
END_MARKERS = (
    "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "</s>",
    "<end_of_turn>", "<|im_start|>", "<|start_header_id|>", "<|EOT|>", "<｜end▁of▁sentence｜>",
)
_KEYWORD = re.compile(r"\b(SELECT|WITH)\b", re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?")
# Lines that start prose (or the next prompt turn) once a statement has begun, outside fences.
_PROSE_LINE = re.compile(
    r"\n[ \t]*(?:#|Question\s*:|Context\s*:|SQL(?: Query)?\s*:|Query\s*:|Answer\s*:|Explanation|Note\b|"
    r"This (?:query|SQL)|The (?:query|above|result)|Here\b|Output\s*:|Result\s*:|Error\s*:|\*\*|Step \d)",
    re.IGNORECASE,
)


def strip_end_markers(text: str) -> str:
    cut = len(text)
    for m in END_MARKERS:
        i = text.find(m)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def _scan(text: str, start: int, fenced: bool) -> tuple[int, str | None]:
    """(end, why) of the statement that begins at `start`; why is None when the text just ran out.

    Respects '...' and "..." literals, `...` and [...] identifiers, -- and /* */ comments (with
    SQL's doubled-quote escapes). Ends at `;`, a fence, a blank line (unfenced only) or a prose line.
    """
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c in "'\"`":
            j = i + 1
            while True:
                j = text.find(c, j)
                if j == -1:
                    return n, None  # unterminated literal: wait for more text
                if j + 1 < n and text[j + 1] == c:
                    j += 2
                    continue
                break
            i = j + 1
            continue
        if c == "[":
            j = text.find("]", i + 1)
            if j == -1 or "\n" in text[i:j]:
                i += 1  # not an identifier (SQLite has no arrays); move on
                continue
            i = j + 1
            continue
        if text.startswith("--", i):
            j = text.find("\n", i)
            if j == -1:
                return n, None
            i = j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j == -1:
                return n, None
            i = j + 2
            continue
        if c == ";":
            return i, ";"
        if text.startswith("```", i):
            return i, "fence"
        if c == "\n":
            if not fenced and re.match(r"\n[ \t]*\n", text[i:]):
                return i, "blank"
            m = _PROSE_LINE.match(text, i)
            if m and not fenced:
                return i, "prose"
        i += 1
    return n, None


@lru_cache(maxsize=4096)  # the loose pass of `_extract` asks again about the strict pass's candidates
def _looks_like_query(sql: str) -> bool:
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except (sqlglot.errors.SqlglotError, ValueError, RecursionError):  # model output: "((((..." nests past the stack
        return False
    return isinstance(tree, exp.Query)


def _unquote(text: str, start: int, sql: str) -> str:
    """A query written as a string ("SELECT ...") loses its wrapping quotes."""
    if start > 0 and text[start - 1] in "\"'" and sql.endswith(text[start - 1]) and sql.count(text[start - 1]) % 2 == 1:
        return sql[:-1].rstrip()
    return sql


def _segments(text: str) -> list[tuple[str, bool, bool]]:
    """The text in order as (segment, fenced, closed): prose outside code fences, and fence bodies."""
    out: list[tuple[str, bool, bool]] = []
    pos = 0
    while True:
        m = _FENCE.search(text, pos)
        if not m:
            out.append((text[pos:], False, False))
            return out
        out.append((text[pos:m.start()], False, True))
        close = text.find("```", m.end())
        out.append((text[m.end(): close if close != -1 else len(text)], True, close != -1))
        if close == -1:
            return out
        pos = close + 3


def _statements(region: str, fenced: bool, closed: bool, strict: bool):
    """(sql, why) for each keyword in `region` that may start a statement, in order."""
    for m in _KEYWORD.finditer(region):
        start = m.start()
        if strict:
            # a statement starts a line, follows ':' / a quote / '(' or opens a fence
            before = region[:start].rstrip(" \t")
            if before and before[-1] not in "\n:\"'(`":
                continue
        end, why = _scan(region, start, fenced)
        if why is None and closed:
            why = "fence"  # the segment ends at a fence
        sql = _unquote(region, start, region[start:end].strip())
        if sql:
            yield sql, why


# Candidates parsed before `_extract` gives up and returns the first one. Each parse reads the rest of the text, so a
# degenerate sample of nested `(SELECT (SELECT ...` cost time quadratic in its length (2.3 s at depth 200); real
# outputs reach a query that parses within a few keywords.
MAX_PARSED = 64


@lru_cache(maxsize=4096)
def _extract(text: str) -> tuple[str | None, str | None]:
    """(sql, why it ended): the first statement that parses as a query (among the first `MAX_PARSED` candidates),
    else the first candidate."""
    text = strip_end_markers(text).replace("\r\n", "\n")
    segments = _segments(text)
    fallback: tuple[str | None, str | None] = (None, None)
    tried: set[str] = set()
    for strict in (True, False):
        for region, fenced, closed in segments:
            for sql, why in _statements(region, fenced, closed, strict):
                if fallback[0] is None:
                    fallback = (sql, why)
                tried.add(sql)
                if len(tried) > MAX_PARSED:
                    return fallback
                if _looks_like_query(sql):
                    return sql, why
    return fallback


def extract_sql(text: str | None) -> str | None:
    """The first SQL query in `text` (no trailing `;`), or None when there is none."""
    if not text:
        return None
    sql, _ = _extract(text)
    return sql or None


def is_complete(text: str) -> bool:
    """True once more text could not change `extract_sql(text)`: the statement has ended."""
    if any(m in text for m in END_MARKERS):
        return True
    sql, why = _extract(text.replace("\r\n", "\n"))
    return sql is not None and why is not None and _looks_like_query(sql)
