//! Two engines in one process, each on its own data dir and loopback port: one follows the
//! other, and its on-notification hook (the app's popups and badge) hears of the other's
//! notifications as of its own.

use std::sync::mpsc;
use std::time::Duration;

use runwatch_core::remotes::NewRemote;
use runwatch_core::{DataDir, Notification, Store};
use runwatch_engine::Engine;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn a_followed_server_s_notifications_reach_the_hook_with_their_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Engine::builder(DataDir::at(tmp.path().join("server"))).unwrap().http("127.0.0.1:0".parse().unwrap()).start().unwrap();

    let laptop_dir = DataDir::at(tmp.path().join("laptop"));
    let (tx, heard) = mpsc::channel::<Notification>();
    let tx = std::sync::Mutex::new(tx);
    let laptop = Engine::builder(laptop_dir.clone())
        .unwrap()
        .http("127.0.0.1:0".parse().unwrap())
        .on_notification(move |n| {
            let _ = tx.lock().unwrap().send(n.clone());
        })
        .start()
        .unwrap();
    Store::open(&laptop_dir)
        .unwrap()
        .add_remote(
            &NewRemote { name: "a".into(), url: server.api_url().into(), token: server.token().into(), ca_file: None, deliver: false },
            0,
        )
        .unwrap();

    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    agent
        .post(&format!("{}/api/v1/events", server.api_url()))
        .header("Authorization", &format!("Bearer {}", server.token()))
        .content_type("application/json")
        .send(r#"{"message": "loss is nan", "level": "ERROR"}"#)
        .unwrap();

    let n = heard.recv_timeout(PATIENCE).expect("the hook hears of the server's notification");
    assert_eq!(n.title, "loss is nan");
    assert_eq!(n.origin.as_deref(), Some("a"));
    assert!(n.acked_at.is_none());
    assert!(laptop.shutdown().is_clean());
    assert!(server.shutdown().is_clean());
}
