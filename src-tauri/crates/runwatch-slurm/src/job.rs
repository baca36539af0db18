//! Slurm jobs as `scontrol show job -o` (clusters without accounting) and `sacct -P`
//! (clusters with it) print them, parsed into one [`Job`] type.

use std::fmt;

/// A job's state, as Slurm names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobState {
    Pending,
    Running,
    Suspended,
    Completing,
    Completed,
    Failed,
    Timeout,
    OutOfMemory,
    Preempted,
    NodeFail,
    Cancelled,
    BootFail,
    Deadline,
    Requeued,
    Other(String),
}

impl JobState {
    pub fn parse(s: &str) -> JobState {
        // sacct says "CANCELLED by 1000"; the rest of the word is the state.
        match s.split_whitespace().next().unwrap_or("") {
            "PENDING" | "PD" => JobState::Pending,
            "RUNNING" | "R" => JobState::Running,
            "SUSPENDED" | "S" => JobState::Suspended,
            "COMPLETING" | "CG" => JobState::Completing,
            "COMPLETED" | "CD" => JobState::Completed,
            "FAILED" | "F" => JobState::Failed,
            "TIMEOUT" | "TO" => JobState::Timeout,
            "OUT_OF_MEMORY" | "OOM" => JobState::OutOfMemory,
            "PREEMPTED" | "PR" => JobState::Preempted,
            "NODE_FAIL" | "NF" => JobState::NodeFail,
            "CANCELLED" | "CA" => JobState::Cancelled,
            "BOOT_FAIL" | "BF" => JobState::BootFail,
            "DEADLINE" | "DL" => JobState::Deadline,
            "REQUEUED" | "RQ" | "REQUEUE_FED" | "REQUEUE_HOLD" => JobState::Requeued,
            other => JobState::Other(other.to_string()),
        }
    }

    /// The job is over: Slurm will not run it again unless it is requeued.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobState::Completed
                | JobState::Failed
                | JobState::Timeout
                | JobState::OutOfMemory
                | JobState::Preempted
                | JobState::NodeFail
                | JobState::Cancelled
                | JobState::BootFail
                | JobState::Deadline
        )
    }

    /// It has been given its node and runs (or is winding down).
    pub fn is_running(&self) -> bool {
        matches!(self, JobState::Running | JobState::Completing | JobState::Suspended)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Suspended => "SUSPENDED",
            JobState::Completing => "COMPLETING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Timeout => "TIMEOUT",
            JobState::OutOfMemory => "OUT_OF_MEMORY",
            JobState::Preempted => "PREEMPTED",
            JobState::NodeFail => "NODE_FAIL",
            JobState::Cancelled => "CANCELLED",
            JobState::BootFail => "BOOT_FAIL",
            JobState::Deadline => "DEADLINE",
            JobState::Requeued => "REQUEUED",
            JobState::Other(s) => s,
        })
    }
}

/// One Slurm job (an array task is a job of its own, with its own numeric id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The numeric job id: what the job sees in `SLURM_JOB_ID`.
    pub job_id: String,
    pub array_job_id: Option<String>,
    pub array_task_id: Option<String>,
    pub name: String,
    pub user: String,
    pub state: JobState,
    /// Slurm's reason (why it waits, or why it ended), "None" left out.
    pub reason: Option<String>,
    /// The exit code of the batch script and the signal that ended it ("3:0", "0:9").
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// The first node of the allocation.
    pub node: Option<String>,
    /// Seconds since the epoch, as local times without zone (only differences are used).
    pub submit: Option<i64>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    /// Seconds it has run.
    pub elapsed: Option<u64>,
    /// Its time limit in seconds (`None`: unlimited).
    pub limit: Option<u64>,
    /// Who cancelled it (sacct says; scontrol does not).
    pub cancelled_by: Option<String>,
}

impl Job {
    /// The run this job is: `exec` inside the job names its run the same way.
    pub fn run_id(&self) -> String {
        run_id(&self.job_id)
    }

    /// "'train' (42)" or "'train' (41_7)": "Slurm job 'train' (42) failed …".
    pub fn shown(&self) -> String {
        match (&self.array_job_id, &self.array_task_id) {
            (Some(a), Some(t)) => format!("'{}' ({a}_{t})", self.name),
            _ => format!("'{}' ({})", self.name, self.job_id),
        }
    }
}

