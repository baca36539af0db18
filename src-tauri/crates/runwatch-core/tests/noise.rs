//! Noise control on a real store (a SQLite file, and a PostgreSQL database) and the
//! injected clock: snoozes and their return,
//! silences and their expiry, quiet hours across midnight and a DST change, delay and
//! repeat stopped by an acknowledgement, recovery, the grouping window, and how the rules
//! meet (a silenced notification never escalates; quiet hours hold escalations). On
//! PostgreSQL, a group is leased whole by one of the daemons that share the store.

mod common;

use common::{store, Backend, Place};
use jiff::tz::TimeZone;
use runwatch_core::clock::Millis;
use runwatch_core::deliveries::{self, Attempt, Due};
use runwatch_core::inbox::{AckState, ListFilter};
use runwatch_core::noise::{self, Matcher, NewSilence, NotifierRules, QuietHours, SnoozeUntil, Verdict, UNTIL_CHANGE};
use runwatch_core::notifiers::Notifier;
use runwatch_core::{Inserted, Level, NewNotification, Notification, NotifierStatus, RunState, SettingsPatch, Store};

/// 2027-01-15 12:00 UTC, a Friday.
const T0: Millis = 1_800_014_400_000;
const MIN: Millis = 60_000;
const HOUR: Millis = 3_600_000;

fn note(level: Level, title: &str, run: Option<&str>) -> NewNotification {
    NewNotification { level: Some(level), title: title.into(), run_id: run.map(Into::into), source: "test".into(), ..Default::default() }
}

fn insert(store: &mut Store, n: &NewNotification, at: Millis) -> Notification {
    match store.insert_notification(n, at).unwrap() {
        Inserted::New(n) => *n,
        Inserted::Duplicate(id) => panic!("duplicate {id}"),
    }
}

fn pending_titles(store: &Store, now: Millis) -> Vec<String> {
    list(store, AckState::Pending, now)
}

fn list(store: &Store, state: AckState, now: Millis) -> Vec<String> {
    let filter = ListFilter { state, now: Some(now), ..Default::default() };
    store.list_notifications(&filter).unwrap().items.into_iter().map(|n| n.title).collect()
}

fn add_notifier(store: &mut Store, min_level: Level, rules: NotifierRules) -> String {
    let id = uuid_like(store.notifiers().unwrap().len());
    store
        .add_notifier(&Notifier {
            id: id.clone(),
            kind: "logger".into(),
            status: NotifierStatus::Enabled,
            config: serde_json::json!({}),
            min_level,
            created_at: T0,
            updated_at: T0,
        })
        .unwrap();
    store.set_notifier_rules(&id, &rules, T0).unwrap();
    id
}

fn uuid_like(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-000000000000")
}

fn run_with_labels(place: &Place, store: &mut Store, run: &str, labels: &[(&str, &str)]) {
    let labels: std::collections::BTreeMap<&str, &str> = labels.iter().copied().collect();
    let json = serde_json::to_string(&labels).unwrap();
    store.set_run_state(run, RunState::Running, T0).unwrap();
    place.execute("UPDATE runs SET labels = $1, repo = '/exp/.aim', host = 'gpu-7' WHERE id = $2", &[&json, run]);
}

/// What a dispatcher step would send for a notifier at `now` (taken, and the rule engine
/// applied).
fn due_now(store: &mut Store, notifier: &str, now: Millis, tz: &TimeZone) -> Vec<Due> {
    let rules = store.notifier_rules(notifier).unwrap();
    let due = store.take_due(notifier, now, 1000).unwrap();
    store.triage(notifier, &rules, due, now, tz).unwrap()
}

/// Records a send as the dispatcher does (a repeating notifier keeps it pending).
fn sent(store: &mut Store, notifier: &str, due: &[Due], now: Millis) {
    let rules = store.notifier_rules(notifier).unwrap();
    let attempts: Vec<(&str, Attempt)> = due.iter().map(|d| (d.notification.id.as_str(), Attempt::Sent)).collect();
    store.record_attempts(notifier, &attempts, rules.repeat_ms.map(|r| now + r), now).unwrap();
}

fn next_attempt(store: &Store, notifier: &str) -> Option<Millis> {
    store.next_delivery_attempt(notifier).unwrap()
}

fn utc() -> TimeZone {
    TimeZone::UTC
}

// ---- snooze ----

