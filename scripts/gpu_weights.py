#!/usr/bin/env python3
"""Carry real model weights to the lent GPU machine, 36,000,000 bytes a call (PART_SIZE).

Only 64 MiB travels with each `run` call (working tree included), and files outside the repo copy
(under /root) survive between calls while the machine stays warm (30 s after each call). So:

  here:   python scripts/gpu_weights.py split                 # .gpu/weights/part01.. + manifest.json
          python scripts/gpu_weights.py calls                 # prints the run calls to make, in order
  there:  python3 scripts/gpu_weights.py receive .gpu/weights/part03   # one part a call -> /root/weights
          python3 scripts/gpu_weights.py join                 # join, verify sha256 of parts and whole
          python3 scripts/gpu_weights.py materialize          # GGUF -> bf16 safetensors in $SQLTUNE_HOME

`split` carries the default model's GGUF (491 MB, 14 parts) rather than the dequantised safetensors
(1.26 GB, 32 parts): the GPU image's transformers (5.17) dequantises GGUF with the same GgufConfig
call sqltune uses, given the gguf wheel from scripts/gpu_wheels.sh. `receive` and `join` use only the
standard library, so they run before any wheel is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

PART_SIZE = 36_000_000  # + the working tree (24.9 MiB as sent in session 31, when 40 MB parts stopped fitting) < 64 MiB a call
REPO = Path(__file__).resolve().parent.parent
CALL_LIMIT = 64 * 2**20  # what one device call carries: the working tree and the carried paths
DEFAULT_OUT = REPO / ".gpu" / "weights"
DEFAULT_DEST = Path("/root/weights")
MANIFEST = "manifest.json"
BLOCK = 1 << 22


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _source_streams(model: str | None, file: str | None) -> tuple[str, list[Path], str | None]:
    """(name of the joined file, source files to concatenate in order, expected sha256 or None)."""
    if file:
        p = Path(file)
        if not p.is_file():
            raise SystemExit(f"error: {p} not found")
        return p.name, [p], None
    sys.path.insert(0, str(REPO / "src"))
    from sqltune.model import PACKAGED

    if model not in PACKAGED:
        raise SystemExit(f"error: unknown packaged model '{model}' (one of: {', '.join(PACKAGED)})")
    spec = PACKAGED[model]
    return f"{model}.gguf", spec.part_paths(), spec.sha256


def split(sources: list[Path], out: Path, name: str, part_size: int = PART_SIZE,
          expected_sha256: str | None = None, model: str | None = None) -> dict:
    """Concatenate `sources` and cut the stream into parts of `part_size` bytes; write the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part*"):
        old.unlink()
    whole = hashlib.sha256()
    parts: list[dict] = []
    cur = None
    cur_hash = None
    cur_size = 0

    def close():
        nonlocal cur, cur_hash
        if cur is not None:
            cur.close()
            parts[-1].update(size=cur_size, sha256=cur_hash.hexdigest())
            cur = None

    for src in sources:
        with open(src, "rb") as f:
            while True:
                if cur is None or cur_size == part_size:
                    close()
                    pname = f"part{len(parts) + 1:02d}"
                    parts.append({"name": pname})
                    cur, cur_hash, cur_size = open(out / pname, "wb"), hashlib.sha256(), 0
                block = f.read(min(BLOCK, part_size - cur_size))
                if not block:
                    break
                whole.update(block)
                cur_hash.update(block)
                cur.write(block)
                cur_size += len(block)
    close()
    if parts and parts[-1]["size"] == 0:  # the stream ended exactly on a part boundary
        (out / parts[-1]["name"]).unlink()
        parts.pop()
    digest = whole.hexdigest()
    if expected_sha256 and digest != expected_sha256:
        raise SystemExit(f"error: sha256 of the joined source is {digest}, expected {expected_sha256}")
    manifest = {"name": name, "model": model, "sha256": digest, "size": sum(p["size"] for p in parts),
                "part_size": part_size, "parts": parts}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def run_calls(manifest: dict, out: Path, dest: Path = DEFAULT_DEST) -> list[dict]:
    """The device `run` calls that carry the parts, one a call, then join (and dequantise)."""
    rel = out.relative_to(REPO) if out.is_absolute() and out.is_relative_to(REPO) else out
    calls = []
    for p in manifest["parts"]:
        calls.append({
            "command": f"python3 scripts/gpu_weights.py receive {rel}/{p['name']} --dest {dest}",
            "carry": [f"{rel}/{p['name']}", f"{rel}/{MANIFEST}"],
        })
    calls.append({
        "command": f"python3 scripts/gpu_weights.py join --dest {dest}",
        "carry": [f"{rel}/{MANIFEST}"],
    })
    return calls


