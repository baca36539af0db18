//! The dispatcher: drains the outbox. Per notifier, in notification order: sends what is
//! due, paces (a backlog becomes one digest message), retries with exponential backoff and
//! jitter (honouring `Retry-After`), and fails for good what cannot succeed. Every outcome
//! is written back at once, so a crash repeats at most the one send in flight.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use runwatch_core::clock::{Millis, SharedClock};
use runwatch_core::deliveries::{Attempt, Due};
use runwatch_core::noise::{self, NotifierRules};
use runwatch_core::notifiers::Notifier;
use runwatch_core::store::StoreError;
use runwatch_core::{NotifierStatus, Store};

use crate::channel::Channel;
use crate::render::{self, DIGEST_MAX};
use crate::send::{Message, Outcome, Sender};

/// The most due deliveries read at once: a group of up to this many goes as one message.
pub const GROUP_MAX: usize = 1000;
/// The lines a group's message lists; the rest are counted.
const GROUP_LINES: usize = 10;

/// First retry delay; doubled per attempt up to [`MAX_BACKOFF_MS`].
pub const BASE_BACKOFF_MS: Millis = 1000;
pub const MAX_BACKOFF_MS: Millis = 5 * 60 * 1000;
/// After this many failed attempts a delivery is failed for good (about an hour of tries).
pub const MAX_ATTEMPTS: i64 = 20;
/// The longest the dispatcher sleeps with nothing due: a safety net only. Work queued by
/// other processes (`runwatch send`) is announced by [`DispatcherHandle::wake`], from the
/// store's change feed ([`runwatch_core::ChangeFeed`]).
pub const SAFETY_POLL: Duration = Duration::from_secs(300);

enum Msg {
    Wake,
    Stop,
}

/// Wakes or stops a running dispatcher from another thread.
#[derive(Debug, Clone)]
pub struct DispatcherHandle(mpsc::Sender<Msg>);

impl DispatcherHandle {
    /// New deliveries may be queued (or notifiers changed): look now. Cheap when nothing
    /// is due: a step that finds nothing writes nothing.
    pub fn wake(&self) {
        let _ = self.0.send(Msg::Wake);
    }

    /// Finish the send in flight, then return from [`Dispatcher::run`].
    pub fn stop(&self) {
        let _ = self.0.send(Msg::Stop);
    }
}

pub struct Dispatcher {
    store: Store,
    clock: SharedClock,
    sender: Sender,
    /// Per notifier: no message before this time (pacing).
    paced_until: HashMap<String, Millis>,
    /// A stop was asked for: finish the send in flight, start no other.
    stopping: bool,
    /// The user's time zone, for quiet hours.
    tz: jiff::tz::TimeZone,
    tx: mpsc::Sender<Msg>,
    rx: Receiver<Msg>,
}

impl Dispatcher {
    pub fn new(store: Store, clock: SharedClock, sender: Sender) -> Self {
        let (tx, rx) = mpsc::channel();
        Self { store, clock, sender, paced_until: HashMap::new(), stopping: false, tz: jiff::tz::TimeZone::system(), tx, rx }
    }

    /// Quiet hours in this time zone instead of the system's (tests).
    pub fn with_time_zone(mut self, tz: jiff::tz::TimeZone) -> Self {
        self.tz = tz;
        self
    }