fn a_snoozed_notification_leaves_the_badge_and_the_list_and_comes_back_when_due(backend: Backend) {
    let (_place, mut store) = store(backend);
    let n = insert(&mut store, &note(Level::Error, "loss is NaN", None), T0);
    insert(&mut store, &note(Level::Warning, "disk almost full", None), T0);
    assert_eq!(store.unread_summary_at(T0).unwrap().total, 2);

    assert_eq!(store.snooze(std::slice::from_ref(&n.id), SnoozeUntil::Time(T0 + HOUR), T0).unwrap(), 1);
    let s = store.unread_summary_at(T0 + 1).unwrap();
    assert_eq!((s.total, s.error, s.highest), (1, 0, Some(Level::Warning)));
    assert_eq!(pending_titles(&store, T0 + 1), ["disk almost full"]);
    assert_eq!(list(&store, AckState::Snoozed, T0 + 1), ["loss is NaN"]);
    assert_eq!(store.next_snooze_end(T0 + 1).unwrap(), Some(T0 + HOUR));
    assert!(store.snooze_returned(T0, T0 + HOUR - 1).unwrap().is_empty());

    // Due: back in the badge and the list, with nothing written.
    let s = store.unread_summary_at(T0 + HOUR).unwrap();
    assert_eq!((s.total, s.error), (2, 1));
    assert_eq!(pending_titles(&store, T0 + HOUR), ["disk almost full", "loss is NaN"]);
    assert_eq!(store.snooze_returned(T0 + HOUR - 1, T0 + HOUR).unwrap()[0].id, n.id);
    assert_eq!(store.next_snooze_end(T0 + HOUR).unwrap(), None);

    // A snooze must end later; acknowledged ones are left alone.
    assert!(store.snooze(std::slice::from_ref(&n.id), SnoozeUntil::Time(T0), T0 + HOUR).is_err());
    store.ack(std::slice::from_ref(&n.id), T0 + HOUR).unwrap();
    assert_eq!(store.snooze(std::slice::from_ref(&n.id), SnoozeUntil::Time(T0 + 2 * HOUR), T0 + HOUR).unwrap(), 0);
}

fn unsnooze_brings_it_back_at_once_and_an_ack_all_still_reaches_snoozed_ones(backend: Backend) {
    let (_place, mut store) = store(backend);
    let n = insert(&mut store, &note(Level::Error, "a", None), T0);
    store.snooze(std::slice::from_ref(&n.id), SnoozeUntil::Time(T0 + HOUR), T0).unwrap();
    assert_eq!(store.unread_summary_at(T0 + 1).unwrap().total, 0);
    assert_eq!(store.unsnooze(std::slice::from_ref(&n.id), T0 + 2).unwrap(), 1);
    assert_eq!(store.unread_summary_at(T0 + 2).unwrap().total, 1);

    store.snooze(std::slice::from_ref(&n.id), SnoozeUntil::Time(T0 + HOUR), T0 + 3).unwrap();
    assert_eq!(store.ack_all(T0 + 4).unwrap(), 1);
    assert_eq!(store.unread_summary_at(T0 + HOUR).unwrap().total, 0, "acknowledged while snoozed: it does not come back");
    assert!(list(&store, AckState::Snoozed, T0 + 5).is_empty());
}

fn snooze_all_snoozes_what_is_pending_now_only(backend: Backend) {
    let (_place, mut store) = store(backend);
    insert(&mut store, &note(Level::Error, "a", None), T0);
    let b = insert(&mut store, &note(Level::Warning, "b", None), T0);
    store.ack(std::slice::from_ref(&b.id), T0).unwrap();
    assert_eq!(store.snooze_all(T0 + HOUR, T0 + 1).unwrap(), 1);
    assert_eq!(store.unread_summary_at(T0 + 2).unwrap().total, 0);
    insert(&mut store, &note(Level::Error, "c", None), T0 + 3);
    assert_eq!(pending_titles(&store, T0 + 4), ["c"], "what arrives later is news");
    assert_eq!(pending_titles(&store, T0 + HOUR), ["c", "a"]);
}

fn snoozed_until_the_run_changes_state_comes_back_with_the_change_only(backend: Backend) {
    let (_place, mut store) = store(backend);
    store.set_run_state("r1", RunState::Stuck, T0).unwrap();
    let n = insert(&mut store, &note(Level::Error, "r1 is stuck", Some("r1")), T0);
    let other = insert(&mut store, &note(Level::Error, "about nothing", None), T0);
    assert!(store.snooze(std::slice::from_ref(&other.id), SnoozeUntil::RunChange, T0).is_err(), "no run: no run change");
    store.snooze(std::slice::from_ref(&n.id), SnoozeUntil::RunChange, T0).unwrap();
    assert_eq!(store.notification(&n.id).unwrap().unwrap().snoozed_until, Some(UNTIL_CHANGE));
    // The same state saved again (every check-in saves it) is no change.
    store.set_run_state("r1", RunState::Stuck, T0 + 1000 * HOUR).unwrap();
    assert_eq!(list(&store, AckState::Snoozed, T0 + 1000 * HOUR), ["r1 is stuck"]);
    store.set_run_state("r1", RunState::Crashed, T0 + 1001 * HOUR).unwrap();
    assert!(list(&store, AckState::Snoozed, T0 + 1001 * HOUR).is_empty());
    assert_eq!(pending_titles(&store, T0 + 1001 * HOUR), ["about nothing", "r1 is stuck"]);
}

