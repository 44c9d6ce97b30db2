"""Stage: prompts. The ONE prompt builder used by training and inference alike.

A prompt is: instructions + the schema text (+ notes) [+ few-shot examples] + the question. It is
rendered through the tokenizer's chat template (style `chat`) or as plain text (`premsql`, `seed`).
The schema comes first and the question last, so every question shares one prefix: generation can
reuse its KV cache and training can compute it once per batch.

`PromptBuilder.template(tokenizer)` renders the prompt with placeholders; that exact text is saved
with every checkpoint and compared when the checkpoint is loaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .errors import SqltuneError

STYLES = ("chat", "premsql", "seed")
QUESTION_SLOT = "<<<QUESTION>>>"
SQL_SLOT = "<<<SQL>>>"

CHAT_SYSTEM = (
    "You are an expert in SQLite. Write one SQLite query that answers the user's question about the "
    "database below. Reply with the SQL query only.\n\n"
    "Database schema:\n{schema}"
)

# prem-1B-SQL's documented prompt (premsql BASE_TEXT2SQL_PROMPT).
PREMSQL_TEMPLATE = (
    "# Follow these instruction:\n"
    "You will be given schemas of tables of a database. Your job is to write correct\n"
    "error free SQL query based on the question asked. Please make sure:\n\n"
    "1. Do not add ``` at start / end of the query. It should be a single line query in a  single line (string format)\n"
    "2. Make sure the column names are correct and exists in the table\n"
    "3. For column names which has a space with it, make sure you have put `` in that column name\n"
    "4. Think step by step and always check schema and question and the column names before writing the\n"
    "query. \n\n"
    "# Database and Table Schema:\n{schema}\n\n"
    "{fewshot}"
    "# Question: {question}\n\n"
    "# SQL: "
)

# The original project's Llama-3 training string (Context / Question / SQL Query).
SEED_TEMPLATE = "Context: {schema}\n{fewshot}Question: {question}\nSQL Query: "

# The vote's correction step (`vote.correct`): the question with the disagreeing queries and their first rows.
CORRECTION_TEMPLATE = (
    "{question}\n\n"
    "Different SQLite queries were written for this question and return different results:\n\n"
    "{options}"
    "Write the one SQLite query that answers the question correctly (one of these, or a fixed one). "
    "Reply with the SQL query only."
)
# The panel's reviewer (`vote.review_scores`): the question's likelihood given a query, over the same schema text.
REVIEW_SYSTEM = ("You are an expert in SQLite. Given a SQLite query on the database below, write the question it "
                 "answers.\n\nDatabase schema:\n{schema}")
REVIEW_TEMPLATE = "Context: {schema}\n{fewshot}SQL Query: {sql}\nQuestion: "  # styles without a chat template
CORRECTION_ROWS = 3  # first rows shown per query
CORRECTION_CELL = 40  # characters shown per value


def _need_chat_template(tokenizer) -> None:
    """Style `chat` renders through the tokenizer's chat template: one clear error where it has none."""
    if not getattr(tokenizer, "chat_template", None):
        raise SqltuneError("prompt style 'chat' needs a tokenizer with a chat template; use --prompt-style seed")


