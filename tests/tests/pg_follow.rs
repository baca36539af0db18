//! Following a team store and following from one: real `runwatch start` processes on
//! loopback, a real PostgreSQL cluster. A researcher's laptop (SQLite) follows the team
//! server with alice's token and gets what is for alice or for everyone, never bob's; its
//! acknowledgements are alice's on the server, and hers on the server reach it. And a
//! PostgreSQL store with two daemons follows a server: one of them fetches, each
//! notification is stored once, and the other takes over when it stops.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use runwatch_core::pg::fixture::Cluster;
use runwatch_tests::{run_cli, runwatch, token_in, url_in, wait_until, CliOutput, Running};
use serde_json::{json, Value};

/// A running `runwatch start`, its API and its own token.
struct Daemon {
    process: Running,
    base: String,
    token: String,
}

fn start(dir: &Path, store: Option<&str>) -> Daemon {
    let mut cmd = runwatch(dir);
    if let Some(url) = store {
        // A lease no test outlasts: a role changes hands only when its holder lets it go.
        cmd.arg("--store").arg(url).env(runwatch_core::roles::ROLE_LEASE_ENV, "3600000");
    }
    let mut process = Running::spawn(cmd.args(["--notifications", "hidden", "start", "--http", "127.0.0.1:0"]));
    let ui = url_in(&process.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at")));
    let token = token_in(&ui);
    Daemon { process, base: ui.split("/#").next().unwrap().trim_end_matches('/').to_string(), token }
}

fn call(d: &Daemon, token: &str, path: &str, body: Option<Value>) -> Value {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(20))).build().into();
    let url = format!("{}/api/v1{path}", d.base);
    let auth = format!("Bearer {token}");
    let res = match body {
        Some(b) => agent.post(&url).header("Authorization", &auth).header("Content-Type", "application/json").send(b.to_string()),
        None => agent.get(&url).header("Authorization", &auth).call(),
    };
    let mut res = res.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = res.status().as_u16();
    let text = res.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Every notification `token` sees: (title, id, acknowledged).
fn seen(d: &Daemon, token: &str) -> Vec<(String, String, bool)> {
    let page = call(d, token, "/notifications?state=all&limit=1000", None);
    let mut items: Vec<(String, String, bool)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["title"].as_str().unwrap().to_string(), n["id"].as_str().unwrap().to_string(), !n["acked_at"].is_null()))
        .collect();
    items.sort();
    items
}

fn pending(d: &Daemon, token: &str) -> Vec<String> {
    let page = call(d, token, "/notifications?state=pending&limit=1000", None);
    let mut titles: Vec<String> = page["items"].as_array().unwrap().iter().map(|n| n["title"].as_str().unwrap().to_string()).collect();
    titles.sort();
    titles
}

fn id_of(d: &Daemon, token: &str, title: &str) -> String {
    seen(d, token).into_iter().find(|n| n.0 == title).unwrap_or_else(|| panic!("no '{title}'")).1
}

