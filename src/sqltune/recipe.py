"""Recipes: one YAML file per experiment, validated into typed settings.

A recipe has top-level `name`, `description`, `model`, `device`, `dtype`, `out` and the sections
`data` (db, notes, train/valid/test item specs, extra training specs), `prompt` (style), `train`
(the fine-tuning hyperparameters: `train.TrainConfig`; and `train.enabled`, whether `sqltune run` trains at all), `eval` (`evaluate.EvalConfig`: the settings of
every evaluation of the run, training's checkpoint choice included), `augment` (the optional
augment-and-retrain round), `synth` (synthetic pairs before training) and `rl` (the optional GRPO stage
after supervised tuning: `rl.RLConfig`). Every key is checked: an unknown key or a value of the
wrong type is one clear error naming the recipe and the key. Shipped recipes live in
`sqltune/recipes/*.yaml` and are found by name (`sqltune recipes` lists them).

`load_recipe(name_or_path, overrides)` applies overrides given as `{"train.lr": 1e-4}` (dotted) or
nested dicts; string values (from the command line) are converted to the key's type.
"""

from __future__ import annotations

import difflib
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import SqltuneError, UnknownNameError
from .model import DEFAULT_MODEL
from .paths import PACKAGED_RECIPES
from .rl import RLConfig
from .synth_config import SynthConfig
from .train_config import TrainConfig

# TrainConfig keys that a recipe keeps in other places (top level, `prompt`, `data`, `eval`).
_TRAIN_ELSEWHERE = {"model": "model", "device": "device", "dtype": "dtype", "prompt_style": "prompt.style",
                    "notes": "data.notes", "eval_batch_size": "eval.batch_size", "eval_max_new_tokens": "eval.max_new_tokens",
                    "eval_retries": "eval.retries", "eval_timeout": "eval.timeout", "eval_fewshot": "eval.fewshot"}


@dataclass
class DataSection:
    db: str | None = None  # SQLite file; None = the embedded exoplanets DB
    notes: str | None = None  # schema notes file; None = found beside the DB
    # item specs: NAME:SPLIT, a .jsonl/.json/.csv file, or a hub id; `synth` (NO_PAIRS): no pairs of one's own,
    # `sqltune run` writes them from the database alone first (with `split`: valid/test split off them)
    train: str = "exoplanets:train"
    valid: str | None = "exoplanets:valid"  # null with `split`
    test: str | None = "exoplanets:test"
    extra: list[str] = field(default_factory=list)  # more training items, appended to `train`
    split: bool = False  # carve valid (and test, when null) out of `train` by gold SQL (dataset.split_by_sql)


@dataclass
class PromptSection:
    style: str = "chat"  # chat | premsql | seed


@dataclass
class EvalSection:
    batch_size: int = 64  # one batch for 64 questions: fastest on CPU (BENCHMARKS.md, generation)
    max_new_tokens: int = 256
    timeout: float = 5.0  # seconds per query
    retries: int = 0  # self-correction re-prompts
    repair: bool = True  # rewrite a greedy answer that names a column where it is not (`sqltune.repair`) if that runs
    fewshot: int = 0  # similar training examples shown per question
    test_suite: bool = False  # also score with a distilled test suite per split (the `suite` metric)
    vote: int = 1  # execution-guided decoding: greedy + vote-1 samples, majority of results (1 = greedy only)
    temperature: float = 0.8  # sampling temperature of the vote's samples
    top_p: float = 0.95  # nucleus sampling of the vote's samples
    vote_correct: bool = False  # close votes: the model picks/fixes between the top two results (needs vote >= 2)
    vote_when: str = "always"  # always: vote on every question | error: only where greedy's SQL does not execute
    fallback: str = "none"  # base: where the tuned answer (voted or not) does not execute, the untuned model answers
    #                         (`evaluate.fall_back`; an adapter only: the model under it) | vote: where the tuned
    #                         answer fails or its result differs from the untuned greedy one, both vote (`pool_vote`)
    #                         | panel: the tuned answer, the untuned one and the untuned one with `panel_fewshot`
    #                         retrieved training examples vote by result, ties to the tuned answer (`panel_vote`)
    panel_fewshot: int = 4  # the panel's examples (0: the two models alone)
    panel_tuned_fewshot: int = 2  # a fourth voter: the adapter's answer with this many examples (0: the panel of three)
    panel_judge: str = "vote"  # vote: the most-voted result | reviewer: the result whose SQL makes the question likeliest
    #                            under the untuned model (`vote.review_scores`), where the voters disagree


