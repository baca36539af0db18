//! Why a run stopped, as `runwatch exec` reports it, with real processes: the exit code,
//! SIGTERM and SIGKILL, the kernel's OOM killer in a memory-limited cgroup the test makes
//! (as root), the Python exception as the title, `--alert-on` bursts; locally and through
//! a real server (`--server`). And `runwatch runs` listing states and causes.

use std::path::{Path, PathBuf};
use std::process::Command;

use runwatch_core::{Level, RunState};
use runwatch_tests::{all_notifications as notifications, open_store as store};
use runwatch_tests::{binary, run_cli, runwatch, token_in, url_in, wait_until, CliOutput, Running};

fn exec(data: &Path, args: &[&str]) -> CliOutput {
    run_cli(runwatch(data).args(["--notifications", "hidden", "exec"]).args(args).env_remove("SLURM_JOB_ID"))
}

fn run_state(data: &Path, id: &str) -> (RunState, Option<String>) {
    let run = store(data).run(id).unwrap().unwrap_or_else(|| panic!("no run {id}"));
    (run.state, run.cause)
}

#[test]
fn exit_codes_and_signals_are_failures_with_their_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    exec(d, &["--run", "code", "--", "sh", "-c", "exit 3"]).expect_code(3);
    assert_eq!(run_state(d, "code"), (RunState::Failed, Some("exit code 3".into())));

    exec(d, &["--run", "term", "--", "sh", "-c", "kill -TERM $$"]).expect_code(143);
    assert_eq!(run_state(d, "term"), (RunState::Failed, Some("killed by SIGTERM".into())));
    let n = notifications(d).pop().unwrap();
    assert!(n.title.starts_with("Run 'sh' was killed by SIGTERM after "), "{}", n.title);
    assert!(n.body.contains("Cause: killed by SIGTERM"), "{}", n.body);

    // SIGKILL without a cgroup counter that rose: maybe the OOM killer, and said so.
    exec(d, &["--run", "kill", "--", "sh", "-c", "kill -KILL $$"]).expect_code(137);
    assert_eq!(run_state(d, "kill"), (RunState::Failed, Some("SIGKILL, possibly the OOM killer".into())));

    exec(d, &["--run", "fine", "--", "true"]).expect_code(0);
    assert_eq!(run_state(d, "fine"), (RunState::Finished, None));

    // `runwatch runs` shows the same.
    let out = run_cli(runwatch(d).args(["--notifications", "hidden", "runs"]));
    out.expect_code(0);
    let line = out.stdout.lines().find(|l| l.starts_with("term ")).unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(line.contains(" failed ") && line.contains("killed by SIGTERM"), "{line}");
    assert!(out.stdout.lines().next().unwrap().starts_with("RUN "), "{}", out.stdout);
    let json = run_cli(runwatch(d).args(["--notifications", "hidden", "--json", "runs"]));
    json.expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let code = runs.as_array().unwrap().iter().find(|r| r["id"] == "code").unwrap();
    assert_eq!((code["state"].as_str(), code["cause"].as_str()), (Some("failed"), Some("exit code 3")));
}

#[test]
fn a_python_traceback_gives_the_exception_as_the_title() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let script = "import sys\nprint('epoch 1', flush=True)\ndef step():\n    raise RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')\nstep()\n";
    exec(d, &["--name", "resnet", "--run", "py", "--", "python3", "-c", script]).expect_code(1);
    let n = notifications(d).pop().unwrap();
    assert_eq!(n.level, Level::Error);
    assert_eq!(n.title, "Run 'resnet' failed: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB");
    assert!(n.body.contains("Exit code: 1") && n.body.contains("Traceback (most recent call last):"), "{}", n.body);
    assert_eq!(run_state(d, "py"), (RunState::Failed, Some("exit code 1".into())));
}

