//! Users of a team store: `runwatch users add|list|remove`, each with a token of their own;
//! what is for alice is invisible to bob (API, CLI over --server, stream), what is for
//! everyone is visible to both, and their acknowledgements are independent.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use runwatch_core::pg::fixture::Cluster;
use runwatch_tests::{run_cli, runwatch, token_in, url_in, Running};
use serde_json::{json, Value};

struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/api/v1{path}", self.base);
        let auth = format!("Bearer {token}");
        let res = match body {
            Some(b) => self.agent.post(&url).header("Authorization", &auth).header("Content-Type", "application/json").send(b.to_string()),
            None if method == "GET" => self.agent.get(&url).header("Authorization", &auth).call(),
            None => self.agent.post(&url).header("Authorization", &auth).send_empty(),
        };
        let mut res = res.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn titles(&self, token: &str, state: &str) -> Vec<String> {
        let (status, page) = self.call("GET", &format!("/notifications?state={state}"), token, None);
        assert_eq!(status, 200, "{page}");
        let mut t: Vec<String> = page["items"].as_array().unwrap().iter().map(|n| n["title"].as_str().unwrap().to_string()).collect();
        t.sort();
        t
    }

    fn pending_total(&self, token: &str) -> i64 {
        self.call("GET", "/notifications/summary", token, None).1["total"].as_i64().unwrap()
    }

    /// The summary in the first event of the stream, as the tray and the UI read it.
    fn streamed_total(&self, token: &str) -> i64 {
        let url = format!("{}/api/v1/stream?token={token}", self.base);
        let mut res = self.agent.get(&url).call().unwrap();
        let reader = BufReader::new(res.body_mut().as_reader());
        for line in reader.lines() {
            let line = line.unwrap();
            if let Some(data) = line.strip_prefix("data:") {
                let change: Value = serde_json::from_str(data.trim()).unwrap();
                return change["summary"]["total"].as_i64().unwrap();
            }
        }
        panic!("the stream ended without an event");
    }
}