/// Every source that saves a run's state ends a snooze until that run changes: the
/// detector (above), a run that reports its own end (`exec`) and the Slurm source.
fn a_run_change_from_exec_or_slurm_ends_a_snooze_until_the_change(backend: Backend) {
    let (_place, mut store) = store(backend);
    store.set_run_state("r1", RunState::Running, T0).unwrap();
    store.set_run_state("r2", RunState::Running, T0).unwrap();
    let a = insert(&mut store, &note(Level::Warning, "r1 is slow", Some("r1")), T0);
    let b = insert(&mut store, &note(Level::Warning, "r2 is slow", Some("r2")), T0);
    store.snooze(&[a.id.clone(), b.id.clone()], SnoozeUntil::RunChange, T0).unwrap();
    assert!(pending_titles(&store, T0 + 1).is_empty());

    store.set_run_end("r1", RunState::Failed, Some("exit code 1"), T0 + 2).unwrap();
    assert_eq!(pending_titles(&store, T0 + 3), ["r1 is slow"]);

    let report = runwatch_core::runs::Report {
        run: runwatch_core::runs::Reported { id: "r2".into(), state: Some(RunState::Failed), ..Default::default() },
        notification: None,
    };
    store.save_reports(&["r2".to_string()], T0 + 4, |_, _| Some(report.clone())).unwrap();
    assert_eq!(pending_titles(&store, T0 + 5), ["r2 is slow", "r1 is slow"]);
}

fn a_snoozed_run_snoozes_what_it_has_and_what_arrives_until_the_snooze_ends(backend: Backend) {
    let (_place, mut store) = store(backend);
    store.set_run_state("r1", RunState::Running, T0).unwrap();
    insert(&mut store, &note(Level::Error, "first", Some("r1")), T0);
    assert_eq!(store.snooze_run("r1", SnoozeUntil::Time(T0 + HOUR), T0).unwrap(), 1);
    insert(&mut store, &note(Level::Error, "second", Some("r1")), T0 + MIN);
    insert(&mut store, &note(Level::Error, "elsewhere", Some("r2")), T0 + MIN);
    assert_eq!(pending_titles(&store, T0 + MIN), ["elsewhere"]);
    assert_eq!(store.unread_summary_at(T0 + MIN).unwrap().total, 1);
    insert(&mut store, &note(Level::Error, "after", Some("r1")), T0 + HOUR);
    assert_eq!(pending_titles(&store, T0 + HOUR), ["after", "elsewhere", "second", "first"]);
    assert!(store.snooze_run("nope", SnoozeUntil::Time(T0 + 2 * HOUR), T0).is_err());
}

// ---- silences ----

