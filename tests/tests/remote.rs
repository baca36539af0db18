//! Jobs on other machines reporting to a Runwatch server (`--server`): real `runwatch
//! start` processes on loopback, real clients with their own data dirs and spools.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use runwatch_core::{DataDir, Store};
use runwatch_remote::{Kind, Spool};
use runwatch_tests::fake_http::{FakeServer, Reply};
use runwatch_tests::{binary, run_cli, runwatch, token_in, url_in, wait_until, CliOutput, Running};
use serde_json::{json, Value};

/// A `runwatch start` on `port` (0: any) with its URL and token.
struct Server {
    daemon: Running,
    url: String,
    token: String,
}

fn start_server(data_dir: &Path, port: u16) -> Server {
    let mut daemon = Running::spawn(Command::new(binary("runwatch")).arg("--data-dir").arg(data_dir).args([
        "start",
        "--http",
        &format!("127.0.0.1:{port}"),
    ]));
    let line = daemon.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at "));
    let ui = url_in(&line);
    let token = token_in(&ui);
    let url = ui.split("/#").next().unwrap().trim_end_matches('/').to_string();
    Server { daemon, url, token }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `runwatch --data-dir CLIENT --server URL --token-file …` with the token in a 0600 file.
fn client(dir: &Path, server: &str, token: &str) -> Command {
    let token_file = dir.join("server-token");
    if !token_file.exists() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&token_file, token).unwrap();
    }
    let mut cmd = runwatch(dir);
    cmd.arg("--server").arg(server).arg("--token-file").arg(&token_file).env_remove("RUNWATCH_SERVER").env_remove("RUNWATCH_TOKEN");
    for var in runwatch_remote::context::CLUSTER_VARIABLES.map(|(v, _)| v) {
        cmd.env_remove(var);
    }
    cmd
}

fn api(server: &Server, method: &str, path: &str, body: Option<Value>) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/api/v1/{path}", server.url);
    let auth = format!("Bearer {}", server.token);
    let mut res = match (method, body) {
        ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
        (m, Some(b)) => agent.run(
            ureq::http::Request::builder()
                .method(m)
                .uri(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .body(b.to_string())
                .unwrap(),
        ),
        (m, None) => panic!("{m} without a body"),
    }
    .unwrap();
    let text = res.body_mut().read_to_string().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
}

fn run_of(server: &Server, id: &str) -> Option<Value> {
    api(server, "GET", "runs", None).as_array().unwrap().iter().find(|r| r["id"] == id).cloned()
}

fn notifications(server: &Server) -> Vec<Value> {
    api(server, "GET", "notifications?state=all&limit=1000", None)["items"].as_array().unwrap().clone()
}

