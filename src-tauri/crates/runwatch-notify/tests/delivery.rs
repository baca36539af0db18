//! Delivery against local fake Slack / Workplace / webhook / ntfy servers: the exact requests,
//! and every fault — 500, 429 with Retry-After, 404, silence, refused connections — under
//! an injected clock.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runwatch_core::clock::{FakeClock, Millis};
use runwatch_core::deliveries;
use runwatch_core::notifiers::Notifier;
use runwatch_core::{DataDir, DeliveryState, Inserted, Level, Location, NewNotification, NotifierStatus, Store};
use runwatch_notify::send::Sender;
use runwatch_notify::{Channel, Dispatcher};
use runwatch_tests::fake_http::{FakeServer, Reply};
use serde_json::json;

const T0: Millis = 1_800_000_000_000;
const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    _tmp: tempfile::TempDir,
    location: Location,
    clock: FakeClock,
    dispatcher: Dispatcher,
    log: Arc<Mutex<Vec<u8>>>,
}

struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn setup() -> Setup {
    setup_on(false)
}

/// On a SQLite file, or (`postgres`) a fresh database of the test cluster's PostgreSQL.
fn setup_on(postgres: bool) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let location = if postgres {
        Location::Postgres(runwatch_core::pg::fixture::Cluster::shared().database().unwrap())
    } else {
        Location::DataDir(DataDir::at(tmp.path()))
    };
    let clock = FakeClock::at(T0);
    let log = Arc::new(Mutex::new(Vec::new()));
    let sender = Sender::with_logger(Duration::from_millis(300), Arc::new(Mutex::new(Box::new(Buf(log.clone())))));
    let dispatcher = Dispatcher::new(Store::open_at(&location).unwrap(), Arc::new(clock.clone()), sender);
    Setup { _tmp: tmp, location, clock, dispatcher, log }
}

impl Setup {
    fn store(&self) -> Store {
        Store::open_at(&self.location).unwrap()
    }

    fn add(&self, channel: Channel, min_level: Level) -> String {
        channel.validate().unwrap();
        let id = format!("{:08x}-0000-4000-8000-000000000000", fastrand_id());
        self.store()
            .add_notifier(&Notifier {
                id: id.clone(),
                kind: channel.kind().into(),
                status: NotifierStatus::Enabled,
                config: channel.config_json(),
                min_level,
                created_at: T0,
                updated_at: T0,
            })
            .unwrap();
        id
    }

    fn notify(&self, level: Level, title: &str, source: &str) -> String {
        let n = NewNotification {
            level: Some(level),
            title: title.into(),
            run_id: Some("be0ebd0ce55b452d85f692cf".into()),
            source: source.into(),
            ..Default::default()
        };
        match self.store().insert_notification(&n, self.clock_now()).unwrap() {
            Inserted::New(n) => n.id,
            Inserted::Duplicate(id) => id,
        }
    }

    fn clock_now(&self) -> Millis {
        runwatch_core::clock::Clock::now(&self.clock)
    }

    fn at_ms(&mut self, ms: Millis) -> &mut Self {
        self.clock.set(T0 + ms);
        self
    }

    fn step(&mut self) -> Option<Millis> {
        self.dispatcher.step().unwrap()
    }

    fn delivery(&self, notification: &str) -> deliveries::Delivery {
        let mut d = self.store().deliveries_of(notification).unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        d.remove(0)
    }
}

fn fastrand_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

fn slack(server: &FakeServer, message: Option<&str>) -> Channel {
    Channel::Slack { url: server.url("/services/T000/B000/XXXXSECRET"), message: message.map(Into::into) }
}

#[test]
fn slack_gets_text_as_aim_sends_it_plus_blocks() {
    let server = FakeServer::start();
    let mut s = setup();
    s.add(slack(&server, None), Level::Debug);
    s.notify(Level::Error, "Run 'be0ebd0ce55b452d85f692cf' is stuck (no check-in for 105 s).", "detector");
    s.step();
    let r = server.wait_for(1, WAIT).remove(0);
    assert_eq!((r.method.as_str(), r.path.as_str(), r.query.as_deref()), ("POST", "/services/T000/B000/XXXXSECRET", None));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let text = "❗️ Something wrong with Run 'be0ebd0ce55b452d85f692cf'. Please check. ❗️";
    assert_eq!(
        r.json(),
        json!({
            "text": text,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "🔴 ERROR · run `be0ebd0ce55b452d85f692cf`"}]}
            ]
        })
    );
}