#[test]
fn matchers_parse_every_field_and_operator_and_reject_nonsense_in_one_line() {
    let m = Matcher::parse("level<=WARNING").unwrap();
    assert_eq!((m.field.as_str(), m.op.as_str(), m.value.as_str()), ("level", "<=", "WARNING"));
    assert_eq!(Matcher::parse("label.sweep=lr-3").unwrap().to_string(), "label.sweep=lr-3");
    assert_eq!(Matcher::parse("text~loss[=: ]+nan").unwrap().op.as_str(), "~");
    assert_eq!(Matcher::parse("text=~nan").unwrap().op.as_str(), "~");
    assert_eq!(Matcher::parse("host!=gpu-1").unwrap().op.as_str(), "!=");
    for (bad, says) in [
        ("color=red", "unknown matcher field 'color'"),
        ("run", "no operator"),
        ("level<=LOUD", "unknown level 'LOUD'"),
        ("run<=abc", "compares levels only"),
        ("text~(", "invalid regular expression"),
        ("label.=x", "unknown matcher field"),
    ] {
        let e = Matcher::parse(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
        assert!(!e.contains('\n'));
    }
}

fn a_silence_stores_matching_notifications_as_silenced_without_deliveries_until_it_expires(backend: Backend) {
    let (place, mut store) = store(backend);
    let notifier = add_notifier(&mut store, Level::Debug, NotifierRules { delay_ms: Some(MIN), repeat_ms: Some(MIN), quiet: None });
    run_with_labels(&place, &mut store, "r1", &[("sweep", "lr")]);
    run_with_labels(&place, &mut store, "r2", &[("sweep", "wd")]);
    let silence = store
        .add_silence(
            &NewSilence {
                matchers: vec!["label.sweep=lr".into(), "level<=WARNING".into(), "text~(?i)nan".into()],
                starts_at: None,
                ends_at: T0 + HOUR,
                comment: Some("known NaNs".into()),
            },
            T0,
        )
        .unwrap();
    assert_eq!(silence.state(T0), "active");

    let quiet = insert(&mut store, &note(Level::Warning, "loss is NaN", Some("r1")), T0 + 1);
    assert_eq!(quiet.silenced_by.as_deref(), Some(silence.id.as_str()));
    let loud = insert(&mut store, &note(Level::Error, "loss is NaN", Some("r1")), T0 + 2);
    let other_sweep = insert(&mut store, &note(Level::Warning, "loss is NaN", Some("r2")), T0 + 3);
    let other_text = insert(&mut store, &note(Level::Warning, "slow epoch", Some("r1")), T0 + 4);
    for n in [&loud, &other_sweep, &other_text] {
        assert_eq!(n.silenced_by, None, "{}", n.title);
    }
    // Stored and listed as silenced; not pending, not in the badge, never forwarded.
    assert_eq!(list(&store, AckState::Silenced, T0 + 5).len(), 1);
    assert_eq!(store.unread_summary_at(T0 + 5).unwrap().total, 3);
    assert!(!pending_titles(&store, T0 + 5).is_empty());
    assert!(store.deliveries_of(&quiet.id).unwrap().is_empty(), "a silenced notification never escalates");
    assert_eq!(store.deliveries_of(&loud.id).unwrap().len(), 1);
    // Acknowledging a silenced one leaves the counts alone (it was never counted).
    store.ack(std::slice::from_ref(&quiet.id), T0 + 6).unwrap();
    assert_eq!(store.unread_summary_at(T0 + 6).unwrap().total, 3);
    // Nor does a repeat or the delay ever bring it to the notifier.
    assert!(due_now(&mut store, &notifier, T0 + 10 * HOUR, &utc()).iter().all(|d| d.notification.id != quiet.id));

    // Expired early: the same notification is news again.
    let expired = store.expire_silence(&silence.id[..8], T0 + 10 * MIN).unwrap();
    assert_eq!(expired.state(T0 + 10 * MIN), "expired");
    let again = insert(&mut store, &note(Level::Warning, "loss is NaN again", Some("r1")), T0 + 11 * MIN);
    assert_eq!(again.silenced_by, None);
    assert!(store.expire_silence("ffffffff", T0).unwrap_err().to_string().contains("no silence with id"));
}

fn a_silence_ends_by_itself_and_one_that_starts_later_waits(backend: Backend) {
    let (_place, mut store) = store(backend);
    let later = store
        .add_silence(
            &NewSilence { matchers: vec!["source=test".into()], starts_at: Some(T0 + HOUR), ends_at: T0 + 2 * HOUR, comment: None },
            T0,
        )
        .unwrap();
    assert_eq!(later.state(T0), "pending");
    assert_eq!(insert(&mut store, &note(Level::Error, "before", None), T0).silenced_by, None);
    assert!(insert(&mut store, &note(Level::Error, "during", None), T0 + HOUR).silenced_by.is_some());
    assert_eq!(insert(&mut store, &note(Level::Error, "after", None), T0 + 2 * HOUR).silenced_by, None);
    assert!(store.add_silence(&NewSilence { matchers: vec![], starts_at: None, ends_at: T0 + HOUR, comment: None }, T0).is_err());
    assert!(store
        .add_silence(&NewSilence { matchers: vec!["run=a".into()], starts_at: None, ends_at: T0 - 1, comment: None }, T0)
        .is_err());
}

// ---- quiet hours ----

#[test]
fn quiet_hours_across_midnight_on_chosen_days() {
    let q = QuietHours::parse("22:00-07:00", Some("mon-fri"), None).unwrap();
    assert_eq!(q.pass, Level::Critical);
    let tz = utc();
    // Friday 2027-01-15.
    let fri = |h: i64, m: i64| T0 - 12 * HOUR + h * HOUR + m * MIN;
    assert_eq!(q.quiet_until(fri(21, 59), &tz), None);
    assert_eq!(q.quiet_until(fri(22, 0), &tz), Some(fri(31, 0)), "Friday night, until Saturday 07:00");
    assert_eq!(q.quiet_until(fri(30, 59), &tz), Some(fri(31, 0)));
    assert_eq!(q.quiet_until(fri(31, 0), &tz), None);
    assert_eq!(q.quiet_until(fri(46, 0), &tz), None, "Saturday 22:00: not a quiet day");
    assert_eq!(q.quiet_until(fri(24 * 3 + 5, 0), &tz), None, "Monday 05:00: Sunday's night was not quiet");
    assert_eq!(q.quiet_until(fri(24 * 3 + 23, 0), &tz), Some(fri(24 * 4 + 7, 0)), "Monday night");
    // The same hours in the daytime do not cross midnight.
    let day = QuietHours::parse("12:30-13:30", None, Some(Level::Error)).unwrap();
    assert_eq!(day.quiet_until(fri(12, 0), &tz), None);
    assert_eq!(day.quiet_until(fri(13, 0), &tz), Some(fri(13, 30)));
    for bad in ["22:00", "25:00-07:00", "07:00-07:00", "7-8"] {
        assert!(QuietHours::parse(bad, None, None).is_err(), "{bad}");
    }
    assert!(QuietHours::parse("22:00-07:00", Some("someday"), None).is_err());
    assert_eq!(noise::parse_days("fri-mon").unwrap(), ["fri", "sat", "sun", "mon"]);
}

#[test]
fn quiet_hours_follow_the_local_clock_across_a_dst_change() {
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    let q = QuietHours::parse("22:00-07:00", None, None).unwrap();
    let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    // Clocks go forward on Sunday 2027-03-28 at 02:00 CET: the night is an hour shorter,
    // and it still ends at 07:00 local (05:00 UTC, where the night before ended at 06:00 UTC).
    assert_eq!(q.quiet_until(at("2027-03-27T01:00:00Z"), &tz), Some(at("2027-03-27T06:00:00Z")));
    assert_eq!(q.quiet_until(at("2027-03-27T21:00:00Z"), &tz), Some(at("2027-03-28T05:00:00Z")));
    assert_eq!(q.quiet_until(at("2027-03-28T04:59:00Z"), &tz), Some(at("2027-03-28T05:00:00Z")));
    assert_eq!(q.quiet_until(at("2027-03-28T05:00:00Z"), &tz), None);
    // It starts at 22:00 local too: 20:00 UTC in summer.
    assert_eq!(q.quiet_until(at("2027-03-28T19:59:00Z"), &tz), None);
    assert!(q.quiet_until(at("2027-03-28T20:00:00Z"), &tz).is_some());
    // Back in October (Sunday 2027-10-31 at 03:00 CEST): an hour longer, ending 07:00 CET.
    assert_eq!(q.quiet_until(at("2027-10-30T21:00:00Z"), &tz), Some(at("2027-10-31T06:00:00Z")));
}

fn quiet_hours_hold_escalations_until_they_end_except_the_pass_level_and_send_a_catch_up(backend: Backend) {
    let (_place, mut store) = store(backend);
    let quiet = QuietHours::parse("11:00-13:00", None, Some(Level::Critical)).unwrap();
    let notifier = add_notifier(&mut store, Level::Debug, NotifierRules { delay_ms: Some(15 * MIN), repeat_ms: None, quiet: Some(quiet) });
    let tz = utc();
    // T0 is 12:00: quiet.
    let a = insert(&mut store, &note(Level::Error, "a", None), T0 - 30 * MIN);
    let b = insert(&mut store, &note(Level::Warning, "b", None), T0 - 20 * MIN);
    let c = insert(&mut store, &note(Level::Critical, "c", None), T0 - 20 * MIN);
    assert!(due_now(&mut store, &notifier, T0 - 16 * MIN, &tz).is_empty(), "the delay first");
    // Due during quiet hours: the CRITICAL one passes; the others are held to 13:00.
    let now = T0 - 5 * MIN;
    let send = due_now(&mut store, &notifier, now, &tz);
    assert_eq!(send.iter().map(|d| d.notification.title.as_str()).collect::<Vec<_>>(), ["c"]);
    sent(&mut store, &notifier, &send, now);
    assert_eq!(next_attempt(&store, &notifier), Some(T0 + HOUR));
    // Acknowledged while held: dropped at the end; the rest goes as one catch-up digest.
    store.ack(std::slice::from_ref(&b.id), T0 + 30 * MIN).unwrap();
    let send = due_now(&mut store, &notifier, T0 + HOUR, &tz);
    assert_eq!(send.len(), 1);
    assert_eq!(send[0].notification.id, a.id);
    assert!(send[0].held);
    let batches = deliveries::batches(send, false, 50);
    assert_eq!(batches.len(), 1);
    assert!(store.deliveries_of(&b.id).unwrap().is_empty(), "b's notifier never heard of it");
    assert_eq!(store.deliveries_of(&c.id).unwrap()[0].state, runwatch_core::DeliveryState::Sent);
}

// ---- delay and repeat ----

fn a_delay_sends_only_what_is_still_unacknowledged_and_repeats_stop_at_the_ack(backend: Backend) {
    let (_place, mut store) = store(backend);
    let notifier = add_notifier(&mut store, Level::Debug, NotifierRules { delay_ms: Some(15 * MIN), repeat_ms: Some(HOUR), quiet: None });
    let instant = add_notifier(&mut store, Level::Debug, NotifierRules::default());
    let tz = utc();
    let acked = insert(&mut store, &note(Level::Error, "acked in time", None), T0);
    let left = insert(&mut store, &note(Level::Error, "left alone", None), T0);
    // The notifier without rules hears of both at once; the delayed one waits.
    assert_eq!(due_now(&mut store, &instant, T0, &tz).len(), 2);
    assert!(due_now(&mut store, &notifier, T0 + 15 * MIN - 1, &tz).is_empty());
    assert_eq!(next_attempt(&store, &notifier), Some(T0 + 15 * MIN));
    store.ack(std::slice::from_ref(&acked.id), T0 + 10 * MIN).unwrap();

    let send = due_now(&mut store, &notifier, T0 + 15 * MIN, &tz);
    assert_eq!(send.iter().map(|d| d.notification.id.as_str()).collect::<Vec<_>>(), [left.id.as_str()]);
    assert!(store.deliveries_of(&acked.id).unwrap().iter().all(|d| d.notifier_id != notifier));
    sent(&mut store, &notifier, &send, T0 + 15 * MIN);
    // Again every hour while unacknowledged.
    assert_eq!(next_attempt(&store, &notifier), Some(T0 + 75 * MIN));
    let again = due_now(&mut store, &notifier, T0 + 75 * MIN, &tz);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].sends, 1);
    sent(&mut store, &notifier, &again, T0 + 75 * MIN);
    assert_eq!(next_attempt(&store, &notifier), Some(T0 + 135 * MIN));
    // The ack stops it: the next due time finds it over, and nothing is pending any more.
    store.ack_all(T0 + 100 * MIN).unwrap();
    assert!(due_now(&mut store, &notifier, T0 + 135 * MIN, &tz).is_empty());
    assert_eq!(next_attempt(&store, &notifier), None);
    let d = store.deliveries_of(&left.id).unwrap();
    assert!(d.iter().any(|d| d.notifier_id == notifier && d.state == runwatch_core::DeliveryState::Sent));
}