#[test]
fn a_remote_send_check_in_and_exec_reach_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_server(&tmp.path().join("server"), 0);
    // A grace of a second, so a missed check-in shows quickly.
    api(&server, "PATCH", "settings", Some(json!({ "grace_secs": 1 })));
    let job = tmp.path().join("gpu-17");

    let sent =
        run_cli(client(&job, &server.url, &server.token).args(["--notifications", "hidden", "send", "--level", "WARNING", "loss is nan"]));
    sent.expect_code(0);
    let id = sent.stdout.trim().to_string();
    assert!(notifications(&server).iter().any(|n| n["id"] == id.as_str() && n["title"] == "loss is nan"), "{id}");

    // A check-in that promises the next within a second and then keeps silent: stuck.
    run_cli(client(&job, &server.url, &server.token).args([
        "--notifications",
        "hidden",
        "check-in",
        "--run",
        "quiet-job",
        "--expect-next-in",
        "1",
    ]))
    .expect_code(0);
    wait_until("the silent run to be stuck", || (run_of(&server, "quiet-job")?["state"] == "stuck").then_some(()));
    wait_until("the stuck notification", || {
        notifications(&server).iter().any(|n| n["run_id"] == "quiet-job" && n["title"].as_str().unwrap().contains("stuck")).then_some(())
    });

    // A command that fails: a failed run with its stderr tail and the Slurm labels.
    let exec = run_cli(
        client(&job, &server.url, &server.token)
            .args(["--notifications", "hidden", "exec", "--run", "train-3", "--name", "trainer", "--"])
            .args(["sh", "-c", "echo 'step 1' ; echo 'RuntimeError: CUDA out of memory' >&2; exit 3"])
            .env("SLURM_JOB_ID", "4242")
            .env("SLURM_ARRAY_JOB_ID", "4240")
            .env("SLURM_ARRAY_TASK_ID", "2"),
    );
    exec.expect_code(3);
    let run = wait_until("the failed run", || run_of(&server, "train-3").filter(|r| r["state"] == "failed"));
    assert_eq!(run["cause"], "exit code 3");
    assert_eq!(run["name"], "trainer");
    assert_eq!(run["labels"]["slurm_job_id"], "4242");
    assert_eq!(run["labels"]["slurm_array_task_id"], "2");
    assert!(run["host"].as_str().is_some_and(|h| !h.is_empty()));
    let failure = wait_until("the failure notification", || {
        notifications(&server).into_iter().find(|n| n["run_id"] == "train-3" && n["level"] == "ERROR")
    });
    // The last line of stderr is an exception: it is the title.
    assert_eq!(failure["title"], "Run 'trainer' failed: RuntimeError: CUDA out of memory");
    assert!(failure["body"].as_str().unwrap().contains("RuntimeError: CUDA out of memory"), "{failure}");
    assert!(failure["body"].as_str().unwrap().contains("slurm_job_id=4242"), "{failure}");

    // The client's own store was not used: nothing went there.
    let client_store = Store::open(&DataDir::at(&job)).unwrap();
    assert_eq!(client_store.unread_summary().unwrap().total, 0);
    assert!(Spool::open(&DataDir::at(&job)).unwrap().items(None).unwrap().is_empty(), "nothing waits");
}

/// The server is down while five clients report; each client's events arrive once, in
/// order, after `spool flush` or the client's next command.
#[test]
fn what_waits_in_the_spool_arrives_once_and_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    let port = free_port();
    let server = start_server(&server_dir, port);
    let (url, token) = (server.url.clone(), server.token.clone());
    server.daemon.signal_group("KILL");
    drop(server);

    let clients: Vec<_> = (0..5).map(|c| tmp.path().join(format!("node-{c}"))).collect();
    for (c, dir) in clients.iter().enumerate() {
        for i in 0..20 {
            let out = if i % 5 == 4 {
                run_cli(client(dir, &url, &token).args([
                    "--notifications",
                    "hidden",
                    "check-in",
                    "--run",
                    &format!("run-{c}"),
                    "--expect-next-in",
                    "600",
                ]))
            } else {
                run_cli(client(dir, &url, &token).args([
                    "--notifications",
                    "hidden",
                    "send",
                    "--run",
                    &format!("run-{c}"),
                    &format!("c{c} e{i}"),
                ]))
            };
            out.expect_code(0);
            assert!(out.stderr.contains("waits in the spool"), "{}", out.stderr);
        }
    }
    // And an exec that ends while the server is away: it is not held up, and its reports wait.
    let exec = run_cli(client(&clients[0], &url, &token).args([
        "--notifications",
        "hidden",
        "exec",
        "--run",
        "exec-0",
        "--",
        "sh",
        "-c",
        "exit 0",
    ]));
    exec.expect_code(0);
    assert_eq!(Spool::open(&DataDir::at(&clients[0])).unwrap().items(None).unwrap().len(), 22);
    let listed = run_cli(runwatch(&clients[1]).args(["--notifications", "hidden", "spool"]));
    listed.expect_code(0);
    assert!(listed.stdout.contains("20 waiting"), "{}", listed.stdout);
    let flush = run_cli(client(&clients[1], &url, &token).args(["--notifications", "hidden", "spool", "flush"]));
    assert!(flush.expect_one_line_error(1).contains("cannot be reached"));

    let server = start_server(&server_dir, port);
    for (c, dir) in clients.iter().enumerate() {
        let out: CliOutput = if c < 3 {
            run_cli(client(dir, &url, &token).args(["--notifications", "hidden", "spool", "flush"]))
        } else {
            // The next command sends what waits first, then its own.
            run_cli(client(dir, &url, &token).args([
                "--notifications",
                "hidden",
                "send",
                "--run",
                &format!("run-{c}"),
                &format!("c{c} e20"),
            ]))
        };
        out.expect_code(0);
        assert!(Spool::open(&DataDir::at(dir)).unwrap().items(None).unwrap().is_empty(), "client {c}: {}", out.stderr);
    }
    // Every event once, each client's in the order it was reported (the store's seq).
    let store = Store::open(&DataDir::at(&server_dir)).unwrap();
    for c in 0..5 {
        let titles: Vec<String> = store
            .conn()
            .prepare("SELECT title FROM notifications WHERE run_id = ?1 AND title LIKE 'c%' ORDER BY seq")
            .unwrap()
            .query_map([format!("run-{c}")], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<String> = (0..=20).filter(|i| i % 5 != 4 && (*i < 20 || c >= 3)).map(|i| format!("c{c} e{i}")).collect();
        assert_eq!(titles, expected, "client {c}: once each, in order");
    }
    let check_ins: i64 = store.conn().query_row("SELECT count(*) FROM check_in_reports", [], |r| r.get(0)).unwrap();
    assert_eq!(check_ins, 5 * 4 + 2, "every check-in once (exec: its start and its end)");
    wait_until("the exec's run to be finished", || (run_of(&server, "exec-0")?["state"] == "finished").then_some(()));
}

