//! Which notifications become desktop popups: those at or above the popup level, unless
//! popups are paused; a burst is coalesced — the first popup shows at once, and whatever
//! arrives in the next 10 seconds waits for the window to close and then shows as one
//! ("N new errors"), or as itself if it was alone. A burst of any size makes at most two.
//!
//! The rule engine ([`runwatch_core::noise`]) has its say first: silenced, snoozed and
//! resolved notifications never pop up; those with a group key wait for their group's
//! window and show as one popup; during the popups' quiet hours, what is below the
//! pass-through level waits for their end and shows as one catch-up popup.

use std::collections::VecDeque;

use runwatch_core::clock::Millis;
use runwatch_core::noise::QuietHours;
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
    /// A group (same group key) that arrived within its window.
    Group { title: String, count: usize, level: Level },
    /// What quiet hours held, when they end.
    CatchUp { count: usize, level: Level },
}

impl Popup {
    /// The popup's summary line.
    pub fn summary(&self) -> String {
        match self {
            Popup::One(n) => format!("Runwatch: {}", n.level),
            Popup::Many { count, level } | Popup::Group { count, level, .. } => format!("{count} new {}", plural(*level, *count)),
            Popup::CatchUp { count, level } => format!("{count} new {} during quiet hours", plural(*level, *count)),
        }
    }

    /// The popup's body.
    pub fn body(&self) -> String {
        match self {
            Popup::One(n) => n.title.clone(),
            Popup::Group { title, .. } => title.clone(),
            Popup::Many { .. } | Popup::CatchUp { .. } => "Open Runwatch to read them.".into(),
        }
    }

    /// ERROR and CRITICAL popups are critical: they stay until dismissed.
    pub fn critical(&self) -> bool {
        self.level() >= Level::Error
    }