@dataclass
class AugmentSection:
    enabled: bool = False  # run the augment-and-retrain round after the first training
    max: int = 50  # most new pairs to keep
    model: str | None = None  # model that writes the questions (default: the run's base model)
    roundtrip: bool = True  # keep a pair only if the tuned model reads its question back to the same result


@dataclass
class SynthSection:
    """In-domain synthetic pairs before training (`sqltune.synth`, issue 14)."""

    # the settings synthesis takes default to `SynthConfig`'s (one place); the others are the run's
    enabled: bool = False
    k: int = SynthConfig.k  # pairs to keep (0: no synthesis, only the checkpoint rule below)
    teacher: str | None = None  # model that writes SQL/questions and reads them back (default: the run's model)
    reader: str | None = None  # a second model that must read each question back to the same result too
    sources: list[str] = field(default_factory=lambda: list(SynthConfig.sources))
    styles: list[str] = field(default_factory=lambda: list(SynthConfig.styles))
    questions: str = SynthConfig.questions  # model | template (no model: template questions, no read-back)
    readback: bool = SynthConfig.readback  # keep a pair only if the writer reads its question back to the same result
    readback_samples: int = SynthConfig.readback_samples  # >1: majority of sampled read-backs (sqltune.vote)
    question_attempts: int = SynthConfig.question_attempts  # >1: a rejected question's SQL gets another (next style)
    model_sql_per_level: int = SynthConfig.model_sql_per_level  # prompts per complexity level, model-written SQL
    sql_temperature: float = SynthConfig.sql_temperature  # >0: the model-written SQL is sampled
    overgenerate: float = SynthConfig.overgenerate  # SQL candidates given a question per wanted pair
    sql_max_new_tokens: int | None = SynthConfig.sql_max_new_tokens  # token limit of the model-written SQL (None: auto)
    seed_weight: int = 3  # each seed pair appears this many times in the training data
    heldout_fraction: float = 0.2  # share of synthetic pairs held out to join valid in the checkpoint choice
    select_z: float = 1.0  # a trained checkpoint must beat the untuned model by z standard errors
    seed: int = SynthConfig.seed

    def validate(self) -> "SynthSection":
        """Bad settings fail when the recipe is read, not minutes later when the synth stage starts; what
        synthesis itself takes is checked by `SynthConfig.validate`, the rest here."""
        def bad(msg):
            raise SqltuneError(f"synth.{msg}")

        if self.k < 0:
            bad(f"k must be >= 0, got {self.k}")
        if self.seed_weight < 1:
            bad(f"seed_weight must be at least 1, got {self.seed_weight}")
        if not 0 <= self.heldout_fraction < 1:
            bad(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.select_z < 0:
            bad(f"select_z must be >= 0, got {self.select_z}")
        if self.reader and not (self.readback and self.questions == "model"):
            bad("reader checks the model's read-back: it needs questions: model and readback: true")
        SynthConfig.from_section(asdict(self)).validate()
        return self


# `train:` keys of a recipe that are not TrainConfig's: they say whether `sqltune run` trains at all
_TRAIN_RUN_ONLY = {"enabled": bool}  # false: no synth, SFT, GRPO or augment round; the untuned model answers (stage
#                                      `answer`, as `sqltune answer` without an adapter)


def _train_defaults() -> dict:
    return {"enabled": True, **{k: v for k, v in TrainConfig().to_dict().items() if k not in _TRAIN_ELSEWHERE}}


@dataclass
class Recipe:
    name: str = "custom"
    description: str = ""
    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    out: str | None = None  # run folder (default: runs/<timestamp>)
    data: DataSection = field(default_factory=DataSection)
    prompt: PromptSection = field(default_factory=PromptSection)
    train: dict = field(default_factory=_train_defaults)  # TrainConfig keys not kept elsewhere
    eval: EvalSection = field(default_factory=EvalSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    synth: SynthSection = field(default_factory=SynthSection)
    rl: RLConfig = field(default_factory=RLConfig)  # GRPO after the supervised stage (issue 16; `rl.py`)
    source: str | None = None  # the file it was read from (not a setting)

    def train_config(self) -> TrainConfig:
        """The fine-tuning settings, gathered from every section."""
        return TrainConfig(**{k: v for k, v in self.train.items() if k not in _TRAIN_RUN_ONLY}, model=self.model, device=self.device, dtype=self.dtype,
                           prompt_style=self.prompt.style, notes=self.data.notes,
                           eval_batch_size=self.eval.batch_size, eval_max_new_tokens=self.eval.max_new_tokens,
                           eval_retries=self.eval.retries, eval_timeout=self.eval.timeout, eval_fewshot=self.eval.fewshot)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        return d

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def train_items(self) -> list[dict]:
        """`data.train` plus every `data.extra` spec (only the training part of a split `data.train`)."""
        return self.items()["train"]

    def items(self, no_pairs_file: str | os.PathLike | None = None) -> dict[str, list[dict]]:
        """{"train", "valid"[, "test"]: items}: `data.train` (+ `data.extra`), `data.valid`, `data.test`;
        with `data.split`, valid (and test when `data.test` is null) are carved out of `data.train`.
        `data.train: synth` (no pairs of one's own) reads `no_pairs_file`, the pairs `sqltune run` wrote from the
        database alone; only `run` writes them, so anything else is refused."""
        from .dataset import NO_PAIRS, load_items, split_by_sql

        d = self.data
        train = d.train
        if train == NO_PAIRS:
            if no_pairs_file is None:
                raise SqltuneError(f"data.train: {NO_PAIRS} means no pairs of one's own, written from the database by "
                                   "`sqltune run`; here give pairs (--train FILE; `sqltune synth` writes some)")
            train = no_pairs_file
        if d.split:
            items = split_by_sql(load_items(train), with_test=not d.test)
            if d.test:
                items["test"] = load_items(d.test)
        else:
            items = {"train": load_items(train), "valid": load_items(d.valid)}
            if d.test:
                items["test"] = load_items(d.test)
        for spec in d.extra:
            items["train"] = items["train"] + load_items(spec)
        return items


SECTIONS = {"data": DataSection, "prompt": PromptSection, "eval": EvalSection, "augment": AugmentSection,
            "synth": SynthSection, "rl": RLConfig}
TOP_LEVEL = [f.name for f in fields(Recipe) if f.name != "source"]


# ---------------------------------------------------------------- names
def list_recipes() -> list[dict]:
    """The shipped recipes: {name, description, model, method, path}."""
    out = []
    for p in sorted(PACKAGED_RECIPES.glob("*.yaml")):
        r = load_recipe(p)
        out.append({"name": p.stem, "description": r.description, "model": r.model, "method": r.train["method"],
                    "path": str(p)})
    return out


def recipe_path(name_or_path: str | os.PathLike) -> Path:
    text = str(name_or_path)
    p = Path(text).expanduser()
    if p.suffix in (".yaml", ".yml") or os.sep in text or p.is_file():
        if not p.is_file():
            raise SqltuneError(f"recipe file not found: {p}")
        return p
    shipped = PACKAGED_RECIPES / f"{text}.yaml"
    if shipped.is_file():
        return shipped
    known = sorted(q.stem for q in PACKAGED_RECIPES.glob("*.yaml"))
    close = difflib.get_close_matches(text, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UnknownNameError(f"unknown recipe '{text}'{hint}; shipped recipes: {', '.join(known)}; or give a .yaml file")


# ---------------------------------------------------------------- loading and checking
def load_recipe(name_or_path: str | os.PathLike | None = None, overrides: dict | None = None) -> Recipe:
    """Read, override and validate a recipe (a shipped name or a YAML file; default: `default`)."""
    import yaml

    path = recipe_path(name_or_path or "default")
    label = path.stem if path.parent == PACKAGED_RECIPES else str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SqltuneError(f"recipe {label}: not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise SqltuneError(f"recipe {label}: not valid YAML ({str(e).splitlines()[0]})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SqltuneError(f"recipe {label}: expected a mapping of settings at the top, got {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    for key, value in _flatten(overrides or {}).items():
        _set(raw, key, value, label)
    recipe = build_recipe(raw, label)
    recipe.source = str(path)
    return recipe


def build_recipe(raw: dict, label: str = "recipe") -> Recipe:
    """A validated Recipe from a plain mapping (as read from YAML)."""
    raw = dict(raw)
    _check_keys(raw, TOP_LEVEL, label, "")
    from .dataset import is_text

    for key, value in _flatten(raw).items():  # a command-line value or path the terminal could not decode
        if not is_text(value):
            raise SqltuneError(f"recipe {label}: {key} is not UTF-8 text ({value!r}); the run could not record it")
    kwargs = {}
    hints = typing.get_type_hints(Recipe)
    for key, value in raw.items():
        if key in SECTIONS:
            kwargs[key] = _section(SECTIONS[key], value, label, key)
        elif key == "train":
            kwargs[key] = _train_section(value, label)
        else:
            kwargs[key] = _coerce(value, hints[key], label, key)
    recipe = Recipe(**kwargs)
    try:
        recipe.train_config().validate()
    except SqltuneError as e:
        raise SqltuneError(f"recipe {label}: {str(e).removeprefix('train config: ')}") from None
    try:
        recipe.synth.validate()
    except SqltuneError as e:
        raise SqltuneError(f"recipe {label}: {e}") from None
    try:
        recipe.rl.validate()
    except SqltuneError as e:
        raise SqltuneError(f"recipe {label}: rl.{str(e).removeprefix('rl config: ')}") from None
    from .prompt import STYLES

    if not recipe.train["enabled"] and recipe.augment.enabled:
        raise SqltuneError(f"recipe {label}: augment.enabled retrains the run's adapter, but train.enabled is false "
                           "(no adapter); set train.enabled: true or augment.enabled: false")
    if recipe.data.valid is None and not recipe.data.split:
        raise SqltuneError(f"recipe {label}: data.valid is null; name a validation file or set data.split: true")
    if recipe.prompt.style not in STYLES:
        raise SqltuneError(f"recipe {label}: prompt.style must be one of {', '.join(STYLES)}, got '{recipe.prompt.style}'")
    from .vote import check_settings

    try:
        check_settings(recipe.eval.vote, recipe.eval.temperature, recipe.eval.top_p, where="eval.",
                       correct=recipe.eval.vote_correct, when=recipe.eval.vote_when)
    except SqltuneError as e:
        raise SqltuneError(f"recipe {label}: {e}") from None
    from .evaluate import check_fallback

    try:
        check_fallback(recipe.eval.fallback, "eval.fallback", vote=recipe.eval.vote)
    except SqltuneError as e:
        raise SqltuneError(f"recipe {label}: {e}") from None
    if not isinstance(recipe.eval.repair, bool):
        raise SqltuneError(f"recipe {label}: eval.repair must be true or false, got {recipe.eval.repair!r}")
    from .evaluate import check_panel_judge

    check_panel_judge(recipe.eval.panel_judge, f"recipe {label}: eval.panel_judge")
    for key in ("panel_fewshot", "panel_tuned_fewshot"):
        v = getattr(recipe.eval, key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise SqltuneError(f"recipe {label}: eval.{key} must be a whole number >= 0, got {v!r}")
    return recipe


def _section(cls, value, label: str, name: str):
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise SqltuneError(f"recipe {label}: section '{name}' must be a mapping, got {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    _check_keys(value, list(hints), label, name + ".")
    return cls(**{k: _coerce(v, hints[k], label, f"{name}.{k}") for k, v in value.items()})


def _train_section(value, label: str) -> dict:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise SqltuneError(f"recipe {label}: section 'train' must be a mapping, got {type(value).__name__}")
    hints = {**_TRAIN_RUN_ONLY,
             **{k: v for k, v in typing.get_type_hints(TrainConfig).items() if k not in _TRAIN_ELSEWHERE}}
    for k in value:
        if k in _TRAIN_ELSEWHERE:
            raise SqltuneError(f"recipe {label}: train.{k} is set as {_TRAIN_ELSEWHERE[k]} in a recipe")
    _check_keys(value, list(hints), label, "train.")
    out = _train_defaults()
    out.update({k: _coerce(v, hints[k], label, f"train.{k}") for k, v in value.items()})
    return out


def _check_keys(mapping: dict, allowed: list[str], label: str, prefix: str) -> None:
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (known: {', '.join(prefix + a for a in allowed)})"
            raise SqltuneError(f"recipe {label}: unknown key '{prefix}{key}'{hint}")


def _type_name(tp) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        base = " or ".join(_type_name(a) for a in args)
        return base + " or null"
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(args[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a mapping"}.get(tp, str(tp))


def _coerce(value, tp, label: str, key: str):
    """`value` as type `tp`; strings (from the command line) are parsed. Errors name the key."""
    def fail():
        raise SqltuneError(f"recipe {label}: {key} must be {_type_name(tp)}, got {value!r}")

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            if type(None) in args:
                return None
            fail()
        inner = [a for a in args if a is not type(None)]
        for a in inner:
            try:
                return _coerce(value, a, label, key)
            except SqltuneError:
                continue
        fail()
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            fail()
        return [_coerce(v, args[0], label, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        fail()
    if tp is int:
        if isinstance(value, bool):
            fail()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                fail()
        fail()
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            fail()
        try:  # YAML 1.1 reads 2e-4 as a string
            f = float(value)
        except (ValueError, OverflowError):
            fail()
        if not math.isfinite(f):  # no setting means anything at nan or inf (lr=inf trains to nan, epochs=1e400 forever)
            raise SqltuneError(f"recipe {label}: {key} must be a finite number, got {value!r}")
        return f
    if tp is str:
        if isinstance(value, bool) or isinstance(value, (list, dict)) or value is None:
            fail()
        return str(value)
    if tp is dict:
        if not isinstance(value, dict):
            fail()
        return value
    return value


def _flatten(overrides: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1}} and {"train.lr": 1} alike -> {"train.lr": 1}."""
    out = {}
    for k, v in overrides.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and (key in SECTIONS or key == "train"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _set(raw: dict, dotted: str, value, label: str) -> None:
    parts = dotted.split(".")
    if len(parts) > 2:
        raise SqltuneError(f"override {dotted}: use SECTION.KEY or KEY")
    if len(parts) == 2:
        section = raw.get(parts[0])
        if section is None:
            section = raw[parts[0]] = {}
        if not isinstance(section, dict):
            raise SqltuneError(f"recipe {label}: '{parts[0]}' is not a section")
        section[parts[1]] = value
    else:
        raw[dotted] = value


def parse_set(pairs: list[str]) -> dict:
    """Command-line `--set KEY=VALUE` pairs -> overrides (values parsed as YAML scalars)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SqltuneError(f"--set expects KEY=VALUE (e.g. train.lr=1e-4), got '{pair}'")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = value
    return out
