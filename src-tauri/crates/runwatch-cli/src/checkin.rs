//! `runwatch check-in`: Aim's check-in protocol without Aim, for jobs in any language.
//!
//! Writes one empty file into the repository's `.aim/check_ins/`, named as Aim names them
//! (`{run}-{idx:016}-{flag}-{utc_time:011.2f}-{expect_next_in:05}`), with the next idx of
//! the run (the counter is shared by all flags), then deletes older files of the same run
//! and flag, as Aim does (`shared/spec/aim-checkins.md`).
//!
//! The file is created under a hidden temporary name in `.aim/` itself and hard-linked
//! into `check_ins/`: the directory only ever holds complete, well-formed names (Aim's own
//! watcher crashes on names it cannot parse), and linking never replaces a file, so two
//! check-ins racing for the same idx cannot overwrite each other — the loser takes the next.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{ArgGroup, Args};
use runwatch_aim::checkins::{CheckIn, Flag};
use runwatch_aim::repo::{AimRepo, RepoError};
use runwatch_core::check_ins::CheckInReport;

use crate::output;
use crate::summary::Finished;

#[derive(Debug, Args)]
#[command(after_help = "Example, in a job's training loop: runwatch --repo . check-in --run \"$RUN_ID\" --expect-next-in 600")]
#[command(group(ArgGroup::new("what").required(true).args(["expect_next_in", "finished", "failed"])))]
pub struct CheckInArgs {
    /// The run's id (Aim's run hash, or any id of letters, digits, '_', '-' and '.')
    #[arg(long, value_name = "ID", value_parser = run_id)]
    run: String,
    /// Promise the next check-in within this many seconds (0: no deadline)
    #[arg(long, value_name = "SECONDS")]
    expect_next_in: Option<u64>,
    /// Report that the run finished successfully
    #[arg(long)]
    finished: bool,
    /// Report that the run failed (with --server: Aim's files have no such check-in)
    #[arg(long)]
    failed: bool,
    /// The failed run's exit code (with --failed)
    #[arg(long, value_name = "CODE", requires = "failed")]
    exit_code: Option<i64>,
    /// What the run said last, shown with a failure (with --server)
    #[arg(long, value_name = "TEXT")]
    message: Option<String>,
    /// A name for the run in notifications (with --server)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// A label for the run, KEY=VALUE; repeat for more (with --server). Slurm's job id,
    /// array job and task, job name and CUDA_VISIBLE_DEVICES are added when set
    #[arg(long, value_name = "KEY=VALUE", value_parser = runwatch_remote::context::parse_label)]
    label: Vec<(String, String)>,
}

/// The HTTP check-in `check-in --server` sends: this machine's name, the cluster's labels
/// and the ones given.
pub fn report(args: &CheckInArgs) -> anyhow::Result<CheckInReport> {
    let mut labels = runwatch_remote::context::cluster_labels();
    labels.extend(args.label.iter().cloned());
    let report = CheckInReport {
        run_id: args.run.clone(),
        name: args.name.clone(),
        expect_next_in: args.expect_next_in,
        finished: args.finished,
        failed: args.failed,
        exit_code: args.exit_code,
        message: args.message.clone(),
        host: Some(runwatch_remote::context::host_name()),
        labels,
        event_id: None,
        cause: None,
        title: None,
    };
    report.validate().map_err(|e| crate::usage_error("check-in", &e))?;
    Ok(report)
}