    pub fn level(&self) -> Level {
        match self {
            Popup::One(n) => n.level,
            Popup::Many { level, .. } | Popup::Group { level, .. } | Popup::CatchUp { level, .. } => *level,
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
    /// How long a group waits for the rest of its burst (0: no grouping).
    pub group_window: Millis,
    /// Groups waiting for their window: key, when it closes, what arrived.
    groups: Vec<(String, Millis, Vec<Notification>)>,
    /// The popups' quiet hours, in `tz`.
    pub quiet: Option<QuietHours>,
    pub tz: jiff::tz::TimeZone,
    /// What quiet hours hold, and when they end.
    quiet_held: Vec<Notification>,
    quiet_until: Option<Millis>,
}

impl PopupGate {
    pub fn new(level: Level) -> Self {
        Self {
            level,
            paused_until: None,
            last_shown: None,
            held: VecDeque::new(),
            group_window: 0,
            groups: Vec::new(),
            quiet: None,
            tz: jiff::tz::TimeZone::system(),
            quiet_held: Vec::new(),
            quiet_until: None,
        }
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
        let quiet = n.silenced_by.is_some() || n.resolved_at.is_some() || n.acked_at.is_some() || n.snoozed_until.is_some_and(|u| u > now);
        if quiet {
            return self.tick(now);
        }
        if let Some(end) = self.quiet.as_ref().filter(|q| n.level < q.pass).and_then(|q| q.quiet_until(now, &self.tz)) {
            self.quiet_held.push(n.clone());
            self.quiet_until = Some(end);
            return self.tick(now);
        }
        if let Some(key) = n.group_key.as_ref().filter(|_| self.group_window > 0) {
            match self.groups.iter_mut().find(|(k, _, _)| k == key) {
                Some((_, _, items)) => items.push(n.clone()),
                None => self.groups.push((key.clone(), now + self.group_window, vec![n.clone()])),
            }
            return self.tick(now);
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

    /// Shows what was held once its window (or quiet hours) has closed.
    pub fn tick(&mut self, now: Millis) -> Vec<Popup> {
        let mut out = Vec::new();
        if self.quiet_until.is_some_and(|end| now >= end) {
            self.quiet_until = None;
            let held = std::mem::take(&mut self.quiet_held);
            let level = held.iter().map(|n| n.level).max().unwrap_or(Level::Error);
            match held.as_slice() {
                [] => {}
                [only] => out.push(Popup::One(Box::new(only.clone()))),
                _ => out.push(Popup::CatchUp { count: held.len(), level }),
            }
        }
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.groups).into_iter().partition(|(_, at, _)| now >= *at);
        self.groups = waiting;
        for (key, _, items) in due {
            if self.paused(now) {
                continue;
            }
            self.last_shown = Some(now);
            if let [only] = items.as_slice() {
                out.push(Popup::One(Box::new(only.clone())));
                continue;
            }
            let level = items.iter().map(|n| n.level).max().unwrap_or(Level::Error);
            let refs: Vec<&Notification> = items.iter().collect();
            out.push(Popup::Group { title: runwatch_core::noise::group_title(&key, &refs), count: items.len(), level });
        }
        out.extend(self.tick_burst(now));
        out
    }

    fn tick_burst(&mut self, now: Millis) -> Vec<Popup> {
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
        let burst = (!self.held.is_empty()).then(|| self.last_shown.unwrap_or(0) + WINDOW_MS);
        let groups = self.groups.iter().map(|(_, at, _)| *at).min();
        [burst, groups, self.quiet_until].into_iter().flatten().min()
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
    fn silenced_snoozed_and_resolved_ones_never_pop_up() {
        let mut g = PopupGate::new(Level::Error);
        let silenced = Notification { silenced_by: Some("s".into()), ..n(Level::Error, "a") };
        let snoozed = Notification { snoozed_until: Some(5_000), ..n(Level::Error, "b") };
        let resolved = Notification { resolved_at: Some(1), ..n(Level::Error, "c") };
        for x in [&silenced, &snoozed, &resolved] {
            assert!(g.offer(x, 1_000).is_empty(), "{}", x.title);
        }
        // A snooze that has ended is news again (the app offers it when it comes back).
        assert_eq!(g.offer(&snoozed, 5_000).len(), 1);
    }

    #[test]
    fn a_group_waits_for_its_window_and_pops_up_once() {
        let mut g = PopupGate::new(Level::Error);
        g.group_window = 10_000;
        let member = |i: i64| Notification {
            group_key: Some("slurm_array_job_id=4242".into()),
            run_id: Some(format!("task-{i}")),
            ..n(Level::Error, &format!("Run 'task-{i}' failed."))
        };
        let mut shown = Vec::new();
        for i in 0..64 {
            shown.extend(g.offer(&member(i), i * 100));
        }
        assert!(shown.is_empty());
        assert_eq!(g.next_deadline(), Some(10_000));
        shown.extend(g.tick(10_000));
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].summary(), "64 new errors");
        assert_eq!(shown[0].body(), "64 runs of array 4242 failed: Run 'task-0' failed. …");
        assert_eq!(g.next_deadline(), None);
    }

    #[test]
    fn quiet_hours_hold_popups_below_the_pass_level_for_one_catch_up() {
        let mut g = PopupGate::new(Level::Warning);
        g.tz = jiff::tz::TimeZone::UTC;
        g.quiet = Some(QuietHours::parse("00:00-01:00", None, Some(Level::Critical)).unwrap());
        assert!(g.offer(&n(Level::Error, "a"), 1_000).is_empty());
        assert!(g.offer(&n(Level::Warning, "b"), 2_000).is_empty());
        assert_eq!(g.offer(&n(Level::Critical, "c"), 3_000).len(), 1, "the pass-through level");
        assert_eq!(g.next_deadline(), Some(3_600_000));
        let p = g.tick(3_600_000);
        assert_eq!(p, vec![Popup::CatchUp { count: 2, level: Level::Error }]);
        assert_eq!(p[0].summary(), "2 new errors during quiet hours");
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
