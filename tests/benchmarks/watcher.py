#!/usr/bin/env python3
"""Runwatch vs Aim's own watcher (`aim-watcher` from `pip install aim==3.29.1`), in one run.

    python3 tests/benchmarks/watcher.py            # from the repository root (or `make bench`)

Builds `runwatch` and `runwatch-bench` in release, creates (or reuses) a venv with
aim==3.29.1 under target/bench-venv, then measures both watchers one after the other on
identical 10,000-run Aim repositories:

- idle CPU (% of one core, from /proc/PID/stat utime+stime) over a window after start-up
  settled, and resident memory (VmRSS, VmHWM from /proc/PID/status);
- check-in latency: new runs' `starting` files appear by atomic rename, 20 ms apart; time
  until the watcher prints "Run '…' started.";
- log-record latency (runwatch): a record is appended to a live run's RocksDB chunk, then a
  `new_logs` check-in appears; time until the watcher prints the message. Also with real
  Aim (`run.log_error()` in the venv) for both watchers;
- 10,000 newly finished runs: 10,000 `finished` files written at once the way Aim writes
  them (create + close); time until the 10,000th "finished without error." line;
- the cost of one full rescan at 1,000 / 10,000 / 100,000 runs (`runwatch-bench rescan`,
  in-process, median of several; its repositories are kept in target/bench-fixtures
  for the next run, the stores are new each time).

Prints a table with both figures, the ratio aim-watcher / runwatch and PASS/FAIL against
each target; writes target/bench-results.json and target/bench-results.md. With
--update-doc, also replaces the results section of BENCHMARKS.md. Everything runs on
loopback and in a throwaway directory under target/; processes are stopped on exit.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from procinfo import CLK_TCK, cpu_ticks, machine, machine_busy, status_kib, thread_cpu_ns

ROOT = Path(__file__).resolve().parents[2]
AIM_VERSION = "3.29.1"
RUNS = 10_000

# Targets of the acceptance criteria.
CPU_RATIO_TARGET = 200  # runwatch idle CPU at most 1/200 of aim-watcher's
RSS_TARGET_MIB = 40
FINISH_TARGET_S = 2.0
LATENCY_P99_TARGET_MS = 50.0
# Linear growth: the time per run grows less than 2x for each 10x more runs (a quadratic
# cost would grow 10x); caches make big repositories a little dearer per run.
LINEAR_TOLERANCE = 2.0

LINE_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+(.*)$")
FINISHED_RE = re.compile(r"Run '([0-9a-f]{24})' finished without error\.")
STARTED_RE = re.compile(r"Run '([0-9a-f]{24})' started\.")

SPAWNED: list["Proc"] = []


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Processes


class Proc:
    """A child in its own process group; every output line is kept with its arrival time."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None, cwd: Path | None = None, stdin=None):
        self.name = name
        self.lines: list[tuple[float, str, str]] = []  # (monotonic time, stream, text)
        self.cond = threading.Condition()
        self.listener = None  # called as listener(t, stream, text) under self.cond
        self.p = subprocess.Popen(
            argv,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        SPAWNED.append(self)
        self.threads = [
            threading.Thread(target=self._read, args=(self.p.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self.p.stderr, "err"), daemon=True),
        ]
        for t in self.threads:
            t.start()

    @property
    def pid(self) -> int:
        return self.p.pid

    def _read(self, stream, which: str) -> None:
        for raw in iter(stream.readline, b""):
            t = time.monotonic()
            text = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append((t, which, text))
                if self.listener is not None:
                    self.listener(t, which, text)
                self.cond.notify_all()

    def wait_for(self, what: str, pred, timeout: float, start: int = 0) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    t, _, text = self.lines[i]
                    i += 1
                    if pred(text):
                        return t, text
                if self.p.poll() is not None and all(not th.is_alive() for th in self.threads):
                    raise RuntimeError(f"{self.name} exited ({self.p.returncode}) before {what}; output:\n{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.name}: no {what} within {timeout:.0f} s; output:\n{self.tail()}")
                self.cond.wait(min(left, 0.5))

    def nth_line(self, stream: str, n: int, timeout: float) -> str:
        """The nth (1-based) line of `stream`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                lines = [x for _, s, x in self.lines if s == stream]
                if len(lines) >= n:
                    return lines[n - 1]
                if self.p.poll() is not None:
                    raise RuntimeError(f"{self.name} exited ({self.p.returncode}); output:\n{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.name}: no reply within {timeout:.0f} s; output:\n{self.tail()}")
                self.cond.wait(min(left, 0.5))

    def tail(self, n: int = 30) -> str:
        return "\n".join(f"  {s}: {x}" for _, s, x in self.lines[-n:])

    def stop(self) -> None:
        if self.p.poll() is None:
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.p.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for t in self.threads:
            t.join(2)


def stop_all() -> None:
    for p in reversed(SPAWNED):
        try:
            p.stop()
        except Exception as e:  # noqa: BLE001 - cleanup must go on
            log(f"cannot stop {p.name}: {e}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads, living and exited)."""
    ticks = cpu_ticks(pid)
    if ticks is None:
        raise ProcessLookupError(f"process {pid} is gone")
    return ticks / CLK_TCK


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    log("$ " + " ".join(str(a) for a in argv))
    return subprocess.run(argv, check=True, **kw)


# --------------------------------------------------------------------------------------
# Set-up


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")).resolve()


def ensure_venv(venv: Path) -> Path:
    py = venv / "bin" / "python"
    check = [str(py), "-c", f"import importlib.metadata as m; assert m.version('aim') == '{AIM_VERSION}'"]
    if py.exists() and (venv / "bin" / "aim-watcher").exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return venv
    log(f"creating {venv} with aim=={AIM_VERSION} from PyPI (once; reused afterwards)")
    try:
        run([sys.executable, "-m", "venv", "--clear", str(venv)])
    except subprocess.CalledProcessError:
        raise SystemExit(f"cannot create a venv with {sys.executable} (on Debian: apt-get install python3-venv)")
    run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"aim=={AIM_VERSION}"])
    subprocess.run(check, check=True)
    return venv


