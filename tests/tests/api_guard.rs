//! Nobody in: every operation the served OpenAPI document lists (and the document itself)
//! refuses callers without the right token (401) and requests whose
//! `Host` or `Origin` names another site (403: DNS rebinding, cross-site pages), against a
//! real `runwatch start`. The routes are read from the document, so a new route is covered
//! without touching this test.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use runwatch_tests::{runwatch, token_in, url_in, Running};

/// Sends one raw HTTP/1.1 request (so every header is exactly as given) and returns the status.
fn status(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = if matches!(method, "POST" | "PATCH") { "{}" } else { "" };
    if !body.is_empty() {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).unwrap();
    // The status line only: the stream's answer never ends.
    let mut answer = String::new();
    let _ = BufReader::new(stream).read_line(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in the answer to {method} {path}: {answer:?}"))
}

/// What a stranger sends: a description, the headers, the statuses that refuse it.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a [u16]);

#[test]
fn every_route_needs_the_token_and_this_servers_host_and_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = runwatch(tmp.path());
    cmd.args(["start", "--http", "127.0.0.1:0"]);
    let mut daemon = Running::spawn(&mut cmd);
    let url = url_in(&daemon.wait_for_line("the URL", |l| l.starts_with("Serving the UI at ")));
    daemon.wait_for_line("ready", |l| l == "Press Ctrl+C to exit");
    let token = token_in(&url);
    let addr = url.trim_start_matches("http://").split('/').next().unwrap().to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let host = addr.as_str();
    let bearer = format!("Bearer {token}");

    // The routes, from the document (which itself needs the token).
    let (code, doc) = runwatch_tests::http_get(&format!("http://{addr}/api/v1/openapi.json?token={token}"));
    assert_eq!(code, 200, "{doc}");
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let mut operations: Vec<(String, String)> = vec![("GET".into(), "/api/v1/openapi.json".into())];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "patch", "delete", "put"].contains(&method.as_str()) {
                operations.push((method.to_ascii_uppercase(), path.replace("{id}", "some-id")));
            }
        }
    }
    assert!(operations.len() >= 18, "{operations:?}");
    // An unknown API path is a 404 whoever asks (it shows nothing); the UI page itself is
    // public by design: the token reaches it in the URL fragment, never sent to the server.
    assert_eq!(status(&addr, "GET", "/api/v1/no-such-route", &[("Host", host)]), 404);

    let wrong_same_length: String = token.chars().rev().collect();
    let mut refused = 0;
    for (method, path) in &operations {
        let cases: Vec<Case<'_>> = vec![
            ("no token", vec![("Host", host.into())], &[401]),
            ("a wrong token", vec![("Host", host.into()), ("Authorization", "Bearer wrong".into())], &[401]),
            ("a token of the right length", vec![("Host", host.into()), ("Authorization", format!("Bearer {wrong_same_length}"))], &[401]),
            (
                "a prefix of the token",
                vec![("Host", host.into()), ("Authorization", format!("Bearer {}", &token[..token.len() - 1]))],
                &[401],
            ),
            ("the token as Basic auth", vec![("Host", host.into()), ("Authorization", format!("Basic {token}"))], &[401]),
            ("a foreign Host (DNS rebinding)", vec![("Host", format!("evil.example:{port}")), ("Authorization", bearer.clone())], &[403]),
            (
                "a Host that only starts like this one",
                vec![("Host", format!("127.0.0.1.evil.example:{port}")), ("Authorization", bearer.clone())],
                &[403],
            ),
            ("this Host on another port", vec![("Host", "127.0.0.1:1".into()), ("Authorization", bearer.clone())], &[403]),
            ("no Host", vec![("Authorization", bearer.clone())], &[400, 403]),
            (
                "a foreign Origin",
                vec![("Host", host.into()), ("Authorization", bearer.clone()), ("Origin", "https://evil.example".into())],
                &[403],
            ),
            ("a null Origin", vec![("Host", host.into()), ("Authorization", bearer.clone()), ("Origin", "null".into())], &[403]),
        ];
        for (what, headers, expected) in cases {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let got = status(&addr, method, path, &headers);
            assert!(expected.contains(&got), "{method} {path} with {what}: {got}, expected {expected:?}");
            refused += 1;
        }
        // The same request with the token, this Host and no Origin gets past the guard.
        let got = status(&addr, method, path, &[("Host", host), ("Authorization", &bearer)]);
        assert!(![401, 403].contains(&got), "{method} {path} with the token: {got}");
    }
    daemon.signal_group("TERM");
    assert!(daemon.finish().0.success());
    println!("api guard: {} operations × 11 kinds of stranger: {refused} requests refused, 0 let in", operations.len());
}
