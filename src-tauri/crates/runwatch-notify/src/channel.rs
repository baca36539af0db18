//! Notifier types and their configuration, as stored in a notifier's `config` JSON (with
//! Aim's argument names, so Aim configs import as they are), validated before saving.

use std::collections::BTreeMap;

use runwatch_core::notifiers::Notifier;
use runwatch_core::template::{Template, TemplateError, AIM_STUCK_TEMPLATE};
use serde::{Deserialize, Serialize};

/// Workplace's Graph API, for notifiers that do not name another base URL.
pub const WORKPLACE_DEFAULT_BASE: &str = "https://graph.facebook.com";

/// The public ntfy server, for ntfy notifiers that do not name their own.
pub const NTFY_DEFAULT_SERVER: &str = "https://ntfy.sh";

/// A notifier's type with its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Channel {
    /// A Slack incoming webhook: `POST url` with `{"text": …}`.
    Slack {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Workplace: `POST {base_url}/v14.0/{group_id}/feed?access_token=…` with `{"message": …}`.
    Workplace {
        group_id: String,
        access_token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base_url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Prints to the watcher's standard output.
    Logger {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// An ntfy server (phone push without an app of our own): `POST {url}` with ntfy's
    /// JSON message (topic, title, priority from the level, tags, a click URL).
    Ntfy {
        /// The server's base URL, e.g. `https://ntfy.sh`.
        url: String,
        topic: String,
        /// An access token (`tk_…`), sent as `Authorization: Bearer`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Runwatch's UI as the phone reaches it; a tap opens the notification's details there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        click_url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A generic JSON POST (Discord, Teams, anything), with optional headers.
    Webhook {
        url: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown notifier type '{0}': use slack, workplace, logger, webhook or ntfy")]
    UnknownType(String),
    #[error("invalid {kind} notifier settings: {reason}")]
    Invalid { kind: String, reason: String },
    #[error("invalid URL '{url}': {reason}")]
    Url { url: String, reason: String },
    #[error("the Workplace group id must be a number, not '{0}'")]
    GroupId(String),
    #[error("the Workplace access token is empty")]
    EmptyToken,
    #[error("invalid ntfy topic '{0}': use 1-64 letters, digits, '-' or '_'")]
    Topic(String),
    #[error("the ntfy token is empty")]
    EmptyNtfyToken,
    #[error("invalid header name '{0}'")]
    HeaderName(String),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

impl Channel {
    pub const TYPES: &'static [&'static str] = &["slack", "workplace", "logger", "webhook", "ntfy"];

    /// Reads a stored notifier's type and config.
    pub fn from_notifier(n: &Notifier) -> Result<Channel, ConfigError> {
        Self::from_parts(&n.kind, &n.config)
    }

    pub fn from_parts(kind: &str, config: &serde_json::Value) -> Result<Channel, ConfigError> {
        if !Self::TYPES.contains(&kind) {
            return Err(ConfigError::UnknownType(kind.to_string()));
        }
        let mut tagged = match config {
            serde_json::Value::Object(m) => m.clone(),
            serde_json::Value::Null => Default::default(),
            _ => return Err(ConfigError::Invalid { kind: kind.into(), reason: "config is not a JSON object".into() }),
        };
        // Aim stores group ids as numbers.
        if let Some(serde_json::Value::Number(g)) = tagged.get("group_id") {
            let g = g.to_string();
            tagged.insert("group_id".into(), serde_json::Value::String(g));
        }
        tagged.insert("type".into(), serde_json::Value::String(kind.into()));
        serde_json::from_value(serde_json::Value::Object(tagged))
            .map_err(|e| ConfigError::Invalid { kind: kind.into(), reason: e.to_string() })
    }

    /// The type name stored in `notifiers.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Slack { .. } => "slack",
            Channel::Workplace { .. } => "workplace",
            Channel::Logger { .. } => "logger",
            Channel::Webhook { .. } => "webhook",
            Channel::Ntfy { .. } => "ntfy",
        }
    }

    /// The config JSON stored in `notifiers.config` (without the type tag).
    pub fn config_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("channels serialise");
        if let Some(m) = v.as_object_mut() {
            m.remove("type");
        }
        v
    }

    /// Checks everything that can be checked before saving: URLs, ids, the template.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Channel::Slack { url, .. } => check_url(url)?,
            Channel::Workplace { group_id, access_token, base_url, .. } => {
                if group_id.is_empty() || !group_id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ConfigError::GroupId(group_id.clone()));
                }
                if access_token.trim().is_empty() {
                    return Err(ConfigError::EmptyToken);
                }
                if let Some(base) = base_url {
                    check_url(base)?;
                }
            }
            Channel::Logger { .. } => {}
            Channel::Ntfy { url, topic, token, click_url, .. } => {
                check_url(url)?;
                if topic.is_empty() || topic.len() > 64 || !topic.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                    return Err(ConfigError::Topic(topic.clone()));
                }
                if token.as_deref().is_some_and(|t| t.trim().is_empty()) {
                    return Err(ConfigError::EmptyNtfyToken);
                }
                if let Some(click) = click_url {
                    check_url(click)?;
                }
            }
            Channel::Webhook { url, headers, .. } => {
                check_url(url)?;
                for name in headers.keys() {
                    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
                        return Err(ConfigError::HeaderName(name.clone()));
                    }
                }
            }
        }
        self.template()?;
        Ok(())
    }

    /// The stuck-run message template (Aim's by default).
    pub fn template(&self) -> Result<Template, TemplateError> {
        let source = match self {
            Channel::Slack { message, .. }
            | Channel::Workplace { message, .. }
            | Channel::Logger { message }
            | Channel::Webhook { message, .. }
            | Channel::Ntfy { message, .. } => message.as_deref(),
        };
        Template::parse(source.unwrap_or(AIM_STUCK_TEMPLATE))
    }

    /// Minimum time between two messages to this notifier; a backlog behind it becomes a
    /// digest. Slack allows about one message per second per webhook.
    pub fn pacing_ms(&self) -> i64 {
        match self {
            Channel::Slack { .. } | Channel::Workplace { .. } | Channel::Webhook { .. } | Channel::Ntfy { .. } => 1000,
            Channel::Logger { .. } => 0,
        }
    }

    /// The config with secrets masked, for lists, logs and the API.
    pub fn masked(&self) -> serde_json::Value {
        let mut c = self.clone();
        match &mut c {
            Channel::Slack { url, .. } => *url = mask_url(url),
            Channel::Workplace { access_token, .. } => *access_token = mask_secret(access_token),
            Channel::Logger { .. } => {}
            // Without a token, anyone who knows the topic can read it: the topic is a secret
            // too. Its first letters stay, so that two ntfy notifiers can be told apart.
            Channel::Ntfy { topic, token, .. } => {
                *topic = mask_topic(topic);
                if let Some(t) = token {
                    *t = mask_secret(t);
                }
            }
            Channel::Webhook { url, headers, .. } => {
                *url = mask_url(url);
                for v in headers.values_mut() {
                    *v = mask_secret(v);
                }
            }
        }
        c.config_json()
    }

    /// Every secret in this config, to scrub from error texts.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Channel::Slack { url, .. } => vec![url.clone(), url_secret_part(url)],
            Channel::Workplace { access_token, .. } => vec![access_token.clone()],
            Channel::Logger { .. } => vec![],
            Channel::Ntfy { topic, token, .. } => std::iter::once(topic.clone()).chain(token.iter().cloned()).collect(),
            Channel::Webhook { url, headers, .. } => {
                let mut s = vec![url.clone(), url_secret_part(url)];
                s.extend(headers.values().cloned());
                s
            }
        }
        .into_iter()
        .filter(|s| s.len() >= 4)
        .collect()
    }
}