def build(release_dir: Path) -> None:
    run(["cargo", "build", "--release", "--locked", "-p", "runwatch-cli", "--bin", "runwatch"], cwd=ROOT)
    run(["cargo", "build", "--release", "--locked", "-p", "runwatch-tests", "--bin", "runwatch-bench"], cwd=ROOT)
    for b in ("runwatch", "runwatch-bench"):
        if not (release_dir / b).exists():
            raise SystemExit(f"{release_dir / b} was not built")


def checkin_name(run_hash: str, idx: int, flag: str, expect_next_in: int) -> str:
    return f"{run_hash}-{idx:016d}-{flag}-{time.time():011.2f}-{expect_next_in:05d}"


def fixture_hash(i: int) -> str:
    return f"aa{i:022x}"


def touch(path: Path) -> None:
    """Creates an empty file the way Aim's `Path.touch()` does: open(O_CREAT) and close."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))


def make_repo(venv: Path, root: Path, runs: int) -> Path:
    """An Aim repository (`aim init`) with a logger notifier and `runs` running runs."""
    root.mkdir(parents=True)
    subprocess.run([str(venv / "bin" / "aim"), "init", "--repo", str(root)], check=True, capture_output=True)
    notif = root / ".aim" / "ext" / "notifications"
    notif.mkdir(parents=True, exist_ok=True)
    nid = "b6487000-b521-4a2a-a42b-8fee1b7fa43d"
    cfg = {"notifications": {"version": "1.0", "log_level": 30, "notifiers": {nid: {
        "id": nid, "type": "logger", "status": "enabled",
        "arguments": {"message": "❗️ Something wrong with Run '{run.hash}'. Please check. ❗️"}}}}}
    (notif / "config.json").write_text(json.dumps(cfg, indent=2))
    check_ins = root / ".aim" / "check_ins"
    check_ins.mkdir()
    # Running runs as Aim leaves them: `starting`, a `check_in` and Aim's heartbeat. The
    # promises (1 h) are long enough that no deadline falls inside the benchmark.
    for i in range(runs):
        h = fixture_hash(i)
        for idx, flag, expect in ((1, "starting", 0), (2, "check_in", 3600), (3, "progress", 3600)):
            touch(check_ins / checkin_name(h, idx, flag, expect))
    return root


# --------------------------------------------------------------------------------------
# Measurements


def text_of(line: str) -> tuple[str | None, str]:
    """(level, text) of an announcement: runwatch prefixes time and level, Aim's logger not."""
    m = LINE_RE.match(line)
    return (m.group(1), m.group(2)) if m else (None, line)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def latency_summary(lat_ms: list[float], expected: int) -> dict:
    if not lat_ms:
        return {"samples": expected, "received": 0}
    return {
        "samples": expected,
        "received": len(lat_ms),
        "p50_ms": pct(lat_ms, 0.50),
        "p99_ms": pct(lat_ms, 0.99),
        "max_ms": max(lat_ms),
        "mean_ms": statistics.fmean(lat_ms),
    }