#[test]
fn custom_templates_and_braces_in_messages() {
    let server = FakeServer::start();
    let mut s = setup();
    s.add(slack(&server, Some("[{level}] {run.hash} needs you {{now}}")), Level::Debug);
    s.notify(Level::Critical, "stuck", "detector");
    s.step();
    s.at_ms(1000).notify(Level::Warning, "loss={loss:.2f} {run.hash}", "aim-log");
    s.step();
    let r = server.wait_for(2, WAIT);
    assert_eq!(r[0].json()["text"], "[CRITICAL] be0ebd0ce55b452d85f692cf needs you {now}");
    assert_eq!(r[1].json()["text"], "loss={loss:.2f} {run.hash}", "log texts pass through untouched");
}

#[test]
fn workplace_posts_to_the_group_feed_with_the_token() {
    let server = FakeServer::start();
    let mut s = setup();
    s.add(
        Channel::Workplace {
            group_id: "1234567890".into(),
            access_token: "EAAGtokenSECRET".into(),
            base_url: Some(server.url("")),
            message: Some("Run {run.hash} stuck".into()),
        },
        Level::Debug,
    );
    s.notify(Level::Error, "stuck", "detector");
    s.step();
    let r = server.wait_for(1, WAIT).remove(0);
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v14.0/1234567890/feed");
    assert_eq!(r.query.as_deref(), Some("access_token=EAAGtokenSECRET"));
    assert_eq!(r.json(), json!({"message": "Run be0ebd0ce55b452d85f692cf stuck"}));
}

#[test]
fn ntfy_gets_its_json_message_with_priority_tags_click_and_token() {
    let server = FakeServer::start();
    let mut s = setup();
    let ntfy = |topic: &str, token: Option<&str>, click: Option<&str>| Channel::Ntfy {
        url: server.url(""),
        topic: topic.into(),
        token: token.map(Into::into),
        click_url: click.map(Into::into),
        message: None,
    };
    s.add(ntfy("runwatch-alerts-7f3a", Some("tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"), Some("https://gpu1.lab:8747/")), Level::Warning);
    s.notify(Level::Info, "below the level", "send");
    let id = s.notify(Level::Critical, "OOM at step 1200", "send");
    s.step();
    let r = server.wait_for(1, WAIT).remove(0);
    assert_eq!((r.method.as_str(), r.path.as_str(), r.query.as_deref()), ("POST", "/", None));
    assert_eq!(r.header("authorization"), Some("Bearer tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({
            "topic": "runwatch-alerts-7f3a",
            "title": "OOM at step 1200",
            "message": "OOM at step 1200",
            "priority": 5,
            "tags": ["rotating_light", "runwatch"],
            "click": format!("https://gpu1.lab:8747/#/notifications/{id}"),
        })
    );
    assert_eq!(server.requests().len(), 1, "the INFO one is below the notifier's minimum level");

    // No token: no Authorization header; no click URL: no click; the level sets the priority.
    let server2 = FakeServer::start();
    s.add(Channel::Ntfy { url: server2.url(""), topic: "open".into(), token: None, click_url: None, message: None }, Level::Debug);
    s.at_ms(2000).notify(Level::Warning, "loss is NaN", "send");
    s.step();
    let r = server2.wait_for(1, WAIT).remove(0);
    assert_eq!(r.header("authorization"), None);
    assert_eq!(
        r.json(),
        json!({"topic": "open", "title": "loss is NaN", "message": "loss is NaN", "priority": 3, "tags": ["warning", "runwatch"]})
    );
}

#[test]
fn ntfy_settings_are_checked_and_masked() {
    let ntfy = |url: &str, topic: &str, token: Option<&str>| Channel::Ntfy {
        url: url.into(),
        topic: topic.into(),
        token: token.map(Into::into),
        click_url: None,
        message: None,
    };
    assert!(ntfy("https://ntfy.sh", "lab_alerts-1", None).validate().is_ok());
    assert!(ntfy("https://ntfy.sh", "has space", None).validate().is_err());
    assert!(ntfy("https://ntfy.sh", "", None).validate().is_err());
    assert!(ntfy("ntfy.sh", "t", None).validate().is_err());
    assert!(ntfy("https://ntfy.sh", "t", Some(" ")).validate().is_err());
    let masked = ntfy("https://ntfy.sh", "runwatch-alerts-7f3a", Some("tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2")).masked();
    assert_eq!(masked, json!({"url": "https://ntfy.sh", "topic": "run****", "token": "****NIz2"}));
}

