//! Following servers (`runwatch remotes`): real `runwatch start` processes on loopback, one
//! serving as the server A and others following it, each with its own data dir. What a
//! follower has is read through its CLI, its API and its store.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use runwatch_core::{DataDir, Store};
use runwatch_tests::fake_http::FakeServer;
use runwatch_tests::{add_slack_notifier, binary, run_cli, runwatch, token_in, url_in, wait_until, Running};
use serde_json::{json, Value};

/// A `runwatch start` with its URL and token.
struct Daemon {
    process: Running,
    dir: PathBuf,
    url: String,
    token: String,
}

fn start(dir: &Path, port: u16) -> Daemon {
    let mut process = Running::spawn(
        Command::new(binary("runwatch"))
            .arg("--data-dir")
            .arg(dir)
            .args(["start", "--http", &format!("127.0.0.1:{port}")])
            .env("TZ", "UTC"),
    );
    let line = process.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at "));
    let ui = url_in(&line);
    let token = token_in(&ui);
    let url = ui.split("/#").next().unwrap().trim_end_matches('/').to_string();
    Daemon { process, dir: dir.to_path_buf(), url, token }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn api(d: &Daemon, method: &str, path: &str, body: Option<Value>) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/api/v1/{path}", d.url);
    let auth = format!("Bearer {}", d.token);
    let mut res = match body {
        None => agent.get(&url).header("Authorization", &auth).call(),
        Some(b) => agent.run(
            ureq::http::Request::builder()
                .method(method)
                .uri(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .body(b.to_string())
                .unwrap(),
        ),
    }
    .unwrap();
    let text = res.body_mut().read_to_string().unwrap();
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
}

fn all_notifications(d: &Daemon) -> Vec<Value> {
    api(d, "GET", "notifications?state=all&limit=1000", None)["items"].as_array().unwrap().clone()
}

fn find(d: &Daemon, title: &str) -> Option<Value> {
    all_notifications(d).into_iter().find(|n| n["title"] == title)
}

/// `runwatch remotes add NAME URL --token-file FILE` on the follower's data dir.
fn add_remote(follower: &Path, name: &str, server: &Daemon) {
    std::fs::create_dir_all(follower).unwrap();
    let token_file = follower.join(format!("{name}.token"));
    std::fs::write(&token_file, &server.token).unwrap();
    let out = run_cli(
        runwatch(follower).args(["--notifications", "hidden", "remotes", "add", name, &server.url, "--token-file"]).arg(&token_file),
    );
    out.expect_code(0);
    assert!(!out.stdout.contains(&server.token) && !out.stderr.contains(&server.token), "the token was printed");
}

fn remotes_json(follower: &Path) -> Vec<Value> {
    let out = run_cli(runwatch(follower).args(["--notifications", "hidden", "--json", "remotes", "list"]));
    out.expect_code(0);
    serde_json::from_str::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

/// The remote notifications in a follower's store: (origin, remote id) pairs, as stored.
fn stored_remote_ids(follower: &Path) -> Vec<String> {
    let store = Store::open(&DataDir::at(follower)).unwrap();
    let mut stmt = store.conn().prepare("SELECT remote_id FROM notifications WHERE origin IS NOT NULL").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

fn send_batch(server: &Daemon, prefix: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let events: Vec<Value> = chunk.iter().map(|i| json!({ "message": format!("{prefix} {i}"), "level": "WARNING" })).collect();
        let answer = api(server, "POST", "events/batch", Some(json!({ "events": events })));
        assert_eq!(answer.as_array().map(Vec::len), Some(chunk.len()), "{answer}");
    }
}

#[test]
fn notifications_and_acknowledgements_flow_between_a_server_and_its_followers() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start(&tmp.path().join("server-a"), 0);
    let laptop = start(&tmp.path().join("laptop"), 0);
    // Added while the laptop's daemon runs: it picks the remote up by itself.
    add_remote(&laptop.dir, "a", &a);

    let sent = api(&a, "POST", "events", Some(json!({ "message": "loss is nan", "level": "ERROR", "run_id": "train-7" })));
    let remote_id = sent["id"].as_str().unwrap().to_string();
    let local = wait_until("the server's notification on the follower", || find(&laptop, "loss is nan"));
    assert_eq!(local["origin"], "a");
    assert_eq!(local["level"], "ERROR");
    assert_eq!(local["run_id"], "train-7");
    assert!(local["acked_at"].is_null());
    assert_ne!(local["id"], remote_id.as_str(), "the follower gives it its own id");
    // The badge counts it.
    assert_eq!(api(&laptop, "GET", "notifications/summary", None)["error"], 1);

    // The CLI lists it with its origin; a local notification says "local".
    run_cli(runwatch(&laptop.dir).args(["--notifications", "hidden", "send", "--level", "INFO", "local note"])).expect_code(0);
    let list = run_cli(runwatch(&laptop.dir).args(["--notifications", "hidden", "notifications", "list"]));
    list.expect_code(0);
    assert!(list.stdout.contains("ORIGIN"), "{}", list.stdout);
    let line = list.stdout.lines().find(|l| l.contains("loss is nan")).unwrap();
    assert!(line.contains("ERROR  a      loss is nan"), "{line}");
    let line = list.stdout.lines().find(|l| l.contains("local note")).unwrap();
    assert!(line.contains("INFO   local  local note"), "{line}");

    let remotes = remotes_json(&laptop.dir);
    assert_eq!(remotes.len(), 1);
    assert_eq!(remotes[0]["name"], "a");
    assert_eq!(remotes[0]["state"], "connected");
    assert_eq!(remotes[0]["pending"], 1);
    assert!(!remotes[0].to_string().contains(&a.token), "the token is never shown");
    let text = run_cli(runwatch(&laptop.dir).args(["--notifications", "hidden", "remotes", "list"]));
    assert!(text.stdout.starts_with("NAME") && text.stdout.contains("connected"), "{}", text.stdout);
    assert!(!text.stdout.contains(&a.token));
    // The follower's API shows the same.
    assert_eq!(api(&laptop, "GET", "remotes", None)[0]["state"], "connected");

    // A second follower of A sees the same.
    let desktop = start(&tmp.path().join("desktop"), 0);
    add_remote(&desktop.dir, "a", &a);
    wait_until("the notification on the second follower", || find(&desktop, "loss is nan").filter(|n| n["origin"] == "a"));

    // Ack on the follower → acknowledged on A, and on the other follower.
    let short = &local["id"].as_str().unwrap()[28..];
    run_cli(runwatch(&laptop.dir).args(["--notifications", "hidden", "notifications", "ack", "--item", short])).expect_code(0);
    wait_until("the ack on A", || api(&a, "GET", &format!("notifications/{remote_id}"), None)["notification"]["acked_at"].as_i64());
    wait_until("the ack on the second follower", || find(&desktop, "loss is nan")?["acked_at"].as_i64());

    // Ack on A → cleared on both followers.
    let second = api(&a, "POST", "events", Some(json!({ "message": "disk almost full", "level": "WARNING" })));
    wait_until("the second notification on the follower", || find(&laptop, "disk almost full"));
    wait_until("the second notification on the second follower", || find(&desktop, "disk almost full"));
    api(&a, "POST", &format!("notifications/{}/ack", second["id"].as_str().unwrap()), Some(json!({})));
    wait_until("the ack from A on the follower", || find(&laptop, "disk almost full")?["acked_at"].as_i64());
    wait_until("the ack from A on the second follower", || find(&desktop, "disk almost full")?["acked_at"].as_i64());

    // "Acknowledge all" on A reaches the followers; on a follower, it reaches A for what the
    // follower has.
    for title in ["first of many", "second of many"] {
        api(&a, "POST", "events", Some(json!({ "message": title })));
    }
    wait_until("both on the follower", || find(&laptop, "second of many").and(find(&laptop, "first of many")));
    api(&a, "POST", "notifications/ack", Some(json!({ "all": true })));
    wait_until("A's ack-all on the follower", || {
        (api(&laptop, "GET", "notifications?state=pending", None)["items"].as_array()?.iter().all(|n| n["origin"] != "a")).then_some(())
    });
    api(&a, "POST", "events", Some(json!({ "message": "third of many", "level": "ERROR" })));
    wait_until("the third on the second follower", || find(&desktop, "third of many"));
    let acked = run_cli(runwatch(&desktop.dir).args(["--notifications", "hidden", "notifications", "ack", "--all"]));
    acked.expect_code(0);
    wait_until("the follower's ack-all on A", || find(&a, "third of many")?["acked_at"].as_i64());
    wait_until("… and on the other follower", || find(&laptop, "third of many")?["acked_at"].as_i64());
    assert_eq!(api(&a, "GET", "notifications/summary", None)["total"], 0);

    // Nothing was stored twice anywhere.
    for f in [&laptop, &desktop] {
        let ids = stored_remote_ids(&f.dir);
        assert_eq!(ids.len(), 5, "{ids:?}");
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 5);
    }
}

