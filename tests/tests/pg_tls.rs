//! An encrypted connection to the PostgreSQL store: `sslmode=require` with the lab's CA
//! (`sslrootcert`) against a throwaway cluster serving TLS with a certificate made the way
//! a lab would (openssl). Every connection of a daemon is encrypted; a server whose
//! certificate is not trusted, or one without TLS, is one clear line; a plain URL still
//! works as before.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use runwatch_core::pg::fixture::Cluster;
use runwatch_tests::{binary, run_cli, runwatch, wait_until, Running};

/// Turns TLS on in `cluster` with the certificate in `certs` (copied into the cluster's
/// directory, owned by the server's user: PostgreSQL wants its key private to it).
fn serve_tls(cluster: &Cluster, certs: &Path) {
    let owner = std::fs::metadata(cluster.dir()).unwrap();
    for name in ["server.pem", "server.key"] {
        let to = cluster.dir().join(name);
        std::fs::copy(certs.join(name), &to).unwrap();
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        if std::fs::metadata(&to).unwrap().uid() != owner.uid() {
            std::os::unix::fs::chown(&to, Some(owner.uid()), Some(owner.gid())).unwrap();
        }
    }
    let mut admin = postgres::Client::connect(&cluster.url("postgres"), postgres::NoTls).unwrap();
    let dir = cluster.dir().display().to_string();
    // One statement at a time: ALTER SYSTEM refuses to run in a transaction block.
    for sql in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{dir}/server.pem'"),
        format!("ALTER SYSTEM SET ssl_key_file = '{dir}/server.key'"),
        "ALTER SYSTEM SET ssl = on".to_string(),
        "SELECT pg_reload_conf()".to_string(),
    ] {
        admin.batch_execute(&sql).unwrap();
    }
    wait_until("the server to serve TLS", || {
        let mut c = postgres::Client::connect(&cluster.url("postgres"), postgres::NoTls).ok()?;
        (c.query_one("SHOW ssl", &[]).ok()?.get::<_, String>(0) == "on").then_some(())
    });
}

#[test]
fn a_store_over_tls_encrypts_every_connection_and_refuses_an_untrusted_server() {
    let tmp = tempfile::tempdir().unwrap();
    runwatch_tests::certs::lab_certificates(tmp.path(), "db.lab", "IP:127.0.0.1");
    let cluster = Cluster::start().unwrap();
    serve_tls(&cluster, tmp.path());
    let plain = cluster.database().unwrap();
    let ca = tmp.path().join("ca.pem");
    let tls = format!("{plain}?sslmode=verify-full&sslrootcert={}", ca.display());
    let rw = |url: &str, args: &[&str]| run_cli(runwatch(&tmp.path().join("cli")).arg("--store").arg(url).args(args));

    let migrated = rw(&tls, &["store", "migrate"]);
    assert_eq!(migrated.code, Some(0), "{migrated:?}");

    // A daemon on the encrypted store: its API, dispatcher, watcher and change feed
    // connections, every one of them over TLS.
    let mut daemon = Running::spawn(Command::new(binary("runwatch")).arg("--data-dir").arg(tmp.path().join("daemon")).args([
        "--store",
        &tls,
        "start",
        "--http",
        "127.0.0.1:0",
    ]));
    daemon.wait_for_line("the daemon to serve", |l| l.starts_with("Serving the UI at "));
    let sent = rw(&tls, &["--notifications", "hidden", "send", "--level", "error", "loss is NaN"]);
    assert_eq!(sent.code, Some(0), "{sent:?}");
    let mut admin = postgres::Client::connect(&cluster.url("postgres"), postgres::NoTls).unwrap();
    let (encrypted, all): (i64, i64) = wait_until("the daemon's connections", || {
        let row = admin
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                  WHERE a.application_name = 'runwatch'",
                &[],
            )
            .ok()?;
        let (encrypted, all): (i64, i64) = (row.get(0), row.get(1));
        (all >= 3).then_some((encrypted, all))
    });
    assert_eq!(encrypted, all, "{encrypted} of {all} connections are encrypted");
    let listed = rw(&tls, &["--json", "notifications", "list"]);
    assert!(listed.stdout.contains("loss is NaN"), "{listed:?}");
    daemon.signal_group("TERM");
    assert!(daemon.finish().0.success());

    // Without the lab's CA the server is not trusted: one line, nothing done.
    let untrusted = rw(&format!("{plain}?sslmode=require"), &["store", "check"]);
    let line = untrusted.expect_one_line_error(1);
    assert!(line.contains("cannot reach the PostgreSQL store") && line.to_lowercase().contains("certificate"), "{line}");
    // A CA file that is not there.
    let missing = rw(&format!("{plain}?sslmode=require&sslrootcert=/nonexistent/ca.pem"), &["store", "check"]);
    assert!(missing.expect_one_line_error(1).contains("cannot read the CA certificates in '/nonexistent/ca.pem'"), "{missing:?}");
    // The plain URL works as before on a server that also offers TLS.
    assert_eq!(rw(&plain, &["store", "check"]).code, Some(0));

    // A server without TLS, asked for it: one line.
    let no_tls = format!("{}?sslmode=require", Cluster::shared().database().unwrap());
    let refused = rw(&no_tls, &["store", "check"]);
    let line = refused.expect_one_line_error(1);
    assert!(line.contains("cannot reach the PostgreSQL store") && line.contains("TLS"), "{line}");
}
