//! Delivery benchmark: a burst of 1,000 ERROR notifications into a fake Slack that accepts
//! one request per second (429 with `Retry-After: 1` otherwise). Prints how many requests
//! it received, how long until the outbox was drained, and that the inbox kept all 1,000.
//!
//! Run: `make bench-delivery` (or `cargo run --release -p runwatch-tests --bin runwatch-bench-delivery`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use runwatch_core::clock::SystemClock;
use runwatch_core::deliveries;
use runwatch_core::inbox::{AckState, ListFilter};
use runwatch_core::notifiers::Notifier;
use runwatch_core::{DataDir, Level, NewNotification, NotifierStatus, Store};
use runwatch_notify::send::{Sender, DEFAULT_TIMEOUT};
use runwatch_notify::Dispatcher;
use runwatch_tests::fake_http::FakeServer;

const BURST: usize = 1000;

fn main() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = DataDir::at(tmp.path());
    let slack = FakeServer::start();
    slack.rate_limit(Duration::from_secs(1));
    let mut store = Store::open(&data).expect("store");
    store
        .add_notifier(&Notifier {
            id: "bench".into(),
            kind: "slack".into(),
            status: NotifierStatus::Enabled,
            config: serde_json::json!({"url": slack.url("/services/T/B/BENCH")}),
            min_level: Level::Debug,
            created_at: 0,
            updated_at: 0,
        })
        .expect("notifier");

    let dispatcher = Dispatcher::new(Store::open(&data).expect("store"), Arc::new(SystemClock), Sender::new(DEFAULT_TIMEOUT));
    let handle = dispatcher.handle();
    let thread = std::thread::spawn(move || dispatcher.run());

    let start = Instant::now();
    for i in 0..BURST {
        let n =
            NewNotification { level: Some(Level::Error), title: format!("burst #{i:04}"), source: "bench".into(), ..Default::default() };
        store.insert_notification(&n, 1_000 + i as i64).expect("insert");
        handle.wake();
    }
    let ingested = start.elapsed();
    let drained = loop {
        let (pending, _, _) = deliveries::counts(store.conn()).expect("counts");
        if pending == 0 {
            break start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(600), "outbox not drained after 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    };
    handle.stop();
    thread.join().expect("dispatcher");

    let (pending, sent, failed) = deliveries::counts(store.conn()).expect("counts");
    let inbox =
        store.list_notifications(&ListFilter { state: AckState::All, limit: Some(1000), ..Default::default() }).expect("list").items.len();
    let requests = slack.requests();
    let delivered: usize = requests
        .iter()
        .map(|r| {
            let text = r.json()["text"].as_str().unwrap_or("").to_string();
            (0..BURST).filter(|i| text.contains(&format!("burst #{i:04}"))).count()
        })
        .sum();
    println!("burst of {BURST} ERROR notifications into a fake Slack accepting 1 request/s");
    println!("  inbox: {BURST} stored in {:.3} s; {inbox} in the inbox afterwards (dropped: {})", ingested.as_secs_f64(), BURST - inbox);
    println!("  outbox drained after {:.2} s: {sent} sent, {failed} failed, {pending} pending", drained.as_secs_f64());
    println!("  Slack received {} requests (+{} answered 429), carrying {delivered} notifications", requests.len(), slack.rejected());
    assert_eq!(inbox, BURST, "a notification was dropped from the inbox");
    assert_eq!(delivered, BURST, "a notification never reached Slack");
}