#[test]
fn an_unreachable_server_is_said_once_and_its_runs_are_not_called_crashed() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let a_dir = tmp.path().join("server-a");
    let a = start(&a_dir, port);
    // A run on A that promises to check in again within a second, and does not.
    api(&a, "PATCH", "settings", Some(json!({ "grace_secs": 600 })));
    api(&a, "POST", "check-ins", Some(json!({ "run_id": "quiet-run", "expect_next_in": 1 })));

    let laptop_dir = tmp.path().join("laptop");
    add_remote(&laptop_dir, "a", &a);
    let laptop = start(&laptop_dir, 0);
    api(&laptop, "PATCH", "settings", Some(json!({ "unreachable_warn_secs": 1, "grace_secs": 1 })));
    wait_until("connected", || (remotes_json(&laptop_dir)[0]["state"] == "connected").then_some(()));
    let on_a = api(&a, "POST", "events", Some(json!({ "message": "acked while away" })));
    let on_laptop = wait_until("the notification on the follower", || find(&laptop, "acked while away"));

    a.process.signal_group("KILL");
    drop(a);
    let remote = wait_until("the remote unreachable", || remotes_json(&laptop_dir).into_iter().find(|r| r["state"] == "unreachable"));
    assert!(remote["unreachable_since"].is_i64(), "{remote}");
    assert!(remote["last_error"].as_str().unwrap().contains("cannot be reached"), "{remote}");
    let text = run_cli(runwatch(&laptop_dir).args(["--notifications", "hidden", "remotes", "list"]));
    assert!(text.stdout.contains("unreachable since"), "{}", text.stdout);
    let warning = wait_until("one warning", || find(&laptop, "Server 'a' is unreachable"));
    assert_eq!(warning["level"], "WARNING");
    assert!(warning["origin"].is_null());

    // Acknowledged here while A is away: it waits, and reaches A when A is back.
    api(&laptop, "POST", &format!("notifications/{}/ack", on_laptop["id"].as_str().unwrap()), Some(json!({})));
    wait_until("the ack queued", || (remotes_json(&laptop_dir)[0]["acks_waiting"] == 1).then_some(()));

    // Back: one note, and still one warning; nothing about A's runs was made up here.
    let a = start(&a_dir, port);
    wait_until("the note that A is back", || find(&laptop, "Server 'a' is back"));
    wait_until("connected again", || (remotes_json(&laptop_dir)[0]["state"] == "connected").then_some(()));
    wait_until("the queued ack on A", || {
        api(&a, "GET", &format!("notifications/{}", on_a["id"].as_str().unwrap()), None)["notification"]["acked_at"].as_i64()
    });
    wait_until("nothing waiting", || (remotes_json(&laptop_dir)[0]["acks_waiting"] == 0).then_some(()));
    let all = all_notifications(&laptop);
    assert_eq!(all.iter().filter(|n| n["title"] == "Server 'a' is unreachable").count(), 1);
    for n in &all {
        let title = n["title"].as_str().unwrap().to_lowercase();
        assert!(!title.contains("stuck") && !title.contains("crash"), "{n}");
    }
    assert!(api(&laptop, "GET", "runs", None).as_array().unwrap().is_empty(), "A's runs are A's");
    drop(a);
}

