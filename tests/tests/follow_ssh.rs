//! Following a server over ssh (`ssh://`), against a real OpenSSH server started here on a
//! loopback port with a throwaway host key and authorized key, and an ssh client config of
//! its own (given to the follower as `RUNWATCH_SSH_COMMAND="ssh -F FILE"`, the way a user's
//! `~/.ssh/config` is read): the follower goes through it unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;

use runwatch_tests::sshd::{keygen, Sshd};
use runwatch_tests::{binary, run_cli, runwatch, token_in, url_in, wait_until, Running};
use serde_json::{json, Value};

struct Daemon {
    process: Running,
    url: String,
    token: String,
}

fn start(dir: &Path, ssh_config: Option<&Path>) -> Daemon {
    let mut cmd = Command::new(binary("runwatch"));
    cmd.arg("--data-dir").arg(dir).args(["start", "--http", "127.0.0.1:0"]).env("TZ", "UTC");
    if let Some(config) = ssh_config {
        cmd.env("RUNWATCH_SSH_COMMAND", format!("ssh -F {}", config.display()));
    }
    let mut process = Running::spawn(&mut cmd);
    let line = process.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at "));
    let ui = url_in(&line);
    let token = token_in(&ui);
    let url = ui.split("/#").next().unwrap().trim_end_matches('/').to_string();
    Daemon { process, url, token }
}

/// GET without a body, POST with one.
fn api(d: &Daemon, path: &str, body: Option<Value>) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/api/v1/{path}", d.url);
    let auth = format!("Bearer {}", d.token);
    let mut res = match body {
        None => agent.get(&url).header("Authorization", &auth).call(),
        Some(b) => agent.post(&url).header("Authorization", &auth).content_type("application/json").send(b.to_string()),
    }
    .unwrap();
    serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap()
}

fn find(d: &Daemon, title: &str) -> Option<Value> {
    api(d, "notifications?state=all&limit=1000", None)["items"].as_array().unwrap().iter().find(|n| n["title"] == title).cloned()
}

/// The client's ssh config: `gpu-test` as it should be, `gpu-wrong-key` expecting another
/// host key, `gpu-no-login` with a key the server does not know.
fn client_config(dir: &Path, sshd: &Sshd, key: &Path, other_key: &Path) -> PathBuf {
    let known = sshd.known_hosts(&dir.join("known_hosts"));
    let wrong = dir.join("known_hosts_wrong");
    let impostor = keygen(&dir.join("impostor_host_key"));
    std::fs::write(&wrong, format!("[127.0.0.1]:{} {impostor}\n", sshd.port)).unwrap();
    let config = dir.join("ssh_config");
    std::fs::write(
        &config,
        [
            sshd.host_entry("gpu-test", key, &known),
            sshd.host_entry("gpu-wrong-key", key, &wrong),
            sshd.host_entry("gpu-no-login", other_key, &known),
        ]
        .concat(),
    )
    .unwrap();
    config
}

fn remotes(dir: &Path) -> Vec<Value> {
    let out = run_cli(runwatch(dir).args(["--notifications", "hidden", "--json", "remotes", "list"]));
    out.expect_code(0);
    serde_json::from_str::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

fn remote(dir: &Path, name: &str) -> Value {
    remotes(dir).into_iter().find(|r| r["name"] == name).unwrap()
}

/// The pids of the `ssh -N` processes (port forwards) `pid` started.
fn forwards(pid: u32) -> Vec<u32> {
    ssh_children(pid)
        .into_iter()
        .filter(|c| std::fs::read(format!("/proc/{c}/cmdline")).is_ok_and(|cmd| cmd.split(|b| *b == 0).any(|w| w == b"-N")))
        .collect()
}

/// Whether process `pid` is gone (or a zombie, waiting to be reaped).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
}

/// The pids of the `ssh` processes `pid` started.
fn ssh_children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            if std::fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|c| c.trim() == "ssh") {
                found.push(child);
            }
        }
    }
    found
}

