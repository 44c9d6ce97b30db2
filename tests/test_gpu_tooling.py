"""CPU tests of the GPU tooling (issue 7): wheel folder, weight split/join, accelerate configs, device
choice, and the shared-prefix batch layout the GPU benchmarks use."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def weights():
    return _load("gpu_weights", REPO / "scripts" / "gpu_weights.py")


@pytest.fixture(scope="module")
def common():
    sys.path.insert(0, str(REPO / "benchmarks"))
    return _load("gpu_common", REPO / "benchmarks" / "gpu_common.py")


# ------------------------------------------------------------------------------------------- wheels
def test_wheels_dry_run_builds_the_documented_commands(tmp_path):
    env = dict(os.environ, PYTHON="python3", WHEEL_DIR=str(tmp_path / "w"))
    out = subprocess.run(["bash", str(REPO / "scripts" / "gpu_wheels.sh"), "--dry-run"], env=env, check=True,
                         capture_output=True, text=True).stdout
    dl = next(line for line in out.splitlines() if " download " in line)
    for flag in ["--no-deps", "--only-binary=:all:", "--python-version 3.12", "--implementation cp",
                 "--platform manylinux_2_28_x86_64", "--platform manylinux2014_x86_64", f"-d {tmp_path / 'w'}"]:
        assert flag in dl, flag
    for pkg in ["sqlglot==", "gguf==", "trl==", "datasets==", "dill==", "multiprocess=="]:
        assert pkg in dl, pkg
    assert "torch" not in dl and "transformers" not in dl  # the image's own stay
    assert any("pip wheel --no-deps" in line and line.rstrip().endswith(" .") for line in out.splitlines())
    assert not (tmp_path / "w").exists()  # dry run: nothing made


def test_wheel_pins_match_pyproject():
    text = (REPO / "pyproject.toml").read_text()
    sh = (REPO / "scripts" / "gpu_wheels.sh").read_text()
    for pkg in ["sqlglot", "gguf", "trl"]:
        pin = next(line.strip().strip('",') for line in text.splitlines() if line.strip().startswith(f'"{pkg}=='))
        assert f'"{pin}"' in sh, pin


# ------------------------------------------------------------------------------------------- weights
def _payload(tmp_path: Path, size: int) -> Path:
    p = tmp_path / "model.gguf"
    p.write_bytes(random.Random(size).randbytes(size))
    return p


@pytest.mark.parametrize("size,part", [(10_000, 3_000), (9_000, 3_000), (100, 1_000)])
def test_split_receive_join_round_trip(weights, tmp_path, size, part):
    src = _payload(tmp_path, size)
    out, dest = tmp_path / "parts", tmp_path / "dest"
    man = weights.split([src], out, "model.gguf", part)
    assert man["sha256"] == weights.sha256_file(src) and man["size"] == size
    assert len(man["parts"]) == -(-size // part)
    assert all(p["size"] <= part for p in man["parts"]) and sum(p["size"] for p in man["parts"]) == size
    for p in man["parts"]:
        weights.receive(out / p["name"], dest)
    joined = weights.join(dest)
    assert joined.read_bytes() == src.read_bytes()
    assert not list(dest.glob("part??"))  # parts removed once joined
    assert weights.join(dest) == joined  # idempotent: already joined and verified


def test_split_concatenates_several_sources(weights, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * 2500)
    b.write_bytes(b"y" * 1700)
    man = weights.split([a, b], tmp_path / "parts", "ab", 1000)
    assert [p["size"] for p in man["parts"]] == [1000, 1000, 1000, 1000, 200]
    for p in man["parts"]:
        weights.receive(tmp_path / "parts" / p["name"], tmp_path / "d")
    assert weights.join(tmp_path / "d").read_bytes() == b"x" * 2500 + b"y" * 1700


def test_join_refuses_damaged_or_missing_parts(weights, tmp_path):
    src = _payload(tmp_path, 5_000)
    out, dest = tmp_path / "parts", tmp_path / "dest"
    man = weights.split([src], out, "model.gguf", 2_000)
    for p in man["parts"]:
        weights.receive(out / p["name"], dest)
    (dest / "part02").unlink()
    with pytest.raises(SystemExit, match="missing parts.*part02"):
        weights.join(dest)
    weights.receive(out / "part02", dest)
    with open(dest / "part01", "r+b") as f:
        f.write(b"\0\0\0")
    with pytest.raises(SystemExit, match="part01 sha256 mismatch"):
        weights.join(dest, keep_parts=True)
    # a part damaged in transit is refused on arrival
    with open(out / "part03", "r+b") as f:
        f.write(b"\1\1")
    with pytest.raises(SystemExit, match="arrived damaged"):
        weights.receive(out / "part03", dest)


def test_run_calls_carry_one_part_each_under_the_limit(weights, tmp_path):
    out = weights.REPO / ".gpu" / "test-weights-calls"
    try:
        src = _payload(tmp_path, 2_500)
        man = weights.split([src], out, "model.gguf", 1_000)
        calls = weights.run_calls(man, out)
        assert len(calls) == len(man["parts"]) + 1
        for c, p in zip(calls, man["parts"]):
            assert c["carry"] == [f".gpu/test-weights-calls/{p['name']}", ".gpu/test-weights-calls/manifest.json"]
            assert c["command"].startswith("python3 scripts/gpu_weights.py receive ")
            assert len(c["command"]) <= 2000
        assert "join" in calls[-1]["command"]
    finally:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
    assert weights.PART_SIZE == 62_000_000
    assert weights.PART_SIZE + 2 * 2**20 < 64 * 2**20  # a part plus the repo and manifest fit one call


def test_cli_split_a_file_prints_calls(tmp_path):
    src = _payload(tmp_path, 3_000)
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_weights.py"), "split", "--file", str(src),
                          "--out", str(tmp_path / "p"), "--part-size", "1000"], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    assert out[0].startswith("3 parts")
    assert [json.loads(line)["command"].split()[2] for line in out[1:]] == ["receive"] * 3 + ["join"]


# ------------------------------------------------------------------------------------------- accelerate
@pytest.mark.parametrize("name,kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP")])
def test_accelerate_configs_parse(name, kind):
    import yaml
    from accelerate.commands.config.config_args import ClusterConfig

    path = REPO / "configs" / "accelerate" / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    assert raw["distributed_type"] == kind and raw["mixed_precision"] == "bf16"
    cfg = ClusterConfig.from_yaml_file(str(path))
    assert str(cfg.distributed_type).endswith(kind) and cfg.num_processes == 2 and cfg.num_machines == 1
    if name == "fsdp":
        assert cfg.fsdp_config["fsdp_version"] == 2
        assert cfg.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert cfg.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "Qwen2DecoderLayer"


# ------------------------------------------------------------------------------------------- device choice
def _fake_cuda(monkeypatch, available: bool, bf16: bool = True):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_pick_device_prefers_cuda_bf16(monkeypatch):
    from sqltune.model import pick_device

    _fake_cuda(monkeypatch, True, True)
    d = pick_device()
    assert (d.device, d.dtype, d.autocast) == ("cuda", "bfloat16", False)
    assert pick_device("auto", "auto").device == "cuda"
    assert pick_device("cuda:1").device == "cuda:1"
    assert pick_device("cuda", "float32").dtype == "float32"


def test_pick_device_fp16_on_cuda_without_bf16(monkeypatch):
    from sqltune.model import pick_device

    _fake_cuda(monkeypatch, True, False)
    assert pick_device().dtype == "float16"


def test_pick_device_without_cuda(monkeypatch):
    from sqltune.errors import SqltuneError
    from sqltune.model import pick_device

    _fake_cuda(monkeypatch, False)
    d = pick_device()
    assert d.device == "cpu" and d.dtype == "float32"
    with pytest.raises(SqltuneError, match="CUDA is not available"):
        pick_device("cuda")


# ------------------------------------------------------------------------------------------- batch layouts
def synthetic(common, n=6, prefix_len=40, vocab=500, seed=0):
    rng = random.Random(seed)
    prefix = [rng.randrange(3, vocab) for _ in range(prefix_len)]
    items = []
    for _ in range(n):
        q = [rng.randrange(3, vocab) for _ in range(rng.randint(3, 9))]
        c = [rng.randrange(3, vocab) for _ in range(rng.randint(2, 7))]
        items.append((prefix + q, c))
    return common.Tokenized(prefix, items)


def test_shared_prefix_mask_and_positions(common):
    data = synthetic(common, n=3, prefix_len=5)
    b = common.shared_prefix_batch(data, [0, 1, 2], pad_to=8)
    m = b["attention_mask"][0, 0]
    pos = b["position_ids"][0].tolist()
    P = 5
    lens = [len(data.tail(i)[0]) for i in range(3)]
    starts = [P, P + lens[0], P + lens[0] + lens[1]]
    T = sum(lens) + P
    assert m.shape[0] % 8 == 0 and m.shape[0] >= T
    for s, L in zip(starts, lens):
        assert pos[s: s + L] == list(range(P, P + L))  # positions restart after the prefix
        for i in range(s, s + L):
            assert m[i, :P].all()  # every tail sees the whole prefix
            assert m[i, s: i + 1].all() and not m[i, i + 1:].any()  # itself causally, nothing later
            assert not m[i, P:s].any()  # and no earlier tail
    assert not m[:P, P:].any()
    assert m[T:, :T].sum() == 0 and all(m[i, i] for i in range(T, m.shape[0]))  # padding sees only itself
    lab = b["labels"][0].tolist()
    assert lab[:P] == [common.IGNORE] * P and all(lab[s] == common.IGNORE for s in starts)
    assert common.label_tokens(b) == sum(len(c) for _, c in data.items)


def _tiny_qwen(vocab=500):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    return Qwen2ForCausalLM._from_config(cfg, attn_implementation="sdpa").float()


def test_shared_prefix_loss_and_grads_equal_padded(common):
    import torch

    data = synthetic(common)
    model = _tiny_qwen()
    idx = [4, 0, 2, 5]
    grads, losses = [], []
    for b in (common.padded_batch(data, idx, pad_id=0), common.shared_prefix_batch(data, idx),
              common.shared_prefix_batch(data, idx, pad_to=64)):
        model.zero_grad()
        loss, n = common.lm_loss(model, b)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        assert int(n) == sum(len(data.items[i][1]) for i in idx)
    hf = model(input_ids=common.padded_batch(data, idx, 0)["input_ids"],
               attention_mask=common.padded_batch(data, idx, 0)["attention_mask"],
               labels=common.padded_batch(data, idx, 0)["labels"]).loss.item()
    assert losses[1] == pytest.approx(losses[0], rel=1e-5) and losses[2] == pytest.approx(losses[0], rel=1e-5)
    assert hf == pytest.approx(losses[0], rel=1e-5)
    for g in grads[1:]:
        assert ((g - grads[0]).norm() / grads[0].norm()).item() < 1e-5


def test_flop_count(common):
    from transformers import Qwen2Config

    cfg = Qwen2Config(**common.QWEN25_15B)
    body, head = common.n_params(cfg)
    assert 1.30e9 < body < 1.32e9 and head == 151936 * 1536  # Qwen2.5-1.5B: 1.31B non-embedding
    data = synthetic(common, n=4)
    b = common.padded_batch(data, [0, 1, 2, 3], 0)
    full, lora = common.flops(cfg, b, "full"), common.flops(cfg, b, "lora")
    att = 4 * 12 * 128 * common.attention_pairs(b) * 28
    lin = 2 * body * common.body_tokens(b) + 2 * head * common.label_tokens(b)
    assert full == 3 * lin + 3 * att and lora == 2 * lin + 3 * att
    assert common.body_tokens(b) == sum(len(p) + len(c) for p, c in data.items)


def test_examples_are_valid_sql_on_the_exoplanets_db(common, exo_db):
    from sqltune import execute

    for e in common.make_examples(len(common.TEMPLATES) * 2, seed=3):
        r = execute(exo_db, e["sql"])
        assert r.ok and r.rows, e


def test_clean_sql(common):
    assert common.clean_sql("```sql\nSELECT 1;\n```") == "SELECT 1"
    assert common.clean_sql(" SELECT a FROM t; SELECT 2") == "SELECT a FROM t"