#[test]
fn what_a_server_sent_while_its_follower_was_down_arrives_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start(&tmp.path().join("server-a"), 0);
    let laptop_dir = tmp.path().join("laptop");
    add_remote(&laptop_dir, "a", &a);

    // 500 events while the follower is down; then it starts and catches up.
    send_batch(&a, "early", 500);
    let laptop = start(&laptop_dir, 0);
    wait_until("500 notifications on the follower", || (stored_remote_ids(&laptop_dir).len() >= 500).then_some(()));
    let ids = stored_remote_ids(&laptop_dir);
    assert_eq!(ids.len(), 500);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 500);
    assert_eq!(api(&laptop, "GET", "notifications/summary", None)["warning"], 500);

    // Killed in the middle of a longer catch-up: after a restart, nothing is missing and
    // nothing is there twice.
    laptop.process.signal_group("KILL");
    drop(laptop);
    send_batch(&a, "late", 6000);
    let laptop = start(&laptop_dir, 0);
    wait_until("the catch-up under way", || (stored_remote_ids(&laptop_dir).len() > 500).then_some(()));
    laptop.process.signal_group("KILL");
    eprintln!("killed the follower with {} of 6,500 stored", stored_remote_ids(&laptop_dir).len());
    drop(laptop);
    let laptop = start(&laptop_dir, 0);
    wait_until("all 6,500 on the follower", || (stored_remote_ids(&laptop_dir).len() >= 6500).then_some(()));
    let ids = stored_remote_ids(&laptop_dir);
    assert_eq!(ids.len(), 6500);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 6500);
    assert_eq!(api(&laptop, "GET", "notifications/summary", None)["total"], 6500);
    let on_a: HashSet<String> = {
        let store = Store::open(&DataDir::at(&a.dir)).unwrap();
        let mut stmt = store.conn().prepare("SELECT id FROM notifications").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), on_a);
}