#[test]
fn webhook_posts_fields_and_headers_and_logger_prints() {
    let server = FakeServer::start();
    let mut s = setup();
    let headers = [("Authorization".to_string(), "Bearer s3cr3t-token".to_string())].into();
    s.add(Channel::Webhook { url: server.url("/hook"), headers, message: None }, Level::Warning);
    s.add(Channel::Logger { message: None }, Level::Debug);
    s.notify(Level::Info, "below the webhook's level", "send");
    let id = s.notify(Level::Error, "OOM at step 1200", "send");
    s.step();
    let r = server.wait_for(1, WAIT).remove(0);
    assert_eq!(r.header("authorization"), Some("Bearer s3cr3t-token"));
    let body = r.json();
    assert_eq!(
        (body["text"].as_str(), body["level"].as_str(), body["id"].as_str()),
        (Some("OOM at step 1200"), Some("ERROR"), Some(id.as_str()))
    );
    let log = String::from_utf8(s.log.lock().unwrap().clone()).unwrap();
    let lines: Vec<_> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].ends_with("INFO     below the webhook's level"), "{log}");
    assert!(lines[1].ends_with("ERROR    OOM at step 1200"), "{log}");
    assert_eq!(server.requests().len(), 1, "the INFO one is below the webhook's minimum level");
}

#[test]
fn a_500_is_retried_after_backoff_and_delivered_once() {
    let server = FakeServer::start();
    server.script([Reply::status(500, "oops")]);
    let mut s = setup();
    s.add(slack(&server, None), Level::Debug);
    let id = s.notify(Level::Error, "boom", "send");
    let next = s.step().expect("a retry is scheduled");
    assert!((T0 + 1000..=T0 + 1250).contains(&next), "backoff 1 s + jitter: {}", next - T0);
    let d = s.delivery(&id);
    assert_eq!((d.state, d.attempts, d.last_error.as_deref()), (DeliveryState::Pending, 1, Some("HTTP 500: oops")));
    s.at_ms(999).step();
    assert_eq!(server.requests().len(), 1, "not before the backoff");
    s.at_ms(next - T0).step();
    server.wait_for(2, WAIT);
    s.at_ms(60_000).step();
    assert_eq!(server.requests().len(), 2, "delivered once");
    assert_eq!(s.delivery(&id).state, DeliveryState::Sent);
}

#[test]
fn a_429_waits_for_retry_after_on_the_injected_clock() {
    let server = FakeServer::start();
    server.script([Reply::status(429, "slow down").with_header("Retry-After", "2")]);
    let mut s = setup();
    s.add(slack(&server, None), Level::Debug);
    let id = s.notify(Level::Error, "boom", "send");
    assert_eq!(s.step(), Some(T0 + 2000));
    s.at_ms(1999).step();
    assert_eq!(server.requests().len(), 1);
    s.at_ms(2000).step();
    server.wait_for(2, WAIT);
    assert_eq!(s.delivery(&id).state, DeliveryState::Sent);
}

#[test]
fn a_404_fails_for_good_with_its_error_kept() {
    let server = FakeServer::start();
    server.script([Reply::status(404, "no_service")]);
    let mut s = setup();
    s.add(slack(&server, None), Level::Debug);
    let id = s.notify(Level::Error, "boom", "send");
    assert_eq!(s.step(), None);
    s.at_ms(3_600_000).step();
    assert_eq!(server.requests().len(), 1, "not retried");
    let d = s.delivery(&id);
    assert_eq!((d.state, d.last_error.as_deref()), (DeliveryState::Failed, Some("HTTP 404: no_service")));
}

