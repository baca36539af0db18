//! What every command prints to stderr after its own output about pending notifications
//! (`--notifications hidden|summary|details`, Kopia's design), and the exit-1 rule.
//!
//! - `summary` (default): one line when any are pending, e.g. `NOTICE: There are 5 pending
//!   notifications including 1 warning and 2 errors. To read them use 'runwatch
//!   notifications list'.` Only WARNING and ERROR are counted in the sentence; CRITICAL
//!   counts as an error and is called out: `3 errors (1 critical)`, or `1 critical error`
//!   when all are. Red when errors are pending, yellow for warnings only.
//! - `details`: the same line, then every pending notification as `notifications list`
//!   shows it (except after `notifications list`/`show`, whose output already shows them).
//! - `hidden`: nothing, and the exit code is left alone.
//!
//! With `summary` or `details`, a command that would exit 0 exits 1 while warnings or
//! errors are pending, so cron and CI notice — except `exec`, which always passes its
//! command's exit code through. Notifications the command stored itself (`send --level
//! ERROR`) do not count for the exit code: reporting a problem is not a failure.

use std::io::Write;

use runwatch_core::inbox::{ListFilter, UnreadSummary};
use runwatch_core::{Level, Store};

use crate::notifications;
use crate::output::{self, paint, RED, YELLOW};

/// What to print about pending notifications after a command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NoticeMode {
    // No doc comments here: clap would then print every command's help in the long layout.
    Hidden,
    #[default]
    Summary,
    Details,
}

/// How a command's own output relates to the summary.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    /// The exit code the command chose.
    pub code: u8,
    /// Ids of notifications this command stored: they do not turn exit 0 into 1.
    pub stored: Vec<String>,
    /// The exit code is a child's (`exec`): never changed.
    pub passthrough: bool,
    /// The command's output already lists the inbox: print the summary line only.
    pub shows_inbox: bool,
}

impl Finished {
    pub fn ok() -> Self {
        Self::default()
    }
}

/// Prints what `mode` asks for and returns the final exit code.
pub fn after(store: &Store, mode: NoticeMode, done: &Finished) -> anyhow::Result<u8> {
    if mode == NoticeMode::Hidden {
        return Ok(done.code);
    }
    let summary = store.unread_summary()?;
    if print_line(&summary)? && mode == NoticeMode::Details && !done.shows_inbox {
        print_pending(store, &mut output::stderr())?;
    }
    if done.code != 0 || done.passthrough {
        return Ok(done.code);
    }
    let mut serious = summary.warning + summary.error + summary.critical;
    for id in &done.stored {
        if let Some(n) = store.notification(id)? {
            if n.acked_at.is_none() && n.level >= Level::Warning {
                serious -= 1;
            }
        }
    }
    Ok(if serious > 0 { 1 } else { 0 })
}

/// Prints the summary sentence on stderr, coloured by the worst level; false when nothing
/// is pending (nothing printed).
pub fn print_line(summary: &UnreadSummary) -> std::io::Result<bool> {
    let Some(line) = summary_line(summary) else { return Ok(false) };
    let style = if summary.error + summary.critical > 0 {
        RED
    } else if summary.warning > 0 {
        YELLOW
    } else {
        anstyle::Style::new()
    };
    writeln!(output::stderr(), "{}", paint(style, &line))?;
    Ok(true)
}

/// The summary sentence, or `None` when nothing is pending.
pub fn summary_line(s: &UnreadSummary) -> Option<String> {
    if s.total <= 0 {
        return None;
    }
    let mut line = if s.total == 1 {
        "NOTICE: There is 1 pending notification".to_string()
    } else {
        format!("NOTICE: There are {} pending notifications", s.total)
    };
    let mut parts = Vec::new();
    if s.warning > 0 {
        parts.push(output::count(s.warning, "warning", "warnings"));
    }
    let errors = s.error + s.critical;
    if errors > 0 {
        parts.push(match s.critical {
            0 => output::count(errors, "error", "errors"),
            c if c == errors => output::count(errors, "critical error", "critical errors"),
            c => format!("{} ({c} critical)", output::count(errors, "error", "errors")),
        });
    }
    if !parts.is_empty() {
        line.push_str(" including ");
        line.push_str(&parts.join(" and "));
    }
    line.push_str(if s.total == 1 { ". To read it use" } else { ". To read them use" });
    line.push_str(" 'runwatch notifications list'.");
    Some(line)
}

/// Every pending notification, newest first, as `notifications list` prints them.
fn print_pending(store: &Store, out: &mut impl Write) -> anyhow::Result<()> {
    let mut filter = ListFilter { limit: Some(runwatch_core::inbox::MAX_PAGE), ..Default::default() };
    let mut items = Vec::new();
    loop {
        let page = store.list_notifications(&filter)?;
        items.extend(page.items);
        match page.next_cursor {
            Some(c) => filter.cursor = Some(c),
            None => break,
        }
    }
    // One pass over the inbox's ids for all of them, not one per page.
    let short = notifications::short_ids(store, items.iter().map(|n| n.id.as_str()))?;
    for n in &items {
        notifications::write_item(out, n, &short)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(info: i64, warning: i64, error: i64, critical: i64) -> UnreadSummary {
        UnreadSummary { total: info + warning + error + critical, info, warning, error, critical, ..Default::default() }
    }

    #[test]
    fn the_sentence_mentions_only_levels_present() {
        assert_eq!(summary_line(&s(0, 0, 0, 0)), None);
        assert_eq!(
            summary_line(&s(2, 1, 2, 0)).unwrap(),
            "NOTICE: There are 5 pending notifications including 1 warning and 2 errors. To read them use 'runwatch notifications list'."
        );
        assert_eq!(
            summary_line(&s(0, 0, 1, 0)).unwrap(),
            "NOTICE: There is 1 pending notification including 1 error. To read it use 'runwatch notifications list'."
        );
        assert_eq!(
            summary_line(&s(3, 0, 0, 0)).unwrap(),
            "NOTICE: There are 3 pending notifications. To read them use 'runwatch notifications list'."
        );
        assert_eq!(
            summary_line(&s(0, 2, 0, 0)).unwrap(),
            "NOTICE: There are 2 pending notifications including 2 warnings. To read them use 'runwatch notifications list'."
        );
    }

    #[test]
    fn critical_counts_as_an_error_and_is_called_out() {
        assert!(summary_line(&s(0, 0, 2, 1)).unwrap().contains("including 3 errors (1 critical)."));
        assert!(summary_line(&s(0, 1, 0, 1)).unwrap().contains("including 1 warning and 1 critical error."));
    }
}