/// A server's notifications go to the follower's own notifiers only for a remote added
/// with `--deliver` (the server's notifiers already sent them).
#[test]
fn remote_notifications_reach_the_follower_s_notifiers_only_if_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start(&tmp.path().join("server-a"), 0);
    let laptop_dir = tmp.path().join("laptop");
    let slack = FakeServer::start();
    add_remote(&laptop_dir, "quiet", &a);
    let token_file = laptop_dir.join("quiet.token");
    run_cli(
        runwatch(&laptop_dir)
            .args(["--notifications", "hidden", "remotes", "add", "loud", &a.url, "--deliver", "--token-file"])
            .arg(&token_file),
    )
    .expect_code(0);
    add_slack_notifier(&laptop_dir, "slack-1", &slack.url("/hook"));
    let _laptop = start(&laptop_dir, 0);

    api(&a, "POST", "events", Some(json!({ "message": "gpu 3 is hot", "level": "ERROR" })));
    let sent = slack.wait_for(1, runwatch_tests::PATIENCE);
    assert!(sent[0].body.contains("gpu 3 is hot"), "{}", sent[0].body);
    wait_until("both copies stored", || (stored_remote_ids(&laptop_dir).len() == 2).then_some(()));
    // Deliveries are queued with the notification, in one transaction: the quiet copy has none.
    let store = Store::open(&DataDir::at(&laptop_dir)).unwrap();
    let per_origin: Vec<(String, i64)> = store
        .conn()
        .prepare(
            "SELECT n.origin, (SELECT COUNT(*) FROM deliveries d WHERE d.notification_id = n.id)
               FROM notifications n WHERE n.origin IS NOT NULL ORDER BY n.origin",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(per_origin, [("loud".to_string(), 1), ("quiet".to_string(), 0)]);
}

#[test]
fn bad_remotes_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("laptop");
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("t");
    std::fs::write(&token, "s3cr3t-token").unwrap();
    let remotes = |args: &[&str]| run_cli(runwatch(&dir).args(["--notifications", "hidden", "remotes"]).args(args));

    let e = remotes(&["add", "gpu", "http://gpu-17.lab:8747", "--token-file", token.to_str().unwrap()]).expect_one_line_error(1);
    assert!(e.contains("clear text"), "{e}");
    let e = remotes(&["add", "gpu", "https://gpu-17.lab:8747"]).expect_one_line_error(2);
    assert!(e.contains("--token-file"), "{e}");
    let e = remotes(&["add", "bad name", "https://gpu-17.lab:8747", "--token-file", token.to_str().unwrap()]).expect_one_line_error(2);
    assert!(e.contains("bad remote name"), "{e}");
    let e = remotes(&["add", "gpu", "ssh://gpu-17.lab", "--token-file", token.to_str().unwrap()]).expect_one_line_error(2);
    assert!(e.contains("over ssh the token is read"), "{e}");
    let e = remotes(&["add", "gpu", "ssh://me:pw@gpu-17.lab"]).expect_one_line_error(1);
    assert!(e.contains("no password in the URL"), "{e}");
    remotes(&["add", "gpu-ssh", "ssh://me@gpu-17.lab:2222"]).expect_code(0);
    remotes(&["remove", "gpu-ssh"]).expect_code(0);
    remotes(&["add", "gpu", "https://gpu-17.lab:8747", "--token-file", token.to_str().unwrap()]).expect_code(0);
    let e = remotes(&["add", "gpu", "https://gpu-18.lab:8747", "--token-file", token.to_str().unwrap()]).expect_one_line_error(1);
    assert!(e.contains("already a remote named 'gpu'"), "{e}");
    let e = remotes(&["disable", "nope"]).expect_one_line_error(1);
    assert!(e.contains("no remote named 'nope'"), "{e}");

    remotes(&["disable", "gpu"]).expect_code(0);
    let list = remotes(&["list"]);
    assert!(list.stdout.contains("disabled"), "{}", list.stdout);
    remotes(&["enable", "gpu"]).expect_code(0);
    let list = remotes(&["list"]);
    assert!(list.stdout.contains("connecting") && list.stdout.contains("never"), "{}", list.stdout);
    for out in [remotes(&["list"]), remotes(&["--json", "list"])] {
        assert!(!out.stdout.contains("s3cr3t"), "{}", out.stdout);
    }
    remotes(&["remove", "gpu"]).expect_code(0);
    assert!(remotes(&["list"]).stdout.contains("No servers are followed"));
}