fn a_snooze_holds_an_escalation_until_it_ends(backend: Backend) {
    let (_place, mut store) = store(backend);
    let notifier = add_notifier(&mut store, Level::Debug, NotifierRules { delay_ms: Some(MIN), repeat_ms: None, quiet: None });
    let n = insert(&mut store, &note(Level::Error, "x", None), T0);
    store.snooze(std::slice::from_ref(&n.id), SnoozeUntil::Time(T0 + HOUR), T0 + 1).unwrap();
    assert!(due_now(&mut store, &notifier, T0 + MIN, &utc()).is_empty());
    assert_eq!(next_attempt(&store, &notifier), Some(T0 + HOUR));
    assert_eq!(due_now(&mut store, &notifier, T0 + HOUR, &utc()).len(), 1);
}

#[test]
fn verdicts_of_the_rule_engine() {
    let n = |level, acked: bool| Notification {
        id: "n".into(),
        created_at: T0,
        updated_at: T0,
        level,
        title: "t".into(),
        body: String::new(),
        run_id: None,
        source: "test".into(),
        dedupe_key: None,
        event_id: None,
        repeat_count: 0,
        acked_at: acked.then_some(T0),
        expires_at: None,
        origin: None,
        snoozed_until: None,
        silenced_by: None,
        resolved_at: None,
        group_key: None,
    };
    let plain = NotifierRules::default();
    let delayed = NotifierRules { delay_ms: Some(MIN), ..Default::default() };
    let tz = utc();
    assert_eq!(noise::verdict(&n(Level::Error, true), 0, &plain, T0, &tz), Verdict::Send, "no rules: as before");
    assert_eq!(noise::verdict(&n(Level::Error, true), 0, &delayed, T0, &tz), Verdict::Drop);
    assert_eq!(noise::verdict(&n(Level::Error, true), 2, &delayed, T0, &tz), Verdict::Stop);
    let quiet = NotifierRules { quiet: Some(QuietHours::parse("11:00-13:00", None, Some(Level::Error)).unwrap()), ..Default::default() };
    assert_eq!(noise::verdict(&n(Level::Warning, false), 0, &quiet, T0, &tz), Verdict::Postpone { at: T0 + HOUR, held: true });
    assert_eq!(noise::verdict(&n(Level::Error, false), 0, &quiet, T0, &tz), Verdict::Send, "the pass-through level");
}

