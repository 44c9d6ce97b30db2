"""benchmarks/gpu_sweep.sh on the CPU, with a stand-in `python3`: what it starts, and `SEED_FROM`."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _stub(folder: Path, name: str, body: str) -> None:
    """An executable stand-in `folder/name` (a /bin/sh script of `body`) for a command the sweep calls."""
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("#!/bin/sh\n" + body)
    (folder / name).chmod(0o755)


def _wait_done(jobs: Path, *names: str) -> None:
    """Until each launched job has written its exit code (`NAME.done`), at most ~10 s each."""
    for name in names:
        for _ in range(100):
            if (jobs / "jobs" / f"{name}.done").is_file():
                break
            time.sleep(0.1)


def test_devsuite_jobs_are_seeded_and_started(tmp_path):
    jobs, seed, stub = tmp_path / "jobs", tmp_path / "seed", tmp_path / "bin"
    (jobs / "devsuite").mkdir(parents=True)  # as if carried already: the script copies .gpu/devsuite otherwise
    (seed / "flight_2").mkdir(parents=True)
    (seed / "flight_2" / "synth.jsonl").write_text('{"id": "syn-1"}\n')
    (seed / "flight_2" / "base_test_report.json").write_text("{}")
    _stub(stub, "python3", 'echo "stub $*"\n')
    env = dict(os.environ, SWEEP_DIR=str(jobs), SEED_FROM=str(seed), PATH=f"{stub}:{os.environ['PATH']}",
               SETTING="mine:rl.steps=2")
    out = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_sweep.sh"), "devsuite", "0", "flight_2", "tvshow"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "seeded flight_2" in out.stdout and "seeded tvshow" not in out.stdout  # no seed folder for tvshow
    run = jobs / "transfer" / "flight_2" / "mine"  # the folder transfer.py's run of that setting uses
    assert (run / "synth.jsonl").read_text() == '{"id": "syn-1"}\n' and (run / "base_test_report.json").is_file()
    assert not (jobs / "transfer" / "tvshow").exists()
    _wait_done(jobs, "db-flight_2", "db-tvshow")
    for name in ("db-flight_2", "db-tvshow"):
        assert (jobs / "jobs" / f"{name}.done").read_text().strip() == "0"
        log = (jobs / "jobs" / f"{name}.log").read_text()
        assert log.startswith("stub benchmarks/transfer.py --recipe qwen1.5b-gpu --model qwen2.5-coder-1.5b")
        assert f"--settings mine:rl.steps=2 --dbs {name.removeprefix('db-')}" in log


def test_per_job_chains_databases_in_one_job(tmp_path):
    jobs, stub = tmp_path / "jobs", tmp_path / "bin"
    (jobs / "devsuite").mkdir(parents=True)
    _stub(stub, "python3", 'echo "stub $*"\n')
    env = dict(os.environ, SWEEP_DIR=str(jobs), PATH=f"{stub}:{os.environ['PATH']}", PER_JOB="2")
    out = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_sweep.sh"), "devsuite", "1", "a", "b", "c"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "started db-a+b on GPU 1" in out.stdout and "started db-c on GPU 1" in out.stdout
    names = sorted(p.name for p in (jobs / "jobs").glob("*.cmd"))
    assert names == ["db-a+b.cmd", "db-c.cmd"]
    assert (jobs / "jobs" / "db-a+b.cmd").read_text().strip().endswith("--dbs a b")
    assert (jobs / "jobs" / "db-c.cmd").read_text().strip().endswith("--dbs c")


def test_wait_starts_a_job_that_ran_out_of_gpu_memory_once_more(tmp_path):
    """`wait` relaunches a job whose log says CUDA out of memory, once, as NAME-oom with the same command;
    a job that failed otherwise is left alone."""
    jobs, stub = tmp_path / "jobs", tmp_path / "bin"
    (jobs / "devsuite").mkdir(parents=True)
    # the first run of each DB fails: x of memory, y of something else; the second run of x succeeds
    _stub(stub, "python3",
        'db=$(echo "$*" | sed "s/.*--dbs //")\n'
        f'm={tmp_path}/ran-$db\n'
        'if [ "$db" = x ] && [ -e "$m" ]; then echo "ok $db"; exit 0; fi\n'
        'touch "$m"\n'
        'if [ "$db" = x ]; then echo "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate"; else echo boom; fi\n'
        'exit 1\n')
    env = dict(os.environ, SWEEP_DIR=str(jobs), PATH=f"{stub}:{os.environ['PATH']}", OUT=str(tmp_path / "out"))
    script = str(REPO / "benchmarks" / "gpu_sweep.sh")
    out = subprocess.run(["bash", script, "devsuite", "1", "x", "y"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    _wait_done(jobs, "db-x", "db-y")
    out = subprocess.run(["bash", script, "wait", "40"], env=env, capture_output=True, text=True, timeout=120)
    assert "relaunched db-x as db-x-oom" in out.stdout and "db-y-oom" not in out.stdout
    assert (jobs / "jobs" / "db-x-oom.done").read_text().strip() == "0"
    assert (jobs / "jobs" / "db-x-oom.cmd").read_text() == (jobs / "jobs" / "db-x.cmd").read_text()
    assert (jobs / "jobs" / "db-x-oom.gpu").read_text().strip() == "1"  # no nvidia-smi here: the job's own GPU
    assert not (jobs / "jobs" / "db-y-oom.cmd").exists()
    assert "jobs left: 0" in out.stdout
    again = subprocess.run(["bash", script, "wait", "1"], env=env, capture_output=True, text=True, timeout=60)
    assert "relaunched" not in again.stdout  # once only


def test_an_out_of_memory_relaunch_waits_for_free_memory_and_goes_one_at_a_time(tmp_path):
    """Session 14: 8 jobs on one H200, 3 ran out of memory, and each relaunch, started at once on the full GPU, ran
    out again. A relaunch waits until a GPU has OOM_RETRY_FREE_MIB free, goes to the GPU with the most free memory,
    and starts at most one per OOM_RETRY_GAP seconds. `nvidia-smi` is a stand-in that reads a file."""
    jobs, stub = tmp_path / "jobs", tmp_path / "bin"
    (jobs / "devsuite").mkdir(parents=True)
    free = tmp_path / "free"
    free.write_text("0, 1000\n1, 900\n")
    _stub(stub, "nvidia-smi", f'cat {free}\n')
    _stub(stub, "python3",  # the first run of each DB runs out of memory; a second run records its start
        'db=$(echo "$*" | sed "s/.*--dbs //")\n'
        f'm={tmp_path}/ran-$db\n'
        'if [ -e "$m" ]; then date +%s > "$m.again"; echo "ok $db"; exit 0; fi\n'
        'touch "$m"; echo "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate"; exit 1\n')
    env = dict(os.environ, SWEEP_DIR=str(jobs), PATH=f"{stub}:{os.environ['PATH']}", OUT=str(tmp_path / "out"),
               OOM_RETRY_GAP="5")
    script = str(REPO / "benchmarks" / "gpu_sweep.sh")
    assert subprocess.run(["bash", script, "devsuite", "0", "a", "b"], env=env, capture_output=True,
                          timeout=60).returncode == 0
    _wait_done(jobs, "db-a", "db-b")
    out = subprocess.run(["bash", script, "wait", "2"], env=env, capture_output=True, text=True, timeout=60)
    assert "relaunched" not in out.stdout and "jobs left: 2" in out.stdout  # two relaunches to come
    assert out.stdout.count("its relaunch waits for 40000 MiB free (GPU 0 has 1000)") == 1
    free.write_text("0, 1000\n1, 60000\n")  # GPU 1 freed up
    out = subprocess.run(["bash", script, "wait", "40"], env=env, capture_output=True, text=True, timeout=120)
    assert "relaunched db-a as db-a-oom" in out.stdout and "relaunched db-b as db-b-oom" in out.stdout
    assert "waits for" not in out.stdout  # said once, in the first wait
    assert [(jobs / "jobs" / f"db-{d}-oom.gpu").read_text().strip() for d in "ab"] == ["1", "1"]
    starts = [int((tmp_path / f"ran-{d}.again").read_text()) for d in "ab"]
    assert starts[1] - starts[0] >= 4  # one relaunch per OOM_RETRY_GAP (5 s), not both at once
    assert "jobs left: 0" in out.stdout


def test_wait_on_a_machine_with_no_jobs_says_so_at_once(tmp_path):
    """A `wait` that lands on a fresh machine (the one that ran the jobs went back) must not sit out its SECONDS."""
    env = dict(os.environ, SWEEP_DIR=str(tmp_path / "jobs"), OUT=str(tmp_path / "out"))
    t = time.monotonic()
    out = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_sweep.sh"), "wait", "300"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and "fresh machine" in out.stderr and "jobs left" not in out.stdout
    assert time.monotonic() - t < 30


def test_collect_puts_several_settings_in_one_table(tmp_path):
    """`SETTINGS="A:... B:..."`: two sweeps of one lease (one setting per GPU) merged by one `--no-run` call;
    without it, every setting `devsuite` launched there (the next test), else SETTING."""
    jobs, stub, out = tmp_path / "jobs", tmp_path / "bin", tmp_path / "out"
    (jobs / "transfer").mkdir(parents=True)
    _stub(stub, "python3", 'printf "%s\\n" "$@"\n')  # one argument per line
    env = dict(os.environ, SWEEP_DIR=str(jobs), OUT=str(out), PATH=f"{stub}:{os.environ['PATH']}",
               SETTING="a:rl.steps=2", SETTINGS="a:rl.steps=2 b:rl.steps=2;rl.join_floor=0.3")
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_sweep.sh"), "collect"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    args = (jobs / "out" / "transfer_print.txt").read_text().splitlines()
    at = args.index("--settings")
    assert args[at + 1: at + 4] == ["a:rl.steps=2", "b:rl.steps=2;rl.join_floor=0.3", "--dbs"]
    del env["SETTINGS"]  # one setting: SETTING, as before
    subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_sweep.sh"), "collect"], env=env, capture_output=True,
                   text=True, timeout=60, check=True)
    args = (jobs / "out" / "transfer_print.txt").read_text().splitlines()
    at = args.index("--settings")
    assert args[at + 1: at + 3] == ["a:rl.steps=2", "--dbs"]


def test_collect_tables_the_databases_launched_not_a_fixed_list(tmp_path):
    """The table's DBs are the run folders there: the devsuite's in their usual order, then any other (a
    benchmarks/crossfit.py folder's `<db>_a`); session 20's crossfit sweep printed only "not in devsuite" before."""
    jobs, stub, out = tmp_path / "jobs", tmp_path / "bin", tmp_path / "out"
    for db in ("tvshow", "flight_2_a", "flight_2", "cre_Doc_Template_Mgt_b"):
        (jobs / "transfer" / db).mkdir(parents=True)
    _stub(stub, "python3", 'printf "%s\\n" "$@"\n')
    env = dict(os.environ, SWEEP_DIR=str(jobs), OUT=str(out), PATH=f"{stub}:{os.environ['PATH']}", SETTING="a:x=1")
    subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_sweep.sh"), "collect"], env=env, capture_output=True,
                   text=True, timeout=60, check=True)
    args = (jobs / "out" / "transfer_print.txt").read_text().splitlines()
    at = args.index("--dbs")
    assert args[at + 1: args.index("--out")] == ["flight_2", "tvshow", "cre_Doc_Template_Mgt_b", "flight_2_a"]


def test_a_second_setting_on_the_same_databases_gets_its_own_jobs(tmp_path):
    jobs, stub = tmp_path / "jobs", tmp_path / "bin"
    (jobs / "devsuite").mkdir(parents=True)
    _stub(stub, "python3", 'echo "stub $*"\n')
    script = str(REPO / "benchmarks" / "gpu_sweep.sh")
    for gpu, setting in (("0", "a:rl.steps=2"), ("1", "b:rl.join_floor=0.3")):
        env = dict(os.environ, SWEEP_DIR=str(jobs), PATH=f"{stub}:{os.environ['PATH']}", SETTING=setting)
        out = subprocess.run(["bash", script, "devsuite", gpu, "x"], env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
    _wait_done(jobs, "db-x", "db-x-b")
    assert "--settings a:rl.steps=2 --dbs x" in (jobs / "jobs" / "db-x.log").read_text()
    assert "--settings b:rl.join_floor=0.3 --dbs x" in (jobs / "jobs" / "db-x-b.log").read_text()
    assert (jobs / "jobs" / "db-x-b.gpu").read_text().strip() == "1"


def test_wait_and_collect_table_every_setting_launched(tmp_path):
    jobs, stub, out = tmp_path / "jobs", tmp_path / "bin", tmp_path / "out"
    (jobs / "devsuite").mkdir(parents=True)
    _stub(stub, "python3", 'printf "%s\\n" "$@"\n')  # one argument per line
    script = str(REPO / "benchmarks" / "gpu_sweep.sh")
    a, b = "a:rl.steps=2", "b:rl.steps=2;rl.join_floor=0.3"
    for gpu, setting, dbs in (("0", a, ["x", "y"]), ("1", b, ["x"]), ("0", a, ["z"])):
        env = dict(os.environ, SWEEP_DIR=str(jobs), OUT=str(out), PATH=f"{stub}:{os.environ['PATH']}", SETTING=setting)
        subprocess.run(["bash", script, "devsuite", gpu, *dbs], env=env, capture_output=True, text=True, timeout=60,
                       check=True)
    assert (jobs / "settings").read_text().splitlines() == [a, b]  # each once, in launch order
    _wait_done(jobs, "db-x", "db-y", "db-x-b", "db-z")
    (jobs / "transfer").mkdir(exist_ok=True)
    env = dict(os.environ, SWEEP_DIR=str(jobs), OUT=str(out), PATH=f"{stub}:{os.environ['PATH']}", SETTING=a)
    res = subprocess.run(["bash", script, "wait", "5"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    args = (jobs / "out" / "transfer_print.txt").read_text().splitlines()
    at = args.index("--settings")
    assert args[at + 1: at + 4] == [a, b, "--dbs"]


def test_prepare_joins_dequantises_and_takes_the_kept_devsuite(tmp_path):
    jobs, stub, keep = tmp_path / "jobs", tmp_path / "bin", tmp_path / "keep"
    (keep / "devsuite" / "singer").mkdir(parents=True)
    calls = tmp_path / "calls"
    _stub(stub, "python3", f'echo "$*" >> {calls}\necho "python3 $1 $2 done"\n')
    env = dict(os.environ, SWEEP_DIR=str(jobs), KEEP=str(keep), WEIGHTS="/w", SQLTUNE_HOME="/h",
               PATH=f"{stub}:{os.environ['PATH']}")
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_sweep.sh"), "prepare"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    ran = calls.read_text().splitlines()
    assert ran[0] == "scripts/gpu_weights.py join --dest /w"
    assert ran[1] == "scripts/gpu_weights.py materialize --dest /w --home /h"
    assert (jobs / "devsuite" / "singer").is_dir()
    # a join that fails (a part missing) stops there: nothing is dequantised
    _stub(stub, "python3", f'echo "$*" >> {calls}\nexit 1\n')
    calls.unlink()
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_sweep.sh"), "prepare"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and calls.read_text().splitlines() == ["scripts/gpu_weights.py join --dest /w"]


def test_wait_on_two_sweeps_of_one_lease(tmp_path):
    """Session 16 ran the 1.5B's sweep and the 0.5B's (each its own SWEEP_DIR) on one GPU: `SWEEP_DIRS` waits on
    both in one call, the first collected into $OUT, the second into $OUT/<its folder's name>."""
    big, small, stub, out = tmp_path / "jobs", tmp_path / "j05", tmp_path / "bin", tmp_path / "out"
    _stub(stub, "python3", 'case "$*" in *--no-run*) ;; *) sleep 2 ;; esac; echo "stub $*"\n')
    script = str(REPO / "benchmarks" / "gpu_sweep.sh")
    for jobs, db in ((big, "x"), (small, "y")):
        (jobs / "devsuite").mkdir(parents=True)
        env = dict(os.environ, SWEEP_DIR=str(jobs), PATH=f"{stub}:{os.environ['PATH']}")
        subprocess.run(["bash", script, "devsuite", "0", db], env=env, capture_output=True, text=True, timeout=60,
                       check=True)
    env = dict(os.environ, SWEEP_DIRS=f"{big} {small}", OUT=str(out), PATH=f"{stub}:{os.environ['PATH']}")
    res = subprocess.run(["bash", script, "wait", "30"], env=env, capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("jobs left: 0") == 2  # both waited on until done, not cut at the first
    assert res.stdout.index(f"### {big}") < res.stdout.index("== db-x") < res.stdout.index(f"### {small}") \
        < res.stdout.index("== db-y")
    assert (big / "jobs" / "db-x.done").read_text().strip() == "0"
    assert (small / "jobs" / "db-y.done").read_text().strip() == "0"
    assert (out / "results.tgz").is_file() and (out / "j05" / "results.tgz").is_file()
    # on a fresh machine (neither folder has a job) it says so at once, as `wait` on one folder does
    env["SWEEP_DIRS"] = f"{tmp_path / 'a'} {tmp_path / 'b'}"
    t = time.monotonic()
    res = subprocess.run(["bash", script, "wait", "300"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 3 and res.stderr.count("fresh machine") == 2
    assert time.monotonic() - t < 30


def test_stop_ends_a_jobs_group_and_wait_does_not_wait_on_a_killed_job(tmp_path):
    """`stop GLOB` ends the matching jobs (wrapper and child) and marks them; a job killed some other way, with no
    exit code written, counts as ended (137) once its process is gone, so `wait` does not sit out its limit on it."""
    jobs = tmp_path / "jobs"
    (jobs / "jobs").mkdir(parents=True)
    env = dict(os.environ, SWEEP_DIR=str(jobs), OUT=str(tmp_path / "out"))
    script = str(REPO / "benchmarks" / "gpu_sweep.sh")

    def sh(*args, timeout=60):
        return subprocess.run(["bash", script, *args], env=env, capture_output=True, text=True, timeout=timeout)

    for name in ("slow-a", "slow-b", "other"):
        assert sh("launch", name, "0", f"sleep 300; touch {tmp_path}/{name}-finished").returncode == 0
    pids = {n: int((jobs / "jobs" / f"{n}.pid").read_text()) for n in ("slow-a", "slow-b", "other")}
    out = sh("stop", "slow-*")
    assert out.returncode == 0 and "stopped slow-a" in out.stdout and "stopped slow-b" in out.stdout
    assert (jobs / "jobs" / "slow-a.done").read_text().strip() == "143"
    assert not (jobs / "jobs" / "other.done").exists()
    time.sleep(0.5)
    for n in ("slow-a", "slow-b"):  # the whole group is over, no `sleep 300` left running (zombies may stay unreaped)
        states = subprocess.run(["ps", "-o", "stat=", "-g", str(pids[n])], capture_output=True, text=True).stdout.split()
        assert all(st.startswith("Z") for st in states), states
    # killed from outside, wrapper first: no exit code will ever be written
    os.killpg(pids["other"], 9)
    t = time.monotonic()
    out = sh("wait", "120")
    assert time.monotonic() - t < 60 and "jobs left: 0" in out.stdout and "== other (exit 137)" in out.stdout
    assert sh("stop", "nope-*").returncode == 2
    assert not list(tmp_path.glob("*-finished"))