@dataclass
class PromptBuilder:
    schema: str
    style: str = "chat"
    fewshot: list[dict] = field(default_factory=list)  # fixed examples, from training data only

    def __post_init__(self):
        if self.style not in STYLES:
            raise SqltuneError(f"unknown prompt style '{self.style}' (one of: {', '.join(STYLES)})")

    # ------------------------------------------------------------------ rendering
    def _fewshot_text(self, examples: list[dict]) -> str:
        if not examples:
            return ""
        if self.style == "premsql":
            body = "\n".join(f"Question: {e['question']}\nSQL: {e['sql']}\n" for e in examples)
            return f"# Here are some Examples on how to generate SQL statements and use column names:\n{body}\n"
        return "".join(f"Question: {e['question']}\nSQL Query: {e['sql']}\n" for e in examples)

    def messages(self, question: str, examples: list[dict] | None = None) -> list[dict]:
        examples = self.fewshot if examples is None else examples
        msgs = [{"role": "system", "content": CHAT_SYSTEM.format(schema=self.schema)}]
        for e in examples:
            msgs += [{"role": "user", "content": e["question"]}, {"role": "assistant", "content": e["sql"]}]
        msgs.append({"role": "user", "content": question})
        return msgs

    def prompt(self, tokenizer, question: str, examples: list[dict] | None = None) -> str:
        """The text the model sees before it writes SQL."""
        examples = self.fewshot if examples is None else examples
        if self.style == "chat":
            _need_chat_template(tokenizer)
            return tokenizer.apply_chat_template(self.messages(question, examples), tokenize=False, add_generation_prompt=True)
        tmpl = PREMSQL_TEMPLATE if self.style == "premsql" else SEED_TEMPLATE
        return (tokenizer.bos_token or "") + tmpl.format(schema=self.schema, fewshot=self._fewshot_text(examples), question=question)

    def completion(self, tokenizer, question: str, sql: str, examples: list[dict] | None = None) -> str:
        """The text after the prompt that training teaches: the SQL and the end-of-turn marker."""
        sql = sql.strip()
        if self.style == "chat":
            examples = self.fewshot if examples is None else examples
            msgs = self.messages(question, examples) + [{"role": "assistant", "content": sql}]
            full = tokenizer.apply_chat_template(msgs, tokenize=False)
            prompt = self.prompt(tokenizer, question, examples)
            if not full.startswith(prompt):
                raise SqltuneError("the chat template does not extend the generation prompt; use another style")
            return full[len(prompt):].rstrip("\n")
        return sql + (tokenizer.eos_token or "")

    def correction(self, tokenizer, question: str, options: list[dict], examples: list[dict] | None = None) -> str:
        """The prompt of the vote's correction step: `question` with each option's SQL and first rows.

        `options`: [{sql, columns, rows}] (the two most-voted results). It is the ordinary prompt of
        a longer question, so it starts with the same schema prefix and renders in every style.
        """
        parts = [f"Query {i}:\n{' '.join(str(o['sql']).split())}\n{result_preview(o.get('columns'), o.get('rows'))}\n\n"
                 for i, o in enumerate(options, 1)]
        return self.prompt(tokenizer, CORRECTION_TEMPLATE.format(question=question, options="".join(parts)), examples)

    def review(self, tokenizer, sql: str, examples: list[dict] | None = None, result: dict | None = None) -> str:
        """The reviewer's prompt: the schema and `sql`; what follows it is scored as the question `sql` answers
        (`vote.review_scores`). Chat style: a system turn of its own (`REVIEW_SYSTEM`) and the SQL as the user's.
        `examples` (training pairs) come before it the other way round from the writing prompt's: each pair's SQL as
        the user's turn, its question as the reply. The builder's own fixed examples are not shown. `result`
        ({columns, rows}): what the SQL returns, shown after it as the correction prompt shows results."""
        examples = examples or []
        shown = sql.strip() if self.style == "chat" else " ".join(sql.split())
        if result is not None:
            shown += "\n" + result_preview(result.get("columns"), result.get("rows"))
        if self.style == "chat":
            _need_chat_template(tokenizer)
            msgs = [{"role": "system", "content": REVIEW_SYSTEM.format(schema=self.schema)}]
            for e in examples:
                msgs += [{"role": "user", "content": e["sql"].strip()}, {"role": "assistant", "content": e["question"]}]
            msgs.append({"role": "user", "content": shown})
            return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        shots = "".join(f"SQL Query: {' '.join(e['sql'].split())}\nQuestion: {e['question']}\n" for e in examples)
        return (tokenizer.bos_token or "") + REVIEW_TEMPLATE.format(schema=self.schema, fewshot=shots, sql=shown)

    def example(self, tokenizer, question: str, sql: str, examples: list[dict] | None = None) -> tuple[str, str]:
        return self.prompt(tokenizer, question, examples), self.completion(tokenizer, question, sql, examples)

    # ------------------------------------------------------------------ prefix sharing and locking
    def template(self, tokenizer) -> str:
        """The exact rendered template, with slots for the question and the SQL."""
        p, c = self.example(tokenizer, QUESTION_SLOT, SQL_SLOT)
        return p + c

    def prefix(self, tokenizer) -> str:
        """The text every prompt starts with (everything before the question)."""
        return self.prompt(tokenizer, QUESTION_SLOT).split(QUESTION_SLOT)[0]

    def fingerprint(self, tokenizer) -> dict:
        tmpl = self.template(tokenizer)
        return {"style": self.style, "template": tmpl, "sha256": hashlib.sha256(tmpl.encode()).hexdigest()}


def result_preview(columns, rows) -> str:
    """A query's result as prompts show it (the vote's correction, the reviewer's `result`): its column names and its
    first `CORRECTION_ROWS` rows, each value cut to `CORRECTION_CELL` characters; "(none)" without rows."""
    def cell(v) -> str:
        t = repr(v) if not isinstance(v, str) else v
        return t if len(t) <= CORRECTION_CELL else t[: CORRECTION_CELL - 3] + "..."

    lines = [" | ".join(cell(v) for v in r) for r in list(rows or [])[:CORRECTION_ROWS]]
    cols = " | ".join(str(c) for c in (columns or []))
    return f"First rows ({cols}):\n" + "\n".join(lines or ["(none)"])


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of rendered prompt text. Special tokens are already in the text, never added."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def check_fingerprint(saved: dict, builder: PromptBuilder, tokenizer, where: str = "checkpoint") -> None:
    """Refuse to use a checkpoint under a prompt other than the one it was trained with."""
    now = builder.fingerprint(tokenizer)
    if saved.get("style") != now["style"]:
        raise SqltuneError(
            f"{where} was trained with prompt style '{saved.get('style')}', not '{now['style']}'; "
            f"use --prompt-style {saved.get('style')}"
        )
    if saved.get("sha256") != now["sha256"]:
        raise SqltuneError(
            f"{where} was trained with a different prompt template (schema, notes or few-shot changed); "
            "the rendered template must match exactly" + _first_difference(saved.get("template"), now["template"])
        )


def _first_difference(saved: str | None, now: str) -> str:
    """Where two rendered templates part: the first line that differs, as saved and as now (one line each,
    cut), so a user sees *what* changed: another database, edited notes, a sqltune that renders keys anew."""
    if not isinstance(saved, str):
        return ""
    a, b = saved.splitlines(), now.splitlines()
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else "(end)"
        y = b[i] if i < len(b) else "(end)"
        if x != y:
            def cut(t):
                return repr(t if len(t) <= 100 else t[:99] + "…")
            return f"; first difference, line {i + 1}: trained with {cut(x)}, now {cut(y)}"
    return ""  # the same text under another hash: a tampered checkpoint
