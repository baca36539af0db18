//! The desktop window may do only what the UI needs: its Content Security Policy loads
//! code from the app alone (no eval), talks to the app, Tauri's IPC and the loopback HTTP
//! API only, and its capabilities grant nothing beyond Tauri's core events (the UI uses the
//! HTTP API, not IPC commands).

use std::collections::BTreeMap;

use runwatch_tests::repo_root;
use serde_json::Value;

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tauri_conf() -> Value {
    read_json(&repo_root().join("src-tauri/tauri.conf.json"))
}

/// The CSP's directives: name -> sources.
fn csp() -> BTreeMap<String, Vec<String>> {
    let conf = tauri_conf();
    let csp = conf["app"]["security"]["csp"].as_str().expect("tauri.conf.json sets app.security.csp as a string");
    let mut directives = BTreeMap::new();
    for directive in csp.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        let mut words = directive.split_whitespace();
        let name = words.next().unwrap().to_ascii_lowercase();
        let sources: Vec<String> = words.map(str::to_string).collect();
        assert!(directives.insert(name.clone(), sources).is_none(), "{name} appears twice");
    }
    directives
}

/// A loopback HTTP origin, any port: what `runwatch start` and the in-app engine serve.
fn is_loopback(source: &str) -> bool {
    ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
        .iter()
        .any(|p| source.strip_prefix(p).is_some_and(|port| port == "*" || (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))))
}

#[test]
fn csp_loads_code_only_from_the_app_and_connects_only_to_the_app_ipc_and_loopback() {
    let csp = csp();
    assert_eq!(csp.get("default-src").map(Vec::as_slice), Some(&["'self'".to_string()][..]), "default-src 'self'");
    for (name, sources) in &csp {
        for s in sources {
            assert!(!s.eq_ignore_ascii_case("'unsafe-eval'") && !s.eq_ignore_ascii_case("'wasm-unsafe-eval'"), "{name} allows eval");
            assert!(!s.contains('*') || is_loopback(s), "{name} has a wildcard source {s}");
            assert!(
                !matches!(s.to_ascii_lowercase().as_str(), "http:" | "https:" | "ws:" | "wss:" | "blob:" | "filesystem:"),
                "{name} allows a whole scheme: {s}"
            );
            if s == "data:" {
                assert!(matches!(name.as_str(), "img-src" | "font-src"), "data: is only for images and fonts, not {name}");
            }
            if s.eq_ignore_ascii_case("'unsafe-inline'") {
                assert_eq!(name, "style-src", "'unsafe-inline' only for styles");
            }
        }
    }
    // Scripts: the app's own files only (absent means default-src, which is 'self').
    if let Some(script) = csp.get("script-src") {
        assert_eq!(script, &["'self'".to_string()], "script-src");
    }
    let connect = csp.get("connect-src").expect("connect-src is set");
    for s in connect {
        assert!(
            s == "'self'" || s == "ipc:" || s == "http://ipc.localhost" || is_loopback(s),
            "connect-src allows {s}: only the app, Tauri's IPC and the loopback API"
        );
    }
    for (name, want) in [("object-src", "'none'"), ("base-uri", "'none'"), ("frame-ancestors", "'none'")] {
        assert_eq!(csp.get(name).map(Vec::as_slice), Some(&[want.to_string()][..]), "{name}");
    }
}

#[test]
fn the_csp_is_not_weakened_elsewhere_in_the_config() {
    let conf = tauri_conf();
    let security = &conf["app"]["security"];
    for key in ["dangerousDisableAssetCspModification", "devCsp", "dangerousRemoteDomainIpcAccess", "headers"] {
        assert!(security.get(key).is_none(), "app.security.{key} is set: {}", security[key]);
    }
    assert_ne!(conf["app"]["withGlobalTauri"], Value::Bool(true), "withGlobalTauri exposes the IPC to every script");
    if let Some(inline) = security.get("capabilities") {
        let names: Vec<&str> = inline.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        assert_eq!(names, ["default"], "capabilities are the files in src-tauri/capabilities/, referenced by name");
    }
    // No plugin is configured with more than its defaults (the shell, http, fs plugins are not used).
    if let Some(plugins) = conf.get("plugins").and_then(Value::as_object) {
        assert!(plugins.is_empty(), "plugins configured: {plugins:?}");
    }
}

#[test]
fn capabilities_grant_nothing_beyond_core_events() {
    let dir = repo_root().join("src-tauri/capabilities");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        assert!(matches!(ext, "json"), "only JSON capability files are checked here: {}", path.display());
        files += 1;
        let cap = read_json(&path);
        let name = path.display().to_string();
        assert!(cap.get("remote").is_none(), "{name}: remote pages get IPC access");
        let permissions: Vec<String> = cap["permissions"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no permissions list"))
            .iter()
            .map(|p| match p {
                Value::String(s) => s.clone(),
                // `{ "identifier": …, "allow": […] }` scopes a permission: none is needed.
                other => panic!("{name}: scoped permission {other}"),
            })
            .collect();
        assert_eq!(permissions, ["core:event:default"], "{name}");
        let windows: Vec<&str> = cap["windows"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        assert!(!windows.is_empty() && windows.iter().all(|w| ["main", "settings"].contains(w)), "{name}: windows {windows:?}");
        assert!(cap.get("webviews").is_none(), "{name}: webviews");
    }
    assert!(files > 0, "no capability files in {}", dir.display());
}

#[test]
fn windows_load_only_the_apps_pages_and_no_ipc_commands_are_registered() {
    let dir = repo_root().join("src-tauri/src");
    let mut sources = 0;
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            sources += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for forbidden in ["WebviewUrl::External", "WebviewUrl::CustomProtocol", "invoke_handler", "generate_handler!"] {
                assert!(!text.contains(forbidden), "{} uses {forbidden}", path.display());
            }
        }
    }
    assert!(sources > 0);
}
