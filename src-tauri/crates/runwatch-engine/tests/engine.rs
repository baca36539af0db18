//! The engine as its callers use it: real files, a real HTTP server on loopback, a local
//! stand-in for Slack, and the shutdown's promises.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use runwatch_aim::checkins::{CheckIn, Flag};
use runwatch_aim::repo::AimRepo;
use runwatch_core::{deliveries, DataDir, Level, LockError, Store};
use runwatch_engine::{Engine, EngineError, Part};

/// How long a test waits for something to happen before failing.
const PATIENCE: Duration = Duration::from_secs(60);

fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Reads one HTTP request from `stream`; returns its body.
fn read_request(stream: &TcpStream) -> String {
    let mut reader = BufReader::new(stream);
    let mut len = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// A stand-in for Slack answering 200 to every request; yields each request's body.
fn answering_slack() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/services/T/B/X", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let body = read_request(&stream);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            if tx.send(body).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

fn post_event(engine: &Engine, message: &str) {
    let url = format!("{}/api/v1/events", engine.api_url());
    ureq::post(&url)
        .header("Authorization", &format!("Bearer {}", engine.token()))
        .header("Content-Type", "application/json")
        .send(serde_json::json!({ "level": "ERROR", "message": message }).to_string())
        .unwrap();
}

#[test]
fn what_the_watcher_stores_reaches_the_hook_and_slack_and_shutdown_is_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::at(tmp.path().join("data"));
    let check_ins = tmp.path().join("repo/.aim/check_ins");
    std::fs::create_dir_all(&check_ins).unwrap();
    let (url, requests) = answering_slack();
    runwatch_tests::add_slack_notifier(data.path(), "5ac4", &url);
    let (seen_tx, seen) = mpsc::channel();
    let repo = AimRepo::open(&tmp.path().join("repo")).unwrap();
    let engine = Engine::builder(data.clone())
        .unwrap()
        .repos(vec![repo])
        .http(any_port())
        .on_notification(move |n| {
            let _ = seen_tx.send(n.title.clone());
        })
        .start()
        .unwrap();
    assert_eq!(engine.run_count(), 0);
    assert!(engine.ui_url().starts_with(&format!("{}/#token=", engine.api_url())), "{}", engine.ui_url());

    let run = "0123456789abcdef01234567";
    let c = CheckIn { run_hash: run.into(), idx: 1, flag: Flag::Starting, utc_time: 1_795_268_411.34, expect_next_in: 0 };
    std::fs::write(check_ins.join(c.file_name()), b"").unwrap();
    let title = seen.recv_timeout(PATIENCE).expect("the hook hears of the new run");
    assert!(title.contains(run), "{title}");
    assert!(requests.recv_timeout(PATIENCE).expect("Slack hears of it").contains(run));

    post_event(&engine, "loss is NaN");
    assert!(requests.recv_timeout(PATIENCE).expect("an event from the API reaches Slack").contains("loss is NaN"));

    let report = engine.shutdown();
    assert!(report.is_clean(), "{report:?}");
    assert!(engine.shutdown().is_clean(), "a second shutdown has nothing to do");
}

#[test]
fn a_second_engine_on_the_data_dir_is_refused_until_the_first_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::at(tmp.path());
    let first = Engine::builder(data.clone()).unwrap().http(any_port()).start().unwrap();
    assert!(matches!(Engine::builder(data.clone()), Err(EngineError::Lock(LockError::Held { .. }))));
    drop(first);
    let again = Engine::builder(data).unwrap().http(any_port()).start().unwrap();
    assert!(again.shutdown().is_clean());
}

#[test]
fn a_busy_port_fails_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let err = Engine::builder(DataDir::at(tmp.path())).unwrap().http(taken.local_addr().unwrap()).start().err().expect("refused");
    assert!(matches!(err, EngineError::Listen { .. }), "{err}");
    // Nothing was left running: the data dir is free again.
    Engine::builder(DataDir::at(tmp.path())).unwrap();
}

/// Slack takes the request and never answers: the shutdown does not wait for the send's
/// timeout, reports the dispatcher as left behind, and the delivery stays pending (no
/// attempt recorded), for the next start to send.
#[test]
fn shutdown_is_bounded_and_an_unanswered_send_stays_pending() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::at(tmp.path());
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    runwatch_tests::add_slack_notifier(data.path(), "5ac4", &format!("http://{}/services/T/B/SILENT", silent.local_addr().unwrap()));
    let engine = Engine::builder(data.clone())
        .unwrap()
        .http(any_port())
        .send_timeout(Duration::from_secs(600))
        .shutdown_within(Duration::from_millis(200))
        .start()
        .unwrap();
    post_event(&engine, "GPU fell off the bus");
    let (held, _) = silent.accept().unwrap();
    assert!(read_request(&held).contains("GPU fell off the bus"));

    let report = engine.shutdown();
    assert_eq!(report.unfinished, [Part::Dispatcher], "{report:?}");
    let store = Store::open(&data).unwrap();
    assert_eq!(deliveries::counts(store.conn()).unwrap(), (1, 0, 0));
    let due = deliveries::due(store.conn(), "5ac4", i64::MAX, 10).unwrap();
    assert_eq!(due.len(), 1, "due again at once");
    assert_eq!(due[0].attempts, 0, "no failed attempt was recorded");
}

#[test]
fn one_shot_delivery_sends_what_is_pending_when_no_engine_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::at(tmp.path());
    let (url, requests) = answering_slack();
    runwatch_tests::add_slack_notifier(data.path(), "5ac4", &url);
    let mut store = Store::open(&data).unwrap();
    let event = runwatch_core::ingest::Event {
        run_id: None,
        level: Some(Level::Error),
        title: None,
        message: "disk full".into(),
        event_id: None,
        source: "send".into(),
        to: Vec::new(),
    };
    store.ingest(&event, 1).unwrap();
    use runwatch_engine::oneshot::{deliver_without_watcher, Delivered, Patience};
    assert_eq!(deliver_without_watcher(&data, &store, Patience::DueNow).unwrap(), Delivered::Done);
    assert!(requests.recv_timeout(PATIENCE).unwrap().contains("disk full"));
    assert_eq!(deliveries::counts(store.conn()).unwrap(), (0, 1, 0));

    // With an engine running, a command leaves the sending to it.
    store.ingest(&runwatch_core::ingest::Event { message: "disk full again".into(), ..event }, 2).unwrap();
    let engine = Engine::builder(data.clone()).unwrap().http(any_port()).start().unwrap();
    assert_eq!(deliver_without_watcher(&data, &store, Patience::DueNow).unwrap(), Delivered::Done);
    assert!(requests.recv_timeout(PATIENCE).unwrap().contains("disk full again"), "the engine sent it");
    assert!(engine.shutdown().is_clean());
}
