//! What each notifier receives: the message text (the stuck-run template for stuck and
//! crashed runs, as Aim does; the notification's own text otherwise), digests, and the
//! request bodies of each channel.

use std::collections::HashMap;

use runwatch_core::clock::format_local;
use runwatch_core::template::Template;
use runwatch_core::{Level, Notification};
use serde_json::{json, Value};

use crate::send::Message;

/// At most this many notifications are listed in one digest message.
pub const DIGEST_MAX: usize = 50;

/// Whether the notifier's stuck-run template renders this notification.
pub fn uses_template(n: &Notification) -> bool {
    n.source == "detector"
}

/// The text of one notification for a notifier with this template.
pub fn message_text(n: &Notification, template: &Template) -> String {
    if uses_template(n) {
        return template.render(&values(n));
    }
    plain_text(n)
}

/// The notification's own text: its title, then the body when it adds anything.
pub fn plain_text(n: &Notification) -> String {
    if n.body.is_empty() || n.body == n.title {
        n.title.clone()
    } else if n.body.starts_with(n.title.trim_end_matches('…')) {
        // The title is the body's first line (shortened): the body says it all.
        n.body.clone()
    } else {
        format!("{}\n{}", n.title, n.body)
    }
}

/// One message standing for several notifications that backed up behind the pacing.
pub fn digest_text(items: &[&Notification]) -> String {
    let mut s = format!("{} new notifications:", items.len());
    for n in items {
        s.push_str(&format!("\n• [{}] {}", n.level, n.title));
    }
    s
}

/// The placeholder values of a notification.
pub fn values(n: &Notification) -> HashMap<&'static str, String> {
    HashMap::from([
        ("run.hash", n.run_id.clone().unwrap_or_default()),
        ("run.name", n.run_id.clone().unwrap_or_default()),
        ("run.repo", n.body.strip_prefix("Repository: ").unwrap_or("").to_string()),
        ("message", plain_text(n)),
        ("title", n.title.clone()),
        ("body", n.body.clone()),
        ("level", n.level.to_string()),
        ("host", host()),
        ("id", n.id.clone()),
    ])
}

/// The daemon's host (`RUNWATCH_HOST` or the host name), as its roles and runs name it.
fn host() -> String {
    runwatch_core::host::daemon_host()
}

/// Slack's emoji for a level (Block Kit has no colours outside legacy attachments).
pub fn emoji(level: Level) -> &'static str {
    match level {
        Level::Critical | Level::Error => "🔴",
        Level::Warning => "🟠",
        Level::Info => "🔵",
        Level::Debug => "⚪",
    }
}

/// A Slack webhook body: `text` always (what Aim sends, and the fallback), plus blocks
/// with the level and the run.
pub fn slack_body(text: &str, level: Level, run: Option<&str>) -> Value {
    let mut context = format!("{} {}", emoji(level), level);
    if let Some(run) = run {
        context.push_str(&format!(" · run `{run}`"));
    }
    json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}
        ]
    })
}

/// A generic webhook body: the text plus the notification's fields.
pub fn webhook_body(text: &str, n: Option<&Notification>, count: usize) -> Value {
    match n {
        Some(n) => json!({
            "text": text,
            "id": n.id,
            "level": n.level,
            "title": n.title,
            "body": n.body,
            "run_id": n.run_id,
            "source": n.source,
            "created_at": n.created_at,
        }),
        None => json!({"text": text, "count": count}),
    }
}

/// An ntfy JSON message (published to the server's root URL, so the topic is in the body):
/// the level sets the priority (CRITICAL 5 … DEBUG 1) and the emoji tag; a tap on a single
/// notification opens its details in Runwatch's UI at `click_url`.
pub fn ntfy_body(topic: &str, msg: &Message<'_>, click_url: Option<&str>) -> Value {
    let (priority, tag) = match msg.level {
        Level::Critical => (5, "rotating_light"),
        Level::Error => (4, "x"),
        Level::Warning => (3, "warning"),
        Level::Info => (2, "information_source"),
        Level::Debug => (1, "mag"),
    };
    let title = match msg.single {
        Some(n) => n.title.clone(),
        None if msg.count > 1 => format!("Runwatch: {} new notifications", msg.count),
        None => "Runwatch".into(),
    };
    let mut body = json!({
        "topic": topic,
        "title": title,
        "message": msg.text,
        "priority": priority,
        "tags": [tag, "runwatch"],
    });
    if let (Some(base), Some(n)) = (click_url, msg.single) {
        let base = base.split('#').next().unwrap_or(base);
        let sep = if base.ends_with('/') { "" } else { "/" };
        body["click"] = json!(format!("{base}{sep}#/notifications/{}", n.id));
    }
    body
}

/// A logger line: local time, level, text.
pub fn logger_line(n: &Notification, text: &str) -> String {
    let text = if uses_template(n) { format!("{text} — {}", n.title) } else { text.to_string() };
    format!("{} {:<8} {}", format_local(n.created_at), n.level, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runwatch_core::template::AIM_STUCK_TEMPLATE;

    fn n(source: &str, title: &str, body: &str) -> Notification {
        Notification {
            id: "id".into(),
            created_at: 0,
            updated_at: 0,
            level: Level::Error,
            title: title.into(),
            body: body.into(),
            run_id: Some("abc".into()),
            source: source.into(),
            dedupe_key: None,
            event_id: None,
            repeat_count: 0,
            acked_at: None,
            expires_at: None,
            origin: None,
            snoozed_until: None,
            silenced_by: None,
            resolved_at: None,
            group_key: None,
        }
    }

    #[test]
    fn stuck_runs_use_the_template_others_their_text() {
        let t = Template::parse(AIM_STUCK_TEMPLATE).unwrap();
        assert_eq!(
            message_text(&n("detector", "Run 'abc' is stuck (no check-in for 105 s).", "Repository: /r"), &t),
            "❗️ Something wrong with Run 'abc'. Please check. ❗️"
        );
        assert_eq!(message_text(&n("aim-log", "loss {x}", "loss {x}"), &t), "loss {x}");
        assert_eq!(message_text(&n("send", "OOM", "OOM\ntrace"), &t), "OOM\ntrace");
        assert_eq!(message_text(&n("send", "Short", "Longer story"), &t), "Short\nLonger story");
    }

    #[test]
    fn digest_lists_levels_and_titles() {
        let a = n("send", "a", "");
        let b = n("send", "b {c}", "");
        assert_eq!(digest_text(&[&a, &b]), "2 new notifications:\n• [ERROR] a\n• [ERROR] b {c}");
    }
}
