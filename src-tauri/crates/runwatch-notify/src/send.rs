//! Sending one message to one notifier, and classifying the answer: sent, worth retrying
//! (timeouts, refused connections, 5xx, 429 with its `Retry-After`), or failed for good
//! (other 4xx: a wrong URL or token does not fix itself).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runwatch_core::{Level, Notification};

use crate::channel::{Channel, WORKPLACE_DEFAULT_BASE};
use crate::render;

/// How long one request may take before it counts as failed (and is retried).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Log filter directives that keep the HTTP client below `trace`: at `trace` ureq logs
/// whole request URLs (webhook paths, Workplace tokens) and raw request bytes (header
/// values). Every log filter that can enable `trace` adds these.
pub const HTTP_LOG_CAPS: &[&str] = &["ureq=debug", "ureq_proto=debug"];

/// The log filter every Runwatch binary uses: `RUNWATCH_LOG` (default `warn`), with the
/// HTTP client kept below `trace` by [`HTTP_LOG_CAPS`].
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("RUNWATCH_LOG").unwrap_or_else(|_| "warn".into());
    if filter.max_level_hint().is_none_or(|max| max == tracing_subscriber::filter::LevelFilter::TRACE) {
        for cap in HTTP_LOG_CAPS {
            filter = filter.add_directive(cap.parse().expect("a valid log directive"));
        }
    }
    filter
}

/// What came of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Try again later; `after` is the server's `Retry-After`, if it gave one.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Do not retry: the request itself is wrong.
    Failed {
        error: String,
    },
}

/// One message: a single notification, or a digest of several.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub text: String,
    pub level: Level,
    pub run: Option<&'a str>,
    /// The notification, when the message stands for exactly one.
    pub single: Option<&'a Notification>,
    pub count: usize,
}

/// Where logger notifiers write.
pub type LoggerOutput = Arc<Mutex<Box<dyn Write + Send>>>;

/// Sends messages over HTTP (or to the logger's output).
#[derive(Clone)]
pub struct Sender {
    agent: ureq::Agent,
    logger: LoggerOutput,
}

impl Sender {
    /// A sender with this request timeout, logging to standard output.
    pub fn new(timeout: Duration) -> Self {
        Self::with_logger(timeout, Arc::new(Mutex::new(Box::new(std::io::stdout()))))
    }

    pub fn with_logger(timeout: Duration, logger: LoggerOutput) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("runwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self { agent, logger }
    }

    pub fn send(&self, channel: &Channel, msg: &Message<'_>) -> Outcome {
        let outcome = match channel {
            Channel::Slack { url, .. } => self.post(url, &[], &render::slack_body(&msg.text, msg.level, msg.run)),
            Channel::Workplace { group_id, access_token, base_url, .. } => {
                let base = base_url.as_deref().unwrap_or(WORKPLACE_DEFAULT_BASE).trim_end_matches('/');
                let mut url = match url::Url::parse(&format!("{base}/v14.0/{group_id}/feed")) {
                    Ok(u) => u,
                    Err(e) => return Outcome::Failed { error: format!("bad Workplace URL: {e}") },
                };
                url.query_pairs_mut().append_pair("access_token", access_token);
                self.post(url.as_str(), &[], &serde_json::json!({ "message": msg.text }))
            }
            Channel::Ntfy { url, topic, token, click_url, .. } => {
                let auth = token.as_ref().map(|t| format!("Bearer {}", t.trim()));
                let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
                self.post(url, &headers, &render::ntfy_body(topic, msg, click_url.as_deref()))
            }
            Channel::Webhook { url, headers, .. } => {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                self.post(url, &headers, &render::webhook_body(&msg.text, msg.single, msg.count))
            }
            Channel::Logger { .. } => {
                let line = match msg.single {
                    Some(n) => render::logger_line(n, &msg.text),
                    None => format!("{:<8} {}", msg.level, msg.text),
                };
                let mut out = self.logger.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match writeln!(out, "{line}").and_then(|_| out.flush()) {
                    Ok(()) => Outcome::Sent,
                    Err(e) => Outcome::Retry { error: format!("cannot write to the log: {e}"), after: None },
                }
            }
        };
        scrub(outcome, &channel.secrets())
    }

    fn post(&self, url: &str, headers: &[(&str, &str)], body: &serde_json::Value) -> Outcome {
        let mut req = self.agent.post(url).header("Content-Type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match req.send(body.to_string()) {
            Ok(mut res) => {
                let status = res.status().as_u16();
                if (200..300).contains(&status) {
                    return Outcome::Sent;
                }
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text = res.body_mut().with_config().limit(4096).read_to_string().unwrap_or_default();
                let error = format!("HTTP {status}{}", if text.trim().is_empty() { String::new() } else { format!(": {}", text.trim()) });
                match status {
                    408 | 429 | 500..=599 => Outcome::Retry { error, after: retry_after },
                    _ => Outcome::Failed { error },
                }
            }
            Err(e) => Outcome::Retry { error: transport_error(&e), after: None },
        }
    }
}

fn transport_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out waiting for the server".into(),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        other => other.to_string(),
    }
}

/// Removes secrets (webhook URLs, tokens) from error texts before they are stored or logged.
fn scrub(outcome: Outcome, secrets: &[String]) -> Outcome {
    let clean = |mut s: String| {
        for secret in secrets {
            if !secret.is_empty() {
                s = s.replace(secret.as_str(), "****");
            }
        }
        s
    };
    match outcome {
        Outcome::Retry { error, after } => Outcome::Retry { error: clean(error), after },
        Outcome::Failed { error } => Outcome::Failed { error: clean(error) },
        Outcome::Sent => Outcome::Sent,
    }
}