def measure_idle(proc: Proc, settle: float, window: float) -> dict:
    log(f"{proc.name}: settling {settle:.0f} s, then measuring idle CPU over {window:.0f} s")
    time.sleep(settle)
    rss = []
    b0, n0 = machine_busy()
    ns0 = thread_cpu_ns(proc.pid)
    c0, t0 = cpu_seconds(proc.pid), time.monotonic()
    end = t0 + window
    while (now := time.monotonic()) < end:
        rss.append(status_kib(proc.pid, "VmRSS"))
        time.sleep(min(1.0, end - now))
    c1, t1 = cpu_seconds(proc.pid), time.monotonic()
    ns1 = thread_cpu_ns(proc.pid)
    b1, n1 = machine_busy()
    # Per thread, from the scheduler (ns): the threads alive at the end (new ones from 0).
    by_thread: dict[str, int] = {}
    for tid, (name, ns) in ns1.items():
        by_thread[name] = by_thread.get(name, 0) + ns - ns0.get(tid, (name, 0))[1]
    exited = len(set(ns0) - set(ns1))
    rss.append(status_kib(proc.pid, "VmRSS"))
    cpu_pct = 100.0 * (c1 - c0) / (t1 - t0)
    other = max(0.0, 100.0 * os.cpu_count() * (b1 - b0) / max(1, n1 - n0) - cpu_pct)
    return {
        "window_s": t1 - t0,
        "cpu_seconds": c1 - c0,
        "cpu_pct_of_core": cpu_pct,
        "sched_cpu_ms": sum(by_thread.values()) / 1e6,
        "sched_cpu_ms_by_thread": {k: v / 1e6 for k, v in sorted(by_thread.items(), key=lambda kv: -kv[1]) if v > 0},
        "threads_exited": exited,
        "rss_mib": rss[-1] / 1024,
        "rss_max_mib": max(rss) / 1024,
        "rest_of_machine_busy_pct_of_core": other,
    }


def intake_latency(db: Path | None, query: str, wall: dict[str, float]) -> dict | None:
    """Latency to the watcher's intake: from the wall clock before the rename to each
    notification's `created_at` in runwatch's store (the watcher's clock when it took the
    file in, just before its transaction). A lower bound of the time to the stored
    notification, as the printed line is an upper bound."""
    if db is None:
        return None
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(query).fetchall()
    finally:
        conn.close()
    lat = [created - wall[k] * 1000 for k, created in rows if k in wall]
    return latency_summary(lat, len(wall))


def measure_checkin_latency(proc: Proc, repo: Path, stage: Path, samples: int, spacing: float, wait: float,
                            db: Path | None = None) -> dict:
    """New runs' `starting` files, renamed into check_ins/ `spacing` apart."""
    log(f"{proc.name}: {samples} check-in latency samples, {spacing * 1000:.0f} ms apart")
    check_ins = repo / ".aim" / "check_ins"
    sent: dict[str, float] = {}
    wall: dict[str, float] = {}
    got: dict[str, float] = {}

    expected: set[str] = set()

    def listener(t, _s, line):
        m = STARTED_RE.search(text_of(line)[1])
        if m and m.group(1) in expected and m.group(1) not in got:
            got[m.group(1)] = t

    with proc.cond:
        proc.listener = listener
    try:
        for i in range(samples):
            h = f"bb{i:022x}"
            name = checkin_name(h, 1, "starting", 0)
            tmp = stage / name
            touch(tmp)
            with proc.cond:  # expected before it can be printed
                expected.add(h)
            wall[h], t0 = time.time(), time.monotonic()
            os.rename(tmp, check_ins / name)
            sent[h] = t0
            time.sleep(spacing)
        deadline = time.monotonic() + wait
        with proc.cond:
            while len(got) < len(sent) and time.monotonic() < deadline:
                proc.cond.wait(0.2)
    finally:
        with proc.cond:
            proc.listener = None
    lat = [(got[h] - sent[h]) * 1000 for h in sent if h in got]
    out = latency_summary(lat, samples)
    out["intake"] = intake_latency(db, "SELECT run_id, created_at FROM notifications "
                                       "WHERE dedupe_key >= 'started:bb' AND dedupe_key < 'started:bc'", wall)
    return out