// ---- recovery ----

fn a_stuck_run_that_checks_in_again_resolves_its_alarm_and_tells_who_heard_it(backend: Backend) {
    let (_place, mut store) = store(backend);
    let slack = add_notifier(&mut store, Level::Error, NotifierRules::default());
    let late = add_notifier(&mut store, Level::Error, NotifierRules { delay_ms: Some(HOUR), ..Default::default() });
    let mut stuck = note(Level::Error, "Run 'r1' is stuck", Some("r1"));
    stuck.dedupe_key = Some("stuck:r1:3".into());
    stuck.source = "detector".into();
    let alarm = insert(&mut store, &stuck, T0);
    let sent_now = due_now(&mut store, &slack, T0, &utc());
    sent(&mut store, &slack, &sent_now, T0);
    assert_eq!(store.unread_summary_at(T0).unwrap().error, 1);

    let mut back = note(Level::Info, "Run 'r1' recovered: check-ins resumed.", Some("r1"));
    back.dedupe_key = Some("recovered:r1:4".into());
    let recovered = insert(&mut store, &back, T0 + MIN);
    let a = store.notification(&alarm.id).unwrap().unwrap();
    assert_eq!(a.resolved_at, Some(T0 + MIN));
    assert_eq!(a.acked_at, None);
    let s = store.unread_summary_at(T0 + MIN).unwrap();
    assert_eq!((s.error, s.info), (0, 1), "resolved: not pending, the badge updated");
    assert_eq!(list(&store, AckState::Resolved, T0 + MIN), ["Run 'r1' is stuck"]);
    assert!(!pending_titles(&store, T0 + MIN).contains(&"Run 'r1' is stuck".to_string()));
    // The notifier that heard the alarm hears the recovery, below its level; the one whose
    // delay had not passed hears neither.
    let to: Vec<String> = store.deliveries_of(&recovered.id).unwrap().into_iter().map(|d| d.notifier_id).collect();
    assert_eq!(to, std::slice::from_ref(&slack));
    assert_eq!(due_now(&mut store, &slack, T0 + MIN, &utc()).len(), 1);
    assert!(due_now(&mut store, &late, T0 + 2 * HOUR, &utc()).is_empty());
}