pub fn check_in(repos: &[PathBuf], args: &CheckInArgs, json: bool) -> anyhow::Result<Finished> {
    let repo = match repos {
        [] => AimRepo::open(Path::new(".")).map_err(|e| match e {
            RepoError::NotARepo(_) => anyhow::anyhow!(
                "there is no Aim repository here ('./.aim' does not exist); pass --repo DIR before the command, e.g. 'runwatch --repo DIR check-in …'"
            ),
            other => other.into(),
        })?,
        [one] => AimRepo::open(one)?,
        _ => {
            return Err(crate::usage_error(
                "check-in",
                "check-in writes to one repository: pass --repo once",
            ))
        }
    };
    if args.failed || args.message.is_some() || args.name.is_some() || !args.label.is_empty() {
        return Err(crate::usage_error(
            "check-in",
            "--failed, --message, --name and --label need --server URL: Aim's check-in files carry none of them",
        ));
    }
    // clap requires exactly one of --finished and --expect-next-in.
    let (flag, expect) = if args.finished { (Flag::Finished, 0) } else { (Flag::CheckIn, args.expect_next_in.unwrap_or(0)) };
    let written = write(&repo, &args.run, flag, expect)?;

    let mut out = output::stdout();
    if json {
        let Written { run, idx, flag, expect_next_in, file } = &written;
        writeln!(out, "{}", serde_json::json!({ "run": run, "idx": idx, "flag": flag, "expect_next_in": expect_next_in, "file": file }))?;
    } else if flag == Flag::Finished {
        writeln!(out, "Run '{}' reported finished (check-in {}).", written.run, written.idx)?;
    } else if expect == 0 {
        writeln!(out, "Run '{}' checked in (check-in {}), with no deadline for the next one.", written.run, written.idx)?;
    } else {
        writeln!(out, "Run '{}' checked in (check-in {}); the next check-in is expected within {} s.", written.run, written.idx, expect)?;
    }
    Ok(Finished::ok())
}

/// What was written.
#[derive(Debug)]
struct Written {
    run: String,
    idx: u64,
    flag: String,
    expect_next_in: u64,
    file: PathBuf,
}

/// Accepts ids that make a check-in file name Aim's parser reads back unchanged.
fn run_id(s: &str) -> Result<String, String> {
    let probe = CheckIn { run_hash: s.to_string(), idx: 1, flag: Flag::CheckIn, utc_time: 0.0, expect_next_in: 0 };
    match CheckIn::parse(&probe.file_name()) {
        Ok(c) if c.run_hash == s => Ok(s.to_string()),
        _ => Err("a run id may hold only letters, digits, '_', '-' and '.', and cannot start with '.'".into()),
    }
}

/// Writes the check-in file and removes the older ones of the same run and flag.
fn write(repo: &AimRepo, run: &str, flag: Flag, expect_next_in: u64) -> anyhow::Result<Written> {
    let dir = repo.check_ins_dir();
    // A repository Aim created always has it; a fresh one may not yet.
    fs::create_dir_all(&dir).with_context(|| format!("cannot create '{}'", dir.display()))?;
    let mine = existing(&dir, run)?;
    let mut idx = mine.iter().map(|c| c.idx).max().unwrap_or(0) + 1;

    let tmp = TempFile::create(repo.aim_dir())?;
    let utc_time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let written = loop {
        let c = CheckIn { run_hash: run.to_string(), idx, flag, utc_time, expect_next_in };
        let path = dir.join(c.file_name());
        match fs::hard_link(&tmp.0, &path) {
            Ok(()) => break Written { run: run.into(), idx, flag: flag.to_string(), expect_next_in, file: path },
            // Another writer took this idx meanwhile: take the next.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => idx += 1,
            Err(e) => return Err(e).with_context(|| format!("cannot write the check-in file '{}'", path.display())),
        }
    };
    drop(tmp);

    for old in existing(&dir, run)?.into_iter().filter(|c| c.flag == flag && c.idx < written.idx) {
        match fs::remove_file(dir.join(old.file_name())) {
            Ok(()) => {}
            // Someone else (another check-in, Aim) removed it first: the goal is reached.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove the old check-in '{}'", old.file_name())),
        }
    }
    Ok(written)
}

/// This run's check-in files (others' and malformed names are none of our business).
fn existing(dir: &Path, run: &str) -> anyhow::Result<Vec<CheckIn>> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list '{}'", dir.display()))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| CheckIn::parse(&name).ok())
        .filter(|c| c.run_hash == run)
        .collect())
}

/// An empty hidden file removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn create(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(format!(".runwatch-check-in-{}.tmp", uuid::Uuid::new_v4().simple()));
        fs::OpenOptions::new().write(true).create_new(true).open(&path).with_context(|| format!("cannot write in '{}'", dir.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
