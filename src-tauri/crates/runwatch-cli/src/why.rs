//! Why a command run by `exec` stopped, and what in its output deserves a warning: the
//! kernel's OOM killer (the `oom_kill` counters of the command's memory cgroup and its
//! parents, compared before and after: cgroup v2 `memory.events`, v1
//! `memory.oom_control`), the Python exception that ended it (from its stderr tail), and
//! `--alert-on` matches folded into bursts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The `oom_kill` counters that can see the command killed: its memory cgroup's and its
/// parents' (a limit set on a parent counts the kill there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OomCounters {
    /// (file, its reading)
    counters: Vec<(PathBuf, u64)>,
}

impl OomCounters {
    /// The counters of the cgroup this process is in (the command starts in it too).
    pub fn of_this_process() -> OomCounters {
        let (Ok(cgroups), Ok(mounts)) = (std::fs::read_to_string("/proc/self/cgroup"), std::fs::read_to_string("/proc/self/mountinfo"))
        else {
            return OomCounters::default();
        };
        let files = counter_files(&cgroups, &mounts);
        OomCounters { counters: files.into_iter().filter_map(|f| read_oom_kill(&f).map(|n| (f, n))).collect() }
    }

    /// Read again: the first counter that rose, as "cgroup memory.events oom_kill 0→1".
    pub fn rise(&self) -> Option<String> {
        self.counters.iter().find_map(|(file, before)| {
            let after = read_oom_kill(file)?;
            (after > *before).then(|| {
                let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                format!("cgroup {name} oom_kill {before}→{after}")
            })
        })
    }
}

/// The counter files of the memory cgroup in `/proc/self/cgroup` (`cgroups`), found through
/// the mounts in `/proc/self/mountinfo` (`mounts`): the cgroup's own, then its parents'.
fn counter_files(cgroups: &str, mounts: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let (v2, file) = if controllers.is_empty() {
            (true, "memory.events")
        } else if controllers.split(',').any(|c| c == "memory") {
            (false, "memory.oom_control")
        } else {
            continue;
        };
        for m in mounts.lines() {
            let Some((left, right)) = m.split_once(" - ") else { continue };
            let fields: Vec<&str> = left.split(' ').collect();
            let after: Vec<&str> = right.split(' ').collect();
            let (Some(root), Some(point), Some(fstype)) = (fields.get(3), fields.get(4), after.first()) else { continue };
            let fits = if v2 {
                *fstype == "cgroup2"
            } else {
                *fstype == "cgroup" && after.get(2).is_some_and(|o| o.split(',').any(|c| c == "memory"))
            };
            if !fits {
                continue;
            }
            let Some(rel) = path.strip_prefix(root.trim_end_matches('/')) else { continue };
            let top = PathBuf::from(unescape(point));
            let mut dir = top.join(rel.trim_start_matches('/'));
            loop {
                let f = dir.join(file);
                if f.exists() {
                    files.push(f);
                }
                if dir == top || !dir.pop() || !dir.starts_with(&top) {
                    break;
                }
            }
        }
    }
    files
}

/// mountinfo escapes spaces and the like as octal (`\040`).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok()) {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn read_oom_kill(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
}

/// The exception line of the last Python traceback in `tail` ("RuntimeError: CUDA out of
/// memory …"); without a traceback header (cut off the tail), a last line that looks like one.
pub fn exception_line(tail: &str) -> Option<String> {
    let lines: Vec<&str> = tail.lines().collect();
    let start = lines.iter().rposition(|l| l.trim_start().starts_with("Traceback (most recent call last):"));
    let candidates = &lines[start.map_or(0, |s| s + 1)..];
    let found = candidates
        .iter()
        .rev()
        .map(|l| l.trim_end())
        .find(|l| !l.is_empty() && !l.starts_with(char::is_whitespace) && looks_like_exception(l))?;
    if start.is_none() && Some(found) != lines.iter().rev().map(|l| l.trim_end()).find(|l| !l.is_empty()) {
        return None; // without a traceback, only the very last line may be one
    }
    Some(runwatch_core::ingest::title_from(found))
}

/// "ValueError: …", "torch.cuda.OutOfMemoryError: …", "KeyboardInterrupt".
fn looks_like_exception(line: &str) -> bool {
    let name = line.split_once(':').map_or(line, |(n, _)| n);
    let last = name.rsplit('.').next().unwrap_or(name);
    !name.is_empty()
        && name.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        && last.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && (["Error", "Exception", "Interrupt", "Exit", "Warning", "Failure", "Fault"].iter().any(|s| last.ends_with(s))
            || line.contains(": "))
        && !line.starts_with("Traceback")
}

