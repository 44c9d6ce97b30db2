"""CPU tests of the GPU tooling (issue 7): wheel folder, weight split/join, accelerate configs, device
choice, and that the benchmarks import only public names of sqltune."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from repo_scripts import load_script

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def weights():
    return load_script("scripts/gpu_weights.py", "gpu_weights")


# ------------------------------------------------------------------------------------------- wheels
def test_wheels_dry_run_builds_the_documented_commands(tmp_path):
    env = dict(os.environ, PYTHON="python3", WHEEL_DIR=str(tmp_path / "w"))
    out = subprocess.run(["bash", str(REPO / "scripts" / "gpu_wheels.sh"), "--dry-run"], env=env, check=True,
                         capture_output=True, text=True).stdout
    dl = next(line for line in out.splitlines() if " download " in line)
    for flag in ["--no-deps", "--only-binary=:all:", "--python-version 3.12", "--implementation cp",
                 "--platform manylinux_2_28_x86_64", "--platform manylinux2014_x86_64", f"-d {tmp_path / 'w'}"]:
        assert flag in dl, flag
    for pkg in ["transformers==", "sqlglot==", "gguf==", "trl==", "datasets==", "dill==", "multiprocess==", "fastapi==", "uvicorn==",
                "pydantic-core=="]:
        assert pkg in dl, pkg
    assert "torch" not in dl  # the image's own stays (transformers travels: its 5.17 repeats the KV heads per step)
    assert any("pip wheel --no-deps" in line and line.rstrip().endswith(" .") for line in out.splitlines())
    assert not (tmp_path / "w").exists()  # dry run: nothing made


def test_wheel_pins_match_pyproject():
    text = (REPO / "pyproject.toml").read_text()
    sh = (REPO / "scripts" / "gpu_wheels.sh").read_text()
    for pkg in ["transformers", "sqlglot", "gguf", "trl", "fastapi", "starlette", "uvicorn"]:
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
    # a part travels with the working tree (the device tool's limit is 64 MiB a call, tree included):
    # the files a call sends must leave room for it (62 MB parts stopped fitting once the tree passed 4.9 MiB)
    tree = weights.tree_bytes()
    if tree is None:
        pytest.skip("not a git checkout")
    weights.check_fits({"parts": [{"size": weights.PART_SIZE}]}, tree)  # SystemExit: no room for a part


def test_parts_that_no_longer_fit_beside_the_tree_are_refused(weights, tmp_path):
    """`calls` and `split` refuse a part size that, with the working tree, passes the 64 MiB a call carries
    (session 8 lost a lease start to 58 MB parts split when the tree was smaller)."""
    man = {"parts": [{"name": "part01", "size": 58_000_000}, {"name": "part02", "size": 1_000}]}
    with pytest.raises(SystemExit, match="no longer fit a device call beside the 8.6 MiB working tree"):
        weights.check_fits(man, 9_000_000)
    weights.check_fits(man, 5_000_000)  # 58 MB + 5 MB + 1 MiB < 64 MiB
    weights.check_fits(man, None)  # not a checkout: nothing to measure
    tree = weights.tree_bytes()  # (that the default part size fits this checkout: the test above)
    out = tmp_path / "w"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({**man, "name": "m.gguf", "sha256": "x", "size": 1}))
    r = subprocess.run([sys.executable, str(weights.REPO / "scripts" / "gpu_weights.py"), "calls", "--out", str(out)],
                       capture_output=True, text=True)
    if tree is not None and 58_000_000 + tree + 2**20 >= 64 * 2**20:
        assert r.returncode != 0 and "split again" in r.stderr and r.stdout == ""

def test_cli_split_a_file_prints_calls(tmp_path):
    src = _payload(tmp_path, 3_000)
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_weights.py"), "split", "--file", str(src),
                          "--out", str(tmp_path / "p"), "--part-size", "1000"], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    assert out[0].startswith("3 parts")
    assert [json.loads(line)["command"].split()[2] for line in out[1:]] == ["receive"] * 3 + ["join"]


@pytest.mark.parametrize("args", [["receive", "{tmp}/nowhere/part01", "--dest", "{tmp}/dest"],
                                  ["split", "--file", "{tmp}/no-such.gguf", "--out", "{tmp}/p"],
                                  ["split", "--model", "no-such-model", "--out", "{tmp}/p"]])
def test_cli_bad_input_is_one_line_not_a_traceback(tmp_path, args):
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_weights.py"), *[a.format(tmp=tmp_path) for a in args]],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error:")
    assert not (tmp_path / "p").exists() and not (tmp_path / "dest" / "part01").exists()


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


# ------------------------------------------------------------------------------------------- benchmarks
def test_benchmarks_use_only_public_names_of_the_package():
    """benchmarks/ time the shipped code: no private name of sqltune is imported or reached into."""
    import ast

    for path in sorted((REPO / "benchmarks").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqltune"):
                assert not any(part.startswith("_") for part in node.module.split(".")), (path.name, node.module)
                assert not [a.name for a in node.names if a.name.startswith("_")], (path.name, node.module)
