//! Secrets stay secret: with known webhook paths, tokens and header values configured,
//! a daemon logging at `trace` delivers (and fails to deliver) notifications, every API
//! route that shows notifiers or deliveries is called, and the CLI lists, shows and tests;
//! then every byte any process printed, every API answer and the stored delivery errors
//! are searched for the secrets. The data dir is the user's alone (0700, files 0600).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use runwatch_core::{DataDir, Store};
use runwatch_tests::fake_http::{FakeServer, Reply};
use runwatch_tests::{runwatch, token_in, url_in, wait_until, CliOutput, Running, PATIENCE};

/// Every secret below contains this; nothing else the test sends does.
const MARK: &str = "S3cret";
const SLACK_PATH: &str = "/services/T0SLK/B0SLK/slkS3cretPath0123456789";
const WP_TOKEN: &str = "EAAGwpS3cretTok0123456789";
const HOOK_PATH: &str = "/hook/hookS3cretPath0123456789";
const HOOK_HEADER: &str = "Bearer hookS3cretHdr0123456789";
const CLOSED_PATH: &str = "/hook/clsdS3cretPath0123456789";
const CLOSED_QUERY: &str = "key=clsdS3cretQry0123456789";
const CLOSED_HEADER: &str = "clsdS3cretHdr0123456789";
const API_PATH: &str = "/api-hook/apiS3cretPath0123456789";
const API_HEADER: &str = "apiS3cretHdr0123456789";

/// Everything printed or answered during the run, with where it came from.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    fn cli(&mut self, what: &str, out: CliOutput) -> CliOutput {
        self.add(format!("stdout of `{what}`"), out.stdout.clone());
        self.add(format!("stderr of `{what}`"), out.stderr.clone());
        for word in ["panicked", "internal error"] {
            assert!(!out.stderr.contains(word), "`{what}` failed badly:\n{}", out.stderr);
        }
        out
    }
}

struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>, seen: &mut Seen) -> (u16, String) {
        let url = format!("{}/api/v1{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let res = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self.agent.delete(&url).header("Authorization", &auth).call(),
            (m, body) => {
                let body = body.unwrap_or(serde_json::json!({})).to_string();
                let req = match m {
                    "POST" => self.agent.post(&url),
                    "PATCH" => self.agent.patch(&url),
                    other => panic!("no {other}"),
                };
                req.header("Authorization", &auth).header("Content-Type", "application/json").send(body)
            }
        };
        let mut res = res.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().unwrap();
        assert!(status < 500, "{method} {path}: {status} {text}");
        seen.add(format!("API {method} {path} ({status})"), text.clone());
        (status, text)
    }
}

