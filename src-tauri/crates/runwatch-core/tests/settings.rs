//! Settings: the defaults, patches (validated, all or nothing), the stored format earlier
//! versions wrote, and the engine state kept beside them.

mod common;

use common::{store, Backend, Place};
use runwatch_core::settings::{self, SettingsError};
use runwatch_core::{Level, Settings, SettingsPatch};

fn a_new_store_has_the_defaults(backend: Backend) {
    let (_place, store) = store(backend);
    let s = Settings::load(&store).unwrap();
    assert_eq!(s, Settings::default());
    assert_eq!((s.log_level, s.popup_level, s.grace_secs, s.expiry_days, s.rescan_secs), (Level::Warning, Level::Error, 100, 30, 300));
    assert!(s.watched_repos.is_empty());
    assert_eq!(s.grace(), 100_000);
    assert_eq!(s.expiry(), Some(30 * 86_400_000));
    assert_eq!(store.expiry().unwrap(), Some(30 * 86_400_000));
}

fn a_patch_changes_what_it_names_and_nothing_else(backend: Backend) {
    let (place, mut store) = store(backend);
    let after =
        settings::patch(&mut store, &SettingsPatch { log_level: Some(Level::Info), grace_secs: Some(30), ..Default::default() }).unwrap();
    assert_eq!(after, Settings { log_level: Level::Info, grace_secs: 30, ..Settings::default() });
    let after = settings::patch(
        &mut store,
        &SettingsPatch {
            popup_level: Some(Level::Critical),
            expiry_days: Some(0),
            rescan_secs: Some(60),
            watched_repos: Some(vec!["/data/exp/.aim".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    let expected = Settings {
        log_level: Level::Info,
        popup_level: Level::Critical,
        grace_secs: 30,
        expiry_days: 0,
        rescan_secs: 60,
        watched_repos: vec!["/data/exp/.aim".into()],
        unreachable_warn_secs: 300,
        ..Settings::default()
    };
    assert_eq!(after, expected);
    assert_eq!(after.expiry(), None);
    assert_eq!(store.expiry().unwrap(), None);
    // An empty patch changes nothing; another connection sees the same.
    assert_eq!(settings::patch(&mut store, &SettingsPatch::default()).unwrap(), expected);
    assert_eq!(Settings::load(&place.open()).unwrap(), expected);
}

fn an_invalid_patch_writes_nothing(backend: Backend) {
    let (_place, mut store) = store(backend);
    let bad = [
        SettingsPatch { grace_secs: Some(7 * 86_400 + 1), ..Default::default() },
        SettingsPatch { expiry_days: Some(36_501), ..Default::default() },
        SettingsPatch { expiry_days: Some(u64::MAX), ..Default::default() },
        SettingsPatch { rescan_secs: Some(0), ..Default::default() },
        SettingsPatch { rescan_secs: Some(3_601), ..Default::default() },
        SettingsPatch { watched_repos: Some(vec!["relative/.aim".into()]), ..Default::default() },
        SettingsPatch { watched_repos: Some(vec!["/ok".into(), String::new()]), ..Default::default() },
        SettingsPatch { watched_repos: Some(vec![" /padded".into()]), ..Default::default() },
        SettingsPatch { watched_repos: Some(vec!["gpu-1:relative/.aim".into()]), ..Default::default() },
        SettingsPatch { watched_repos: Some(vec![":/no-host".into()]), ..Default::default() },
        SettingsPatch { watched_repos: Some(vec![" gpu-1:/padded".into()]), ..Default::default() },
    ];
    for patch in bad {
        // The valid part of the patch is not written either.
        let patch = SettingsPatch { log_level: Some(Level::Debug), ..patch };
        match settings::patch(&mut store, &patch) {
            Err(SettingsError::Invalid(message)) => assert!(!message.is_empty()),
            other => panic!("{patch:?} gave {other:?}"),
        }
        assert_eq!(Settings::load(&store).unwrap(), Settings::default(), "{patch:?}");
    }
    // The limits themselves are allowed.
    let edge = SettingsPatch { grace_secs: Some(7 * 86_400), expiry_days: Some(36_500), rescan_secs: Some(1), ..Default::default() };
    let s = settings::patch(&mut store, &edge).unwrap();
    assert_eq!((s.grace_secs, s.expiry_days, s.rescan_secs), (7 * 86_400, 36_500, 1));
    // A repository of one host's daemon (a team store), and a path with a colon in it.
    let hosts = SettingsPatch { watched_repos: Some(vec!["gpu-1:/scratch/.aim".into(), "/data/a:b/.aim".into()]), ..Default::default() };
    assert_eq!(settings::patch(&mut store, &hosts).unwrap().watched_repos, ["gpu-1:/scratch/.aim", "/data/a:b/.aim"]);
    assert_eq!(settings::split_watched_repo("gpu-1:/scratch/.aim"), (Some("gpu-1"), "/scratch/.aim"));
    assert_eq!(settings::split_watched_repo("/data/a:b/.aim"), (None, "/data/a:b/.aim"));
}

/// The rows as earlier versions wrote them (and as a hand-edited store may hold them).
fn put_raw(place: &Place, key: &str, json: &str) {
    place.execute("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", &[key, json]);
}

fn raw(place: &Place, key: &str) -> Option<String> {
    place.text("SELECT value FROM settings WHERE key = $1", &[key])
}

fn stores_written_by_earlier_versions_keep_their_settings(backend: Backend) {
    let (place, mut store) = store(backend);
    for (key, json) in [
        ("log_level", r#""ERROR""#),
        ("popup_level", r#""warn""#),
        ("grace_secs", "250"),
        ("expiry_days", "7"),
        ("rescan_secs", "5"),
        ("watched_repos", r#"["/a/.aim","/b/.aim"]"#),
        ("known_repos", r#"["/a/.aim"]"#),
    ] {
        put_raw(&place, key, json);
    }
    let s = Settings::load(&store).unwrap();
    assert_eq!(
        s,
        Settings {
            log_level: Level::Error,
            popup_level: Level::Warning,
            grace_secs: 250,
            expiry_days: 7,
            rescan_secs: 5,
            watched_repos: vec!["/a/.aim".into(), "/b/.aim".into()],
            unreachable_warn_secs: 300,
            ..Settings::default()
        }
    );
    assert_eq!(settings::known_repos(&store).unwrap(), ["/a/.aim"]);

    // What a patch writes is what earlier versions read: the same keys, the same JSON.
    settings::patch(&mut store, &SettingsPatch { log_level: Some(Level::Critical), grace_secs: Some(9), ..Default::default() }).unwrap();
    assert_eq!(raw(&place, "log_level").as_deref(), Some(r#""CRITICAL""#));
    assert_eq!(raw(&place, "grace_secs").as_deref(), Some("9"));
    assert_eq!(raw(&place, "popup_level").as_deref(), Some(r#""warn""#), "untouched rows stay as they were");
}

fn unreadable_values_fall_back_to_the_default(backend: Backend) {
    let (place, store) = store(backend);
    for (key, json) in [
        ("log_level", r#""LOUD""#),
        ("popup_level", "40"),
        ("grace_secs", "-5"),
        ("expiry_days", "not json"),
        ("watched_repos", r#""/one""#),
    ] {
        put_raw(&place, key, json);
    }
    put_raw(&place, "rescan_secs", "0");
    let s = Settings::load(&store).unwrap();
    assert_eq!(s, Settings { rescan_secs: 0, ..Settings::default() });
    assert_eq!(s.rescan_every(), std::time::Duration::from_secs(1), "a zero stored by hand still rescans");
    assert_eq!(store.expiry().unwrap(), Settings::default().expiry());
}

fn known_repos_are_remembered_once_and_are_not_settings(backend: Backend) {
    let (place, mut store) = store(backend);
    assert!(settings::known_repos(&store).unwrap().is_empty());
    settings::remember_repo(&mut store, "/a/.aim").unwrap();
    settings::remember_repo(&mut store, "/b/.aim").unwrap();
    settings::remember_repo(&mut store, "/a/.aim").unwrap();
    assert_eq!(settings::known_repos(&store).unwrap(), ["/a/.aim", "/b/.aim"]);
    assert_eq!(Settings::load(&store).unwrap(), Settings::default());
    assert_eq!(raw(&place, "known_repos").as_deref(), Some(r#"["/a/.aim","/b/.aim"]"#));
}

on_both!(
    a_new_store_has_the_defaults,
    a_patch_changes_what_it_names_and_nothing_else,
    an_invalid_patch_writes_nothing,
    stores_written_by_earlier_versions_keep_their_settings,
    unreadable_values_fall_back_to_the_default,
    known_repos_are_remembered_once_and_are_not_settings
);