#[test]
fn silence_times_out_and_is_retried() {
    let server = FakeServer::start();
    server.script([Reply::Hang]);
    let mut s = setup();
    s.add(slack(&server, None), Level::Debug);
    let id = s.notify(Level::Error, "boom", "send");
    let next = s.step().unwrap();
    let d = s.delivery(&id);
    assert_eq!((d.state, d.attempts), (DeliveryState::Pending, 1));
    assert!(d.last_error.as_deref().unwrap().contains("timed out"), "{d:?}");
    s.at_ms(next - T0).step();
    server.wait_for(2, WAIT);
    assert_eq!(s.delivery(&id).state, DeliveryState::Sent);
}

#[test]
fn a_refused_connection_is_retried_and_errors_never_show_the_secret() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again at once
    let mut s = setup();
    s.add(Channel::Slack { url: format!("http://127.0.0.1:{port}/services/T/B/TOPSECRET"), message: None }, Level::Debug);
    let id = s.notify(Level::Error, "boom", "send");
    assert!(s.step().is_some());
    let d = s.delivery(&id);
    assert_eq!(d.state, DeliveryState::Pending);
    let err = d.last_error.unwrap();
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("TOPSECRET"), "{err}");
}

#[test]
fn disabled_and_removed_notifiers_receive_nothing_from_the_moment_of_the_change() {
    let server = FakeServer::start();
    let mut s = setup();
    let a = s.add(slack(&server, None), Level::Debug);
    let queued = s.notify(Level::Error, "queued before disabling", "send");
    let mut store = s.store();
    store.set_notifier_status(&a, NotifierStatus::Disabled, T0).unwrap();
    s.notify(Level::Error, "while disabled", "send");
    s.step();
    assert!(server.requests().is_empty());
    let d = s.delivery(&queued);
    assert_eq!(d.state, DeliveryState::Failed);
    assert!(d.last_error.unwrap().contains("disabled"));

    let b = s.add(slack(&server, None), Level::Debug);
    s.notify(Level::Error, "to b", "send");
    store.remove_notifier(&b).unwrap();
    s.at_ms(5000).step();
    assert!(server.requests().is_empty());
}

#[test]
fn a_backlog_behind_the_pacing_becomes_one_digest_in_order() {
    let server = FakeServer::start();
    let mut s = setup();
    s.add(slack(&server, None), Level::Debug);
    s.notify(Level::Error, "first", "send");
    s.step();
    for i in 0..12 {
        s.notify(Level::Warning, &format!("burst {i}"), "send");
    }
    assert_eq!(s.step(), Some(T0 + 1000), "paced: next message after 1 s");
    assert_eq!(server.requests().len(), 1);
    s.at_ms(1000).step();
    let r = server.wait_for(2, WAIT);
    let text = r[1].json()["text"].as_str().unwrap().to_string();
    let expected: Vec<String> =
        std::iter::once("12 new notifications:".to_string()).chain((0..12).map(|i| format!("• [WARNING] burst {i}"))).collect();
    assert_eq!(text, expected.join("\n"));
    let (pending, sent, failed) = deliveries::counts(s.store().conn()).unwrap();
    assert_eq!((pending, sent, failed), (0, 13, 0));
}

#[test]
fn a_stop_ends_the_burst_after_the_send_in_flight_and_keeps_the_rest_queued() {
    let mut s = setup();
    s.add(Channel::Logger { message: None }, Level::Debug);
    for i in 0..5 {
        s.notify(Level::Error, &format!("n{i}"), "send");
    }
    s.dispatcher.handle().stop();
    s.step();
    assert!(s.log.lock().unwrap().is_empty(), "nothing is sent once a stop was asked for");
    let (pending, sent, _) = deliveries::counts(s.store().conn()).unwrap();
    assert_eq!((pending, sent), (5, 0));
}