fn write_token(dir: &Path, name: &str, token: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.token"));
    std::fs::write(&path, token).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn each_user_sees_what_is_for_them_or_everyone_and_acknowledges_alone() {
    let url = Cluster::shared().database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rw = |args: &[&str]| run_cli(runwatch(dir.path()).arg("--store").arg(&url).arg("--notifications").arg("hidden").args(args));

    // Users: added once each, tokens printed once, listed by name, refused on SQLite.
    assert_eq!(rw(&["store", "migrate"]).code, Some(0));
    let alice = rw(&["users", "add", "alice"]);
    assert_eq!(alice.code, Some(0), "{alice:?}");
    let alice_token = alice.stdout.trim().to_string();
    let bob_token = rw(&["users", "add", "bob"]).stdout.trim().to_string();
    assert!(alice_token.len() >= 32 && alice_token != bob_token);
    let again = rw(&["users", "add", "alice"]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("exists already"), "{again:?}");
    assert_eq!(rw(&["users", "list"]).stdout, "alice\nbob\n");
    let single = run_cli(runwatch(dir.path()).args(["users", "list"]));
    assert_eq!(single.code, Some(1));
    assert!(single.stderr.contains("team store"), "{single:?}");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let stored: Vec<String> = client.query("SELECT token_hash FROM users", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(stored.iter().all(|h| h.len() == 64 && *h != alice_token && *h != bob_token), "tokens are stored hashed");

    let mut daemon =
        Running::spawn(runwatch(dir.path()).args(["--store", &url, "--notifications", "hidden", "start", "--http", "127.0.0.1:0"]));
    let ui = url_in(&daemon.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at")));
    let admin = token_in(&ui);
    let api = Api {
        base: ui.split("/#").next().unwrap().trim_end_matches('/').to_string(),
        agent: ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(20))).build().into(),
    };

    // What a user's jobs send is for that user; `send` with no --to is for everyone; --to names.
    assert_eq!(api.call("POST", "/events", &alice_token, Some(json!({"message": "alice's run crashed"}))).0, 200);
    assert_eq!(api.call("POST", "/events", &bob_token, Some(json!({"message": "bob's run finished"}))).0, 200);
    assert_eq!(rw(&["send", "maintenance at noon"]).code, Some(0));
    let to_alice = rw(&["send", "--to", "alice@gpu-01", "--level", "error", "disk full on gpu-01"]);
    assert_eq!(to_alice.code, Some(0), "{to_alice:?}");
    let nobody = rw(&["send", "--to", "carol", "hello"]);
    assert_eq!(nobody.code, Some(1));
    assert!(nobody.stderr.contains("no user 'carol'"), "{nobody:?}");
    let bad = api.call("POST", "/events", &bob_token, Some(json!({"message": "x", "to": ["mallory"]})));
    assert_eq!(bad.0, 400, "{bad:?}");

    // Lists, summaries and streams: each their own and the broadcast.
    assert_eq!(api.titles(&alice_token, "pending"), ["alice's run crashed", "disk full on gpu-01", "maintenance at noon"]);
    assert_eq!(api.titles(&bob_token, "pending"), ["bob's run finished", "maintenance at noon"]);
    assert_eq!(api.titles(&admin, "pending").len(), 4, "the server's own token sees the whole store");
    assert_eq!((api.pending_total(&alice_token), api.pending_total(&bob_token)), (3, 2));
    assert_eq!((api.streamed_total(&alice_token), api.streamed_total(&bob_token)), (3, 2));
    let (_, alice_page) = api.call("GET", "/notifications", &alice_token, None);
    let alice_only = alice_page["items"].as_array().unwrap().iter().find(|n| n["title"] == "alice's run crashed").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(api.call("GET", &format!("/notifications/{alice_only}"), &bob_token, None).0, 404);
    assert_eq!(api.call("POST", &format!("/notifications/{alice_only}/ack"), &bob_token, None).0, 404);
    assert_eq!(api.call("POST", "/notifications/ack", &bob_token, Some(json!({"ids": [alice_only]}))).1["acknowledged"], 0);

    // The CLI over --server with a user's token sees the same.
    let alice_file = write_token(dir.path(), "alice", &alice_token);
    let cli = run_cli(
        runwatch(dir.path())
            .args(["--notifications", "hidden", "--json", "--server", &api.base, "--token-file"])
            .arg(&alice_file)
            .args(["notifications", "list"]),
    );
    assert_eq!(cli.code, Some(0), "{cli:?}");
    let listed: Value = serde_json::from_str(&cli.stdout).unwrap();
    let listed = listed.as_array().or_else(|| listed["items"].as_array()).cloned().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");

    // Acknowledgements are each user's own.
    let (_, bob_page) = api.call("GET", "/notifications", &bob_token, None);
    let broadcast = bob_page["items"].as_array().unwrap().iter().find(|n| n["title"] == "maintenance at noon").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(api.call("POST", "/notifications/ack", &alice_token, Some(json!({"ids": [broadcast]}))).1["acknowledged"], 1);
    assert_eq!(api.titles(&alice_token, "pending"), ["alice's run crashed", "disk full on gpu-01"]);
    assert_eq!(api.titles(&alice_token, "acked"), ["maintenance at noon"]);
    assert_eq!(api.titles(&bob_token, "pending"), ["bob's run finished", "maintenance at noon"], "bob's is still pending");
    assert_eq!(api.call("POST", "/notifications/ack", &bob_token, Some(json!({"all": true}))).1["acknowledged"], 2);
    assert_eq!((api.pending_total(&alice_token), api.pending_total(&bob_token)), (2, 0));
    assert_eq!(api.titles(&alice_token, "pending"), ["alice's run crashed", "disk full on gpu-01"]);

    // A removed user's token stops working.
    assert_eq!(rw(&["users", "remove", "bob"]).code, Some(0));
    assert_eq!(api.call("GET", "/notifications", &bob_token, None).0, 401);

    daemon.signal_group("TERM");
    let (status, _, stderr) = daemon.finish();
    assert!(status.success(), "{stderr}");
}
