//! Property tests for the Aim config importer and for secret masking: no file content makes
//! the importer panic, it never imports a notifier that would not pass the same validation
//! as `runwatch notifiers add`, and masked configs never show a secret.
//!
//! Case counts stay small for `make test`; `PROPTEST_CASES=N` raises them (`make soak`).

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;
use proptest::test_runner::Config;
use runwatch_core::Level;
use runwatch_notify::aim_config;
use runwatch_notify::Channel;
use serde_json::{json, Map, Value};

fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    Config { cases, ..Config::default() }
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[a-z0-9:/.{}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `Some(value)` most of the time, `None` (the field is missing) sometimes.
fn mostly<T: std::fmt::Debug + Clone + 'static>(s: impl Strategy<Value = T> + 'static) -> BoxedStrategy<Option<T>> {
    prop_oneof![8 => s.prop_map(Some), 1 => Just(None)].boxed()
}

/// URL-ish strings: valid ones of every scheme, broken ones, anything.
fn url() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => "https://hooks\\.slack\\.com/services/T[A-Z0-9]{4}/B[A-Z0-9]{4}/[A-Za-z0-9]{8,24}".prop_map(Value::from),
        4 => "http://127\\.0\\.0\\.1:[0-9]{1,5}/[a-z/]{0,10}".prop_map(Value::from),
        2 => prop::sample::select(vec!["ftp://example.com/x", "not a url", "http://", "https://", "http:///x", "//x/y", "file:///etc/passwd", "http://[::1", "", "https://u:p@host:99/p?q=1#f"])
            .prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
        1 => any_json(),
    ]
    .boxed()
}

/// Template-ish text (good, bad and odd).
fn message() -> BoxedStrategy<Value> {
    prop_oneof![
        2 => "[a-z ❗️'{}]{0,20}".prop_map(Value::from),
        6 => prop::sample::select(vec!["❗️ Something wrong with Run '{run.hash}'. Please check. ❗️", "{run.hsh}", "{", "}", "{{}}", "{message} {level}"])
            .prop_map(Value::from),
        1 => any_json(),
    ]
    .boxed()
}