    pub fn handle(&self) -> DispatcherHandle {
        DispatcherHandle(self.tx.clone())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Sends everything due now; returns when there will be more to do (if known).
    ///
    /// In rounds: each round sends every notifier's next message at once, one thread per
    /// notifier, so a notifier that takes its whole timeout to answer holds up no other.
    /// Each notifier's messages stay in order, and every outcome is stored before that
    /// notifier's next send, so a crash repeats at most the sends in flight.
    pub fn step(&mut self) -> Result<Option<Millis>, StoreError> {
        let mut next: Option<Millis> = None;
        let mut active = Vec::new();
        for notifier in self.store.notifiers()? {
            if notifier.status != NotifierStatus::Enabled {
                continue;
            }
            match Channel::from_notifier(&notifier) {
                Ok(channel) => {
                    let rules = self.store.notifier_rules(&notifier.id)?;
                    active.push((notifier, channel, rules, VecDeque::<Vec<Due>>::new()));
                }
                Err(e) => self.fail_all_due(&notifier, &format!("invalid notifier settings: {e}"))?,
            }
        }
        let soonest = |next: Option<Millis>, at: Option<Millis>| [next, at].into_iter().flatten().min();
        while !active.is_empty() {
            // Each notifier's next batch: with pacing, everything that backed up goes as one
            // digest; without, one message at a time, from a page read once (reading the
            // first due delivery sorts all of them: per message, a backlog would be
            // quadratic). The rule engine has its say first (delay, repeat, snooze, quiet
            // hours); a group, and what quiet hours held, go as one message each. A notifier
            // with nothing to send now is done for this step.
            let mut round: Vec<(usize, Vec<Due>)> = Vec::new();
            let mut done = Vec::new();
            for (i, (notifier, channel, rules, page)) in active.iter_mut().enumerate() {
                let now = self.clock.now();
                let paced = self.paced_until.get(&notifier.id).copied().unwrap_or(Millis::MIN);
                if page.is_empty() && now >= paced {
                    // A page large enough for a burst's group to go as one message.
                    let due = self.store.take_due(&notifier.id, now, GROUP_MAX)?;
                    let send = if due.is_empty() { due } else { self.store.triage(&notifier.id, rules, due, now, &self.tz)? };
                    page.extend(runwatch_core::deliveries::batches(send, channel.pacing_ms() > 0, DIGEST_MAX));
                }
                let batch: Vec<Due> = if now >= paced { page.pop_front().unwrap_or_default() } else { Vec::new() };
                if batch.is_empty() {
                    let pending = self.store.next_delivery_attempt(&notifier.id)?;
                    next = soonest(next, pending.map(|p| p.max(paced)));
                    done.push(i);
                } else {
                    round.push((i, batch));
                }
            }
            if round.is_empty() || self.stop_requested() {
                return Ok(next); // what is left stays queued for the next step or start
            }
            let sender = &self.sender;
            let outcomes: Vec<Outcome> = if let [(i, batch)] = &round[..] {
                // One notifier with work (the usual case, and a backlog's every round): no
                // thread to start.
                let channel = &active[*i].1;
                vec![sender.send(channel, &message(batch, channel))]
            } else {
                std::thread::scope(|scope| {
                    let sends: Vec<_> = round
                        .iter()
                        .map(|(i, batch)| {
                            let channel = &active[*i].1;
                            scope.spawn(move || sender.send(channel, &message(batch, channel)))
                        })
                        .collect();
                    sends
                        .into_iter()
                        .map(|send| send.join().unwrap_or_else(|_| Outcome::Retry { error: "the send panicked".into(), after: None }))
                        .collect()
                })
            };
            for ((i, batch), outcome) in round.iter().zip(&outcomes) {
                let (notifier, channel, rules, _) = &active[*i];
                let now = self.clock.now();
                self.record(notifier, rules, batch, outcome, now)?;
                if channel.pacing_ms() > 0 {
                    self.paced_until.insert(notifier.id.clone(), now + channel.pacing_ms());
                }
                if !matches!(outcome, Outcome::Sent) {
                    // Backed off for now; the others go on.
                    next = soonest(next, self.store.next_delivery_attempt(&notifier.id)?);
                    done.push(*i);
                }
            }
            active = active.into_iter().enumerate().filter(|(i, _)| !done.contains(i)).map(|(_, a)| a).collect();
        }
        Ok(next)
    }

    /// A notifier whose settings cannot be used fails what is due rather than retrying it.
    fn fail_all_due(&mut self, notifier: &Notifier, error: &str) -> Result<(), StoreError> {
        let now = self.clock.now();
        let due = self.store.take_due(&notifier.id, now, 1000)?;
        if due.is_empty() {
            return Ok(()); // no empty transaction on every wake
        }
        let failed: Vec<(&str, Attempt)> =
            due.iter().map(|d| (d.notification.id.as_str(), Attempt::Failed { error: error.to_string(), retry_at: None })).collect();
        self.store.record_attempts(&notifier.id, &failed, None, now)
    }

    /// Whether [`DispatcherHandle::stop`] was called (looked at between sends).
    fn stop_requested(&mut self) -> bool {
        while let Ok(msg) = self.rx.try_recv() {
            if matches!(msg, Msg::Stop) {
                self.stopping = true;
            }
        }
        self.stopping
    }

    fn record(
        &mut self,
        notifier: &Notifier,
        rules: &NotifierRules,
        batch: &[Due],
        outcome: &Outcome,
        now: Millis,
    ) -> Result<(), StoreError> {
        // A repeating notifier hears of it again while it is unacknowledged.
        let again_at = rules.repeat_ms.map(|r| now.saturating_add(r));
        let attempts: Vec<(&str, Attempt)> = batch
            .iter()
            .map(|d| {
                let attempt = match outcome {
                    Outcome::Sent => Attempt::Sent,
                    Outcome::Failed { error } => Attempt::Failed { error: error.clone(), retry_at: None },
                    Outcome::Retry { error, after } => {
                        let retry_at = (d.attempts + 1 < MAX_ATTEMPTS).then(|| now + retry_delay(d.attempts, *after));
                        let error =
                            if retry_at.is_none() { format!("{error} (gave up after {MAX_ATTEMPTS} attempts)") } else { error.clone() };
                        Attempt::Failed { error, retry_at }
                    }
                };
                (d.notification.id.as_str(), attempt)
            })
            .collect();
        self.store.record_attempts(&notifier.id, &attempts, again_at, now)?;
        if let Outcome::Failed { error } | Outcome::Retry { error, .. } = outcome {
            tracing::warn!("delivery to {} notifier {} failed: {error}", notifier.kind, short(&notifier.id));
        }
        Ok(())
    }

    /// Runs until [`DispatcherHandle::stop`]: steps when the next delivery falls due, when
    /// woken by [`DispatcherHandle::wake`], and otherwise only every [`SAFETY_POLL`].
    pub fn run(mut self) {
        loop {
            let next = match self.step() {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!("dispatcher: {e}; will retry");
                    None
                }
            };
            if self.stopping {
                return;
            }
            let now = self.clock.now();
            let cap = SAFETY_POLL.as_millis() as Millis;
            let wait = Duration::from_millis(next.map_or(cap, |t| (t - now).clamp(0, cap)) as u64);
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Msg::Wake) | Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

/// The message for a batch: the notification itself, or a digest.
fn message<'a>(batch: &'a [Due], channel: &Channel) -> Message<'a> {
    let level = batch.iter().map(|d| d.notification.level).max().unwrap_or(runwatch_core::Level::Info);
    if let [only] = batch {
        let n = &only.notification;
        let template = channel.template().unwrap_or_else(|_| runwatch_core::template::Template::parse("{message}").unwrap());
        return Message { text: render::message_text(n, &template), level, run: n.run_id.as_deref(), single: Some(n), count: 1 };
    }
    let items: Vec<_> = batch.iter().map(|d| &d.notification).collect();
    let digest = render::digest_text(&items);
    let text = match items[0].group_key.as_deref() {
        _ if batch.iter().all(|d| d.held) => format!("While quiet hours lasted: {digest}"),
        Some(key) if items.iter().all(|n| n.group_key.as_deref() == Some(key)) => {
            let mut text = noise::group_title(key, &items);
            for n in items.iter().take(GROUP_LINES) {
                text.push_str(&format!("\n• [{}] {}", n.level, n.title));
            }
            if items.len() > GROUP_LINES {
                text.push_str(&format!("\n… and {} more", items.len() - GROUP_LINES));
            }
            text
        }
        _ => digest,
    };
    Message { text, level, run: None, single: None, count: batch.len() }
}