#[test]
fn a_server_followed_over_ssh() {
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    let server = start(&server_dir, None);
    let key = tmp.path().join("client_key");
    let authorized = keygen(&key);
    let stranger = tmp.path().join("stranger_key");
    keygen(&stranger);
    let bin_dir = binary("runwatch").parent().unwrap().to_path_buf();
    let sshd = Sshd::start(&tmp.path().join("sshd"), &authorized, &server_dir, &bin_dir);
    let config = client_config(tmp.path(), &sshd, &key, &stranger);

    let laptop_dir = tmp.path().join("laptop");
    for (name, host) in [("gpu", "gpu-test"), ("wrong-key", "gpu-wrong-key"), ("no-login", "gpu-no-login")] {
        run_cli(runwatch(&laptop_dir).args(["--notifications", "hidden", "remotes", "add", name, &format!("ssh://{host}")])).expect_code(0);
    }
    let laptop = start(&laptop_dir, Some(&config));

    let first = wait_until("a first attempt", || Some(remote(&laptop_dir, "gpu")).filter(|r| r["state"] != "connecting"));
    assert_eq!(first["state"], "connected", "{first}");
    let sent = api(&server, "events", Some(json!({ "message": "over ssh", "level": "ERROR" })));
    let local = wait_until("the server's notification over ssh", || find(&laptop, "over ssh"));
    assert_eq!(local["origin"], "gpu");
    wait_until("connected", || (remote(&laptop_dir, "gpu")["state"] == "connected").then_some(()));

    // Ack here → acknowledged there.
    api(&laptop, &format!("notifications/{}/ack", local["id"].as_str().unwrap()), Some(json!({})));
    wait_until("the ack on the server", || {
        api(&server, &format!("notifications/{}", sent["id"].as_str().unwrap()), None)["notification"]["acked_at"].as_i64()
    });

    // A killed ssh is started again by itself.
    let before = wait_until("the follower's ssh", || Some(forwards(laptop.process.child.id())).filter(|c| !c.is_empty()));
    for pid in &before {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    api(&server, "events", Some(json!({ "message": "after the ssh was killed" })));
    wait_until("the notification through a new ssh", || find(&laptop, "after the ssh was killed"));

    // A host key that does not match, or a login refused: one clear line, never a hang.
    let said = |name: &str, what: &str| {
        Some(remote(&laptop_dir, name))
            .filter(|r| r["state"] == "unreachable" && r["last_error"].as_str().is_some_and(|e| e.contains(what)))
    };
    wait_until("the host key refused", || said("wrong-key", "ssh: Host key verification failed."));
    wait_until("the login refused", || {
        said("no-login", "ssh: ").filter(|r| r["last_error"].as_str().unwrap().contains("Permission denied"))
    });
    let text = run_cli(runwatch(&laptop_dir).args(["--notifications", "hidden", "remotes", "list"]));
    for name in ["wrong-key", "no-login"] {
        let line = text.stdout.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(line.contains("unreachable since") && line.contains("ssh: "), "{line}");
    }
    assert!(!text.stdout.contains(&server.token));

    // Disabling the remote ends its port forward; so does stopping the follower.
    let tunnels = wait_until("the port forward", || Some(forwards(laptop.process.child.id())).filter(|f| !f.is_empty()));
    run_cli(runwatch(&laptop_dir).args(["--notifications", "hidden", "remotes", "disable", "gpu"])).expect_code(0);
    wait_until("the forward ended", || tunnels.iter().all(|p| gone(*p)).then_some(()));
    run_cli(runwatch(&laptop_dir).args(["--notifications", "hidden", "remotes", "enable", "gpu"])).expect_code(0);
    let tunnels = wait_until("the port forward again", || Some(forwards(laptop.process.child.id())).filter(|f| !f.is_empty()));
    laptop.process.signal_process("INT");
    let (status, _, _) = laptop.process.finish();
    assert!(status.success(), "{status}");
    wait_until("no forward left behind", || tunnels.iter().all(|p| gone(*p)).then_some(()));

    // Even a follower killed with -9 (the daemon alone, not its process group) leaves none.
    let laptop = start(&laptop_dir, Some(&config));
    let tunnels = wait_until("the port forward", || Some(forwards(laptop.process.child.id())).filter(|f| !f.is_empty()));
    laptop.process.signal_process("KILL");
    wait_until("no forward left behind a kill -9", || tunnels.iter().all(|p| gone(*p)).then_some(()));
}