/// The run id of Slurm job `job_id` (its numeric `SLURM_JOB_ID`).
pub fn run_id(job_id: &str) -> String {
    format!("slurm-{job_id}")
}

/// Parses `scontrol show job -o` (one job a line, `Key=Value` words). A value may hold
/// spaces (a job name, a command): words without `=` belong to the value before them.
pub fn parse_scontrol(text: &str) -> Vec<Job> {
    text.lines().filter(|l| l.contains("JobId=")).filter_map(parse_scontrol_line).collect()
}

fn parse_scontrol_line(line: &str) -> Option<Job> {
    // (key, where its value starts, where it ends) in `line`: no copies of the ~60 fields.
    let mut fields: Vec<(&str, usize, usize)> = Vec::with_capacity(64);
    let mut pos = 0;
    for word in line.split(' ') {
        let start = pos;
        pos += word.len() + 1;
        match word.split_once('=') {
            Some((k, _)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"/:_".contains(&b)) => {
                fields.push((k, start + k.len() + 1, start + word.len()));
            }
            _ if !word.is_empty() => {
                if let Some(last) = fields.last_mut() {
                    last.2 = start + word.len();
                }
            }
            _ => {}
        }
    }
    let get = |key: &str| fields.iter().find(|(k, _, _)| *k == key).map(|&(_, a, b)| &line[a..b]);
    let job_id = get("JobId")?.to_string();
    let (exit_code, signal) = get("ExitCode").map_or((None, None), parse_exit);
    let node = get("BatchHost").or_else(|| get("NodeList")).and_then(first_node);
    // "UserId=alice(1000)": the name.
    let user = get("UserId").map(|u| u.split('(').next().unwrap_or(u).to_string()).unwrap_or_default();
    Some(Job {
        job_id,
        array_job_id: get("ArrayJobId").map(str::to_string),
        array_task_id: get("ArrayTaskId").map(str::to_string),
        name: get("JobName").unwrap_or("").to_string(),
        user,
        state: JobState::parse(get("JobState").unwrap_or("")),
        reason: get("Reason").and_then(known),
        exit_code,
        signal,
        node,
        submit: get("SubmitTime").and_then(parse_time),
        start: get("StartTime").and_then(parse_time),
        end: get("EndTime").and_then(parse_time),
        elapsed: get("RunTime").and_then(parse_duration),
        limit: get("TimeLimit").and_then(parse_duration),
        cancelled_by: None,
    })
}

/// The columns asked of `sacct` (see [`parse_sacct`]).
pub const SACCT_FORMAT: &str = "JobIDRaw,JobID,JobName,User,State,ExitCode,Reason,NodeList,ElapsedRaw,TimelimitRaw,Submit,Start,End";

/// Parses `sacct -X -n -P --format SACCT_FORMAT` ('|' between the columns).
pub fn parse_sacct(text: &str) -> Vec<Job> {
    text.lines().filter_map(parse_sacct_line).collect()
}

fn parse_sacct_line(line: &str) -> Option<Job> {
    let c: Vec<&str> = line.split('|').collect();
    if c.len() < 13 || c[0].is_empty() {
        return None;
    }
    // "41_7" is task 7 of array 41; "41_[8-15]" are its tasks not started yet.
    let (array_job_id, array_task_id) = match c[1].split_once('_') {
        Some((a, t)) if !t.starts_with('[') => (Some(a.to_string()), Some(t.to_string())),
        _ => (None, None),
    };
    let (exit_code, signal) = parse_exit(c[5]);
    let cancelled_by = c[4].strip_prefix("CANCELLED by ").map(|uid| user_name(uid.trim()));
    Some(Job {
        job_id: c[0].to_string(),
        array_job_id,
        array_task_id,
        name: c[2].to_string(),
        user: c[3].to_string(),
        state: JobState::parse(c[4]),
        reason: known(c[6]),
        exit_code,
        signal,
        node: first_node(c[7]),
        elapsed: c[8].parse().ok(),
        // Unlimited prints as a word or as the largest 32-bit value.
        limit: c[9].parse::<u64>().ok().filter(|m| *m < 0xFFFF_FFFE).map(|m| m * 60),
        submit: parse_time(c[10]),
        start: parse_time(c[11]),
        end: parse_time(c[12]),
        cancelled_by,
    })
}