def measure_log_latency(proc: Proc, bench: Path, repo: Path, stage: Path, samples: int, spacing: float, wait: float,
                        db: Path | None = None) -> dict:
    """A record appended to a live run's chunk (runwatch-bench log-writer), then `new_logs`."""
    log(f"{proc.name}: {samples} log-record latency samples")
    aim_dir = repo / ".aim"
    check_ins = aim_dir / "check_ins"
    runs = [f"cc{i:022x}" for i in range(4)]
    writer = Proc("log-writer", [str(bench), "log-writer", "--aim-dir", str(aim_dir)], stdin=subprocess.PIPE)
    for h in runs:
        name = checkin_name(h, 1, "starting", 0)
        os.rename(_staged(stage, name), check_ins / name)
    for h in runs:
        proc.wait_for(f"'started' of log run {h}", lambda l, h=h: f"Run '{h}' started." in l, 10)
    sent: dict[str, float] = {}
    got: dict[str, float] = {}

    expected: set[str] = set()

    def listener(t, _s, line):
        text = text_of(line)[1]
        if text in expected and text not in got:
            got[text] = t

    wall: dict[str, float] = {}
    idx = {h: 1 for h in runs}
    step = {h: 0 for h in runs}
    previous: dict[str, Path] = {}
    replies = 0
    with proc.cond:
        proc.listener = listener
    try:
        for i in range(samples):
            h = runs[i % len(runs)]
            message = f"bench log record {i}"
            writer.p.stdin.write(f"{h} {step[h]} 40 {message}\n".encode())
            writer.p.stdin.flush()
            replies += 1
            reply = writer.nth_line("out", replies, 10)
            if reply != "ok":
                raise RuntimeError(f"log-writer: {reply}")
            step[h] += 1
            idx[h] += 1
            name = checkin_name(h, idx[h], "new_logs", 0)
            tmp = _staged(stage, name)
            with proc.cond:  # expected before it can be printed
                expected.add(message)
            wall[message], t0 = time.time(), time.monotonic()
            os.rename(tmp, check_ins / name)
            sent[message] = t0
            # Aim removes the run's older file of the same flag after writing a new one.
            if h in previous:
                previous[h].unlink(missing_ok=True)
            previous[h] = check_ins / name
            time.sleep(spacing)
        deadline = time.monotonic() + wait
        with proc.cond:
            while len(got) < len(sent) and time.monotonic() < deadline:
                proc.cond.wait(0.2)
    finally:
        with proc.cond:
            proc.listener = None
        writer.p.stdin.close()
        writer.stop()
    lat = [(got[m] - sent[m]) * 1000 for m in sent if m in got]
    out = latency_summary(lat, samples)
    out["intake"] = intake_latency(db, "SELECT title, created_at FROM notifications "
                                       "WHERE source = 'aim-log' AND title LIKE 'bench log record %'", wall)
    return out


def _staged(stage: Path, name: str) -> Path:
    tmp = stage / name
    touch(tmp)
    return tmp


AIM_LOGGER = r"""
import sys, time, aim
repo, n, spacing = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
run = aim.Run(repo=repo)
print("hash", run.hash, flush=True)
time.sleep(1.5)  # let the watcher see the run start
for i in range(n):
    t0 = time.monotonic()
    run.log_error(f"real aim log {i}")  # blocks until the new_logs check-in is written
    print("sent", i, t0, flush=True)
    time.sleep(spacing)
run.report_successful_finish()
run.close()
print("done", flush=True)
"""


def measure_real_aim_logs(proc: Proc, venv: Path, repo: Path, samples: int, spacing: float, wait: float) -> dict:
    """`run.log_error()` by real Aim; t0 is taken before the call (includes Aim's own write)."""
    log(f"{proc.name}: {samples} log records written by real Aim (run.log_error)")
    got: dict[str, float] = {}

    def listener(t, _s, line):
        text = text_of(line)[1]
        if text.startswith("real aim log ") and text not in got:
            got[text] = t

    with proc.cond:
        proc.listener = listener
    try:
        w = Proc("aim-logger", [str(venv / "bin" / "python"), "-c", AIM_LOGGER, str(repo), str(samples), str(spacing)])
        w.wait_for("the end of aim-logger", lambda l: l == "done", 60 + samples * (spacing + 1))
        sent = {}
        for _, s, l in w.lines:
            if s == "out" and l.startswith("sent "):
                _, i, t0 = l.split()
                sent[f"real aim log {i}"] = float(t0)
        w.stop()
        deadline = time.monotonic() + wait
        with proc.cond:
            while len(got) < len(sent) and time.monotonic() < deadline:
                proc.cond.wait(0.2)
    finally:
        with proc.cond:
            proc.listener = None
    lat = [(got[m] - sent[m]) * 1000 for m in sent if m in got]
    out = latency_summary(lat, samples)
    out["waited_s"] = wait
    return out


# Writes `finished` for fixture runs 0..N as Aim does (`Path.touch`: create, close); prints
# CLOCK_MONOTONIC (shared by all processes) before the first file and after the last, and
# the wall clock at the start (runwatch's store records wall-clock times).
FINISH_WRITER = r"""
import os, sys, time
check_ins, runs = sys.argv[1], int(sys.argv[2])
names = [f"aa{i:022x}-{4:016d}-finished-{time.time():011.2f}-{0:05d}" for i in range(runs)]
print("start", time.monotonic(), time.time(), flush=True)
for name in names:
    os.close(os.open(os.path.join(check_ins, name), os.O_WRONLY | os.O_CREAT, 0o644))
print("done", time.monotonic(), flush=True)
"""


