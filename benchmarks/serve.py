"""Benchmark `sqltune serve` against `sqltune ask` (issue 17), timing the shipped commands.

    python benchmarks/serve.py [--model qwen2.5-coder-0.5b] [--requests 64] [--clients 16] [--ask-runs 3]

1. `sqltune ask QUESTION --json` as a user runs it (a fresh process: load, schema prefix, decode),
   `--ask-runs` times.
2. `sqltune serve` started as a subprocess on a free loopback port; time until /api/health answers.
3. One client: the same questions one after another (latency after start-up).
4. `--clients` threads posting `--requests` questions in total (bounded): throughput, p50/p95, failures.
Questions are the exoplanets train split (the speed of serving, not accuracy, is measured).
Writes a JSON summary to --out (default benchmarks/results/serve.json) after every phase (a run cut
short still leaves what it measured) and prints it. The device is sqltune's choice (CUDA when there is
one); on the GPU image (docs/gpu.md) run it after the wheel preamble, e.g.

    python3 benchmarks/serve.py --model /root/sqh/models/qwen2.5-coder-1.5b --ask-runs 2 --single 8 \
        --requests 64 --clients 16 --out $OUT/serve_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float = 600) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def sqltune(*args: str, **kw):
    # the checkout's sources first, keeping what is already on the path (the GPU image's /tmp/site wheels)
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    return subprocess.Popen([sys.executable, "-m", "sqltune", *args], env=env, cwd=ROOT, **kw)


def accelerator() -> str:
    """The GPU's name (nvidia-smi), else 'cpu': where the server, which picks CUDA itself, ran."""
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                           text=True, timeout=20)
        return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else "cpu"
    except (OSError, subprocess.SubprocessError):
        return "cpu"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--single", type=int, default=8, help="questions asked one after another by one client")
    ap.add_argument("--ask-runs", type=int, default=3)
    ap.add_argument("--startup-timeout", type=float, default=900, help="seconds to wait for /api/health")
    ap.add_argument("--request-timeout", type=float, default=900, help="seconds one HTTP request may take")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    a = ap.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))  # `timeout`: stop the server on the way out

    sys.path.insert(0, str(ROOT / "src"))
    from sqltune.dataset import load_items

    questions = [i["question"] for i in load_items("exoplanets:train")]
    out: dict = {"model": a.model, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "load_average_start": os.getloadavg()[0], "accelerator": accelerator()}

    def save():  # after every phase
        out["load_average_end"] = os.getloadavg()[0]
        a.out.write_text(json.dumps(out, indent=2))

    # 1. sqltune ask, a fresh process per question (what a user runs today)
    ask = []
    for q in questions[: a.ask_runs]:
        t = time.perf_counter()
        p = sqltune("ask", q, "--json", "--model", a.model, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        p.communicate()
        ask.append(time.perf_counter() - t)
        print(f"ask: {ask[-1]:.2f} s (rc {p.returncode})", file=sys.stderr)
    out["ask_seconds"] = ask
    save()

    # 2. start the server
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t = time.perf_counter()
    log = a.out.with_suffix(".server.log")  # a file, not a pipe nobody reads (a full pipe blocks the server)
    with open(log, "w") as logf:
        srv = sqltune("serve", "--model", a.model, "--port", str(port), "--batch-size", str(a.clients),
                      stdout=logf, stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/api/health", timeout=2) as r:
                    health = json.loads(r.read())
                break
            except OSError:
                if srv.poll() is not None or time.perf_counter() - t > a.startup_timeout:
                    raise SystemExit(f"server not up (rc {srv.poll()}); its log ({log}):\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        out["startup_seconds"] = time.perf_counter() - t
        out["prefix_tokens"], out["server_load_seconds"] = health["prefix_tokens"], health["load_seconds"]
        out["server_prefix_seconds"] = health["prefix_seconds"]
        print(f"server up in {out['startup_seconds']:.1f} s", file=sys.stderr)
        save()

        # 3. one client, one question at a time
        single, failed = [], 0
        for q in questions[: a.single]:
            t = time.perf_counter()
            code, body = post(url + "/api/ask", {"question": q}, a.request_timeout)
            single.append(time.perf_counter() - t)
            failed += code != 200
        out["single"] = {"n": len(single), "seconds": single, "p50": statistics.median(single),
                         "mean": statistics.mean(single), "failed": failed,
                         "throughput_qps": len(single) / sum(single)}
        print(f"one client: p50 {out['single']['p50']:.2f} s", file=sys.stderr)
        save()

        # 4. concurrent clients, a bounded number of requests
        todo = list(range(a.requests))
        lock = threading.Lock()
        lat: list[float] = []
        codes: list[int] = []

        def client():
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                t0 = time.perf_counter()
                try:
                    code, _ = post(url + "/api/ask", {"question": questions[i % len(questions)]}, a.request_timeout)
                except Exception:  # noqa: BLE001 - a failed request is counted, not fatal
                    code = -1
                with lock:
                    lat.append(time.perf_counter() - t0)
                    codes.append(code)

        t = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(a.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        with urllib.request.urlopen(url + "/api/health", timeout=10) as r:
            served = json.loads(r.read())["served"]
        out["concurrent"] = {"clients": a.clients, "requests": a.requests, "wall_seconds": wall,
                             "throughput_qps": a.requests / wall, "p50": pct(lat, 0.5), "p95": pct(lat, 0.95),
                             "failed": sum(c != 200 for c in codes), "server": served}
    finally:
        srv.terminate()
        srv.wait(timeout=30)
    s, c = out["single"], out["concurrent"]
    out["latency_speedup_vs_ask"] = statistics.median(ask) / s["p50"] if ask else None
    out["throughput_gain"] = c["throughput_qps"] / s["throughput_qps"]
    save()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
