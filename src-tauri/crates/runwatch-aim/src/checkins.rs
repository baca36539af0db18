//! Check-in file names: `{run_hash}-{idx:016d}-{flag}-{utc_time:011.2f}-{expect_next_in:05d}`.
//!
//! All information is in the name; names are parsed from the right so that an unusual run
//! hash cannot break parsing.

use std::fmt;
use std::str::FromStr;

/// The kind of a check-in file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// Written by `Run()` (idx 1 for a new run).
    Starting,
    /// `run.report_progress(expect_next_in=N)`.
    CheckIn,
    /// `run.report_successful_finish()`.
    Finished,
    /// A log record was written (`run.log_warning()` & co.).
    NewLogs,
    /// Aim's heartbeat thread; `expect_next_in` 1 is the final beat of `run.close()`.
    Progress,
    /// Runwatch's own, never written by Aim: the run reported a failure (an HTTP check-in
    /// with `failed`, e.g. from `runwatch exec --server`).
    Failed,
}

impl Flag {
    pub const ALL: [Flag; 6] = [Flag::Starting, Flag::CheckIn, Flag::Finished, Flag::NewLogs, Flag::Progress, Flag::Failed];

    /// The spelling in file names (and in the store).
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Starting => "starting",
            Flag::CheckIn => "check_in",
            Flag::Finished => "finished",
            Flag::NewLogs => "new_logs",
            Flag::Progress => "progress",
            Flag::Failed => "failed",
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flag {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Flag::ALL.into_iter().find(|f| f.as_str() == s).ok_or(())
    }
}

/// One parsed check-in file name.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckIn {
    pub run_hash: String,
    pub idx: u64,
    pub flag: Flag,
    /// The writer's wall clock: for debugging only (clocks differ between machines).
    pub utc_time: f64,
    /// Seconds until the next check-in is promised; 0 means no deadline.
    pub expect_next_in: u64,
}

/// Why a file name is not a check-in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{name}' is not an Aim check-in file name: {reason}")]
pub struct BadName {
    pub name: String,
    pub reason: &'static str,
}

impl CheckIn {
    /// Parses a file name (not a path).
    pub fn parse(name: &str) -> Result<CheckIn, BadName> {
        let bad = |reason| BadName { name: name.to_string(), reason };
        let mut parts = name.rsplitn(5, '-');
        let expect = parts.next().ok_or_else(|| bad("no fields"))?;
        let time = parts.next().ok_or_else(|| bad("too few '-'-separated fields"))?;
        let flag = parts.next().ok_or_else(|| bad("too few '-'-separated fields"))?;
        let idx = parts.next().ok_or_else(|| bad("too few '-'-separated fields"))?;
        let run_hash = parts.next().ok_or_else(|| bad("too few '-'-separated fields"))?;
        // Hidden names are other tools' temporary files; other characters cannot be a run id.
        if run_hash.is_empty()
            || run_hash.starts_with('.')
            || !run_hash.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(bad("the run hash is empty, hidden, or has characters other than letters, digits, '_', '-' and '.'"));
        }
        let idx = digits(idx).ok_or_else(|| bad("idx is not a number"))?;
        let flag = flag.parse().map_err(|_| bad("unknown flag"))?;
        let utc_time: f64 = time
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite() && !time.starts_with(['+', '-']) && time.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
            .ok_or_else(|| bad("time is not a number"))?;
        let expect_next_in = digits(expect).ok_or_else(|| bad("expect_next_in is not a number"))?;
        Ok(CheckIn { run_hash: run_hash.to_string(), idx, flag, utc_time, expect_next_in })
    }

    /// The file name Aim writes for this check-in.
    pub fn file_name(&self) -> String {
        format!("{}-{:016}-{}-{:011.2}-{:05}", self.run_hash, self.idx, self.flag, self.utc_time, self.expect_next_in)
    }

    /// Aim's heartbeat written by `run.close()`: no more beats will come.
    pub fn is_final_beat(&self) -> bool {
        self.flag == Flag::Progress && self.expect_next_in <= 1
    }
}

/// A non-empty run of ASCII digits as a number (no signs, no spaces, no overflow).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        let c = CheckIn::parse("be0ebd0ce55b452d85f692cf-0000000000000005-check_in-1795268411.34-00027").unwrap();
        assert_eq!(c.run_hash, "be0ebd0ce55b452d85f692cf");
        assert_eq!(c.idx, 5);
        assert_eq!(c.flag, Flag::CheckIn);
        assert_eq!(c.expect_next_in, 27);
        assert_eq!(c.file_name(), "be0ebd0ce55b452d85f692cf-0000000000000005-check_in-1795268411.34-00027");
    }

    #[test]
    fn every_flag_round_trips() {
        for flag in Flag::ALL {
            let c = CheckIn { run_hash: "ab".repeat(12), idx: 42, flag, utc_time: 1795268411.5, expect_next_in: 1 };
            assert_eq!(CheckIn::parse(&c.file_name()).unwrap(), c);
        }
        assert!(CheckIn::parse(&format!("{}-0000000000000009-progress-1795268411.34-00001", "a".repeat(24))).unwrap().is_final_beat());
    }

    #[test]
    fn malformed_names_are_rejected_not_panicked_on() {
        for name in [
            "junk-notanumber-check_in-1.0-5", // crashes Aim's own watcher
            "",
            "-",
            "----",
            "abc-0000000000000001-check_in-1.0",
            "abc-0000000000000001-exploded-1795268411.34-00005",
            "abc-0000000000000001-check_in-NaN-00005",
            "abc-0000000000000001-check_in-inf-00005",
            "abc-0000000000000001-check_in-1795268411.34--0005",
            "abc-+000000000000001-check_in-1795268411.34-00005",
            "abc-99999999999999999999999-check_in-1795268411.34-00005",
            "-0000000000000001-check_in-1795268411.34-00005",
            "junk-1-check_in-1.0-5 ",
            "a/b-0000000000000001-check_in-1795268411.34-00005",
            ".abc-0000000000000001-check_in-1795268411.34-00005.tmp",
        ] {
            let err = CheckIn::parse(name).unwrap_err();
            assert_eq!(err.name, name);
        }
    }

    #[test]
    fn an_unusual_hash_cannot_break_parsing() {
        // Parsing from the right isolates the last four fields; what remains is the hash.
        let ok = CheckIn::parse("my-odd-hash-0000000000000001-check_in-1795268411.34-00005").unwrap();
        assert_eq!((ok.run_hash.as_str(), ok.idx, ok.expect_next_in), ("my-odd-hash", 1, 5));
        let err = CheckIn::parse("my hash-0000000000000001-check_in-1795268411.34-00005").unwrap_err();
        assert!(err.reason.contains("run hash"), "{err}");
    }
}
