"""Model set-up for training: device and dtype, loading through `model.load`, and the method applied
(LoRA / DoRA / QLoRA adapters added with peft, or the layers of a full fine-tune unfrozen)."""

from __future__ import annotations

from .errors import SqltuneError
from .shared_prefix import model_parts
from .train_config import TrainConfig


def device_and_dtype(cfg: TrainConfig):
    from .model import pick_device

    dev = pick_device(cfg.device, cfg.dtype)
    if cfg.method == "full" and cfg.dtype in (None, "auto") and dev.dtype != "float32":
        dev = type(dev)(dev.device, "float32", dev.device == "cuda" or dev.autocast)  # fp32 master weights + bf16 autocast
    return dev


def load_for_training(cfg: TrainConfig, dev):
    """(model, tokenizer, location) with the method applied (adapters added / layers unfrozen)."""
    import importlib.util

    from transformers import set_seed

    from .model import load

    set_seed(cfg.seed)  # (cuDNN's attention is off on CUDA wherever a model is loaded: model._from_pretrained)
    if cfg.method == "qlora":
        if not dev.device.startswith("cuda"):
            raise SqltuneError("qlora trains 4-bit weights through bitsandbytes, which needs CUDA; use --method lora here")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise SqltuneError("qlora needs bitsandbytes (pip install bitsandbytes); or use --method lora")
    model, tok, location = load(cfg.model, dev, quantize="nf4" if cfg.method == "qlora" else None)[:3]
    n_layers = model.config.get_text_config().num_hidden_layers
    layers = cfg.layers_to_transform
    if cfg.top_layers is not None:
        if cfg.top_layers > n_layers:
            raise SqltuneError(f"top_layers={cfg.top_layers} but the model has {n_layers} layers")
        layers = list(range(n_layers - cfg.top_layers, n_layers))
    if layers is not None and any(not 0 <= i < n_layers for i in layers):
        raise SqltuneError(f"layers_to_transform {layers} out of range: the model has {n_layers} layers (0-{n_layers - 1})")
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.method == "full":
        _, dec, _ = model_parts(model)
        if layers is None:
            model.requires_grad_(True)
        else:
            model.requires_grad_(False)
            for i in layers:
                dec.layers[i].requires_grad_(True)
    else:
        from peft import LoraConfig, get_peft_model

        if cfg.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias="none",
                          target_modules=list(cfg.target_modules), layers_to_transform=layers,
                          use_dora=cfg.method == "dora", task_type="CAUSAL_LM")
        try:
            model = get_peft_model(model, lora)
        except ValueError as e:
            raise SqltuneError(f"could not add {cfg.method} adapters: {str(e).splitlines()[0]}") from None
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
    model.train()
    return model, tok, location, layers, n_layers


def resolved_config(cfg: TrainConfig, layers, n_layers) -> dict:
    d = cfg.to_dict()
    d["layers_to_transform"] = layers
    d["num_layers"] = n_layers
    return d
