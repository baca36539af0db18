#!/usr/bin/env python3
"""The desktop app (`runwatch-app`) watching 10,000 runs: start-up and idle cost of all its
processes.

    python3 tests/benchmarks/desktop.py            # from the repository root (or `make bench-desktop`)

The app's processes (README.md, "The desktop app's processes"): `runwatch-app` execs
`runwatch-tray` (engine, tray icon, popups), which keeps the pid and so is "the app" below;
the window is its child `runwatch-app --window`, with WebKit's web and network processes
below that. Every descendant of the app's pid is counted.

Builds the UI (`npm run build` in ui/), `runwatch-app` and `runwatch-tray` in release, then re-runs itself in
a private X server and D-Bus session (`xvfb-run -a dbus-run-session`), with the test tray host
(tests/desktop/sni_watcher.py, a StatusNotifierWatcher that logs every registration to a
file) on that bus, and measures, with an Aim repository of 10,000 runs passed via `--repo`:

- time from spawning the app to its tray item's registration line in the watcher's log
  (first launch with an empty data dir, then relaunches on the same data dir), and to the
  "API at" line it prints;
- idle cost after start-up settled (`--settle`, default 30 s), over `--window` (default 60 s):
  CPU % of one core (utime + stime from /proc/PID/stat) of the app and, separately, of its
  descendants (the window process and WebKit's), and their resident memory (VmRSS;
  PSS from smaps_rollup too, which splits shared pages fairly). Once with the window open
  (a plain launch), once started `--hidden` (tray only, as at login).

The app runs with WEBKIT_DISABLE_DMABUF_RENDERER=1 NO_AT_BRIDGE=1 (no GPU under Xvfb, no
accessibility bus), and XDG config/data/cache dirs in the throwaway work dir under
target/bench-desktop/. Prints a table and a PASS/FAIL line for the --hidden start against
its target (all its processes under 80 MiB RSS); writes target/bench-desktop-results.json.
Nothing here asserts (the exit status does not depend on the figures).

    python3 tests/benchmarks/desktop.py --only-hidden   # just the --hidden idle figures
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from procinfo import CLK_TCK, cpu_ticks, descendants, loadavg, machine_busy, pss_kib, status_kib, thread_ticks
from procinfo import machine as machine_info

ROOT = Path(__file__).resolve().parents[2]
SNI_WATCHER = ROOT / "tests" / "desktop" / "sni_watcher.py"
INNER_FLAG = "--inner"
# Issue 12: started --hidden (as at login), the app and all its processes together stay
# under this resident memory (VmRSS of the app plus its descendants, after settling).
HIDDEN_RSS_TARGET_MIB = 80.0


def log(msg: str) -> None:
    print(f"[bench-desktop {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")).resolve()


def run(argv: list, **kw) -> None:
    log("$ " + " ".join(str(a) for a in argv))
    subprocess.run(argv, check=True, **kw)


# --------------------------------------------------------------------------------------
# Fixtures


def make_repo(root: Path, runs: int) -> Path:
    """An Aim repository with `runs` runs in check_ins/, files as Aim leaves them: every other
    run finished (`starting`, `check_in`, `finished`, the final `progress` with expect 1), the
    others running with a promise of an hour (`starting`, `check_in`, `progress`), so no
    deadline falls inside the benchmark."""
    check_ins = root / ".aim" / "check_ins"
    check_ins.mkdir(parents=True)
    t = time.time()
    for i in range(runs):
        h = f"de5c{i:020x}"
        if i % 2 == 0:
            files = ((1, "starting", 0), (7, "check_in", 60), (8, "finished", 0), (9, "progress", 1))
        else:
            files = ((1, "starting", 0), (6, "check_in", 3600), (7, "progress", 3600))
        for idx, flag, expect in files:
            name = f"{h}-{idx:016d}-{flag}-{t:011.2f}-{expect:05d}"
            os.close(os.open(check_ins / name, os.O_WRONLY | os.O_CREAT, 0o644))
    return root


class TrayHost:
    """tests/desktop/sni_watcher.py on the private bus; registrations are lines in `log_path`."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        log_path.write_text("")
        self.proc = subprocess.Popen(["/usr/bin/python3", str(SNI_WATCHER), str(log_path)], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "StatusNotifierWatcher ready":
            raise SystemExit(f"the test StatusNotifierWatcher did not start: {line!r}")

    def lines(self) -> int:
        return len(self.log_path.read_text().splitlines())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class App:
    """One `runwatch-app` process; its stdout lines are kept with their arrival times."""

    def __init__(self, exe: Path, env: dict, repo: Path, hidden: bool, log_path: Path):
        argv = [str(exe), "--repo", str(repo)] + (["--hidden"] if hidden else [])
        self.stderr = open(log_path, "ab")
        self.spawned = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.api_line_at: float | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if "API at" in line and self.api_line_at is None:
                self.api_line_at = time.monotonic()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self.stderr.close()


def wait_registration(tray: TrayHost, before: int, app: App, timeout: float) -> float:
    """Polls the tray host's log (every millisecond) until a new registration line appears."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tray.lines() > before:
            return time.monotonic()
        if app.proc.poll() is not None:
            raise SystemExit(f"runwatch-app exited with {app.proc.returncode} before registering its tray item")
        time.sleep(0.001)
    raise SystemExit(f"no tray registration within {timeout:.0f} s")


# --------------------------------------------------------------------------------------
# Measurements


def launch_times(exe: Path, env: dict, repo: Path, tray: TrayHost, launches: int, logs: Path) -> list[dict]:
    out = []
    for i in range(launches):
        before = tray.lines()
        app = App(exe, env, repo, hidden=False, log_path=logs / "app-stderr.log")
        try:
            registered = wait_registration(tray, before, app, timeout=120)
            time.sleep(3)  # let it finish starting before it is stopped
            api = app.api_line_at
            r = {
                "launch": i + 1,
                "data_dir": "empty" if i == 0 else "existing",
                "tray_registered_ms": (registered - app.spawned) * 1000,
                "api_line_ms": None if api is None else (api - app.spawned) * 1000,
            }
            log(f"launch {i + 1} ({r['data_dir']} data dir): tray registered after {r['tray_registered_ms']:.0f} ms")
            out.append(r)
        finally:
            app.stop()
        time.sleep(1)
    return out


def measure_idle(exe: Path, env: dict, repo: Path, tray: TrayHost, hidden: bool, settle: float, window: float, logs: Path) -> dict:
    name = "hidden (tray only)" if hidden else "window open"
    before = tray.lines()
    app = App(exe, env, repo, hidden=hidden, log_path=logs / "app-stderr.log")
    try:
        registered = wait_registration(tray, before, app, timeout=120)
        log(f"{name}: tray registered after {(registered - app.spawned) * 1000:.0f} ms; settling {settle:.0f} s")
        time.sleep(settle)
        kids0 = descendants(app.pid)
        startup_app = cpu_ticks(app.pid) or 0
        startup_kids = sum(cpu_ticks(p) or 0 for p in kids0)
        log(f"{name}: measuring {window:.0f} s; children: {', '.join(f'{c} ({p})' for p, c in sorted(kids0.items())) or 'none'}")
        load0 = loadavg()
        b0, n0 = machine_busy()
        t0 = time.monotonic()
        app0 = cpu_ticks(app.pid)
        threads0 = thread_ticks(app.pid)
        first: dict[int, int] = {p: t for p in kids0 if (t := cpu_ticks(p)) is not None}
        last = dict(first)
        names = dict(kids0)
        rss_app, rss_kids = [], []
        end = t0 + window
        while True:
            kids = descendants(app.pid)
            for p, c in kids.items():
                t = cpu_ticks(p)
                if t is None:
                    continue
                first.setdefault(p, t)  # a child born during the window counts from then
                last[p] = t
                names[p] = c
            rss_app.append(status_kib(app.pid, "VmRSS") or 0)
            rss_kids.append(sum(status_kib(p, "VmRSS") or 0 for p in kids))
            now = time.monotonic()
            if now >= end:
                break
            time.sleep(min(1.0, end - now))
        app1, t1 = cpu_ticks(app.pid), time.monotonic()
        threads1 = thread_ticks(app.pid)
        b1, n1 = machine_busy()
        kids = descendants(app.pid)
        per_child = {}
        for p, c in kids.items():
            per_child[f"{c} ({p})"] = {
                "rss_mib": (status_kib(p, "VmRSS") or 0) / 1024,
                "pss_mib": (pss_kib(p) or 0) / 1024,
                "cpu_pct_of_core": 100.0 * (last.get(p, 0) - first.get(p, 0)) / CLK_TCK / (t1 - t0),
            }
        pss_app = (pss_kib(app.pid) or 0) / 1024
        pss_kids = sum(pss_kib(p) or 0 for p in kids) / 1024
        if app0 is None or app1 is None:
            raise SystemExit("runwatch-app exited during the measurement")
        elapsed = t1 - t0
        app_pct = 100.0 * (app1 - app0) / CLK_TCK / elapsed
        kids_pct = 100.0 * sum(last[p] - first[p] for p in last) / CLK_TCK / elapsed
        machine_pct = 100.0 * (os.cpu_count() or 1) * (b1 - b0) / max(1, n1 - n0)
        res = {
            "mode": name,
            "tray_registered_ms": (registered - app.spawned) * 1000,
            "settle_s": settle,
            "window_s": elapsed,
            "startup_cpu_s_app": startup_app / CLK_TCK,
            "startup_cpu_s_children": startup_kids / CLK_TCK,
            "app_cpu_pct_of_core": app_pct,
            "children_cpu_pct_of_core": kids_pct,
            "app_rss_mib": rss_app[-1] / 1024,
            "app_rss_max_mib": max(rss_app) / 1024,
            "app_pss_mib": pss_app,
            "children_rss_mib": rss_kids[-1] / 1024,
            "children_rss_max_mib": max(rss_kids) / 1024,
            "children_pss_mib": pss_kids,
            "children": per_child,
            # Where the app's own CPU went, by thread name (% of one core over the window).
            "app_threads_cpu_pct": {
                name: round(100.0 * (t - threads0.get(name, 0)) / CLK_TCK / (t1 - t0), 3)
                for name, t in sorted(threads1.items(), key=lambda kv: threads0.get(kv[0], 0) - kv[1])
                if t - threads0.get(name, 0) > 0
            },
            "rest_of_machine_busy_pct_of_core": max(0.0, machine_pct - app_pct - kids_pct),
            "load_before": load0,
            "load_after": loadavg(),
        }
        log(f"{name}: app {app_pct:.2f} % CPU, {res['app_rss_mib']:.1f} MiB RSS; children {kids_pct:.2f} % CPU, "
            f"{res['children_rss_mib']:.1f} MiB RSS")
        return res
    finally:
        app.stop()
        time.sleep(1)


# --------------------------------------------------------------------------------------
# Report


def report(res: dict) -> str:
    m = res["machine"]
    lines = [
        f"runwatch-app with {res['runs']:,} watched runs",
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}; {m['date']}",
        f"load average before: {res['load_before']}; after: {res['load_after']}",
        "",
        "launch → tray item registered (ms)    launch → 'API at' line (ms)",
    ]
    for r in res["launches"]:
        api = "—" if r["api_line_ms"] is None else f"{r['api_line_ms']:.0f}"
        lines.append(f"  #{r['launch']} ({r['data_dir']} data dir): {r['tray_registered_ms']:8.0f}            {api:>8}")
    lines.append("")
    lines.append(f"idle, after {res['settle_s']:.0f} s settling, over {res['window_s']:.0f} s:")
    lines.append(f"  {'mode':<20} {'app CPU %':>9} {'app RSS':>9} {'app PSS':>9} {'children CPU %':>15} {'children RSS':>13} {'children PSS':>13} {'rest of machine':>16}")
    for r in res["idle"]:
        lines.append(
            f"  {r['mode']:<20} {r['app_cpu_pct_of_core']:>9.2f} {r['app_rss_mib']:>6.1f} MiB {r['app_pss_mib']:>5.1f} MiB "
            f"{r['children_cpu_pct_of_core']:>15.2f} {r['children_rss_mib']:>9.1f} MiB {r['children_pss_mib']:>9.1f} MiB "
            f"{r['rest_of_machine_busy_pct_of_core']:>13.0f} %")
        busy = ", ".join(f"{n} {v:.2f} %" for n, v in list(r["app_threads_cpu_pct"].items())[:6])
        lines.append(f"      app threads: {busy or 'none used CPU'}")
        for name, c in r["children"].items():
            lines.append(f"      {name:<32} RSS {c['rss_mib']:6.1f} MiB, PSS {c['pss_mib']:6.1f} MiB, CPU {c['cpu_pct_of_core']:.2f} %")
    for r in res["idle"]:
        if r["mode"].startswith("hidden"):
            total = r["app_rss_mib"] + r["children_rss_mib"]
            verdict = "PASS" if total < HIDDEN_RSS_TARGET_MIB else "FAIL"
            lines.append("")
            peak = r["app_rss_max_mib"] + r["children_rss_max_mib"]
            pss = r["app_pss_mib"] + r["children_pss_mib"]
            count = 1 + len(r["children"])
            lines.append(f"{verdict}: started --hidden, all {count} process(es) of the app together {total:.1f} MiB RSS "
                         f"({pss:.1f} MiB PSS) at the end of the window (peak {peak:.1f} MiB RSS; target: under "
                         f"{HIDDEN_RSS_TARGET_MIB:.0f} MiB RSS)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------


def build() -> None:
    ui = ROOT / "ui"
    if not (ui / "node_modules").is_dir():
        run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ui)
    run(["npm", "run", "--silent", "build"], cwd=ui)
    run(["cargo", "build", "--release", "--locked", "-p", "runwatch-app", "-p", "runwatch-tray"], cwd=ROOT)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10_000, help="runs in the Aim repository (default 10000)")
    p.add_argument("--launches", type=int, default=3, help="launches timed to tray registration (default 3)")
    p.add_argument("--settle", type=float, default=30.0, help="seconds after tray registration before measuring idle")
    p.add_argument("--window", type=float, default=60.0, help="seconds of idle measurement (default 60)")
    p.add_argument("--no-hidden", action="store_true", help="skip the idle measurement of a --hidden launch")
    p.add_argument("--only-hidden", action="store_true",
                   help="only the idle measurement of a --hidden launch (no timed launches, no window)")
    p.add_argument("--no-build", action="store_true", help="use the runwatch-app and runwatch-tray already built in release")
    p.add_argument(INNER_FLAG, action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> int:
    args = parse_args(sys.argv[1:])
    if not args.inner:
        if not args.no_build:
            build()
        for tool in ("xvfb-run", "dbus-run-session"):
            if not shutil.which(tool):
                raise SystemExit(f"{tool} is missing (Debian: apt-get install xvfb dbus)")
        argv = ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", "dbus-run-session", "--",
                sys.executable, str(Path(__file__).resolve()), INNER_FLAG] + [a for a in sys.argv[1:] if a != "--no-build"]
        return subprocess.run(argv).returncode

    exe = target_dir() / "release" / "runwatch-app"
    for built in (exe, exe.with_name("runwatch-tray")):
        if not built.exists():
            raise SystemExit(f"{built} is not built (run without --no-build)")
    if not os.environ.get("DISPLAY") or not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        raise SystemExit("the inner run needs xvfb-run and dbus-run-session")
    work = target_dir() / "bench-desktop"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        log(f"creating an Aim repository with {args.runs:,} runs")
        repo = make_repo(work / "repo", args.runs)
        xdg = work / "xdg"
        env = dict(os.environ, RUNWATCH_HOME=str(work / "data"), WEBKIT_DISABLE_DMABUF_RENDERER="1", NO_AT_BRIDGE="1",
                   XDG_CONFIG_HOME=str(xdg / "config"), XDG_DATA_HOME=str(xdg / "data"), XDG_CACHE_HOME=str(xdg / "cache"),
                   XDG_STATE_HOME=str(xdg / "state"))
        env.pop("RUNWATCH_LOG", None)
        tray = TrayHost(work / "sni.jsonl")
        try:
            load_before = loadavg()
            launches = [] if args.only_hidden else launch_times(exe, env, repo, tray, args.launches, work)
            idle = [] if args.only_hidden else [measure_idle(exe, env, repo, tray, False, args.settle, args.window, work)]
            if args.only_hidden or not args.no_hidden:
                idle.append(measure_idle(exe, env, repo, tray, True, args.settle, args.window, work))
            load_after = loadavg()
        finally:
            tray.stop()
        res = {
            "runs": args.runs,
            "machine": machine_info(),
            "env": "WEBKIT_DISABLE_DMABUF_RENDERER=1 NO_AT_BRIDGE=1 (xvfb-run -a dbus-run-session)",
            "load_before": load_before,
            "load_after": load_after,
            "settle_s": args.settle,
            "window_s": args.window,
            "launches": launches,
            "idle": idle,
        }
        out = target_dir() / "bench-desktop-results.json"
        out.write_text(json.dumps(res, indent=2))
        print(report(res))
        print(f"\nfigures also in {out}")
    finally:
        shutil.rmtree(work / "repo", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