fn write_token(dir: &Path, name: &str, token: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.token"));
    std::fs::write(&path, token).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn expect_ok(out: CliOutput) -> CliOutput {
    assert_eq!(out.code, Some(0), "{out:?}");
    out
}

#[test]
fn a_laptop_follows_the_team_store_as_its_user() {
    let url = Cluster::shared().database().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    let rw = |args: &[&str]| run_cli(runwatch(&server_dir).arg("--store").arg(&url).arg("--notifications").arg("hidden").args(args));
    expect_ok(rw(&["store", "migrate"]));
    let alice = expect_ok(rw(&["users", "add", "alice"])).stdout.trim().to_string();
    let bob = expect_ok(rw(&["users", "add", "bob"])).stdout.trim().to_string();
    let team = start(&server_dir, Some(&url));
    expect_ok(rw(&["send", "maintenance at noon"]));
    expect_ok(rw(&["send", "--to", "alice", "--level", "error", "alice's run crashed"]));
    expect_ok(rw(&["send", "--to", "bob", "bob's run crashed"]));

    // The laptop follows the team server with alice's token.
    let laptop_dir = tmp.path().join("laptop");
    let token_file = write_token(tmp.path(), "alice", &alice);
    let added = run_cli(
        runwatch(&laptop_dir).args(["--notifications", "hidden", "remotes", "add", "team", &team.base, "--token-file"]).arg(&token_file),
    );
    expect_ok(added);
    let laptop = start(&laptop_dir, None);
    let own = laptop.token.clone();
    wait_until("alice's notifications on her laptop", || (pending(&laptop, &own).len() == 2).then_some(()));
    assert_eq!(pending(&laptop, &own), ["alice's run crashed", "maintenance at noon"]);
    // Sent while it follows (another process's commit wakes the team daemon's long poll);
    // bob's, sent before it, never came.
    expect_ok(rw(&["send", "--to", "alice", "checkpoint saved"]));
    wait_until("a new one for alice", || pending(&laptop, &own).contains(&"checkpoint saved".to_string()).then_some(()));
    assert!(seen(&laptop, &own).iter().all(|n| n.0 != "bob's run crashed"), "{:?}", seen(&laptop, &own));

    // An acknowledgement on the laptop is alice's on the server: bob still has the broadcast.
    let local = id_of(&laptop, &own, "maintenance at noon");
    assert_eq!(call(&laptop, &own, &format!("/notifications/{local}/ack"), Some(json!({})))["acknowledged"], 1);
    wait_until("alice's acknowledgement on the server", || {
        (!pending(&team, &alice).contains(&"maintenance at noon".to_string())).then_some(())
    });
    assert_eq!(pending(&team, &bob), ["bob's run crashed", "maintenance at noon"]);
    assert!(pending(&team, &team.token).contains(&"maintenance at noon".to_string()), "the store's own view is not alice's");

    // Alice acknowledges on the server (from another machine): it reaches the laptop.
    let crashed = id_of(&team, &alice, "alice's run crashed");
    assert_eq!(call(&team, &alice, "/notifications/ack", Some(json!({ "ids": [crashed] })))["acknowledged"], 1);
    wait_until("alice's server acknowledgement on the laptop", || {
        (!pending(&laptop, &own).contains(&"alice's run crashed".to_string())).then_some(())
    });
    assert_eq!(pending(&team, &bob), ["bob's run crashed", "maintenance at noon"], "bob's view stays");

    // "Acknowledge all" on the laptop: alice's on the server, up to what the laptop had.
    assert_eq!(call(&laptop, &own, "/notifications/ack", Some(json!({ "all": true })))["acknowledged"], 1);
    wait_until("alice's acknowledge-all on the server", || pending(&team, &alice).is_empty().then_some(()));
    assert_eq!(pending(&team, &bob), ["bob's run crashed", "maintenance at noon"]);
    let remotes: Value =
        serde_json::from_str(&expect_ok(run_cli(runwatch(&laptop_dir).args(["--json", "remotes", "list"]))).stdout).unwrap();
    assert_eq!(remotes[0]["state"], "connected", "{remotes}");
}

#[test]
fn two_daemons_of_a_postgresql_store_follow_a_server_once() {
    let url = Cluster::shared().database().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    let server = start(&server_dir, None);
    for i in 0..20 {
        call(&server, &server.token, "/events", Some(json!({ "message": format!("n{i}"), "level": "WARNING" })));
    }

    // The remote is added to the team store with the CLI, then two daemons start on it.
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let rw = |args: &[&str]| run_cli(runwatch(&a_dir).arg("--store").arg(&url).arg("--notifications").arg("hidden").args(args));
    let token_file = write_token(tmp.path(), "server", &server.token);
    expect_ok(rw(&["store", "migrate"]));
    expect_ok(run_cli(
        runwatch(&a_dir)
            .arg("--store")
            .arg(&url)
            .args(["--notifications", "hidden", "remotes", "add", "lab", &server.base, "--token-file"])
            .arg(&token_file),
    ));
    let a = start(&a_dir, Some(&url));
    let b = start(&b_dir, Some(&url));
    wait_until("the server's notifications in the team store", || (pending(&a, &a.token).len() == 20).then_some(()));
    call(&server, &server.token, "/events", Some(json!({ "message": "late", "level": "ERROR" })));
    wait_until("one more", || (pending(&b, &b.token).len() == 21).then_some(()));

    // Stored once each, by the one daemon that plays the follow role.
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let rows: i64 = client.query_one("SELECT COUNT(*) FROM notifications WHERE origin = 'lab'", &[]).unwrap().get(0);
    assert_eq!(rows, 21);
    let holders: Vec<String> =
        client.query("SELECT label FROM roles WHERE name = 'follow'", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(holders.len(), 1, "one daemon plays the follow role: {holders:?}");
    let listed: Value = serde_json::from_str(&expect_ok(rw(&["--json", "remotes", "list"])).stdout).unwrap();
    assert_eq!((listed[0]["state"].as_str(), listed[0]["pending"].as_i64()), (Some("connected"), Some(21)), "{listed}");

    // The daemon that follows stops: it lets the role go, and the other follows at once
    // (not when the lease runs out: longer than the test may wait).
    let pid = |d: &Daemon| format!("(pid {})", d.process.child.id());
    let (holder, other) = if holders[0].contains(&pid(&a)) { (a, b) } else { (b, a) };
    assert!(holders[0].contains(&pid(&holder)), "{holders:?}");
    holder.process.signal_group("TERM");
    let (status, _, _) = holder.process.finish();
    assert!(status.success(), "{status}");
    call(&server, &server.token, "/events", Some(json!({ "message": "after the handover", "level": "ERROR" })));
    wait_until("the other daemon following", || (pending(&other, &other.token).len() == 22).then_some(()));
    let label: String = client.query_one("SELECT label FROM roles WHERE name = 'follow'", &[]).unwrap().get(0);
    assert!(label.contains(&pid(&other)), "{label}");

    // Acknowledged on the team store: acknowledged on the server.
    let late = id_of(&other, &other.token, "late");
    call(&other, &other.token, "/notifications/ack", Some(json!({ "ids": [late] })));
    wait_until("the acknowledgement on the server", || (pending(&server, &server.token).len() == 21).then_some(()));
    assert!(!pending(&server, &server.token).contains(&"late".to_string()));
    let rows: i64 = client.query_one("SELECT COUNT(*) FROM notifications WHERE origin = 'lab'", &[]).unwrap().get(0);
    assert_eq!(rows, 22, "each stored once");
}