#[test]
fn alert_on_gives_one_warning_per_burst() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Two bursts, apart by more than the gap: three matches, a pause, two (one on stderr).
    let script = "echo 'step 1 loss=0.31'; echo 'step 2 loss=nan'; echo 'step 3 loss: nan'; echo 'step 4 loss nan'; \
                  sleep 1.5; echo 'step 5 loss=nan' >&2; echo 'step 6 loss=nan'; echo done";
    let out = exec(d, &["--run", "nan", "--alert-on", "loss[=: ]+nan", "--alert-burst-gap", "1s", "--", "sh", "-c", script]);
    out.expect_code(0);
    assert!(out.stdout.contains("step 4 loss nan\n"), "output passes through: {}", out.stdout);
    let warnings: Vec<_> = notifications(d).into_iter().filter(|n| n.level == Level::Warning).collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert_eq!(warnings[0].title, "Run 'sh': step 2 loss=nan");
    assert_eq!(warnings[0].repeat_count, 2, "the rest of the first burst");
    // Its first line is on stderr, the next on stdout: either may be read first.
    assert!(["Run 'sh': step 5 loss=nan", "Run 'sh': step 6 loss=nan"].contains(&warnings[1].title.as_str()), "{}", warnings[1].title);
    assert_eq!(warnings[1].repeat_count, 1);
    assert!(warnings[0].body.contains("loss[=: ]+nan"), "{}", warnings[0].body);
    // A pattern that is not a regular expression is a usage error.
    exec(d, &["--alert-on", "loss(", "--", "true"]).expect_one_line_error(2);
}

/// A v1 or v2 memory cgroup made for one test, removed when dropped.
struct MemoryCgroup {
    dir: PathBuf,
}