/// Splits a stream into lines for `--alert-on`, whatever the chunks (long lines are cut).
#[derive(Debug, Default)]
pub struct Lines {
    current: Vec<u8>,
}

const MAX_ALERT_LINE: usize = 4096;

impl Lines {
    /// Feeds bytes; calls `each` with every line completed.
    pub fn push(&mut self, bytes: &[u8], mut each: impl FnMut(&str)) {
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                if !self.current.is_empty() {
                    each(&String::from_utf8_lossy(&self.current));
                    self.current.clear();
                }
            } else if self.current.len() < MAX_ALERT_LINE {
                self.current.push(b);
            }
        }
    }

    /// The unfinished last line, at the end of the stream.
    pub fn finish(&mut self, mut each: impl FnMut(&str)) {
        if !self.current.is_empty() {
            each(&String::from_utf8_lossy(&self.current));
            self.current.clear();
        }
    }
}

/// Matches closer together than the gap are one burst: one WARNING, the rest counted.
#[derive(Debug)]
pub struct Bursts {
    gap: Duration,
    last: Option<Instant>,
    /// Bursts so far.
    pub count: u32,
}

/// What a match is.
#[derive(Debug, PartialEq, Eq)]
pub enum Match {
    /// The first of a new burst (its number).
    New(u32),
    /// One more in the current burst.
    Repeat,
}

impl Bursts {
    pub fn new(gap: Duration) -> Bursts {
        Bursts { gap, last: None, count: 0 }
    }

    pub fn matched(&mut self, at: Instant) -> Match {
        let repeat = self.last.is_some_and(|l| at.saturating_duration_since(l) < self.gap);
        self.last = Some(at);
        if repeat {
            Match::Repeat
        } else {
            self.count += 1;
            Match::New(self.count)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exception_line_of_a_traceback() {
        let tail = "epoch 3\nTraceback (most recent call last):\n  File \"train.py\", line 9, in <module>\n    step()\n  \
                    File \"train.py\", line 5, in step\n    raise RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')\n\
                    RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB";
        assert_eq!(exception_line(tail).as_deref(), Some("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"));
        let chained = "Traceback (most recent call last):\n  x\nKeyError: 'a'\n\nDuring handling of the above exception, \
                       another exception occurred:\n\nTraceback (most recent call last):\n  y\ntorch.cuda.OutOfMemoryError: boom";
        assert_eq!(exception_line(chained).as_deref(), Some("torch.cuda.OutOfMemoryError: boom"));
        assert_eq!(exception_line("KeyboardInterrupt").as_deref(), Some("KeyboardInterrupt"));
        assert_eq!(exception_line("error: something went wrong\nexiting"), None);
        assert_eq!(exception_line("Segmentation fault"), None);
    }

    #[test]
    fn cgroup_counter_files_are_found_through_the_mounts() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("memory");
        let job = top.join("jobs/42");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(job.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n").unwrap();
        std::fs::write(top.join("jobs/memory.oom_control"), "oom_kill 2\n").unwrap();
        let mounts = format!(
            "33 25 0:29 / {} rw,relatime shared:14 - cgroup cgroup rw,memory\n40 25 0:35 / /x rw - cgroup2 cgroup2 rw\n",
            top.display()
        );
        let files = counter_files("12:cpu,cpuacct:/jobs/42\n5:memory:/jobs/42\n0::/other\n", &mounts);
        assert_eq!(files, [job.join("memory.oom_control"), top.join("jobs/memory.oom_control")]);
        let c = OomCounters { counters: files.iter().map(|f| (f.clone(), read_oom_kill(f).unwrap())).collect() };
        assert_eq!(c.rise(), None);
        std::fs::write(job.join("memory.oom_control"), "oom_kill 1\n").unwrap();
        assert_eq!(c.rise().as_deref(), Some("cgroup memory.oom_control oom_kill 0→1"));
        assert_eq!(unescape(r"/a\040b"), "/a b");
    }

    #[test]
    fn matches_fold_into_bursts() {
        let mut b = Bursts::new(Duration::from_secs(10));
        let t = Instant::now();
        assert_eq!(b.matched(t), Match::New(1));
        assert_eq!(b.matched(t + Duration::from_secs(5)), Match::Repeat);
        assert_eq!(b.matched(t + Duration::from_secs(14)), Match::Repeat);
        assert_eq!(b.matched(t + Duration::from_secs(30)), Match::New(2));
        let mut lines = Lines::default();
        let mut got = Vec::new();
        lines.push(b"loss=0.5\nloss=na", |l| got.push(l.to_string()));
        lines.push(b"n\r\n", |l| got.push(l.to_string()));
        assert_eq!(got, ["loss=0.5", "loss=nan"]);
    }
}