/// kill -9 of a client in the middle of a flush: nothing is lost, and what it sends again
/// is recognised by its event id.
#[test]
fn a_flush_killed_midway_loses_nothing_and_stores_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_server(&tmp.path().join("server"), 0);
    let job = tmp.path().join("job");
    const N: usize = 20_000;
    let events: Vec<Value> =
        (0..N).map(|i| json!({ "run_id": "bulk", "message": format!("event {i}"), "event_id": format!("bulk-{i}") })).collect();
    Spool::open(&DataDir::at(&job)).unwrap().push_all(&server.url, events.iter().map(|e| (Kind::Event, e)), 0).unwrap();

    let server_store = Store::open(&DataDir::at(tmp.path().join("server"))).unwrap();
    let stored =
        || -> i64 { server_store.conn().query_row("SELECT count(*) FROM notifications WHERE run_id = 'bulk'", [], |r| r.get(0)).unwrap() };
    let mut flush = client(&job, &server.url, &server.token);
    let flushing = Running::spawn(flush.args(["--notifications", "hidden", "spool", "flush"]));
    wait_until("the first batch to arrive", || (stored() > 0).then_some(()));
    flushing.signal_group("KILL");
    let (status, _, _) = flushing.finish();
    let left = Spool::open(&DataDir::at(&job)).unwrap().items(None).unwrap().len();
    assert!(status.code().is_none() && left > 0, "the flush was killed before it finished ({left} left)");

    run_cli(client(&job, &server.url, &server.token).args(["--notifications", "hidden", "spool", "flush"])).expect_code(0);
    assert_eq!(stored(), N as i64, "every event exactly once");
    assert!(Spool::open(&DataDir::at(&job)).unwrap().items(None).unwrap().is_empty());
}

