//! Slurm source benchmark: the CPU one poll costs with 1,000 jobs in Slurm's answer. The
//! answer is generated in the real formats (`scontrol -o show job` lines as the test
//! cluster prints them, `sacct -P` lines) and served by stand-ins for `scontrol` and
//! `sacct` on PATH (`cat` of the file), so the whole poll runs: spawning the command,
//! reading its output, parsing, comparing with the last poll, and storing the changes.
//! Three cases: the first poll (1,000 jobs seen), a steady poll (nothing changed), and a
//! poll where 100 jobs ended (100 notifications stored).
//!
//! Run: `make bench` (or `cargo run --release -p runwatch-tests --bin runwatch-bench-slurm`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use runwatch_core::{DataDir, Store};
use runwatch_slurm::{Mode, Source};

const JOBS: usize = 1000;
const ROUNDS: usize = 20;

/// One `scontrol -o show job` line as slurm-wlm 22.05 prints it (from the test cluster).
fn scontrol_line(id: usize, state: &str, exit: &str) -> String {
    format!(
        "JobId={id} ArrayJobId=5000 ArrayTaskId={id} JobName=sweep-{id} UserId=alice(1000) GroupId=alice(1000) MCS_label=N/A \
         Priority=4294901759 Nice=0 Account=(null) QOS=(null) JobState={state} Reason=None Dependency=(null) Requeue=1 \
         Restarts=0 BatchFlag=1 Reboot=0 ExitCode={exit} RunTime=00:10:01 TimeLimit=1-00:00:00 TimeMin=N/A \
         SubmitTime=2026-11-30T20:16:38 EligibleTime=2026-11-30T20:16:38 AccrueTime=2026-11-30T20:16:38 \
         StartTime=2026-11-30T20:16:40 EndTime=2026-12-01T20:16:40 Deadline=N/A SuspendTime=None SecsPreSuspend=0 \
         LastSchedEval=2026-11-30T20:16:40 Scheduler=Main Partition=gpu AllocNode:Sid=login1:9290 ReqNodeList=(null) \
         ExcNodeList=(null) NodeList=gpu{n:03} BatchHost=gpu{n:03} NumNodes=1 NumCPUs=8 NumTasks=1 CPUs/Task=8 \
         ReqB:S:C:T=0:0:*:* TRES=cpu=8,mem=64G,node=1,billing=8,gres/gpu=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* \
         CoreSpec=* MinCPUsNode=8 MinMemoryNode=64G MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK \
         Contiguous=0 Licenses=(null) Network=(null) Command=/home/alice/exp/train.sh WorkDir=/home/alice/exp \
         StdErr=/home/alice/exp/slurm-{id}.out StdIn=/dev/null StdOut=/home/alice/exp/slurm-{id}.out Power= TresPerNode=gres:gpu:1",
        n = id % 200
    )
}

fn sacct_line(id: usize, state: &str, exit: &str) -> String {
    format!(
        "{id}|5000_{id}|sweep-{id}|alice|{state}|{exit}|None|gpu{n:03}|601|1440|2026-11-30T20:16:38|2026-11-30T20:16:40|Unknown",
        n = id % 200
    )
}

/// Prints one job's line: (id, state, exit code).
type Line = fn(usize, &str, &str) -> String;

fn answer(line: Line, ended: usize) -> String {
    (0..JOBS).map(|i| if i < ended { line(i + 1, "FAILED", "1:0") } else { line(i + 1, "RUNNING", "0:0") }).collect::<Vec<_>>().join("\n")
}

/// CPU seconds of this process and of its waited-for children.
fn cpu() -> (f64, f64) {
    let get = |who| {
        // SAFETY: rusage is plain data getrusage fills in.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer.
        unsafe { libc::getrusage(who, &mut u) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(u.ru_utime) + t(u.ru_stime)
    };
    (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN))
}

fn stand_in(bin: &Path, name: &str, file: &Path) {
    let path = bin.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nexec cat '{}'\n", file.display())).expect("stand-in");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn bench(mode: Mode, tmp: &Path) {
    let (name, line): (&str, Line) = match mode {
        Mode::Sacct => ("sacct", sacct_line),
        _ => ("scontrol", scontrol_line),
    };
    let bin = tmp.join(format!("bin-{name}"));
    std::fs::create_dir_all(&bin).expect("bin dir");
    let file = tmp.join(format!("{name}.txt"));
    let data = DataDir::at(tmp.join(format!("data-{name}")));
    let mut store = Store::open(&data).expect("store");
    // SAFETY: set before any thread that reads the environment starts.
    unsafe { std::env::set_var("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())) };
    stand_in(&bin, name, &file);
    let size = answer(line, 0).len();
    println!("{name}: {JOBS} jobs, {size} bytes an answer");

    let mut measure = |what: &str, ended: usize, fresh: bool, rounds: usize| {
        let mut self_cpu = 0.0;
        let mut child_cpu = 0.0;
        let mut wall = Duration::ZERO;
        let mut stored = 0;
        for r in 0..rounds {
            std::fs::write(&file, answer(line, 0)).expect("answer");
            let mut source = Source::new(Some("alice".into()), mode, Duration::from_secs(600));
            if fresh {
                // A new source starts from the runs the store knows: none, for a first poll.
                store.write(|tx| Ok(tx.execute("DELETE FROM runs", [])?)).expect("clear");
            } else {
                source.poll_once(&mut store, r as i64).expect("first poll");
                std::fs::write(&file, answer(line, ended)).expect("answer");
            }
            let (s0, c0) = cpu();
            let t = Instant::now();
            stored += source.poll_once(&mut store, 1000 + r as i64).expect("poll").len();
            wall += t.elapsed();
            let (s1, c1) = cpu();
            self_cpu += s1 - s0;
            child_cpu += c1 - c0;
            if ended > 0 {
                // The next round's ends are news again (a run the store knows ended would be
                // one `runwatch exec` reported: Slurm's "failed" is not said again).
                store.write(|tx| Ok(tx.execute_batch("DELETE FROM notifications; DELETE FROM runs")?)).expect("clear");
            }
        }
        let n = rounds as f64;
        println!(
            "  {what:<34} runwatch CPU {:>6.2} ms, {name} stand-in CPU {:>5.2} ms, wall {:>6.2} ms a poll ({} notifications a poll)",
            self_cpu / n * 1e3,
            child_cpu / n * 1e3,
            wall.as_secs_f64() / n * 1e3,
            stored / rounds
        );
    };
    measure("first poll (1,000 jobs seen)", 0, true, ROUNDS);
    measure("steady poll (nothing changed)", 0, false, ROUNDS);
    measure("100 jobs ended", 100, false, ROUNDS);
}

fn main() {
    let tmp = tempfile::tempdir().expect("temp dir");
    println!("Slurm source: CPU per poll, mean of {ROUNDS} polls each");
    bench(Mode::Scontrol, tmp.path());
    bench(Mode::Sacct, tmp.path());
}