#[test]
fn a_notifier_that_never_answers_holds_up_no_other() {
    let (hung, fine) = (FakeServer::start(), FakeServer::start());
    hung.script([Reply::Hang]);
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::at(tmp.path());
    // A timeout far longer than the test waits: only sending in parallel can pass.
    let sender = Sender::new(Duration::from_secs(600));
    let mut dispatcher = Dispatcher::new(Store::open(&data).unwrap(), Arc::new(FakeClock::at(T0)), sender);
    let mut store = Store::open(&data).unwrap();
    // The hanging one first: notifiers are served in the order they were added.
    for (id, url, at) in [("00000001-hung", hung.url("/hook"), T0), ("00000002-fine", fine.url("/services/T/B/FINE"), T0 + 1)] {
        let channel = if id.ends_with("hung") {
            Channel::Webhook { url, headers: Default::default(), message: None }
        } else {
            Channel::Slack { url, message: None }
        };
        store
            .add_notifier(&Notifier {
                id: id.into(),
                kind: channel.kind().into(),
                status: NotifierStatus::Enabled,
                config: channel.config_json(),
                min_level: Level::Debug,
                created_at: at,
                updated_at: at,
            })
            .unwrap();
    }
    let n = NewNotification { level: Some(Level::Error), title: "boom".into(), source: "send".into(), ..Default::default() };
    store.insert_notification(&n, T0).unwrap();
    std::thread::spawn(move || dispatcher.step());

    hung.wait_for(1, WAIT);
    let r = fine.wait_for(1, WAIT);
    assert!(r[0].json()["text"].as_str().unwrap().contains("boom"));
    assert_eq!(hung.requests().len(), 1, "still waiting for its answer");
}

/// The dispatcher on the injected clock with noise rules: quiet hours hold what is below
/// the pass level and send it as one catch-up digest when they end (the pass level goes at
/// once); a repeat goes at its interval until the acknowledgement; the dispatcher's next
/// wake is the rule's time, not a poll.
#[test]
fn quiet_hours_make_one_catch_up_digest_and_repeats_stop_at_the_ack() {
    quiet_hours_make_one_catch_up_digest_and_repeats_stop_at_the_ack_on(false);
}

#[test]
fn quiet_hours_make_one_catch_up_digest_and_repeats_stop_at_the_ack_on_postgresql() {
    quiet_hours_make_one_catch_up_digest_and_repeats_stop_at_the_ack_on(true);
}

fn quiet_hours_make_one_catch_up_digest_and_repeats_stop_at_the_ack_on(postgres: bool) {
    use runwatch_core::noise::{NotifierRules, QuietHours};
    let server = FakeServer::start();
    let mut s = setup_on(postgres);
    let id = s.add(slack(&server, None), Level::Debug);
    // T0 is 2027-01-15 08:00 UTC: quiet from 07:00 to 09:00.
    let quiet = QuietHours::parse("07:00-09:00", None, Some(Level::Critical)).unwrap();
    let rules = NotifierRules { delay_ms: None, repeat_ms: Some(600_000), quiet: Some(quiet) };
    s.store().set_notifier_rules(&id, &rules, T0).unwrap();
    s.dispatcher = Dispatcher::new(s.store(), Arc::new(s.clock.clone()), Sender::new(WAIT)).with_time_zone(jiff::tz::TimeZone::UTC);

    let a = s.notify(Level::Error, "disk full on gpu-3", "send");
    s.notify(Level::Warning, "slow epoch", "send");
    let c = s.notify(Level::Critical, "node lost", "send");
    assert_eq!(s.step(), Some(T0 + 600_000), "the next wake: the CRITICAL one's repeat");
    let got = server.wait_for(1, WAIT);
    assert!(got[0].json()["text"].as_str().unwrap().contains("node lost"), "the pass-through level goes at once");
    s.store().ack(&[c], T0 + 1).unwrap();
    s.at_ms(600_000);
    assert_eq!(s.step(), Some(T0 + 3_600_000), "acknowledged: no repeat; the next wake is the end of quiet hours");
    assert_eq!(server.requests().len(), 1);

    s.at_ms(3_600_000);
    s.step();
    let got = server.wait_for(2, WAIT);
    let text = got[1].json()["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("While quiet hours lasted: 2 new notifications:"), "{text}");
    assert!(text.contains("disk full on gpu-3") && text.contains("slow epoch"), "{text}");
    // Every one repeats 10 minutes later (together: a digest), until acknowledged.
    s.store().ack(&[a], T0 + 3_700_000).unwrap();
    s.at_ms(3_600_000 + 600_000);
    s.step();
    let got = server.wait_for(3, WAIT);
    let text = got[2].json()["text"].as_str().unwrap().to_string();
    assert!(text.contains("slow epoch") && !text.contains("disk full"), "the acknowledged one stopped: {text}");
    s.store().ack_all(T0 + 4_300_000).unwrap();
    s.at_ms(3_600_000 + 1_200_000);
    assert_eq!(s.step(), None, "nothing left to wake for");
    assert_eq!(server.requests().len(), 3);
}
