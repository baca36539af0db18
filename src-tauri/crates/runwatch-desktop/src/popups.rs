//! Which notifications become desktop popups: those at or above the popup level, unless
//! popups are paused; a burst is coalesced — the first popup shows at once, and whatever
//! arrives in the next 10 seconds waits for the window to close and then shows as one
//! ("N new errors"), or as itself if it was alone. A burst of any size makes at most two.

use std::collections::VecDeque;

use runwatch_core::clock::Millis;
use runwatch_core::{Level, Notification};

/// The coalescing window.
pub const WINDOW_MS: Millis = 10_000;

/// A popup to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Popup {
    /// One notification; clicking opens its details.
    One(Box<Notification>),
    /// Several that arrived together; clicking opens the list.
    Many { count: usize, level: Level },
}

impl Popup {
    /// The popup's summary line.
    pub fn summary(&self) -> String {
        match self {
            Popup::One(n) => format!("Runwatch: {}", n.level),
            Popup::Many { count, level } => format!("{count} new {}", plural(*level, *count)),
        }
    }

    /// The popup's body.
    pub fn body(&self) -> String {
        match self {
            Popup::One(n) => n.title.clone(),
            Popup::Many { .. } => "Open Runwatch to read them.".into(),
        }
    }

    /// ERROR and CRITICAL popups are critical: they stay until dismissed.
    pub fn critical(&self) -> bool {
        self.level() >= Level::Error
    }

    pub fn level(&self) -> Level {
        match self {
            Popup::One(n) => n.level,
            Popup::Many { level, .. } => *level,
        }
    }
}

fn plural(level: Level, count: usize) -> String {
    let word = match level {
        Level::Critical => "critical notification",
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Info | Level::Debug => "notification",
    };
    if count == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// Decides popups, driven by an injectable clock.
#[derive(Debug, Clone)]
pub struct PopupGate {
    pub level: Level,
    paused_until: Option<Millis>,
    /// When the last popup was shown.
    last_shown: Option<Millis>,
    held: VecDeque<Notification>,
}

impl PopupGate {
    pub fn new(level: Level) -> Self {
        Self { level, paused_until: None, last_shown: None, held: VecDeque::new() }
    }

    /// No popups until `until` (notifications still reach the inbox and the tray).
    pub fn pause_until(&mut self, until: Option<Millis>) {
        self.paused_until = until;
    }

    pub fn paused(&self, now: Millis) -> bool {
        self.paused_until.is_some_and(|u| now < u)
    }

    /// A new notification: the popups to show now.
    pub fn offer(&mut self, n: &Notification, now: Millis) -> Vec<Popup> {
        if n.level < self.level || self.paused(now) {
            return Vec::new();
        }
        let mut out = self.tick(now);
        match self.last_shown {
            Some(t) if now < t + WINDOW_MS => self.held.push_back(n.clone()),
            _ => {
                self.last_shown = Some(now);
                out.push(Popup::One(Box::new(n.clone())));
            }
        }
        out
    }

    /// Shows what was held once its window has closed.
    pub fn tick(&mut self, now: Millis) -> Vec<Popup> {
        match (self.last_shown, self.held.is_empty()) {
            (Some(t), false) if now >= t + WINDOW_MS => {
                self.last_shown = Some(now);
                let held: Vec<Notification> = self.held.drain(..).collect();
                if self.paused(now) {
                    return Vec::new();
                }
                if let [only] = held.as_slice() {
                    return vec![Popup::One(Box::new(only.clone()))];
                }
                let level = held.iter().map(|n| n.level).max().unwrap_or(Level::Error);
                vec![Popup::Many { count: held.len(), level }]
            }
            _ => Vec::new(),
        }
    }

    /// When [`PopupGate::tick`] has something to show.
    pub fn next_deadline(&self) -> Option<Millis> {
        (!self.held.is_empty()).then(|| self.last_shown.unwrap_or(0) + WINDOW_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(level: Level, title: &str) -> Notification {
        Notification {
            id: title.into(),
            created_at: 0,
            updated_at: 0,
            level,
            title: title.into(),
            body: String::new(),
            run_id: None,
            source: "test".into(),
            dedupe_key: None,
            event_id: None,
            repeat_count: 0,
            acked_at: None,
            expires_at: None,
            origin: None,
            snoozed_until: None,
            silenced_by: None,
            resolved_at: None,
            group_key: None,
        }
    }

    #[test]
    fn one_error_pops_up_at_once_and_warnings_do_not_by_default() {
        let mut g = PopupGate::new(Level::Error);
        assert!(g.offer(&n(Level::Warning, "w"), 0).is_empty());
        let p = g.offer(&n(Level::Error, "boom"), 0);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].summary(), p[0].body(), p[0].critical()), ("Runwatch: ERROR".into(), "boom".into(), true));
        assert_eq!(g.next_deadline(), None);
    }

    #[test]
    fn a_burst_of_ten_makes_two_popups() {
        let mut g = PopupGate::new(Level::Error);
        let mut shown = vec![];
        for i in 0..10 {
            shown.extend(g.offer(&n(Level::Error, &format!("e{i}")), i * 100));
        }
        assert_eq!(shown.len(), 1);
        assert_eq!(g.next_deadline(), Some(WINDOW_MS));
        assert!(g.tick(WINDOW_MS - 1).is_empty());
        shown.extend(g.tick(WINDOW_MS));
        assert_eq!(shown.len(), 2);
        assert_eq!(shown[1], Popup::Many { count: 9, level: Level::Error });
        assert_eq!(shown[1].summary(), "9 new errors");
    }

    #[test]
    fn a_single_late_one_shows_as_itself_and_pauses_hold_everything() {
        let mut g = PopupGate::new(Level::Error);
        g.offer(&n(Level::Error, "a"), 0);
        assert!(g.offer(&n(Level::Critical, "b"), 5_000).is_empty());
        let p = g.tick(10_000);
        assert!(matches!(&p[..], [Popup::One(x)] if x.title == "b"));
        g.pause_until(Some(3_600_000));
        assert!(g.offer(&n(Level::Critical, "c"), 60_000).is_empty());
        g.pause_until(None);
        assert_eq!(g.offer(&n(Level::Error, "d"), 70_000).len(), 1);
    }
}