// ---- grouping ----

fn a_burst_with_one_group_key_waits_for_the_window_and_goes_as_one_message(backend: Backend) {
    let (place, mut store) = store(backend);
    runwatch_core::settings::patch(&mut store, &SettingsPatch { group_window_secs: Some(30), ..Default::default() }).unwrap();
    let notifier = add_notifier(&mut store, Level::Debug, NotifierRules::default());
    for i in 0..12 {
        run_with_labels(
            &place,
            &mut store,
            &format!("task-{i}"),
            &[("slurm_array_job_id", "4242"), ("slurm_array_task_id", &i.to_string())],
        );
    }
    run_with_labels(&place, &mut store, "solo", &[]);
    for i in 0..12 {
        insert(&mut store, &note(Level::Error, &format!("Run 'task-{i}' failed."), Some(&format!("task-{i}"))), T0 + i * 800);
    }
    let solo = insert(&mut store, &note(Level::Error, "Run 'solo' failed.", Some("solo")), T0 + 1000);
    assert_eq!(solo.group_key, None);
    // Ungrouped goes at once; the group waits for its window from its first notification.
    let now = T0 + 10_000;
    let send = due_now(&mut store, &notifier, now, &utc());
    assert_eq!(send.len(), 1);
    sent(&mut store, &notifier, &send, now);
    assert_eq!(next_attempt(&store, &notifier), Some(T0 + 30_000));
    let send = due_now(&mut store, &notifier, T0 + 30_000, &utc());
    assert_eq!(send.len(), 12);
    sent(&mut store, &notifier, &send, T0 + 30_000);
    let batches = deliveries::batches(send, false, 50);
    assert_eq!(batches.len(), 1, "one message for the group");
    let items: Vec<&Notification> = batches[0].iter().map(|d| &d.notification).collect();
    assert_eq!(items[0].group_key.as_deref(), Some("slurm_array_job_id=4242"));
    assert_eq!(noise::group_title("slurm_array_job_id=4242", &items), "12 runs of array 4242 failed: Run 'task-0' failed. …");
    // Each is still its own inbox item.
    assert_eq!(store.unread_summary_at(now).unwrap().error, 13);
    // A notification after the window starts a new one.
    run_with_labels(&place, &mut store, "task-99", &[("slurm_array_job_id", "4242")]);
    insert(&mut store, &note(Level::Error, "late", Some("task-99")), T0 + 40_000);
    assert_eq!(next_attempt(&store, &notifier), Some(T0 + 70_000));
}

fn group_keys_come_from_the_configured_sources_in_order(backend: Backend) {
    let labels: std::collections::BTreeMap<String, String> = [("sweep".to_string(), "lr".to_string())].into();
    let by = |s: &[&str]| s.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(noise::group_key(&by(&["label.slurm_array_job_id", "label.sweep"]), Some("/r"), &labels).as_deref(), Some("sweep=lr"));
    assert_eq!(noise::group_key(&by(&["repo", "label.sweep"]), Some("/r"), &labels).as_deref(), Some("repo=/r"));
    assert_eq!(noise::group_key(&by(&["label.slurm_array_job_id"]), Some("/r"), &labels), None);
    assert!(runwatch_core::settings::patch(
        &mut store(backend).1,
        &SettingsPatch { group_by: Some(vec!["colour".into()]), ..Default::default() }
    )
    .is_err());
}

// ---- following ----