def stored_after(db: Path, wall_start: float) -> float | None:
    """Seconds from `wall_start` until runwatch had stored the last fixture run's `finished`
    notification (its `created_at`, taken by the watcher right before the commit). Read
    after the burst: a reader polling during it would hold back SQLite's checkpoints."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute(
            "SELECT count(*), max(created_at) FROM notifications WHERE dedupe_key >= 'finished:aa' AND dedupe_key < 'finished:ab'"
        ).fetchall()[0]
    finally:
        conn.close()
    return None if not row[1] else row[1] / 1000 - wall_start


def measure_finish_burst(proc: Proc, repo: Path, runs: int, cap: float, db: Path | None = None) -> dict:
    """Writes `finished` for every fixture run at once; waits for every announcement."""
    log(f"{proc.name}: {runs} runs finish at once (waiting at most {cap:.0f} s)")
    check_ins = repo / ".aim" / "check_ins"
    pending = {fixture_hash(i) for i in range(runs)}
    state = {"count": 0, "last": None}

    def listener(t, _s, line):
        m = FINISHED_RE.search(line)
        if m and m.group(1) in pending:
            pending.discard(m.group(1))
            state["count"] += 1
            state["last"] = t

    with proc.cond:
        proc.listener = listener
    try:
        # The files are written by another process: in this one, the threads reading the
        # watcher's output would hold the GIL and slow the writing down (10x when the
        # announcements pour in while the files are written).
        writer = subprocess.Popen([sys.executable, "-c", FINISH_WRITER, str(check_ins), str(runs)],
                                  stdout=subprocess.PIPE, text=True)
        first = writer.stdout.readline().split()
        if first[:1] != ["start"]:
            raise RuntimeError(f"the file writer did not start: {first}")
        t0, wall0 = float(first[1]), float(first[2])
        out, _ = writer.communicate(timeout=300)
        t_written = float(out.split()[1])
        deadline = t0 + cap
        with proc.cond:
            while state["count"] < runs and time.monotonic() < deadline:
                proc.cond.wait(0.2)
            count, last = state["count"], state["last"]
    finally:
        with proc.cond:
            proc.listener = None
    done = count == runs
    return {
        "runs": runs,
        "announced": count,
        "complete": done,
        "write_s": t_written - t0,
        "seconds": (last - t0) if done else None,
        "seconds_after_last_write": (last - t_written) if done else None,
        "cap_s": cap,
        "stored_s": stored_after(db, wall0) if db is not None and done else None,
        "peak_rss_mib": status_kib(proc.pid, "VmHWM") / 1024,
    }


def session(name: str, argv: list[str], env: dict, repo: Path, stage: Path, args, venv: Path, bench: Path, ready,
            db: Path | None = None) -> dict:
    out: dict = {"command": " ".join(argv)}
    t_spawn = time.monotonic()
    proc = Proc(name, argv, env=env)
    phases = [
        ("idle", lambda: measure_idle(proc, args.settle, args.idle_secs)),
        ("checkin_latency", lambda: measure_checkin_latency(proc, repo, stage, args.samples, 0.020, 15, db)),
        ("log_latency", lambda: measure_log_latency(proc, bench, repo, stage, args.samples, 0.020, 15, db)),
        ("real_aim_log_latency", lambda: measure_real_aim_logs(proc, venv, repo, args.aim_log_samples, 0.1, 15)),
        ("finish", lambda: measure_finish_burst(proc, repo, RUNS, args.finish_cap, db)),
    ]
    if name != "runwatch":
        phases = [p for p in phases if p[0] != "log_latency"]  # needs the bench's chunk writer reader
    try:
        t_ready, _ = proc.wait_for("start-up", ready, 300)
        out["startup_s"] = t_ready - t_spawn
        out["startup_cpu_s"] = cpu_seconds(proc.pid)
        for phase, measure in phases:
            if proc.p.poll() is not None:
                out["errors"] = out.get("errors", []) + [f"{phase}: {name} is no longer running"]
                continue
            try:
                out[phase] = measure()
            except Exception as e:  # noqa: BLE001 - report what failed, measure the rest
                log(f"{name}: {phase} failed: {e}")
                out["errors"] = out.get("errors", []) + [f"{phase}: {e}"]
        if proc.p.poll() is None:
            out["peak_rss_mib"] = status_kib(proc.pid, "VmHWM") / 1024
        out["alive_at_end"] = proc.p.poll() is None
    except Exception as e:  # noqa: BLE001
        log(f"{name}: {e}")
        out["errors"] = out.get("errors", []) + [str(e)]
    finally:
        proc.stop()
        out["exit_code"] = proc.p.returncode
        out["stderr_tail"] = [l for _, s, l in proc.lines if s == "err"][-5:]
    return out


# --------------------------------------------------------------------------------------
# Report


def machine_info(work: Path) -> dict:
    fs = "unknown"
    try:
        fs = subprocess.run(["findmnt", "-no", "FSTYPE,SOURCE", "-T", str(work)], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return {**machine(), "disk_fs": fs, "python": platform.python_version()}


def fmt(v, digits=1, unit=""):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{unit}"
    return f"{v}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def verdict(ok) -> str:
    return "—" if ok is None else ("PASS" if ok else "FAIL")


def lat_cell(l: dict | None) -> str:
    if not l:
        return "—"
    if not l.get("received"):
        return f"none of {l['samples']} announced"
    missing = l["samples"] - l["received"]
    cell = f"p50 {l['p50_ms']:.1f} / p99 {l['p99_ms']:.1f} / max {l['max_ms']:.1f}"
    return cell + (f" ({missing} of {l['samples']} missing)" if missing else "")


def report(res: dict) -> tuple[str, dict]:
    rw, aw = res["runwatch"], res["aim_watcher"]
    rows = []
    verdicts = {}

    ri, ai = rw.get("idle") or {}, aw.get("idle") or {}
    r_cpu, a_cpu = ri.get("cpu_pct_of_core"), ai.get("cpu_pct_of_core")
    ok = None if a_cpu is None or r_cpu is None else r_cpu <= a_cpu / CPU_RATIO_TARGET
    verdicts["idle_cpu"] = ok
    window = ri.get("window_s") or ai.get("window_s") or 0
    cpu_ratio = fmt(ratio(a_cpu, r_cpu), 0, "×")
    if r_cpu == 0 and a_cpu and ri.get("window_s"):
        # No clock tick at all in the window: the ratio is at least what one tick would give.
        cpu_ratio = f"> {a_cpu / (100.0 / CLK_TCK / ri['window_s']):,.0f}× (0 ticks)"
    # The scheduler's exact figure (ns per live thread): a ratio even when no tick fell.
    r_ms, a_ms = ri.get("sched_cpu_ms"), ai.get("sched_cpu_ms")
    sched_ratio = ratio(a_ms, r_ms)
    if r_ms == 0 and a_ms:
        cpu_ratio = f"∞: no runwatch thread ran (by ticks {cpu_ratio})"
    elif sched_ratio is not None:
        cpu_ratio = f"{sched_ratio:,.0f}× (scheduler); by ticks {cpu_ratio}"
        ok = ok and sched_ratio >= CPU_RATIO_TARGET
        verdicts["idle_cpu"] = ok

    def cpu_cell(i: dict) -> str:
        if i.get("cpu_pct_of_core") is None:
            return "—"
        sched = f"; {i['sched_cpu_ms']:,.1f} ms on CPU" if i.get("sched_cpu_ms") is not None else ""
        return f"{i['cpu_pct_of_core']:.3f} ({i.get('cpu_seconds', 0):.2f} CPU-s{sched})"

    log(f"idle CPU: runwatch {cpu_cell(ri)}, aim-watcher {cpu_cell(ai)}; aim-watcher / runwatch = {cpu_ratio}")
    if ri.get("sched_cpu_ms_by_thread"):
        log("runwatch's idle CPU by thread, ms: " + ", ".join(f"{k} {v:.2f}" for k, v in ri["sched_cpu_ms_by_thread"].items()))
    rows.append((f"Idle CPU, % of one core (CPU-s) ({RUNS:,} runs, {window:.0f} s)", cpu_cell(ri), cpu_cell(ai),
                 cpu_ratio,
                 f"≤ 1/{CPU_RATIO_TARGET} of aim-watcher ({fmt(None if a_cpu is None else a_cpu / CPU_RATIO_TARGET, 3)})", verdict(ok)))

    r_rss, a_rss = ri.get("rss_mib"), ai.get("rss_mib")
    ok = None if r_rss is None else r_rss < RSS_TARGET_MIB
    verdicts["rss"] = ok
    rows.append((f"Resident memory, idle ({RUNS:,} runs), MiB", fmt(r_rss), fmt(a_rss), fmt(ratio(a_rss, r_rss), 1, "×"),
                 f"< {RSS_TARGET_MIB} MiB", verdict(ok)))
    r_pk, a_pk = rw.get("peak_rss_mib"), aw.get("peak_rss_mib")
    rows.append(("Peak resident memory (VmHWM, whole session incl. the 10,000-run burst), MiB", fmt(r_pk), fmt(a_pk),
                 fmt(ratio(a_pk, r_pk), 1, "×"), "(informational)", "—"))

    def finish_cell(f: dict) -> str:
        if not f:
            return "—"
        if f.get("complete"):
            return f"{f['seconds']:.2f}"
        return f"not done after {f['cap_s']:.0f} s ({f['announced']:,} of {f['runs']:,})"

    rf, af = rw.get("finish") or {}, aw.get("finish") or {}
    r_s = rf.get("seconds")
    ok = bool(rf.get("complete")) and r_s < FINISH_TARGET_S
    verdicts["finish"] = ok
    a_for_ratio = af.get("seconds") if af.get("complete") else af.get("cap_s")
    rtxt = fmt(ratio(a_for_ratio, r_s), 0, "×") if r_s else "—"
    if af and not af.get("complete") and r_s:
        rtxt = "> " + rtxt
    rows.append((f"{RUNS:,} newly finished runs announced (from the first file written), s", finish_cell(rf), finish_cell(af), rtxt,
                 f"< {FINISH_TARGET_S:.0f} s", verdict(ok)))
    rows.append((f"… time to write the {RUNS:,} `finished` files, s", fmt(rf.get("write_s"), 2), fmt(af.get("write_s"), 2),
                 "—", "(informational)", "—"))

    def lat_ok(l: dict | None):
        return bool(l) and l.get("received") == l.get("samples") and l["p99_ms"] < LATENCY_P99_TARGET_MS

    if rf.get("stored_s") is not None:
        rows.append((f"… of which stored in runwatch's inbox (watcher's part, before delivery), s", fmt(rf["stored_s"], 2),
                     "—", "—", "(informational)", "—"))

    rl, al = rw.get("checkin_latency") or {}, aw.get("checkin_latency") or {}
    verdicts["checkin_latency"] = ok = lat_ok(rl)
    rows.append((f"Check-in file → printed notification, ms ({rl.get('samples', 0)} samples)", lat_cell(rl), lat_cell(al),
                 fmt(ratio(al.get("p99_ms"), rl.get("p99_ms")), 0, "× (p99)"), f"p99 < {LATENCY_P99_TARGET_MS:.0f} ms", verdict(ok)))

    ll = rw.get("log_latency") or {}
    verdicts["log_latency"] = ok = lat_ok(ll)
    rows.append((f"Log record + `new_logs` → printed message, ms ({ll.get('samples', 0)} samples)", lat_cell(ll),
                 "not measured (see the real Aim row)", "—", f"p99 < {LATENCY_P99_TARGET_MS:.0f} ms", verdict(ok)))

    rr, ar = rw.get("real_aim_log_latency") or {}, aw.get("real_aim_log_latency") or {}
    a_txt = lat_cell(ar)
    if ar and not ar.get("received"):
        a_txt = f"none of {ar['samples']} announced within {ar['waited_s']:.0f} s"
    rows.append((f"Real Aim `run.log_error()` → printed message, ms ({rr.get('samples', 0)} samples)", lat_cell(rr), a_txt,
                 "—", "(informational)", "—"))

    rows.append(("Start-up until ready, s", fmt(rw.get("startup_s"), 2), fmt(aw.get("startup_s"), 2),
                 "—", "(informational)", "—"))

    rs = res.get("rescan", [])
    if rs:
        import math

        ok = all(
            b["rescan_per_run_us"] / a["rescan_per_run_us"] < LINEAR_TOLERANCE ** math.log10(b["runs"] / a["runs"])
            for a, b in zip(rs, rs[1:])
        )
        verdicts["rescan_linear"] = ok
        cell = " / ".join(f"{x['rescan_median_ms']:.1f} ms" for x in rs)
        rows.append(("Full rescan at " + " / ".join(f"{x['runs']:,}" for x in rs) + " runs", cell, "—", "—",
                     f"linear (µs/run grows < {LINEAR_TOLERANCE:.0f}× per 10× runs)", verdict(ok)))

    head = ("Measure", "runwatch", "aim-watcher 3.29.1", "aim-watcher / runwatch", "Target", "Result")
    md = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    if rs:
        md += ["", "Full rescan of an already known repository (`Watcher::scan`, in-process, median of "
               f"{rs[0]['scans']}; nothing changed, so nothing is written):", "",
               "| Runs | Files | Rescan median (min–max), ms | µs per run | Listing alone, ms | Listing + parsing, ms | First (importing) scan, ms | Tick + next deadline, ms |",
               "|---:|---:|---|---:|---:|---:|---:|---:|"]
        md += [f"| {x['runs']:,} | {x['files']:,} | {x['rescan_median_ms']:.2f} ({x['rescan_min_ms']:.2f}–{x['rescan_max_ms']:.2f}) | "
               f"{x['rescan_per_run_us']:.2f} | {x['list_only_median_ms']:.2f} | {x.get('list_parse_median_ms', float('nan')):.2f} | "
               f"{x['first_scan_ms']:.0f} | {x['tick_median_ms']:.3f} |" for x in rs]
    return "\n".join(md), verdicts


def machine_md(m: dict, cmd: str) -> str:
    return "\n".join([
        f"- Date: {m['date']}",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, work dir on {m['disk_fs']}",
        f"- Command: `{cmd}`",
    ])


def update_doc(doc: Path, block: str) -> None:
    begin, end = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    pre, rest = text.split(begin, 1)
    _, post = rest.split(end, 1)
    doc.write_text(f"{pre}{begin}\n{block}\n{end}{post}")
    log(f"updated {doc}")


# --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle-secs", type=float, default=60, help="idle CPU window per watcher (default 60, at least 30)")
    ap.add_argument("--settle", type=float, default=10, help="wait after start-up before the idle window (default 10)")
    ap.add_argument("--samples", type=int, default=300, help="latency samples (default 300)")
    ap.add_argument("--aim-log-samples", type=int, default=20, help="real-Aim log_error samples (default 20)")
    ap.add_argument("--finish-cap", type=float, default=120, help="longest wait for the 10,000 announcements (default 120)")
    ap.add_argument("--rescan-runs", default="1000,10000,100000", help="run counts of the rescan benchmark")
    ap.add_argument("--rescan-scans", type=int, default=7, help="timed rescans per size (median reported)")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    ap.add_argument("--skip-aim", action="store_true", help="measure runwatch only (no ratios)")
    ap.add_argument("--keep-work", action="store_true", help="keep the throwaway directory under target/")
    ap.add_argument("--update-doc", action="store_true", help="rewrite the results section of BENCHMARKS.md")
    args = ap.parse_args()
    if args.idle_secs < 30:
        ap.error("--idle-secs must be at least 30")
    if sys.platform != "linux":
        ap.error("this benchmark reads /proc: Linux only")

    cmd = "python3 tests/benchmarks/watcher.py" + "".join(f" {a}" for a in sys.argv[1:])
    target = target_dir()
    release = target / "release"
    venv = ensure_venv(target / "bench-venv")
    if not args.no_build:
        build(release)
    bench = release / "runwatch-bench"
    work = target / "bench-work" / f"run-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    def cleanup():
        stop_all()
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)

    atexit.register(cleanup)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))

    res: dict = {"machine": machine_info(work), "command": cmd, "runs": RUNS,
                 "settings": {"idle_secs": args.idle_secs, "settle_s": args.settle, "latency_samples": args.samples}}
    log(f"machine: {res['machine']}")

    # runwatch: its first scan of a repository is quiet (history is not news), so the
    # 10,000 runs are known before anything finishes.
    log(f"building a {RUNS:,}-run Aim repository for runwatch")
    rw_repo = make_repo(venv, work / "runwatch" / "repo", RUNS)
    stage = work / "runwatch" / "stage"
    stage.mkdir()
    env = dict(os.environ, RUNWATCH_LOG="warn")
    env.pop("RUNWATCH_HOME", None)
    argv = [str(release / "runwatch"), "--data-dir", str(work / "runwatch" / "data"), "--repo", str(rw_repo),
            "start", "--http", "127.0.0.1:0"]
    res["runwatch"] = session("runwatch", argv, env, rw_repo, stage, args, venv, bench, lambda l: l == "Press Ctrl+C to exit",
                              db=work / "runwatch" / "data" / "runwatch.db")

    if args.skip_aim:
        res["aim_watcher"] = {}
    else:
        log(f"building a {RUNS:,}-run Aim repository for aim-watcher")
        aw_repo = make_repo(venv, work / "aim" / "repo", RUNS)
        stage = work / "aim" / "stage"
        stage.mkdir()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        argv = [str(venv / "bin" / "aim-watcher"), "--repo", str(aw_repo), "start"]
        # aim-watcher's logger notifier writes through Python logging to stderr; it is ready
        # once it announces itself (its first poll follows immediately; --settle covers it).
        res["aim_watcher"] = session("aim-watcher", argv, env, aw_repo, stage, args, venv, bench,
                                     lambda l: l.startswith("Watcher is running for repo"))

    log("rescan cost (in-process)")
    out = subprocess.run([str(bench), "rescan", "--dir", str(work / "rescan"), "--fixtures", str(target / "bench-fixtures"),
                          "--runs", args.rescan_runs,
                          "--scans", str(args.rescan_scans)], check=True, capture_output=True, text=True, timeout=1800)
    res["rescan"] = json.loads(out.stdout)["rescan"]

    table, verdicts = report(res)
    res["verdicts"] = verdicts
    load = [f"{n} {res[k]['idle']['rest_of_machine_busy_pct_of_core']:.0f} %" for k, n in (("runwatch", "runwatch's"), ("aim_watcher", "aim-watcher's"))
            if (res.get(k) or {}).get("idle")]
    note = f"- Other processes kept the machine busy during {' and '.join(load)} idle window (% of one core, from /proc/stat)" if load else ""
    block = machine_md(res["machine"], cmd) + ("\n" + note if note else "") + "\n\n" + table + "\n"
    (target / "bench-results.json").write_text(json.dumps(res, indent=2) + "\n")
    (target / "bench-results.md").write_text(block)
    print()
    print(block)
    print(f"Results: {target / 'bench-results.json'}")
    failed = [k for k, v in verdicts.items() if v is False]
    print("All targets met." if not failed else "Targets NOT met: " + ", ".join(failed))
    if args.update_doc:
        update_doc(ROOT / "BENCHMARKS.md", block)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