#[test]
fn bad_servers_and_tokens_get_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    let server = start_server(&tmp.path().join("server"), 0);

    // A wrong token: an error that says so, and nothing spooled (it would never work).
    let wrong = run_cli(client(&job, &server.url, "not-the-token").args(["--notifications", "hidden", "send", "hello"]));
    let line = wrong.expect_one_line_error(1);
    assert!(line.contains("refused the token"), "{line}");
    assert!(!line.contains("not-the-token"));
    assert!(Spool::open(&DataDir::at(&job)).unwrap().items(None).unwrap().is_empty());

    // Plain http off this machine would carry the token in clear text: refused.
    let clear = run_cli(client(&job, "http://192.0.2.7:8747", &server.token).args(["send", "hello"]));
    assert!(clear.expect_one_line_error(1).contains("clear text"), "{}", clear.stderr);

    // A server answering 500, 429 or garbage: the event waits, the job goes on.
    let fake = FakeServer::start();
    fake.script([Reply::status(500, "boom"), Reply::status(429, "slow"), Reply::status(200, "<html>")]);
    let other = tmp.path().join("other");
    for _ in 0..3 {
        let out = run_cli(client(&other, &fake.url(""), "t").args(["--notifications", "hidden", "send", "hello"]));
        out.expect_code(0);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains("waits in the spool"), "{}", out.stderr);
    }
    assert_eq!(Spool::open(&DataDir::at(&other)).unwrap().items(None).unwrap().len(), 3);

    // A spool damaged on disk: set aside with a warning, and the command still works.
    std::fs::write(other.join("spool.db"), vec![b'x'; 4096]).unwrap();
    let _ = std::fs::remove_file(other.join("spool.db-wal"));
    let _ = std::fs::remove_file(other.join("spool.db-shm"));
    std::fs::write(other.join("server-token"), &server.token).unwrap();
    let out = run_cli(client(&other, &server.url, &server.token).args(["--notifications", "hidden", "send", "after damage"]));
    out.expect_code(0);
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);

    // `runwatch token` prints the local server's token.
    let token = run_cli(runwatch(&tmp.path().join("server")).args(["token"]));
    token.expect_code(0);
    assert_eq!(token.stdout.trim(), server.token);
}

/// Off loopback: plain HTTP is refused unless asked for; HTTPS with the lab's CA works, a
/// client that does not trust the CA is told so, and only the named hosts are answered.
#[test]
fn off_loopback_only_with_tls_and_only_for_named_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let refused = run_cli(runwatch(&dir.join("plain")).args(["start", "--http", "0.0.0.0:0"]));
    assert!(refused.expect_one_line_error(1).contains("refusing to serve plain HTTP"), "{}", refused.stderr);

    // A CA and a certificate for lab.test and 127.0.0.1, made the way a lab would.
    runwatch_tests::certs::lab_certificates(dir, "lab.test", "DNS:lab.test,IP:127.0.0.1");

    let mut daemon = Running::spawn(
        Command::new(binary("runwatch"))
            .arg("--data-dir")
            .arg(dir.join("server"))
            .args(["start", "--http", "0.0.0.0:0", "--tls-cert", "server.pem", "--tls-key", "server.key", "--public-name", "lab.test"])
            .current_dir(dir),
    );
    let line = daemon.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at "));
    let ui = line.trim_start_matches("Serving the UI at ").to_string();
    assert!(ui.starts_with("https://127.0.0.1:"), "{ui}");
    let (base, token) = ui.split_once("/#token=").unwrap();
    let port = base.rsplit(':').next().unwrap().to_string();
    let job = dir.join("job");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::write(job.join("server-token"), token).unwrap();

    let trusted =
        run_cli(client(&job, base, token).arg("--ca-file").arg(dir.join("ca.pem")).args(["--notifications", "hidden", "send", "over TLS"]));
    trusted.expect_code(0);
    assert!(!trusted.stdout.contains(token) && !trusted.stderr.contains(token));
    let untrusted = run_cli(client(&job, base, token).args(["--notifications", "hidden", "send", "no CA"]));
    let line = untrusted.expect_one_line_error(1);
    assert!(line.contains("certificate") && line.contains("--ca-file"), "{line}");
    assert!(!line.contains(token));

    // The Host guard: the public name passes, another name gets 403 (curl, trusting the CA).
    let curl = |host: &str| -> String {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", "ca.pem", "--resolve", &format!("{host}:{port}:127.0.0.1")])
            .args(["-H", &format!("Authorization: Bearer {token}"), &format!("https://{host}:{port}/api/v1/health")])
            .current_dir(dir)
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl("lab.test"), "200");
    let other = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", "ca.pem", "-H", "Host: elsewhere.test"])
        .args(["-H", &format!("Authorization: Bearer {token}"), &format!("https://127.0.0.1:{port}/api/v1/health")])
        .current_dir(dir)
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&other.stdout), "403");
    daemon.signal_group("TERM");
    let (status, stdout, stderr) = daemon.finish();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains(token) && stdout.matches(token).count() == 1, "the token is printed only in the UI URL");
}