#[test]
fn a_notification_silenced_on_its_server_is_not_pending_on_a_follower_either() {
    use runwatch_core::remotes::NewRemote;
    let (_a, mut server) = store(Backend::Sqlite);
    let (_b, mut follower) = store(Backend::Sqlite);
    follower
        .add_remote(
            &NewRemote { name: "gpu-a".into(), url: "http://127.0.0.1:1".into(), token: "t".into(), ca_file: None, deliver: true },
            T0,
        )
        .unwrap();
    add_notifier(&mut follower, Level::Debug, NotifierRules::default());
    server
        .add_silence(&NewSilence { matchers: vec!["text~plateau".into()], starts_at: None, ends_at: T0 + HOUR, comment: None }, T0)
        .unwrap();
    insert(&mut server, &note(Level::Warning, "loss plateau", None), T0);
    insert(&mut server, &note(Level::Error, "loss is NaN", None), T0);
    let cursor = follower.remotes_to_follow().unwrap()[0].cursor;
    let changes = server.changes(cursor, 100).unwrap();
    let applied = follower.apply_changes("gpu-a", true, &changes, T0 + 1).unwrap();
    assert_eq!(applied.stored, 2);
    assert_eq!(applied.new_pending.iter().map(|n| n.title.as_str()).collect::<Vec<_>>(), ["loss is NaN"], "what the popups see");
    assert_eq!(pending_titles(&follower, T0 + 1), ["loss is NaN"]);
    assert_eq!(follower.unread_summary_at(T0 + 1).unwrap().total, 1);
    assert_eq!(list(&follower, AckState::Silenced, T0 + 1), ["loss plateau"]);
    let (pending, _, _) = follower.delivery_counts().unwrap();
    assert_eq!(pending, 1, "only the unsilenced one is forwarded");
}

// ---- several daemons ----

/// Two daemons on one PostgreSQL store wake together when a group's window ends: one of
/// them leases the whole group (more than a lease page of it), the other none of it, so the
/// group is one message. (A SQLite store has one daemon.)
#[test]
fn one_of_two_daemons_takes_a_whole_group() {
    let (place, mut store) = store(Backend::Postgres);
    runwatch_core::settings::patch(&mut store, &SettingsPatch { group_window_secs: Some(30), ..Default::default() }).unwrap();
    let notifier = add_notifier(&mut store, Level::Debug, NotifierRules::default());
    let tasks = 150;
    for i in 0..tasks {
        run_with_labels(&place, &mut store, &format!("task-{i}"), &[("slurm_array_job_id", "77")]);
    }
    let events: Vec<runwatch_core::ingest::Event> = (0..tasks)
        .map(|i| runwatch_core::ingest::Event {
            run_id: Some(format!("task-{i}")),
            level: Some(Level::Error),
            message: format!("Run 'task-{i}' failed."),
            source: "test".into(),
            ..Default::default()
        })
        .collect();
    store.ingest_batch(&events, T0).unwrap();
    let daemons: Vec<Store> = (0..2).map(|_| place.open()).collect();
    let barrier = std::sync::Barrier::new(2);
    let taken: Vec<usize> = std::thread::scope(|scope| {
        let takes: Vec<_> = daemons
            .into_iter()
            .map(|daemon| {
                let (barrier, notifier) = (&barrier, &notifier);
                scope.spawn(move || {
                    barrier.wait();
                    daemon.take_due(notifier, T0 + 30_000, 1000).unwrap().len()
                })
            })
            .collect();
        takes.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut taken = taken;
    taken.sort_unstable();
    assert_eq!(taken, [0, tasks as usize]);
}

on_both!(
    a_snoozed_notification_leaves_the_badge_and_the_list_and_comes_back_when_due,
    unsnooze_brings_it_back_at_once_and_an_ack_all_still_reaches_snoozed_ones,
    snooze_all_snoozes_what_is_pending_now_only,
    snoozed_until_the_run_changes_state_comes_back_with_the_change_only,
    a_run_change_from_exec_or_slurm_ends_a_snooze_until_the_change,
    a_snoozed_run_snoozes_what_it_has_and_what_arrives_until_the_snooze_ends,
    a_silence_stores_matching_notifications_as_silenced_without_deliveries_until_it_expires,
    a_silence_ends_by_itself_and_one_that_starts_later_waits,
    quiet_hours_hold_escalations_until_they_end_except_the_pass_level_and_send_a_catch_up,
    a_delay_sends_only_what_is_still_unacknowledged_and_repeats_stop_at_the_ack,
    a_snooze_holds_an_escalation_until_it_ends,
    a_stuck_run_that_checks_in_again_resolves_its_alarm_and_tells_who_heard_it,
    a_burst_with_one_group_key_waits_for_the_window_and_goes_as_one_message,
    group_keys_come_from_the_configured_sources_in_order,
);
