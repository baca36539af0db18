//! What the commands print, in one place: colour (only on a terminal, never with
//! `NO_COLOR`), level styles, times for people, plurals, aligned tables and masked secrets.
//!
//! Everything is written through `anstream`, which strips the colour codes when the stream
//! is not a terminal or `NO_COLOR` is set, so the commands can always style their text.

use std::io;

use anstyle::{AnsiColor, Effects, Style};
use runwatch_core::clock::{format_local, Millis};
use runwatch_core::Level;

/// Errors and the red summary line.
pub const RED: Style = AnsiColor::Red.on_default().effects(Effects::BOLD);
/// Warnings.
pub const YELLOW: Style = AnsiColor::Yellow.on_default();
/// Secondary text (hints, acknowledged items).
pub const DIM: Style = Style::new().effects(Effects::DIMMED);
/// Headings in `show`.
pub const BOLD: Style = Style::new().effects(Effects::BOLD);

/// Standard output, colour-aware.
pub fn stdout() -> anstream::AutoStream<io::Stdout> {
    anstream::AutoStream::auto(io::stdout())
}

/// Standard error, colour-aware.
pub fn stderr() -> anstream::AutoStream<io::Stderr> {
    anstream::AutoStream::auto(io::stderr())
}

/// `text` in `style`; the stream removes the codes where colour is off.
pub fn paint(style: Style, text: &str) -> String {
    if style == Style::new() {
        return text.to_string();
    }
    format!("{style}{text}{style:#}")
}

/// The style a level is shown in.
pub fn level_style(level: Level) -> Style {
    match level {
        Level::Critical | Level::Error => RED,
        Level::Warning => YELLOW,
        Level::Info => Style::new(),
        Level::Debug => DIM,
    }
}

/// A store time as local "YYYY-MM-DD HH:MM" (lists).
pub fn minute(ms: Millis) -> String {
    let s = format_local(ms);
    // "YYYY-MM-DD HH:MM:SS" → drop ":SS"; anything else (an out-of-range time) as is.
    if s.len() == 19 && s.is_char_boundary(16) {
        s[..16].to_string()
    } else {
        s
    }
}

/// A store time as local "YYYY-MM-DD HH:MM:SS" (details).
pub fn second(ms: Millis) -> String {
    format_local(ms)
}

/// "1 notification", "2 notifications".
pub fn count(n: impl Into<i64>, singular: &str, plural: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// Columns padded to the widest cell; the last column is not padded. Cells must be plain
/// text (colour codes would count as width).
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self { rows: vec![header.into_iter().map(Into::into).collect()] }
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    /// The table as lines, each prefixed by `indent`, without trailing spaces.
    pub fn render(&self, indent: &str) -> Vec<String> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> =
            (0..columns).map(|c| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
        self.rows
            .iter()
            .map(|row| {
                let mut s = indent.to_string();
                for (c, cell) in row.iter().enumerate() {
                    s.push_str(cell);
                    if c + 1 < row.len() {
                        s.extend(std::iter::repeat_n(' ', widths[c] - cell.chars().count() + 2));
                    }
                }
                s.trim_end().to_string()
            })
            .collect()
    }
}

/// A secret (token, webhook URL) for display: its last four characters, the rest hidden;
/// short secrets are hidden entirely. For `notifiers list` and `show`.
#[allow(dead_code)] // used by the notifiers commands
pub fn mask_secret(secret: &str) -> String {
    let n = secret.chars().count();
    if n < 12 {
        return "****".into();
    }
    let tail: String = secret.chars().skip(n - 4).collect();
    format!("****{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_the_last() {
        let mut t = Table::new(["ID", "TYPE", "NOTE"]);
        t.row(["1a2b", "slack", ""]).row(["9", "webhook", "x"]);
        assert_eq!(t.render("  "), ["  ID    TYPE     NOTE", "  1a2b  slack", "  9     webhook  x"]);
    }

    #[test]
    fn secrets_keep_only_their_tail() {
        assert_eq!(mask_secret("https://hooks.slack.com/services/T0/B0/abcdWXYZ"), "****WXYZ");
        assert_eq!(mask_secret("short"), "****");
    }

    #[test]
    fn plurals() {
        assert_eq!(count(1, "error", "errors"), "1 error");
        assert_eq!(count(0, "error", "errors"), "0 errors");
    }
}