/// Exit 0, or 1 only because of the pending-notifications summary (warnings and errors
/// are pending on purpose here).
#[track_caller]
fn succeeded(out: &CliOutput) {
    let summary_only = out.code == Some(1) && out.stderr.trim_start().starts_with("NOTICE:") && out.stderr.trim().lines().count() == 1;
    assert!(out.code == Some(0) || summary_only, "exit {:?}\nstdout:\n{}\nstderr:\n{}", out.code, out.stdout, out.stderr);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn last_errors(data: &Path) -> Vec<(String, String, Option<String>)> {
    let store = Store::open(&DataDir::at(data)).unwrap();
    let mut stmt = store.conn().prepare("SELECT d.notifier_id, d.state, d.last_error FROM deliveries d ORDER BY d.notifier_id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn no_secret_shows_in_logs_cli_output_api_answers_or_stored_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut seen = Seen::default();

    // Fake services whose first answers are errors that echo the secret back, as real
    // services sometimes do; the error texts are logged and stored.
    let slack = FakeServer::start();
    slack.script([Reply::status(404, &format!("no_service: POST {SLACK_PATH} is not a webhook"))]);
    let workplace = FakeServer::start();
    workplace.script([Reply::status(
        400,
        &format!(r#"{{"error":{{"message":"Invalid OAuth access token - Cannot parse access token {WP_TOKEN}","code":190}}}}"#),
    )]);
    let hook = FakeServer::start();
    hook.script([
        Reply::status(500, &format!("upstream refused 'Authorization: {HOOK_HEADER}' for {HOOK_PATH}")),
        Reply::status(403, &format!("forbidden: {HOOK_HEADER}")),
    ]);
    let closed = closed_port();

    // Notifiers added with the CLI, as a user would.
    let rw = |args: &[&str]| {
        let mut cmd = runwatch(&data);
        cmd.args(args).env("RUNWATCH_LOG", "trace");
        runwatch_tests::run_cli(&mut cmd)
    };
    for args in [
        vec!["notifiers", "add", "slack", "--webhook-url", &slack.url(SLACK_PATH)],
        vec!["notifiers", "add", "workplace", "--group-id", "1234", "--access-token", WP_TOKEN, "--base-url", &workplace.url("")],
        vec!["notifiers", "add", "webhook", "--url", &hook.url(HOOK_PATH), "--header", &format!("Authorization: {HOOK_HEADER}")],
        vec![
            "notifiers",
            "add",
            "webhook",
            "--url",
            &format!("http://127.0.0.1:{closed}{CLOSED_PATH}?{CLOSED_QUERY}"),
            "--header",
            &format!("X-Api-Key: {CLOSED_HEADER}"),
        ],
    ] {
        let what = args[..3].join(" ");
        seen.cli(&what, rw(&args)).expect_code(0);
    }
    let ids: Vec<(String, String)> = {
        let store = Store::open(&DataDir::at(&data)).unwrap();
        store.notifiers().unwrap().into_iter().map(|n| (n.id.clone(), n.config.to_string())).collect()
    };
    assert_eq!(ids.len(), 4);
    let closed_id = ids.iter().find(|(_, c)| c.contains("clsd")).unwrap().0.clone();
    let slack_id = ids.iter().find(|(_, c)| c.contains("slk")).unwrap().0.clone();

    // The daemon, logging everything it can.
    let mut cmd = runwatch(&data);
    cmd.args(["start", "--http", "127.0.0.1:0"]).env("RUNWATCH_LOG", "trace");
    let mut daemon = Running::spawn(&mut cmd);
    let url = url_in(&daemon.wait_for_line("the URL", |l| l.starts_with("Serving the UI at ")));
    daemon.wait_for_line("ready", |l| l == "Press Ctrl+C to exit");
    let api = Api {
        base: url.split('#').next().unwrap().trim_end_matches('/').to_string(),
        token: token_in(&url),
        agent: ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into(),
    };

    // Permissions, while the daemon has the store open (the WAL exists now).
    assert_eq!(mode(&data), 0o700, "the data dir");
    for name in ["runwatch.db", "runwatch.db-wal", "api-token"] {
        let path = data.join(name);
        assert!(path.exists(), "{name} is missing");
        assert_eq!(mode(&path), 0o600, "{name}");
    }
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path) & 0o077, 0, "{} is readable by others: {:o}", path.display(), mode(&path));
    }

    // Notifications, by the CLI and by the API.
    seen.cli("send", rw(&["send", "--level", "ERROR", "--event-id", "e1", "the first message"]));
    api.call(
        "POST",
        "/events",
        Some(serde_json::json!({"message": "the second message", "level": "WARNING", "event_id": "e2"})),
        &mut seen,
    );

    // Every service was reached with its secret, and the closed port's error is stored.
    let slack_req = slack.wait_for(1, PATIENCE);
    assert_eq!(slack_req[0].path, SLACK_PATH);
    let wp_req = workplace.wait_for(1, PATIENCE);
    assert!(wp_req[0].query.as_deref().unwrap_or("").contains(WP_TOKEN), "{:?}", wp_req[0]);
    let hook_req = hook.wait_for(2, PATIENCE); // 500, then the retry (403: failed for good)
    assert_eq!(hook_req[1].header("authorization"), Some(HOOK_HEADER));
    wait_until("errors stored for the closed port, Slack, Workplace and the webhook", || {
        let rows = last_errors(&data);
        let with_error = |id_part: &str| rows.iter().any(|(id, _, e)| id.starts_with(id_part) && e.is_some());
        ids.iter().all(|(id, _)| with_error(id)).then_some(())
    });

    for (id, state, e) in last_errors(&data) {
        if id == closed_id {
            assert!(e.as_deref().unwrap_or("").contains("connection refused"), "{e:?}");
        }
        seen.add(format!("deliveries.last_error of {id} ({state}) while running"), e.unwrap_or_default());
    }

    // Every API route that shows notifiers or deliveries.
    let (_, list) = api.call("GET", "/notifiers", None, &mut seen);
    assert!(list.contains("****"), "secrets are shown masked: {list}");
    for (id, _) in &ids {
        api.call("GET", &format!("/notifiers/{id}"), None, &mut seen);
        api.call("POST", &format!("/notifiers/{id}/test"), None, &mut seen);
        api.call("PATCH", &format!("/notifiers/{id}"), Some(serde_json::json!({"min_level": "DEBUG"})), &mut seen);
    }
    let (_, test) = api.call("POST", &format!("/notifiers/{closed_id}/test"), None, &mut seen);
    assert!(test.contains("\"ok\":false"), "{test}");
    api.call(
        "PATCH",
        &format!("/notifiers/{slack_id}"),
        Some(serde_json::json!({"config": {"message": "{message} ({level})"}})),
        &mut seen,
    );
    let (status, added) = api.call(
        "POST",
        "/notifiers",
        Some(serde_json::json!({"type": "webhook", "config": {"url": format!("http://127.0.0.1:{closed}{API_PATH}"), "headers": {"X-Token": API_HEADER}}})),
        &mut seen,
    );
    assert_eq!(status, 200, "{added}");
    let added_id = serde_json::from_str::<serde_json::Value>(&added).unwrap()["id"].as_str().unwrap().to_string();
    let (status, _) =
        api.call("PATCH", &format!("/notifiers/{added_id}"), Some(serde_json::json!({"config": {"url": "not a url"}})), &mut seen);
    assert_eq!(status, 400);
    let (_, page) = api.call("GET", "/notifications?state=all&limit=1000", None, &mut seen);
    let notification_ids: Vec<String> = serde_json::from_str::<serde_json::Value>(&page).unwrap()["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(notification_ids.len(), 2, "{page}");
    for id in &notification_ids {
        let (_, details) = api.call("GET", &format!("/notifications/{id}"), None, &mut seen);
        assert!(details.contains("last_error"), "{details}");
    }
    for path in ["/notifications/summary", "/runs", "/settings", "/health", "/openapi.json"] {
        api.call("GET", path, None, &mut seen);
    }

    // The CLI's views of the same.
    succeeded(&seen.cli("notifiers list", rw(&["notifiers", "list"])));
    succeeded(&seen.cli("--json notifiers list", rw(&["--json", "notifiers", "list"])));
    seen.cli("notifications list --all", rw(&["notifications", "list", "--all"]));
    for id in &notification_ids {
        let out = seen.cli("notifications show", rw(&["notifications", "show", id]));
        assert!(out.stdout.contains("Deliveries:"), "{}", out.stdout);
        seen.cli("--json notifications show", rw(&["--json", "notifications", "show", id]));
    }
    let out = seen.cli("notifiers test (closed port)", rw(&["notifiers", "test", &closed_id]));
    assert_eq!(out.code, Some(1), "a failed test is a failure: {}", out.stderr);
    seen.cli("notifiers test (slack)", rw(&["notifiers", "test", &slack_id]));
    succeeded(&seen.cli("notifiers remove", rw(&["notifiers", "remove", "--yes", &added_id])));
    succeeded(&seen.cli("notifiers disable", rw(&["notifiers", "disable", &closed_id])));

    daemon.signal_group("TERM");
    let (status, stdout, stderr) = daemon.finish();
    assert!(status.success(), "{stderr}");
    assert!(stderr.lines().count() > 20, "the daemon logged at trace level:\n{stderr}");
    seen.add("the daemon's stdout", stdout);
    seen.add("the daemon's log (stderr)", stderr);

    // The stored error texts: present (so they were scrubbed, not lost) and clean.
    let rows = last_errors(&data);
    let errors: Vec<String> = rows.iter().filter_map(|(_, _, e)| e.clone()).collect();
    assert!(errors.iter().any(|e| e.contains("HTTP 404")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("HTTP 400")), "{errors:?}");
    for (id, state, e) in &rows {
        seen.add(format!("deliveries.last_error of {id} ({state})"), e.clone().unwrap_or_default());
    }

    let secrets = [SLACK_PATH, WP_TOKEN, HOOK_PATH, HOOK_HEADER, CLOSED_PATH, CLOSED_QUERY, CLOSED_HEADER, API_PATH, API_HEADER, MARK];
    let mut leaks = Vec::new();
    for (what, text) in &seen.0 {
        for secret in secrets {
            if text.contains(secret) {
                let at = text.find(secret).unwrap();
                let context: String = text[at.saturating_sub(80)..].chars().take(200).collect();
                leaks.push(format!("{what} shows {secret:?}: …{context}…"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    let bytes: usize = seen.0.iter().map(|(_, t)| t.len()).sum();
    println!(
        "secrets: {} texts ({} bytes: CLI output, API answers, daemon log at trace, stored errors) searched for {} secrets: 0 found",
        seen.0.len(),
        bytes,
        secrets.len()
    );
}