/// An `arguments` object as Aim writes it, with any field missing, wrong or odd.
fn arguments() -> BoxedStrategy<Value> {
    let group_id = prop_oneof![
        3 => any::<i64>().prop_map(Value::from),
        3 => "[0-9]{0,12}".prop_map(Value::from),
        1 => "[0-9a-z -]{0,6}".prop_map(Value::from),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        1 => any_json(),
    ];
    let headers = prop_oneof![
        4 => prop::collection::btree_map("[A-Za-z0-9!#$%&'*+.^_`|~ :-]{0,12}", any::<String>().prop_map(Value::from), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        1 => any_json(),
    ];
    let token = prop_oneof![4 => any::<String>().prop_map(Value::from), 1 => " *".prop_map(Value::from), 1 => any_json()];
    let structured = (
        mostly(url()),
        mostly(group_id),
        mostly(token),
        prop::option::of(url()),
        prop::option::of(message()),
        prop::option::of(headers),
        prop::option::of(("[a-z_]{1,8}", any_json())),
    )
        .prop_map(|(url, group_id, token, base, message, headers, extra)| {
            let mut m = Map::new();
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            for (k, v) in [
                ("url", url),
                ("group_id", group_id),
                ("access_token", token),
                ("base_url", base),
                ("message", message),
                ("headers", headers),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        });
    prop_oneof![8 => structured, 1 => any_json()].boxed()
}

/// One notifier entry of Aim's config.
fn entry() -> BoxedStrategy<Value> {
    let kind = prop_oneof![
        12 => prop::sample::select(vec!["slack", "workplace", "logger", "webhook", "ntfy"]).prop_map(Value::from),
        1 => prop::sample::select(vec!["pager", "Slack", "", "desktop"]).prop_map(Value::from),
        1 => any_json(),
    ];
    // Few distinct ids, so that two entries naming the same id happen.
    let id = prop_oneof![
        8 => prop::sample::select(vec!["11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222", "", "x"]).prop_map(Value::from),
        3 => any::<String>().prop_map(Value::from),
        1 => any_json(),
    ];
    let status = prop_oneof![10 => prop::sample::select(vec!["enabled", "disabled", "paused"]).prop_map(Value::from), 1 => any_json()];
    let structured =
        (prop::option::of(id), mostly(kind), prop::option::of(status), mostly(arguments())).prop_map(|(id, kind, status, args)| {
            let mut m = Map::new();
            for (k, v) in [("id", id), ("type", kind), ("status", status), ("arguments", args)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        });
    prop_oneof![10 => structured, 1 => any_json()].boxed()
}

/// A whole config file: usually Aim's shape, sometimes not.
fn config_file() -> impl Strategy<Value = (Value, usize)> {
    let entries = prop::collection::btree_map("[0-9a-f-]{0,36}", entry(), 0..6);
    let log_level = prop::option::of(prop_oneof![(-10i64..70).prop_map(Value::from), any_json()]);
    let aim_shaped = (entries, log_level).prop_map(|(entries, level): (BTreeMap<String, Value>, Option<Value>)| {
        let n = entries.len();
        let mut section = Map::new();
        section.insert("version".into(), json!("1.0"));
        if let Some(level) = level {
            section.insert("log_level".into(), level);
        }
        section.insert("notifiers".into(), Value::Object(entries.into_iter().collect()));
        (json!({ "notifications": section }), n)
    });
    prop_oneof![8 => aim_shaped, 1 => any_json().prop_map(|v| (v, 0))]
}

/// Everything the importer returned would pass `runwatch notifiers add`.
fn check_import(text: &str, entries: Option<usize>) -> Result<(), TestCaseError> {
    let Ok(config) = aim_config::parse(text, 42) else {
        return Ok(());
    };
    if let Some(n) = entries {
        prop_assert_eq!(config.notifiers.len() + config.skipped.len(), n, "every entry is imported or skipped");
    }
    if let Some(level) = config.log_level {
        prop_assert!(Level::ALL.contains(&level));
    }
    let mut ids = HashSet::new();
    for n in &config.notifiers {
        prop_assert!(!n.id.is_empty(), "empty id");
        prop_assert!(ids.insert(n.id.clone()), "two notifiers with id {:?}", n.id);
        prop_assert!(Channel::TYPES.contains(&n.kind.as_str()));
        let channel = Channel::from_notifier(n).map_err(|e| TestCaseError::fail(format!("imported an unreadable notifier: {e}: {n:?}")))?;
        channel.validate().map_err(|e| TestCaseError::fail(format!("imported an invalid notifier: {e}: {n:?}")))?;
        prop_assert_eq!(&channel.config_json(), &n.config);
        prop_assert_eq!((n.created_at, n.updated_at), (42, 42));
        let _ = channel.masked();
    }
    Ok(())
}

/// A secret that cannot occur by chance in the rest of a config.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{0,20}".prop_map(|s| format!("S3CRET{s}"))
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn importer_never_panics_on_any_text(text in any::<String>()) {
        check_import(&text, None)?;
    }

    #[test]
    fn importer_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_import(&String::from_utf8_lossy(&bytes), None)?;
    }

    #[test]
    fn importer_never_imports_an_invalid_notifier((file, entries) in config_file()) {
        let text = file.to_string();
        let aim_shaped = file.get("notifications").and_then(|n| n.get("notifiers")).is_some();
        check_import(&text, aim_shaped.then_some(entries))?;
        // Aim writes its config indented; the same content must import the same way.
        let pretty = serde_json::to_string_pretty(&file).unwrap();
        prop_assert_eq!(
            aim_config::parse(&text, 42).map(|c| c.notifiers).ok(),
            aim_config::parse(&pretty, 42).map(|c| c.notifiers).ok()
        );
    }

    #[test]
    fn importer_survives_truncated_and_damaged_files((file, _) in config_file(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let text = serde_json::to_string_pretty(&file).unwrap();
        let mut bytes = text.into_bytes();
        if !bytes.is_empty() {
            let i = cut.index(bytes.len());
            check_import(&String::from_utf8_lossy(&bytes[..i]), None)?;
            bytes[i] = byte;
            check_import(&String::from_utf8_lossy(&bytes), None)?;
        }
    }

    #[test]
    fn masked_configs_never_show_a_secret(
        path in secret(), token in secret(), header in secret(), port in prop::option::of(1u16..),
        which in 0usize..4,
    ) {
        let host = match port { Some(p) => format!("127.0.0.1:{p}"), None => "hooks.slack.com".into() };
        let channel = match which {
            0 => Channel::Slack { url: format!("https://{host}/services/{path}"), message: None },
            1 => Channel::Workplace { group_id: "123".into(), access_token: token.clone(), base_url: Some(format!("http://{host}")), message: None },
            2 => Channel::Ntfy {
                url: format!("http://{host}"),
                topic: path.clone(),
                token: Some(token.clone()),
                click_url: Some(format!("https://{host}/")),
                message: None,
            },
            _ => Channel::Webhook {
                url: format!("http://{host}/hook/{path}?key={token}"),
                headers: BTreeMap::from([("Authorization".to_string(), format!("Bearer {header}"))]),
                message: Some("{message}".into()),
            },
        };
        channel.validate().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let shown = channel.masked().to_string();
        for s in channel.secrets() {
            prop_assert!(!shown.contains(&s), "{s:?} shows in {shown}");
        }
        prop_assert!(!shown.contains("S3CRET"), "a secret shows in {}", shown);
    }
}
