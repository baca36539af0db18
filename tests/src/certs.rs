//! Test certificates made the way a lab would make them (openssl): a CA, and a server
//! certificate it signs.

use std::path::Path;
use std::process::Command;

/// Writes `ca.pem` / `ca.key` (a CA) and `server.pem` / `server.key` (for `common_name`,
/// with the subject alternative names `san`, e.g. `DNS:lab.test,IP:127.0.0.1`) into `dir`.
pub fn lab_certificates(dir: &Path, common_name: &str, san: &str) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ca = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"];
    openssl(&[&ca[..], &["-subj", "/CN=Runwatch test CA"]].concat());
    let subject = format!("/CN={common_name}");
    openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", &subject]);
    std::fs::write(dir.join("san.ext"), format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\n")).unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}