impl MemoryCgroup {
    /// A cgroup limited to `bytes`, or why this machine cannot make one.
    fn new(bytes: u64) -> Result<MemoryCgroup, String> {
        let name = format!("runwatch-test-{}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let v2 = Path::new("/sys/fs/cgroup");
        let write = |f: PathBuf, v: &str| std::fs::write(&f, v).map_err(|e| format!("cannot write {}: {e}", f.display()));
        if v1.join("memory.limit_in_bytes").exists() {
            let dir = v1.join(&name);
            std::fs::create_dir(&dir).map_err(|e| format!("cannot make a v1 memory cgroup (root is needed): {e}"))?;
            let cg = MemoryCgroup { dir };
            write(cg.dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
            // With swap, the job would swap instead of being killed.
            if cg.dir.join("memory.memsw.limit_in_bytes").exists() {
                write(cg.dir.join("memory.memsw.limit_in_bytes"), &bytes.to_string())?;
            }
            return Ok(cg);
        }
        let controllers = std::fs::read_to_string(v2.join("cgroup.subtree_control")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            let dir = v2.join(&name);
            std::fs::create_dir(&dir).map_err(|e| format!("cannot make a v2 cgroup (root is needed): {e}"))?;
            let cg = MemoryCgroup { dir };
            write(cg.dir.join("memory.max"), &bytes.to_string())?;
            let _ = write(cg.dir.join("memory.swap.max"), "0");
            return Ok(cg);
        }
        Err("no memory cgroup controller is available to this process (neither v1 nor v2 with memory delegated)".into())
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn the_oom_killer_in_a_memory_limited_cgroup_is_named() {
    let cgroup = match MemoryCgroup::new(64 << 20) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // runwatch and its command both run in the cgroup; the command takes 400 MiB of it.
    let procs = cgroup.dir.join("cgroup.procs");
    let mut cmd = runwatch(d);
    cmd.args(["--notifications", "hidden", "exec", "--run", "big", "--name", "big", "--", "python3", "-c"])
        .arg("a = bytearray(400 << 20)\nprint('allocated')");
    let line = format!("echo $$ > '{}' && exec \"$@\"", procs.display());
    let out = run_cli(
        Command::new("sh")
            .arg("-c")
            .arg(line)
            .arg("sh")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))),
    );
    out.expect_code(137);
    let (state, cause) = run_state(d, "big");
    assert_eq!(state, RunState::Failed);
    let cause = cause.unwrap();
    assert!(cause.starts_with("killed by the OOM killer (cgroup memory.") && cause.contains(" oom_kill 0→1)"), "{cause}");
    let n = notifications(d).pop().unwrap();
    assert!(n.title.starts_with("Run 'big' was killed by the OOM killer after "), "{}", n.title);
    assert!(n.body.contains("Killed by the OOM killer (cgroup memory."), "{}", n.body);
}

/// A `runwatch start` with its URL and token.
fn start_server(data_dir: &Path) -> (Running, String, String) {
    let mut daemon =
        Running::spawn(Command::new(binary("runwatch")).arg("--data-dir").arg(data_dir).args(["start", "--http", "127.0.0.1:0"]));
    let line = daemon.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at "));
    let ui = url_in(&line);
    let token = token_in(&ui);
    let url = ui.split("/#").next().unwrap().trim_end_matches('/').to_string();
    (daemon, url, token)
}

#[test]
fn through_a_server_the_cause_and_the_exception_arrive_too() {
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    let (_daemon, url, token) = start_server(&server_dir);
    let job = tmp.path().join("job");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::write(job.join("token"), &token).unwrap();
    let script = "print('step 1 loss=nan', flush=True)\nraise ValueError('loss diverged')";
    let out = run_cli(
        runwatch(&job)
            .arg("--server")
            .arg(&url)
            .arg("--token-file")
            .arg(job.join("token"))
            .args(["--notifications", "hidden", "exec", "--name", "trainer", "--alert-on", "loss[=: ]+nan", "--", "python3", "-c", script])
            .env("SLURM_JOB_ID", "777")
            .env_remove("SLURM_ARRAY_JOB_ID")
            .env_remove("SLURM_ARRAY_TASK_ID"),
    );
    out.expect_code(1);
    // Inside a Slurm job, the run is the job's: the id the Slurm source gives it.
    let run =
        wait_until("the failed run on the server", || store(&server_dir).run("slurm-777").unwrap().filter(|r| r.state == RunState::Failed));
    assert_eq!(run.cause.as_deref(), Some("exit code 1"));
    assert_eq!(run.labels.get("slurm_job_id").map(String::as_str), Some("777"));
    let n = wait_until("the failure notification", || {
        notifications(&server_dir).into_iter().find(|n| n.run_id.as_deref() == Some("slurm-777") && n.level == Level::Error)
    });
    assert_eq!(n.title, "Run 'trainer' failed: ValueError: loss diverged");
    let alert = wait_until("the alert on the server", || {
        notifications(&server_dir).into_iter().find(|n| n.run_id.as_deref() == Some("slurm-777") && n.level == Level::Warning)
    });
    assert_eq!(alert.title, "Run 'trainer': step 1 loss=nan");

    // A signal: the same words as locally.
    let out = run_cli(
        runwatch(&job)
            .arg("--server")
            .arg(&url)
            .arg("--token-file")
            .arg(job.join("token"))
            .args(["--notifications", "hidden", "exec", "--run", "sig", "--", "sh", "-c", "kill -TERM $$"])
            .env_remove("SLURM_JOB_ID"),
    );
    out.expect_code(143);
    let run = wait_until("the killed run on the server", || store(&server_dir).run("sig").unwrap().filter(|r| r.cause.is_some()));
    assert_eq!((run.state, run.cause.as_deref()), (RunState::Failed, Some("killed by SIGTERM")));
    let n = notifications(&server_dir).into_iter().find(|n| n.run_id.as_deref() == Some("sig") && n.level == Level::Error).unwrap();
    assert!(n.title.starts_with("Run 'sh' was killed by SIGTERM after "), "{}", n.title);
}
