"""Trained checkpoints on disk: write them atomically, read them back, merge adapters.

A checkpoint folder holds an adapter (`adapter_config.json` + weights, LoRA/DoRA/QLoRA) or a whole
model (`config.json` + weights, full fine-tuning or a merged adapter), the tokenizer,
`sqltune_checkpoint.json` and an empty `COMPLETE` file. `sqltune_checkpoint.json` carries what
inference needs to use the checkpoint correctly: the base model, the method, and the prompt it was
trained with (`prompt`: style, rendered template + sha256, schema text, few-shot examples).

A folder is written under a temporary name and renamed into place once everything (the `COMPLETE`
marker last) is on disk, so a half-written checkpoint is never taken for a finished one: readers
refuse a folder without the marker.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, NamedTuple

from .errors import SqltuneError
from .prompt import PromptBuilder, check_fingerprint

CHECKPOINT_META = "sqltune_checkpoint.json"
COMPLETE = "COMPLETE"
FORMAT = 1


class TrainedModel(NamedTuple):
    model: object
    tokenizer: object
    info: dict  # sqltune_checkpoint.json
    builder: PromptBuilder  # the prompt the checkpoint was trained with (or the caller's, once checked)


# ---------------------------------------------------------------- writing
def write_checkpoint(out_dir: str | os.PathLike, write: Callable[[Path], None], info: dict,
                     extra_files: dict[str, str] | None = None) -> Path:
    """Write a checkpoint folder atomically: `write(tmp)` saves the weights/tokenizer into a temporary
    folder, then the metadata, `extra_files` ({name: text}) and the COMPLETE marker go in, and the
    folder is renamed to `out_dir` (replacing an older one)."""
    from .files import OWNER_FILE, atomic_path, check_replaceable

    out = Path(out_dir)
    check_replaceable(out)  # only a folder sqltune wrote is ever replaced
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, folder=True) as tmp:
        write(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        (tmp / CHECKPOINT_META).write_text(json.dumps({"format": FORMAT, **info}, indent=2, default=str), encoding="utf-8")
        (tmp / OWNER_FILE).write_text(json.dumps({"written_by": "sqltune", "kind": "checkpoint"}) + "\n")
        (tmp / COMPLETE).write_text("")
    return out


# ---------------------------------------------------------------- reading
def is_complete(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / COMPLETE).is_file() and (p / CHECKPOINT_META).is_file()


def read_info(path: str | os.PathLike) -> dict:
    """`sqltune_checkpoint.json` of a finished checkpoint folder; a clear error for anything else."""
    p = Path(path)
    if not p.is_dir():
        raise SqltuneError(f"checkpoint folder not found: {p}")
    if not (p / CHECKPOINT_META).is_file():
        raise SqltuneError(f"{p} is not a sqltune checkpoint (no {CHECKPOINT_META})")
    if not (p / COMPLETE).is_file():
        raise SqltuneError(f"{p} is an unfinished checkpoint (no {COMPLETE} marker); resume or rerun the training")
    try:
        info = json.loads((p / CHECKPOINT_META).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SqltuneError(f"{p / CHECKPOINT_META}: not valid JSON ({e.msg})") from None
    if not isinstance(info, dict) or not isinstance(info.get("prompt"), dict):
        raise SqltuneError(f"{p / CHECKPOINT_META}: no 'prompt' section (style, template, sha256)")
    return info


def is_untuned(model: str | os.PathLike | None = None, adapter: str | os.PathLike | None = None) -> bool:
    """Whether the model these name answers as the untuned model does (`evaluate.untuned_panel`): no adapter and a
    model that is not a sqltune checkpoint (a packaged name, a hub id, a plain model folder), or a checkpoint whose
    training kept step 0 (`chosen.untrained`) from the untuned model (GRPO's step 0 is the checkpoint it started from:
    untuned only if that one is). An unreadable checkpoint is not untuned."""
    path = adapter if adapter is not None else model
    if path is None or not (Path(path) / CHECKPOINT_META).is_file():
        return adapter is None
    try:
        info = read_info(path)
    except SqltuneError:
        return False
    if not (info.get("chosen") or {}).get("untrained"):
        return False
    start = info.get("init_checkpoint")
    return True if not start else Path(start).is_dir() and is_untuned(adapter=start)


def is_adapter(path: str | os.PathLike) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def saved_builder(info: dict) -> PromptBuilder:
    """The prompt builder a checkpoint was trained with, rebuilt from its metadata."""
    p = info["prompt"]
    if "schema" not in p:
        raise SqltuneError("the checkpoint does not record its schema text; pass the prompt builder to check against")
    return PromptBuilder(p["schema"], p.get("style", "chat"), fewshot=list(p.get("fewshot") or []))


def load_trained(path: str | os.PathLike, device=None, builder: PromptBuilder | None = None,
                 merge: bool = False, base: str | None = None) -> TrainedModel:
    """(model, tokenizer, info, builder) of a finished checkpoint, ready for generation (`model.load`).

    `device`: a `model.DeviceConfig`, a device name or None (picked automatically). `builder`: the
    prompt the caller is about to use (its DB's schema, its style); the checkpoint refuses to load
    when that prompt renders differently from the one it was trained with. Without `builder` the
    saved one is returned (and checked against the tokenizer). Adapters stay unmerged unless
    `merge` (merging is faster to generate with, unmerged is what training evaluated). `base`: `model.load`'s.
    """
    from .model import load

    info = read_info(path)
    loaded = load(path, device, builder=builder or saved_builder(info), merge=merge, base=base)
    return TrainedModel(loaded.model, loaded.tokenizer, loaded.info, loaded.builder)


def check_prompt(path: str | os.PathLike, builder: PromptBuilder, tokenizer) -> dict | None:
    """For a model folder that may be a sqltune checkpoint (e.g. `--model MERGED`): refuse it when it
    was trained with another prompt. Returns its info, or None for a plain model folder."""
    p = Path(path)
    if not (p / CHECKPOINT_META).is_file():
        return None
    info = read_info(p)
    check_fingerprint(info["prompt"], builder, tokenizer, where=f"model {p}")
    return info


# ---------------------------------------------------------------- merging
def merge(adapter_dir: str | os.PathLike, out_dir: str | os.PathLike, dtype: str = "float32",
          force: bool = False) -> Path:
    """Merge an adapter into its base model and save a standalone model folder that `--model OUT`
    loads. The checkpoint metadata travels with it, so the prompt lock still applies. An existing
    `out_dir` is replaced only with `force` and only when sqltune wrote it."""
    import torch

    from .files import check_replaceable, check_writable
    from .model import pick_device

    src = Path(adapter_dir)
    out = Path(out_dir)
    info = read_info(src)
    check_writable(out, "OUT", folder=True)
    if os.path.lexists(out):
        if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents or out.resolve() in src.resolve().parents:
            raise SqltuneError(f"OUT {out} is the adapter folder itself (or inside it); choose a new folder")
        check_replaceable(out, "OUT")
        if not force and any(out.iterdir()):
            raise SqltuneError(f"{out} already exists; choose another folder, or pass --force to replace it")
    if not is_adapter(src):
        raise SqltuneError(f"{src} holds a whole model, not an adapter: there is nothing to merge")
    if info.get("method") == "qlora":
        raise SqltuneError("a QLoRA adapter was trained on 4-bit weights; merge it on the GPU machine with the base in bf16")
    loaded = load_trained(src, pick_device("cpu", "float32"))
    model = loaded.model.merge_and_unload()
    model.to(getattr(torch, dtype))
    model.config.dtype = dtype

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        loaded.tokenizer.save_pretrained(tmp)
        for name in ("recipe.yaml", "metrics.jsonl"):
            if (src / name).is_file():
                shutil.copy2(src / name, tmp / name)

    merged = {k: v for k, v in info.items() if k != "format"}
    merged.update(merged_from=str(src.resolve()), adapter_method=info.get("method"), method="merged")
    return write_checkpoint(out_dir, write, merged)
