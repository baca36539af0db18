//! Every API route over real HTTP against a real store: answers, and who is turned away.

use std::sync::Arc;
use std::time::Duration;

use runwatch_core::clock::FakeClock;
use runwatch_core::{ChangeFeed, DataDir, Store};
use runwatch_http::{ApiConfig, Server};
use serde_json::{json, Value};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

struct Api {
    base: String,
    agent: ureq::Agent,
    _tmp: tempfile::TempDir,
    data: DataDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn start() -> Api {
    start_with(false)
}

/// With `feed`, the server learns of other connections' commits from a change feed;
/// without, by polling while a stream client is connected.
fn start_with(feed: bool) -> Api {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::at(tmp.path());
    let store = Store::open(&data).unwrap();
    let store_changes = feed.then(|| ChangeFeed::watch(&data).unwrap());
    serve(store, store_changes, tmp, data)
}

/// A server on a fresh database of the test cluster's PostgreSQL (`postgres`), or on a
/// SQLite file.
fn start_on(postgres: bool) -> Api {
    if !postgres {
        return start();
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::at(tmp.path());
    let store = Store::connect(&runwatch_core::pg::fixture::Cluster::shared().database().unwrap()).unwrap();
    serve(store, None, tmp, data)
}

fn serve(store: Store, store_changes: Option<ChangeFeed>, tmp: tempfile::TempDir, data: DataDir) -> Api {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new().unwrap().block_on(async move {
            let server = Server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            addr_tx.send(server.local_addr().unwrap()).unwrap();
            let config = ApiConfig {
                store,
                token: TOKEN.into(),
                clock: Arc::new(FakeClock::at(1_000_000)),
                on_stored: Box::new(|| {}),
                store_changes,
            };
            server
                .serve(config, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build().into();
    Api { base: format!("http://{addr}"), agent, _tmp: tmp, data, _stop: tx }
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.raw(method, path, body.map(|b| b.to_string()), &[("Authorization", &format!("Bearer {TOKEN}"))])
    }

    fn raw(&self, method: &str, path: &str, body: Option<String>, headers: &[(&str, &str)]) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut res = match (method, body) {
            ("GET", _) => headers.iter().fold(self.agent.get(&url), |r, (k, v)| r.header(*k, *v)).call(),
            ("DELETE", _) => headers.iter().fold(self.agent.delete(&url), |r, (k, v)| r.header(*k, *v)).call(),
            (m, body) => {
                let req = match m {
                    "POST" => self.agent.post(&url),
                    "PATCH" => self.agent.patch(&url),
                    _ => unreachable!(),
                };
                headers
                    .iter()
                    .fold(req, |r, (k, v)| r.header(*k, *v))
                    .header("Content-Type", "application/json")
                    .send(body.unwrap_or_default())
            }
        }
        .unwrap();
        let status = res.status().as_u16();
        let text = res.body_mut().with_config().limit(50_000_000).read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// The status of a POST that announces `len` bytes of body, of which none is sent.
fn oversized_head_status(api: &Api, auth: &str, len: usize) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let addr = api.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "POST /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    let mut status = String::new();
    BufReader::new(stream).read_line(&mut status).unwrap();
    status.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn ok(r: (u16, Value)) -> Value {
    assert_eq!(r.0, 200, "{}", r.1);
    r.1
}

#[test]
fn events_notifications_ack_and_summary() {
    let api = start();
    assert_eq!(ok(api.call("GET", "/api/v1/health", None))["status"], "ok");
    let one = ok(api.call(
        "POST",
        "/api/v1/events",
        Some(json!({"message": "OOM at step 7\ntrace", "level": "ERROR", "run_id": "job-1", "event_id": "e1"})),
    ));
    assert_eq!(one["duplicate"], false);
    let again = ok(api.call(
        "POST",
        "/api/v1/events",
        Some(json!({"message": "OOM at step 7\ntrace", "level": "ERROR", "run_id": "job-1", "event_id": "e1"})),
    ));
    assert_eq!((again["id"].clone(), again["duplicate"].clone()), (one["id"].clone(), json!(true)));
    let events: Vec<Value> = (0..5).map(|i| json!({"message": format!("w{i}"), "level": "WARNING", "event_id": format!("b{i}")})).collect();
    let batch = ok(api.call("POST", "/api/v1/events/batch", Some(json!({"events": events}))));
    assert_eq!(batch.as_array().unwrap().len(), 5);

    let summary = ok(api.call("GET", "/api/v1/notifications/summary", None));
    assert_eq!((summary["total"].clone(), summary["error"].clone(), summary["highest"].clone()), (json!(6), json!(1), json!("ERROR")));

    let page = ok(api.call("GET", "/api/v1/notifications?limit=4", None));
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    assert_eq!(page["items"][0]["title"], "w4", "newest first");
    let next = ok(api.call("GET", &format!("/api/v1/notifications?limit=4&cursor={}", page["next_cursor"].as_str().unwrap()), None));
    assert_eq!(next["items"].as_array().unwrap().len(), 2);
    let errors = ok(api.call("GET", "/api/v1/notifications?level=ERROR", None));
    assert_eq!(errors["items"][0]["title"], "OOM at step 7");
    let by_run = ok(api.call("GET", "/api/v1/notifications?run=job-1", None));
    assert_eq!(by_run["items"].as_array().unwrap().len(), 1);

    let id = one["id"].as_str().unwrap();
    let details = ok(api.call("GET", &format!("/api/v1/notifications/{id}"), None));
    assert_eq!(details["notification"]["body"], "OOM at step 7\ntrace");
    assert_eq!(details["deliveries"], json!([]));
    assert_eq!(ok(api.call("POST", &format!("/api/v1/notifications/{id}/ack"), None))["acknowledged"], 1);
    assert_eq!(ok(api.call("GET", "/api/v1/notifications?state=acked", None))["items"][0]["id"], id);
    assert_eq!(ok(api.call("POST", "/api/v1/notifications/ack", Some(json!({"all": true}))))["acknowledged"], 5);
    assert_eq!(ok(api.call("GET", "/api/v1/notifications/summary", None))["total"], 0);
    assert_eq!(api.call("GET", "/api/v1/notifications/nope", None).0, 404);
    assert_eq!(api.call("POST", "/api/v1/notifications/ack", Some(json!({}))).0, 400);

    let runs = ok(api.call("GET", "/api/v1/runs", None));
    assert_eq!(runs[0]["id"], "job-1");
}

#[test]
fn notifiers_are_validated_masked_patched_and_removed() {
    let api = start();
    let bad = api.call("POST", "/api/v1/notifiers", Some(json!({"type": "slack", "config": {"url": "not a url"}})));
    assert_eq!(bad.0, 400);
    assert!(bad.1["error"].as_str().unwrap().contains("invalid URL"), "{}", bad.1);
    let n = ok(api.call(
        "POST",
        "/api/v1/notifiers",
        Some(json!({"type": "slack", "config": {"url": "https://hooks.slack.com/services/T/B/SECRET"}, "min_level": "WARNING"})),
    ));
    assert_eq!(n["config"]["url"], "https://hooks.slack.com/****", "secrets are write-only");
    let id = n["id"].as_str().unwrap();
    let list = ok(api.call("GET", "/api/v1/notifiers", None));
    assert!(!list.to_string().contains("SECRET"));
    let patched = ok(api.call(
        "PATCH",
        &format!("/api/v1/notifiers/{}", &id[..8]),
        Some(json!({"status": "disabled", "config": {"message": "{run.hash} stuck"}})),
    ));
    assert_eq!((patched["status"].clone(), patched["config"]["message"].clone()), (json!("disabled"), json!("{run.hash} stuck")));
    let stored = Store::open(&api.data).unwrap().resolve_notifier(id).unwrap();
    assert_eq!(stored.config["url"], "https://hooks.slack.com/services/T/B/SECRET", "the secret was kept");
    assert_eq!(api.call("PATCH", &format!("/api/v1/notifiers/{id}"), Some(json!({"config": {"message": "{nope}"}}))).0, 400);
    let test = ok(api.call("POST", &format!("/api/v1/notifiers/{id}/test"), None));
    assert_eq!(test["ok"], false, "hooks.slack.com is not reachable from here: {test}");
    assert_eq!(api.call("DELETE", &format!("/api/v1/notifiers/{id}"), None).0, 204);
    assert_eq!(api.call("GET", &format!("/api/v1/notifiers/{id}"), None).0, 404);
}

#[test]
fn settings_read_and_patch() {
    let api = start();
    let s = ok(api.call("GET", "/api/v1/settings", None));
    assert_eq!((s["log_level"].clone(), s["popup_level"].clone(), s["grace_secs"].clone()), (json!("WARNING"), json!("ERROR"), json!(100)));
    let s =
        ok(api.call("PATCH", "/api/v1/settings", Some(json!({"log_level": "ERROR", "grace_secs": 30, "watched_repos": ["/data/exp"]}))));
    assert_eq!(
        (s["log_level"].clone(), s["grace_secs"].clone(), s["watched_repos"].clone()),
        (json!("ERROR"), json!(30), json!(["/data/exp"]))
    );
    assert_eq!(api.call("PATCH", "/api/v1/settings", Some(json!({"log_level": "LOUD"}))).0, 400);
    // The core's rules, as 400s naming the setting; nothing of a refused patch is written.
    for (patch, named) in [
        (json!({"grace_secs": 604_801, "log_level": "DEBUG"}), "grace_secs"),
        (json!({"rescan_secs": 0}), "rescan_secs"),
        (json!({"expiry_days": u64::MAX}), "expiry_days"),
        (json!({"watched_repos": ["relative/.aim"]}), "watched_repos"),
    ] {
        let (status, body) = api.call("PATCH", "/api/v1/settings", Some(patch.clone()));
        assert_eq!(status, 400, "{patch}: {body}");
        assert!(body["error"].as_str().unwrap().contains(named), "{patch}: {body}");
    }
    let s = ok(api.call("GET", "/api/v1/settings", None));
    assert_eq!((s["log_level"].clone(), s["rescan_secs"].clone()), (json!("ERROR"), json!(300)));
    let s = ok(api.call("PATCH", "/api/v1/settings", Some(json!({"rescan_secs": 60}))));
    assert_eq!((s["rescan_secs"].clone(), s["grace_secs"].clone()), (json!(60), json!(30)));
}

#[test]
fn strangers_are_turned_away() {
    let api = start();
    let auth = format!("Bearer {TOKEN}");
    let no_token = api.raw("GET", "/api/v1/notifications", None, &[]);
    assert_eq!(no_token.0, 401);
    assert!(no_token.1["error"].as_str().unwrap().contains("token"));
    assert_eq!(api.raw("GET", "/api/v1/health", None, &[("Authorization", "Bearer wrong")]).0, 401);
    assert_eq!(api.raw("GET", "/api/v1/health", None, &[("Authorization", &auth), ("Origin", "https://evil.example")]).0, 403);
    assert_eq!(api.raw("GET", "/api/v1/health", None, &[("Authorization", &auth), ("Host", "evil.example:80")]).0, 403);
    let port = api.base.rsplit(':').next().unwrap();
    assert_eq!(api.raw("GET", "/api/v1/health", None, &[("Authorization", &auth), ("Origin", &format!("http://localhost:{port}"))]).0, 200);
    assert_eq!(api.raw("GET", &format!("/api/v1/health?token={TOKEN}"), None, &[]).0, 200, "EventSource passes the token in the query");

    // The desktop window's preflight is answered without the token; a stranger's gets no CORS grant.
    let url = format!("{}/api/v1/notifications", api.base);
    let preflight = |origin: &str| {
        let req = ureq::http::Request::builder()
            .method("OPTIONS")
            .uri(&url)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
            .body(())
            .unwrap();
        let res = api.agent.run(req).unwrap();
        res.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(preflight("tauri://localhost").as_deref(), Some("tauri://localhost"));
    assert_eq!(preflight("https://evil.example"), None);

    // The size is refused from the header, before the body: a client still sending it may
    // see the connection close under it, so this one sends the head alone and reads.
    assert_eq!(oversized_head_status(&api, &auth, 5 * 1024 * 1024), 413);
    let bad = api.raw("POST", "/api/v1/events", Some("{not json".into()), &[("Authorization", &auth)]);
    assert_eq!(bad.0, 400);
    assert!(bad.1["error"].as_str().unwrap().starts_with("invalid JSON body"), "{}", bad.1);
    let wrong_shape = api.raw("POST", "/api/v1/events", Some(r#"{"message": 5}"#.into()), &[("Authorization", &auth)]);
    assert_eq!(wrong_shape.0, 400, "{}", wrong_shape.1);
    assert_eq!(api.call("POST", "/api/v1/events", Some(json!({"message": " "}))).0, 400);
    // Bad query strings get the same JSON errors as bad bodies.
    for query in ["level=LOUD", "limit=many", "state=maybe"] {
        let (status, body) = api.call("GET", &format!("/api/v1/notifications?{query}"), None);
        assert_eq!(status, 400, "{query}");
        assert!(body["error"].as_str().unwrap().starts_with("invalid query"), "{query}: {body}");
    }
    let (status, body) = api.call("GET", "/api/v1/notifications?cursor=x", None);
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("invalid cursor"), "{body}");
    assert_eq!(api.call("GET", "/api/v1/nope", None).0, 404);
}

#[test]
fn openapi_document_lists_every_route() {
    let api = start();
    let doc = ok(api.call("GET", "/api/v1/openapi.json", None));
    let paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    for p in [
        "/api/v1/notifications",
        "/api/v1/notifications/{id}",
        "/api/v1/events/batch",
        "/api/v1/notifiers/{id}/test",
        "/api/v1/settings",
        "/api/v1/stream",
        "/api/v1/notifications/{id}/snooze",
        "/api/v1/silences",
        "/api/v1/silences/{id}/expire",
    ] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // The guard's answers are documented on every operation.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for status in ["401", "403"] {
                assert_eq!(
                    op["responses"][status]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
}

#[test]
fn the_stream_reports_changes() {
    for feed in [false, true] {
        stream_reports_changes(feed);
    }
}

/// Changes made through the API, then by another connection (as the CLI or the watcher
/// make them): each reaches a connected stream client.
fn stream_reports_changes(feed: bool) {
    let api = start_with(feed);
    let url = format!("{}/api/v1/stream?token={TOKEN}", api.base);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader};
        let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
        let res = agent.get(&url).call().unwrap();
        for line in BufReader::new(res.into_body().into_reader()).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("data:") && tx.send(line).is_err() {
                break;
            }
        }
    });
    // A change may be reported more than once (the API's own commit reaches the feed too):
    // wait for the message that shows it.
    let next = |what: &str, matches: &dyn Fn(&str) -> bool| loop {
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|e| panic!("feed {feed}: no message {what}: {e}"));
        if matches(&line) {
            return line;
        }
    };
    let first = next("on connecting", &|_| true);
    assert!(first.contains("\"total\":0"), "{first}");
    ok(api.call("POST", "/api/v1/events", Some(json!({"message": "hello", "level": "ERROR"}))));
    next("after the event", &|l| l.contains("\"total\":1") && l.contains("\"highest\":\"ERROR\""));
    let mut other = Store::open(&api.data).unwrap();
    assert_eq!(other.ack_all(1_000_001).unwrap(), 1);
    next("after another connection's ack", &|l| l.contains("\"total\":0"));
}

/// The clock of [`start`]'s server.
const NOW: i64 = 1_000_000;

#[test]
fn snooze_unsnooze_and_silences_over_http() {
    snooze_unsnooze_and_silences_over_http_on(false);
}

#[test]
fn snooze_unsnooze_and_silences_over_http_on_postgresql() {
    snooze_unsnooze_and_silences_over_http_on(true);
}

fn snooze_unsnooze_and_silences_over_http_on(postgres: bool) {
    let api = start_on(postgres);
    let id = ok(api.call("POST", "/api/v1/events", Some(json!({"message": "loss is NaN", "level": "ERROR", "run_id": "job-1"}))))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let n = ok(api.call("POST", &format!("/api/v1/notifications/{id}/snooze"), Some(json!({"for_secs": 3600}))));
    assert_eq!(n["snoozed_until"], NOW + 3_600_000);
    assert_eq!(ok(api.call("GET", "/api/v1/notifications/summary", None))["total"], 0);
    assert_eq!(ok(api.call("GET", "/api/v1/notifications?state=snoozed", None))["items"][0]["id"], id.as_str());
    assert_eq!(ok(api.call("GET", "/api/v1/notifications", None))["items"], json!([]));
    let n = ok(api.call("POST", &format!("/api/v1/notifications/{id}/unsnooze"), Some(json!({}))));
    assert_eq!(n["snoozed_until"], Value::Null);
    assert_eq!(ok(api.call("GET", "/api/v1/notifications/summary", None))["total"], 1);
    let n = ok(api.call("POST", &format!("/api/v1/notifications/{id}/snooze"), Some(json!({"until_change": true}))));
    assert_eq!(n["snoozed_until"], i64::MAX);
    for bad in [json!({}), json!({"for_secs": 0}), json!({"for_secs": 60, "until_change": true}), json!({"until": NOW - 1})] {
        let (status, body) = api.call("POST", &format!("/api/v1/notifications/{id}/snooze"), Some(bad.clone()));
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(api.call("POST", "/api/v1/notifications/nope/snooze", Some(json!({"for_secs": 60}))).0, 404);
    // A run: what it has now, and what arrives before the snooze ends.
    ok(api.call("POST", &format!("/api/v1/notifications/{id}/unsnooze"), Some(json!({}))));
    let r = ok(api.call("POST", "/api/v1/runs/job-1/snooze", Some(json!({"for_secs": 600}))));
    assert_eq!(r["snoozed"], 1);
    ok(api.call("POST", "/api/v1/events", Some(json!({"message": "again", "level": "ERROR", "run_id": "job-1"}))));
    assert_eq!(ok(api.call("GET", "/api/v1/notifications/summary", None))["total"], 0);
    assert_eq!(api.call("POST", "/api/v1/runs/nope/snooze", Some(json!({"for_secs": 60}))).0, 404);

    let s = ok(api.call(
        "POST",
        "/api/v1/silences",
        Some(json!({"matchers": ["run=job-2", "level<=WARNING"], "ends_at": NOW + 3_600_000, "comment": "known"})),
    ));
    assert_eq!(s["matchers"][1], json!({"field": "level", "op": "<=", "value": "WARNING"}));
    ok(api.call("POST", "/api/v1/events", Some(json!({"message": "slow", "level": "WARNING", "run_id": "job-2"}))));
    let silenced = ok(api.call("GET", "/api/v1/notifications?state=silenced", None));
    assert_eq!(silenced["items"][0]["silenced_by"], s["id"]);
    let (status, body) = api.call("POST", "/api/v1/silences", Some(json!({"matchers": ["colour=red"], "ends_at": NOW + 1})));
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("unknown matcher field 'colour'"), "{body}");
    let expired = ok(api.call("POST", &format!("/api/v1/silences/{}/expire", s["id"].as_str().unwrap()), Some(json!({}))));
    assert_eq!(expired["ends_at"], NOW);
    assert_eq!(ok(api.call("GET", "/api/v1/silences", None)).as_array().unwrap().len(), 1);
    assert_eq!(api.call("POST", "/api/v1/silences/ffff/expire", Some(json!({}))).0, 404);
}

#[test]
fn notifier_rules_are_validated_and_patched() {
    notifier_rules_are_validated_and_patched_on(false);
}

#[test]
fn notifier_rules_are_validated_and_patched_on_postgresql() {
    notifier_rules_are_validated_and_patched_on(true);
}

fn notifier_rules_are_validated_and_patched_on(postgres: bool) {
    let api = start_on(postgres);
    let n = ok(api.call(
        "POST",
        "/api/v1/notifiers",
        Some(json!({"type": "logger", "config": {}, "rules": {"delay_ms": 900_000, "repeat_ms": 3_600_000}})),
    ));
    assert_eq!(n["rules"], json!({"delay_ms": 900_000, "repeat_ms": 3_600_000}));
    let id = n["id"].as_str().unwrap();
    let quiet = json!({"quiet": {"start": "22:00", "end": "07:00", "days": ["mon", "fri"], "pass": "CRITICAL"}});
    let patched = ok(api.call("PATCH", &format!("/api/v1/notifiers/{id}"), Some(json!({"rules": quiet}))));
    assert_eq!(patched["rules"], quiet);
    assert_eq!(ok(api.call("GET", "/api/v1/notifiers", None))[0]["rules"], quiet);
    for bad in [json!({"repeat_ms": 10}), json!({"quiet": {"start": "25:00", "end": "07:00", "pass": "ERROR"}})] {
        let (status, body) =
            api.call("PATCH", &format!("/api/v1/notifiers/{id}"), Some(json!({"rules": bad.clone(), "min_level": "ERROR"})));
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(ok(api.call("GET", &format!("/api/v1/notifiers/{id}"), None))["min_level"], "DEBUG", "nothing was written");
}