fn check_url(raw: &str) -> Result<(), ConfigError> {
    // What cannot be parsed has no secret path to hide: show its start, so the typo shows.
    let shown = match url::Url::parse(raw) {
        Ok(_) => mask_url(raw),
        Err(_) if raw.chars().count() <= 24 => raw.to_string(),
        Err(_) => format!("{}…", raw.chars().take(24).collect::<String>()),
    };
    let bad = |reason: &str| ConfigError::Url { url: shown.clone(), reason: reason.into() };
    let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("use an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    Ok(())
}

/// `https://hooks.slack.com/services/T0/B0/XYZ` → `https://hooks.slack.com/****`: the
/// host says which service; the path and query are the secret.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) if u.host_str().is_some() => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}/****", u.scheme(), u.host_str().unwrap_or(""))
        }
        _ => "****".into(),
    }
}

/// A secret as `****` plus its last 4 characters when it is long enough to keep them hidden.
pub fn mask_secret(s: &str) -> String {
    let n = s.chars().count();
    if n >= 16 {
        format!("****{}", s.chars().skip(n - 4).collect::<String>())
    } else {
        "****".into()
    }
}

/// An ntfy topic as its first 3 characters and `****` (all of it hidden when short).
fn mask_topic(topic: &str) -> String {
    if topic.chars().count() >= 8 {
        format!("{}****", topic.chars().take(3).collect::<String>())
    } else {
        "****".into()
    }
}

fn url_secret_part(raw: &str) -> String {
    url::Url::parse(raw).map(|u| format!("{}{}", u.path(), u.query().map(|q| format!("?{q}")).unwrap_or_default())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aim_configs_parse_including_numeric_group_ids() {
        let slack =
            Channel::from_parts("slack", &json!({"url": "https://hooks.slack.com/services/T/B/X", "message": "{run.hash}"})).unwrap();
        slack.validate().unwrap();
        let wp = Channel::from_parts("workplace", &json!({"group_id": 1234, "access_token": "tok", "message": "m"})).unwrap();
        assert!(matches!(&wp, Channel::Workplace { group_id, .. } if group_id == "1234"));
        assert_eq!(Channel::from_parts("logger", &json!({})).unwrap(), Channel::Logger { message: None });
        assert_eq!(Channel::from_parts("pager", &json!({})), Err(ConfigError::UnknownType("pager".into())));
    }

    #[test]
    fn validation_rejects_bad_urls_ids_and_templates() {
        let slack = |url: &str| Channel::Slack { url: url.into(), message: None }.validate();
        assert!(slack("https://hooks.slack.com/services/T/B/X").is_ok());
        assert!(slack("hooks.slack.com/services").is_err());
        assert!(slack("ftp://example.com/x").is_err());
        assert!(slack("http://").is_err());
        let wp = Channel::Workplace { group_id: "12a".into(), access_token: "t".into(), base_url: None, message: None };
        assert_eq!(wp.validate(), Err(ConfigError::GroupId("12a".into())));
        let bad_template = Channel::Logger { message: Some("{run.hsh}".into()) };
        assert!(matches!(bad_template.validate(), Err(ConfigError::Template(_))));
    }

    #[test]
    fn secrets_are_masked() {
        let c = Channel::Slack { url: "https://hooks.slack.com/services/T00/B00/SECRETSECRET".into(), message: None };
        assert_eq!(c.masked(), json!({"url": "https://hooks.slack.com/****"}));
        assert!(!c.masked().to_string().contains("SECRET"));
        assert!(c.secrets().iter().any(|s| s.contains("SECRETSECRET")));
        assert_eq!(mask_secret("EAAGm0PX4ZCpsBAabcdefgh1234"), "****1234");
        assert_eq!(mask_secret("short"), "****");
    }
}