/// A user id as its name, when this machine knows it.
fn user_name(uid: &str) -> String {
    uid.parse::<libc::uid_t>().ok().and_then(name_of_uid).unwrap_or_else(|| format!("uid {uid}"))
}

/// The name of user `uid` in this machine's user database.
pub(crate) fn name_of_uid(uid: libc::uid_t) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain data that getpwuid_r fills in.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: valid pointers to `pwd`, `buf` (with its length) and `found`.
    let r = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if r != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
    Some(unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }.to_string_lossy().into_owned())
}

/// Values Slurm prints for "nothing".
fn known(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty() && !matches!(v, "None" | "(null)" | "N/A" | "Unknown" | "None assigned")).then(|| v.to_string())
}

/// "3:0" → (3, none); "0:9" → (0, signal 9).
fn parse_exit(v: &str) -> (Option<i32>, Option<i32>) {
    let (code, sig) = v.split_once(':').unwrap_or((v, "0"));
    (code.trim().parse().ok(), sig.trim().parse().ok().filter(|s| *s != 0))
}

/// "gpu[01-04],gpu07" → "gpu01"; "vm" → "vm".
fn first_node(list: &str) -> Option<String> {
    let list = known(list)?;
    if list == "(null)" || list.starts_with("None") {
        return None;
    }
    let first = match list.find('[') {
        Some(open) if list.find(',').is_none_or(|c| c > open) => {
            let prefix = &list[..open];
            let inner = &list[open + 1..];
            let first = inner.split([',', '-', ']']).next().unwrap_or("");
            format!("{prefix}{first}")
        }
        _ => list.split(',').next().unwrap_or(&list).to_string(),
    };
    Some(first)
}

/// Slurm durations: "UNLIMITED", "1:00" (M:SS), "00:01:00", "1-02:03:04", "5" (minutes).
pub fn parse_duration(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("UNLIMITED") || v.contains("Partition") || v == "INVALID" || v == "N/A" {
        return None;
    }
    let (days, rest) = match v.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, v),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let secs = match (parts.as_slice(), days > 0) {
        ([h], true) => h * 3600,
        ([m], false) => m * 60,
        ([h, m], true) => h * 3600 + m * 60,
        ([m, s], false) => m * 60 + s,
        ([h, m, s], _) => h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(days * 86_400 + secs)
}

/// "2026-11-30T20:13:03" → seconds since the epoch (read as UTC: only differences matter).
pub fn parse_time(v: &str) -> Option<i64> {
    let v = v.trim();
    let (date, time) = v.split_once('T')?;
    let d: Vec<i64> = date.split('-').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let t: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else { return None };
    Some(days_from_civil(*y, *m, *day) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_slurm_prints_them() {
        assert_eq!(parse_duration("UNLIMITED"), None);
        assert_eq!(parse_duration("1:00"), Some(60));
        assert_eq!(parse_duration("00:01:00"), Some(60));
        assert_eq!(parse_duration("1-02:03:04"), Some(93_784));
        assert_eq!(parse_duration("2-00"), Some(172_800));
        assert_eq!(parse_duration("5"), Some(300));
        assert_eq!(parse_duration("Partition_Limit"), None);
    }

    #[test]
    fn times_and_nodes() {
        assert_eq!(parse_time("1970-01-02T00:00:10"), Some(86_410));
        assert_eq!(parse_time("2026-11-30T20:13:06").unwrap() - parse_time("2026-11-30T20:13:03").unwrap(), 3);
        assert_eq!(parse_time("Unknown"), None);
        assert_eq!(first_node("gpu[01-04],gpu07").as_deref(), Some("gpu01"));
        assert_eq!(first_node("a,b").as_deref(), Some("a"));
        assert_eq!(first_node("None assigned"), None);
        assert_eq!(parse_exit("0:9"), (Some(0), Some(9)));
        assert_eq!(parse_exit("3:0"), (Some(3), None));
    }
}
