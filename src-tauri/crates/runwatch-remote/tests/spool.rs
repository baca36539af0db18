//! The reporter and the spool against a real HTTP server on loopback and real files: what
//! cannot be sent waits on disk, leaves in order, once; refusals are errors, not retries.

use std::time::Duration;

use runwatch_core::DataDir;
use runwatch_remote::{Client, Kind, Report, ReportError, Reporter, Spool, Target};
use runwatch_tests::fake_http::{FakeServer, Reply};
use serde_json::json;

fn reporter(server: &str, dir: &DataDir) -> Reporter {
    let target = Target::new(server, Some("tok-123"), None, None).unwrap();
    Reporter::new(Client::new(target, Duration::from_secs(5)).unwrap(), dir.clone())
}

fn json_ok(n: usize) -> Vec<Reply> {
    vec![Reply::status(200, r#"{"ok":true}"#); n]
}

#[test]
fn what_cannot_be_sent_waits_and_leaves_in_order_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::at(tmp.path());
    let server = FakeServer::start();
    let r = reporter(&server.url(""), &dir);

    // The server fails (500, 429, garbage): each report is spooled, none is lost.
    server.script([Reply::status(500, "boom"), Reply::status(429, "slow down"), Reply::status(200, "<html>proxy</html>")]);
    for i in 0..3 {
        let report = r.report(Kind::Event, json!({ "message": format!("event {i}") }), 0).unwrap();
        assert!(matches!(report, Report::Spooled { .. }), "{report:?}");
    }
    // While items wait, a new one goes behind them, even if the server is back.
    server.script(json_ok(10));
    let report = r.report(Kind::CheckIn, json!({ "run_id": "r1", "expect_next_in": 60 }), 0).unwrap();
    assert!(matches!(report, Report::Sent(_)), "{report:?}");
    assert!(Spool::open(&dir).unwrap().items(None).unwrap().is_empty());

    let requests = server.requests();
    // The first event was tried alone; later ones went behind it, so each later try was a
    // batch of everything waiting: [e0] 500, [e0 e1] 429, [e0 e1 e2] garbage, then the
    // same three sent, then the check-in.
    assert_eq!(requests.len(), 5, "{requests:#?}");
    let ids = |q: &runwatch_tests::fake_http::Request| -> Vec<String> {
        let body = q.json();
        match body.get("events") {
            Some(events) => events.as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect(),
            None => vec![body["event_id"].as_str().unwrap().to_string()],
        }
    };
    let sent = ids(&requests[3]);
    assert_eq!(requests[3].path, "/api/v1/events/batch");
    assert_eq!(ids(&requests[0])[..], sent[..1], "the same event id on every try");
    assert_eq!(ids(&requests[1])[..], sent[..2]);
    assert_eq!(ids(&requests[2])[..], sent[..]);
    let batch = requests[3].json();
    assert_eq!(batch["events"][2]["message"], "event 2");
    assert_eq!(requests[4].path, "/api/v1/check-ins");
    assert_eq!(requests[4].header("authorization"), Some("Bearer tok-123"));
}

#[test]
fn an_unreachable_server_spools_and_flush_drains_later() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::at(tmp.path());
    // A port nobody listens on: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let r = reporter(&url, &dir);
    for i in 0..5 {
        match r.report(Kind::Event, json!({ "message": format!("m{i}") }), i).unwrap() {
            Report::Spooled { reason } => assert!(reason.contains("connection refused"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
    let flushed = r.flush().unwrap();
    assert_eq!((flushed.sent, flushed.left), (0, 5));
    assert!(flushed.stopped.unwrap().to_string().contains("cannot be reached"));
    let items = Spool::open(&dir).unwrap().items(None).unwrap();
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|i| i.last_error.as_deref().is_some_and(|e| e.contains("connection refused"))));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(tmp.path().join("spool.db")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_wrong_token_is_an_error_that_says_so_and_spools_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::at(tmp.path());
    let server = FakeServer::start();
    server.script([Reply::status(401, r#"{"error":"missing or wrong token"}"#)]);
    let err = reporter(&server.url(""), &dir).report(Kind::Event, json!({ "message": "x" }), 0).unwrap_err();
    assert!(matches!(err, ReportError::Client(_)));
    assert!(err.to_string().contains("refused the token"), "{err}");
    assert!(!err.to_string().contains("tok-123"));
    assert!(Spool::open(&dir).unwrap().items(None).unwrap().is_empty());
}

#[test]
fn an_item_the_server_rejects_is_set_aside_and_the_rest_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::at(tmp.path());
    let server = FakeServer::start();
    let r = reporter(&server.url(""), &dir);
    server.script(vec![Reply::status(503, "down"); 3]);
    for i in 0..3 {
        r.report(Kind::Event, json!({ "message": format!("m{i}") }), 0).unwrap();
    }
    // The batch is refused as a whole; one by one, only the second is bad.
    server.script([
        Reply::status(400, r#"{"error":"event 1: bad"}"#),
        Reply::status(200, "{}"),
        Reply::status(400, r#"{"error":"message is empty"}"#),
        Reply::status(200, "{}"),
    ]);
    let flushed = r.flush().unwrap();
    assert_eq!((flushed.sent, flushed.rejected, flushed.left), (2, 1, 0));
    let items = Spool::open(&dir).unwrap().items(None).unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0].rejected);
    assert_eq!(items[0].body["message"], "m1");
}

#[test]
fn a_damaged_spool_is_kept_aside_and_a_new_one_started() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::at(tmp.path());
    std::fs::write(tmp.path().join("spool.db"), b"this is not a database, and it is long enough to have a header page....").unwrap();
    let mut spool = Spool::open(&dir).unwrap();
    spool.push("http://127.0.0.1:1", Kind::Event, &json!({ "message": "m", "event_id": "e1" }), None, 0).unwrap();
    assert_eq!(spool.items(None).unwrap().len(), 1);
    let aside: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("damaged"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file is kept");
}