/// The wait before retry number `attempts + 1`: the server's `Retry-After` if it gave
/// one, else exponential backoff with up to 25 % jitter added (never less than the base).
pub fn retry_delay(attempts: i64, retry_after: Option<Duration>) -> Millis {
    if let Some(after) = retry_after {
        return (after.as_millis() as Millis).min(MAX_BACKOFF_MS * 12);
    }
    let base = BASE_BACKOFF_MS.saturating_mul(1 << attempts.clamp(0, 20)).min(MAX_BACKOFF_MS);
    base + (fastrand::f64() * 0.25 * base as f64) as Millis
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// Sends a test message to a notifier now, outside the outbox, and reports the answer.
pub fn send_test(sender: &Sender, channel: &Channel) -> Outcome {
    let text = "✅ Runwatch test message: this notifier works.".to_string();
    sender.send(channel, &Message { text, level: runwatch_core::Level::Info, run: None, single: None, count: 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_honours_retry_after() {
        for attempts in 0..6 {
            let base = 1000 << attempts;
            let d = retry_delay(attempts, None);
            assert!((base..=base + base / 4).contains(&d), "attempt {attempts}: {d}");
        }
        assert!(retry_delay(30, None) <= MAX_BACKOFF_MS + MAX_BACKOFF_MS / 4);
        assert_eq!(retry_delay(0, Some(Duration::from_secs(2))), 2000);
    }
}
