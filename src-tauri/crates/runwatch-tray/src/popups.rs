//! Native popups (notify-rust over D-Bus) for notifications at or above the popup level,
//! coalesced by [`PopupGate`]; "Open" (also the default click) shows the notification's
//! details in the window, "Acknowledge" acknowledges it, "Snooze 1 h" snoozes it for an
//! hour. The same loop keeps the tray badge current, and shows a snoozed notification again
//! when it comes back (a time it waits for, like the coalesced popups'; nothing polls).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use notify_rust::{Hint, Timeout, Urgency};
use runwatch_core::clock::{Clock, Millis, SystemClock};
use runwatch_core::{inbox, DataDir, Level, Store};
use runwatch_desktop::{Popup, PopupGate};

use crate::tray::Handle;
use crate::{Command, Wake};

/// How long the popup's "Snooze 1 h" snoozes.
const SNOOZE_MS: Millis = 3_600_000;

/// Popups paused until this time (0: not paused); toggled from the tray menu.
#[derive(Default)]
pub struct Pause(AtomicI64);

impl Pause {
    /// Pauses for an hour, or resumes; returns whether popups are now paused.
    pub fn toggle(&self, now: Millis) -> bool {
        let until = self.0.load(Ordering::SeqCst);
        let paused = until > now;
        self.0.store(if paused { 0 } else { now + 3_600_000 }, Ordering::SeqCst);
        !paused
    }

    pub fn until(&self) -> Option<Millis> {
        Some(self.0.load(Ordering::SeqCst)).filter(|u| *u > 0)
    }
}

/// What a popup's buttons need.
#[derive(Clone)]
struct Ctx {
    /// notify-rust's D-Bus connection runs its tasks on this runtime.
    runtime: tokio::runtime::Handle,
    data_dir: DataDir,
    wake: Wake,
    commands: Sender<Command>,
}

/// Starts the loop that shows popups and keeps the tray badge current.
pub fn start(runtime: tokio::runtime::Handle, data_dir: DataDir, tray: Handle, pause: Arc<Pause>, wake: Wake, commands: Sender<Command>) {
    let (tx, rx) = mpsc::channel();
    *wake.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
    let ctx = Ctx { runtime, data_dir, wake, commands };
    std::thread::Builder::new()
        .name("popups".into())
        .spawn(move || {
            let _in_runtime = ctx.runtime.enter();
            if let Err(e) = run(&ctx, &tray, &pause, &rx) {
                tracing::warn!("popups and tray badge stopped: {e}");
            }
        })
        .expect("spawning a thread");
}

fn run(ctx: &Ctx, tray: &Handle, pause: &Pause, rx: &mpsc::Receiver<()>) -> anyhow::Result<()> {
    let store = Store::open(&ctx.data_dir)?;
    // Only what arrives from now on pops up; what was pending shows in the badge.
    let mut last_seq = inbox::last_seq(store.conn())?;
    let mut gate = PopupGate::new(runwatch_core::Settings::default().popup_level);
    let mut shown_summary = None;
    // Snoozes that end after this have not come back yet.
    let mut snoozes_seen = SystemClock.now();
    loop {
        let now = SystemClock.now();
        let settings = runwatch_core::Settings::load(&store)?;
        gate.level = settings.popup_level;
        gate.group_window = runwatch_core::clock::secs(settings.group_window_secs);
        gate.quiet = settings.popup_quiet_hours;
        gate.pause_until(pause.until());
        let summary = store.unread_summary()?;
        let unreachable: Vec<String> =
            store.remotes()?.into_iter().filter(|r| r.state == runwatch_core::remotes::RemoteState::Unreachable).map(|r| r.name).collect();
        let shown = (summary, unreachable);
        if shown_summary.as_ref() != Some(&shown) {
            let (summary, unreachable) = shown.clone();
            tray.update(move |t| t.show(summary, unreachable));
            shown_summary = Some(shown);
        }
        for (seq, n) in inbox::since(store.conn(), last_seq, Level::Debug, 1000)? {
            last_seq = seq;
            for popup in gate.offer(&n, now) {
                show(ctx, popup);
            }
        }
        for n in runwatch_core::noise::returned(store.conn(), snoozes_seen, now)? {
            for popup in gate.offer(&n, now) {
                show(ctx, popup);
            }
        }
        snoozes_seen = now;
        for popup in gate.tick(now) {
            show(ctx, popup);
        }
        // No polling: the engine's change feed wakes this loop on every commit to the store
        // (by the watcher, the API or another process), and a coalesced popup, a group, the
        // end of quiet hours or of a snooze wakes it when due.
        let snooze_end = runwatch_core::noise::next_snooze_end(store.conn(), now)?;
        let woken = match [gate.next_deadline(), snooze_end].into_iter().flatten().min() {
            Some(d) => rx.recv_timeout(Duration::from_millis((d - now).max(0) as u64)),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match woken {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

fn show(ctx: &Ctx, popup: Popup) {
    let mut n = notify_rust::Notification::new();
    n.appname("Runwatch")
        .summary(&popup.summary())
        .body(&popup.body())
        .icon("runwatch")
        .hint(Hint::DesktopEntry("runwatch".into()))
        .urgency(if popup.critical() { Urgency::Critical } else { Urgency::Normal })
        .timeout(Timeout::Default)
        .action("default", "Open");
    let id = match &popup {
        Popup::One(one) => {
            n.action("ack", "Acknowledge");
            n.action("snooze", "Snooze 1 h");
            Some(one.id.clone())
        }
        Popup::Many { .. } | Popup::Group { .. } | Popup::CatchUp { .. } => None,
    };
    let handle = match n.show() {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!("cannot show a desktop popup: {e}");
            return;
        }
    };
    let ctx = ctx.clone();
    // Waits for a click or a dismissal, on its own thread (it blocks).
    std::thread::spawn(move || {
        let _in_runtime = ctx.runtime.enter();
        handle.wait_for_action(|action| match action {
            "default" | "open" => {
                let route = id.as_ref().map_or("/notifications".to_string(), |id| format!("/notifications/{id}"));
                let _ = ctx.commands.send(Command::Open(Some(route)));
            }
            "ack" => {
                if let Some(id) = &id {
                    if let Err(e) = Store::open(&ctx.data_dir).and_then(|mut s| s.ack(std::slice::from_ref(id), SystemClock.now())) {
                        tracing::warn!("cannot acknowledge: {e}");
                    }
                    crate::wake(&ctx.wake);
                }
            }
            "snooze" => {
                if let Some(id) = &id {
                    let now = SystemClock.now();
                    let until = runwatch_core::noise::SnoozeUntil::Time(now + SNOOZE_MS);
                    let snoozed = Store::open(&ctx.data_dir)
                        .map_err(runwatch_core::noise::NoiseError::from)
                        .and_then(|mut s| s.snooze(std::slice::from_ref(id), until, now));
                    if let Err(e) = snoozed {
                        tracing::warn!("cannot snooze: {e}");
                    }
                    crate::wake(&ctx.wake);
                }
            }
            _ => {}
        });
    });
}
