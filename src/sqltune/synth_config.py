"""Settings of `sqltune.synth`: `SynthConfig` (what one synthesis takes), its candidate sources and question
styles. Apart from `synth.py` (which imports sqlglot) so that the CLI's options and a recipe's `synth:`
section take their defaults from here, without a second copy of any of them."""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import SqltuneError

SOURCES = ("schema", "instantiate", "mutate", "model")
STYLES = {
    "plain": "a plain, complete English question, as a user would ask it",
    "terse": "a short, terse question of a few words, like a search query",
    "colloquial": "a casual, conversational question, as someone would ask a colleague",
    "imperative": "an instruction that starts with a verb such as List, Show, Find, Give or Count",
}


# no SQL the 1.5B wrote and synth kept was longer than 91 tokens with its fence (1,550 pairs of 11 runs on 8 devsuite
# DBs, BENCHMARKS.md "Session 12 lease"), while 1-2 % of the replies run on to any limit and hold up their batch;
# seeds longer than that raise the limit (exoplanets' longest gold query: 167 tokens)
SQL_TOKENS_FLOOR = 96
SQL_TOKENS_MARGIN = 8


@dataclass
class SynthConfig:
    """What one `synth()` takes (the CLI's options and a recipe's `synth:` section default to these)."""

    k: int = 200  # pairs to keep
    sources: tuple = SOURCES
    styles: tuple = tuple(STYLES)
    readback: bool = True  # consistency check: the writer reads the question back into SQL
    readback_samples: int = 1  # >1: majority of sampled read-backs (sqltune.vote)
    question_attempts: int = 1  # >1: SQL whose question failed a read-back gets a new question in the next style
    questions: str = "model"  # model | template (no model: schema-template questions only, no read-back)
    overgenerate: float = 2.0  # questions written per wanted pair (the read-back rejects part)
    model_sql_per_level: int = 8  # prompts per complexity level for the `model` source
    sql_temperature: float = 0.0  # >0: the `model` source samples its SQL (similar prompts stop giving one SQL)
    batch_size: int = 64
    max_new_tokens: int = 256  # the read-backs' SQL (as the evaluator)
    # the model-written SQL's token limit. A sampled batch decodes until its longest reply, and at 256 rows a batch
    # nearly always holds one that rambles to the limit, so the limit sets the time. None: `SQL_TOKENS_FLOOR`, or
    # the longest seed query (with its fence) + `SQL_TOKENS_MARGIN` when that is more (`synth.sql_token_limit`)
    sql_max_new_tokens: int | None = None
    seed: int = 0
    progress: bool = True

    @classmethod
    def from_section(cls, section: dict, **kw) -> "SynthConfig":
        """The settings of a recipe's `synth:` section (a mapping) that synthesis takes; `kw`: the others."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if k in ("sources", "styles") else v for k, v in section.items() if k in names},
                   **kw)

    def validate(self) -> "SynthConfig":
        """One clear line per bad setting; `synth()` and a recipe's `synth:` section both check here."""
        def bad(msg):
            raise SqltuneError(f"synth.{msg}")

        if self.model_sql_per_level < 0:
            bad(f"model_sql_per_level must be >= 0, got {self.model_sql_per_level}")
        for name, least in (("readback_samples", 1), ("overgenerate", 1), ("sql_max_new_tokens", 16),
                            ("batch_size", 1), ("question_attempts", 1)):
            if (value := getattr(self, name)) is not None and value < least:
                bad(f"{name} must be at least {least}, got {value}")
        if self.sql_temperature < 0:
            bad(f"sql_temperature must be >= 0 (0: greedy), got {self.sql_temperature}")
        if self.questions not in ("model", "template"):
            bad(f"questions must be model or template, got {self.questions!r}")
        if unknown := sorted(set(self.sources) - set(SOURCES)):
            bad(f"sources: unknown {', '.join(unknown)}; known: {', '.join(SOURCES)}")
        if unknown := sorted(set(self.styles) - set(STYLES)) or ([] if self.styles else ["(none)"]):
            bad(f"styles: unknown {', '.join(unknown)}; known: {', '.join(STYLES)}")
        return self