def tree_bytes(repo: Path = REPO) -> int | None:
    """Bytes of the working tree a device call sends (tracked and untracked-not-ignored files), counted as
    a tar of them takes: a 512-byte header per file and its content padded to 512 bytes (session 11: a 56 MB
    part was refused beside 10.0 MB of content in 1,319 files, which the plain sum let through); None outside
    a git checkout."""
    import subprocess

    try:
        r = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo, capture_output=True)
    except OSError:
        return None
    if r.returncode != 0:
        return None
    return sum(512 + -(-(repo / f).stat().st_size // 512) * 512
               for f in r.stdout.decode().split("\0") if f and (repo / f).is_file())


def check_fits(manifest: dict, tree: int | None) -> None:
    """Refuse parts that cannot travel: the largest part + its manifest + the working tree must stay under
    the device call's 64 MiB (58 MB parts split in an earlier session stopped fitting once the tree grew)."""
    if tree is None:
        return
    largest = max((p["size"] for p in manifest["parts"]), default=0)
    if largest + tree + 2**20 >= CALL_LIMIT:
        raise SystemExit(f"error: parts of {largest:,} bytes no longer fit a device call beside the "
                         f"{tree / 2**20:.1f} MiB working tree (64 MiB a call); split again with a smaller "
                         f"--part-size (default {PART_SIZE:,})")


def receive(part: Path, dest: Path) -> Path:
    """Copy one carried part (and the manifest beside it) into `dest`, checking the part's sha256."""
    manifest = json.loads((part.parent / MANIFEST).read_text())
    entry = next((p for p in manifest["parts"] if p["name"] == part.name), None)
    if entry is None:
        raise SystemExit(f"error: {part.name} is not in the manifest")
    got = sha256_file(part)
    if got != entry["sha256"]:
        raise SystemExit(f"error: {part.name} arrived damaged (sha256 {got}, expected {entry['sha256']})")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(part.parent / MANIFEST, dest / MANIFEST)
    tmp = dest / (part.name + ".tmp")
    shutil.copyfile(part, tmp)
    os.replace(tmp, dest / part.name)
    have = sorted(p.name for p in dest.glob("part??"))
    missing = [p["name"] for p in manifest["parts"] if p["name"] not in have]
    print(f"received {part.name} -> {dest}; missing: {', '.join(missing) or 'none'}")
    return dest / part.name


def join(dest: Path, out: Path | None = None, keep_parts: bool = False) -> Path:
    """Join the parts in `dest` in manifest order, verifying each part and the whole (sha256)."""
    manifest = json.loads((dest / MANIFEST).read_text())
    out = out or dest / manifest["name"]
    if out.is_file() and out.stat().st_size == manifest["size"] and sha256_file(out) == manifest["sha256"]:
        print(f"{out} already joined, sha256 {manifest['sha256']} OK")
        return out
    missing = [p["name"] for p in manifest["parts"] if not (dest / p["name"]).is_file()]
    if missing:
        raise SystemExit(f"error: missing parts in {dest}: {', '.join(missing)} (the machine went cold? resend them)")
    whole = hashlib.sha256()
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as w:
        for p in manifest["parts"]:
            h = hashlib.sha256()
            with open(dest / p["name"], "rb") as f:
                for block in iter(lambda: f.read(BLOCK), b""):
                    h.update(block)
                    whole.update(block)
                    w.write(block)
            if h.hexdigest() != p["sha256"]:
                tmp.unlink()
                raise SystemExit(f"error: {p['name']} sha256 mismatch")
    if whole.hexdigest() != manifest["sha256"]:
        tmp.unlink()
        raise SystemExit(f"error: joined sha256 {whole.hexdigest()} != {manifest['sha256']}")
    os.replace(tmp, out)
    if not keep_parts:
        for p in manifest["parts"]:
            (dest / p["name"]).unlink()
    print(f"joined {len(manifest['parts'])} parts -> {out} ({manifest['size']} bytes), sha256 {manifest['sha256']} OK")
    return out


def materialize(dest: Path, home: Path | None = None) -> Path:
    """Dequantise the joined GGUF into $SQLTUNE_HOME/models/<model>, where sqltune.load_model finds it."""
    manifest = json.loads((dest / MANIFEST).read_text())
    if home:
        os.environ["SQLTUNE_HOME"] = str(home)
    from sqltune.model import _cached_dir, dequantize_gguf  # needs the sqltune + gguf wheels there

    key = manifest.get("model") or "gguf-" + manifest["sha256"][:16]
    out = _cached_dir(key)
    if (out / "config.json").is_file():
        print(f"{out} already there")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    dequantize_gguf(dest / manifest["name"], out)
    print(f"dequantised -> {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split", help="cut the model into parts under --out and print the calls")
    s.add_argument("--model", default="qwen2.5-coder-0.5b", help="packaged model name")
    s.add_argument("--file", help="split this file instead of a packaged model")
    s.add_argument("--out", type=Path, default=DEFAULT_OUT)
    s.add_argument("--part-size", type=int, default=PART_SIZE)
    c = sub.add_parser("calls", help="print the run calls for parts already split")
    c.add_argument("--out", type=Path, default=DEFAULT_OUT)
    c.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    r = sub.add_parser("receive", help="(device) copy one carried part into --dest")
    r.add_argument("part", type=Path)
    r.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    j = sub.add_parser("join", help="(device) join the parts in --dest and verify sha256")
    j.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    j.add_argument("--out", type=Path)
    j.add_argument("--keep-parts", action="store_true")
    m = sub.add_parser("materialize", help="(device) dequantise the joined GGUF into the sqltune cache")
    m.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    m.add_argument("--home", type=Path, help="SQLTUNE_HOME to fill (default: the environment's)")
    a = ap.parse_args(argv)
    try:
        return _run(a)
    except Exception as e:  # noqa: BLE001 - one clear line for sqltune's errors and OS errors, not a traceback
        # (matched by name: receive/join run before the package is importable on the device)
        if not (isinstance(e, OSError) or any(c.__name__ == "SqltuneError" for c in type(e).__mro__)):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(a) -> int:
    if a.cmd == "split":
        name, sources, expected = _source_streams(None if a.file else a.model, a.file)
        out = a.out.resolve()
        check_fits({"parts": [{"size": a.part_size}]}, tree_bytes())
        man = split(sources, out, name, a.part_size, expected, None if a.file else a.model)
        print(f"{len(man['parts'])} parts of <= {a.part_size} bytes in {out}, sha256 {man['sha256']}")
        for call in run_calls(man, out):
            print(json.dumps(call))
    elif a.cmd == "calls":
        out = a.out.resolve()
        man = json.loads((out / MANIFEST).read_text())
        check_fits(man, tree_bytes())
        for call in run_calls(man, out, a.dest):
            print(json.dumps(call))
    elif a.cmd == "receive":
        receive(a.part, a.dest)
    elif a.cmd == "join":
        join(a.dest, a.out, a.keep_parts)
    elif a.cmd == "materialize":
        materialize(a.dest, a.home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
