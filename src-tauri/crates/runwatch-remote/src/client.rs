//! The client side of the API: one server, its token, and the line between "try again
//! later" (the server is down, slow, overloaded or answers garbage) and "this will never
//! work" (a wrong token, a request the server rejects).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use url::Url;

/// How long a request may take. Jobs never wait on it: what fails goes to the spool.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// Refused connections, timeouts, 5xx, 429, an answer that is not the API's: what waits
    /// in the spool is sent when this passes.
    #[error("the server {server} cannot be reached: {reason}")]
    Unreachable { server: String, reason: String },
    /// Retrying will not help: the server refused the token or rejected the request.
    #[error("{0}")]
    Refused(String),
    /// The server URL, the token or the CA file cannot be used.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// Whether what failed should wait in the spool and be sent again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}

/// A server to report to: its API base URL and the token. The token is never printed
/// (not even by `{:?}`).
#[derive(Clone)]
pub struct Target {
    url: Url,
    token: String,
    ca_file: Option<PathBuf>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target").field("url", &self.url.as_str()).field("token", &"****").field("ca_file", &self.ca_file).finish()
    }
}

impl Target {
    /// A target from the command line's `--server` and the token (from `--token-file`, or
    /// the token itself from `RUNWATCH_TOKEN`). Plain `http://` is accepted only to this
    /// machine: a token must never cross a network in clear text.
    pub fn new(server: &str, token: Option<&str>, token_file: Option<&Path>, ca_file: Option<&Path>) -> Result<Target, ClientError> {
        let url = parse_server_url(server)?;
        let token = match (token_file, token) {
            (Some(file), _) => read_token_file(file)?,
            (None, Some(t)) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                return Err(ClientError::Config(format!(
                    "no token for {}: pass --token-file FILE (or set RUNWATCH_TOKEN_FILE or RUNWATCH_TOKEN); on the server, 'runwatch token' prints it",
                    url.as_str().trim_end_matches('/')
                )))
            }
        };
        Ok(Target { url, token, ca_file: ca_file.map(Path::to_path_buf) })
    }

    /// The server as users wrote it, for messages and as the spool's key.
    pub fn server(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }
}

/// Checks a `--server` URL: http or https, a host, no credentials or query in it.
pub fn parse_server_url(server: &str) -> Result<Url, ClientError> {
    let bad = |why: &str| ClientError::Config(format!("bad --server '{server}': {why} (e.g. https://runwatch.lab.example:8747)"));
    let mut url = Url::parse(server.trim()).map_err(|e| bad(&e.to_string()))?;
    let host = url.host_str().ok_or_else(|| bad("no host"))?.to_string();
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("put the token in --token-file, not in the URL"));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(ClientError::Config(format!(
                "refusing to send the token in clear text to '{host}': use https:// (plain http:// is only for this machine)"
            )))
        }
        other => return Err(bad(&format!("scheme '{other}' is not http or https"))),
    }
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn read_token_file(path: &Path) -> Result<String, ClientError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ClientError::Config(format!("cannot read the token file '{}': {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(ClientError::Config(format!("the token file '{}' does not hold a token (one line, no spaces)", path.display())));
    }
    Ok(token.to_string())
}

/// Talks to one server's `/api/v1`.
#[derive(Clone)]
pub struct Client {
    target: Target,
    agent: ureq::Agent,
    /// The `Host` to send instead of the URL's: the server's own address when it is reached
    /// through an ssh port forward (its guard accepts only the names it serves under).
    host: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("target", &self.target).finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(target: Target, timeout: Duration) -> Result<Client, ClientError> {
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("runwatch/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &target.ca_file {
            config = config.tls_config(tls_trusting(ca)?);
        }
        Ok(Client { target, agent: config.build().into(), host: None })
    }

    /// Sends `Host: host` (see the field).
    pub fn with_host(mut self, host: String) -> Client {
        self.host = Some(host);
        self
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// `POST /api/v1/{path}` with a JSON body; the JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = self.url(path)?;
        let mut request = self.agent.post(url.as_str()).header("Authorization", format!("Bearer {}", self.target.token));
        if let Some(host) = &self.host {
            request = request.header("Host", host);
        }
        let answer = request.content_type("application/json").send(body.to_string());
        self.answer(answer)
    }

    /// `GET /api/v1/{path}?query`; the JSON answer.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, ClientError> {
        let mut url = self.url(path)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self.agent.get(url.as_str()).header("Authorization", format!("Bearer {}", self.target.token));
        if let Some(host) = &self.host {
            request = request.header("Host", host);
        }
        let answer = request.call();
        self.answer(answer)
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.target.url.join(&format!("api/v1/{}", path.trim_start_matches('/'))).map_err(|e| ClientError::Config(e.to_string()))
    }

    fn answer(&self, answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value, ClientError> {
        let unreachable = |reason: String| ClientError::Unreachable { server: self.target.server().to_string(), reason };
        let mut response = answer.map_err(|e| {
            let text = describe(&e);
            // A certificate that is not trusted does not become trusted by waiting.
            if text.contains("certificate") || matches!(e, ureq::Error::Rustls(_) | ureq::Error::Tls(_)) {
                ClientError::Refused(format!(
                    "the server {}'s TLS certificate is not accepted ({text}); pass --ca-file with the CA that signed it",
                    self.target.server()
                ))
            } else {
                unreachable(text)
            }
        })?;
        let status = response.status().as_u16();
        let text = response.body_mut().with_config().limit(16 << 20).read_to_string().unwrap_or_default();
        let json: Option<Value> = serde_json::from_str(&text).ok();
        let message = json.as_ref().and_then(|j| j.get("error")).and_then(Value::as_str).map(str::to_string);
        match status {
            200..=299 => json.ok_or_else(|| unreachable(format!("HTTP {status} with an answer that is not JSON (is this a Runwatch server?)"))),
            401 => Err(ClientError::Refused(format!(
                "the server {} refused the token (HTTP 401); check --token-file or RUNWATCH_TOKEN ('runwatch token' on the server prints it)",
                self.target.server()
            ))),
            408 | 429 | 500..=599 => Err(unreachable(format!("HTTP {status}{}", message.map(|m| format!(": {m}")).unwrap_or_default()))),
            _ => match message {
                // An answer without the API's error body is not a Runwatch server (a proxy's page, say).
                Some(m) => Err(ClientError::Refused(format!("the server {} refused the request (HTTP {status}): {m}", self.target.server()))),
                None => Err(unreachable(format!("HTTP {status} without an API error (is this a Runwatch server?)"))),
            },
        }
    }
}

/// One line for a transport failure, without the URL (it is in the message already).
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        ureq::Error::Timeout(_) => "no answer in time".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        other => other.to_string(),
    }
}

/// TLS that trusts the CA in `path` (PEM) besides the usual roots: for lab servers whose
/// certificate comes from the lab's own CA.
fn tls_trusting(path: &Path) -> Result<ureq::tls::TlsConfig, ClientError> {
    use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
    let pem = std::fs::read(path).map_err(|e| ClientError::Config(format!("cannot read the CA file '{}': {e}", path.display())))?;
    let certs: Vec<_> = parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(ClientError::Config(format!("the CA file '{}' holds no PEM certificate", path.display())));
    }
    Ok(TlsConfig::builder().root_certs(RootCerts::new_with_certs(&certs)).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_this_machine() {
        for ok in ["http://127.0.0.1:8747", "http://localhost:1", "http://[::1]:80/", "https://gpu-17.lab:8747"] {
            assert!(parse_server_url(ok).is_ok(), "{ok}");
        }
        for bad in ["http://gpu-17.lab:8747", "ftp://x", "https://u:p@h", "https://h/?token=x", "not a url"] {
            assert!(matches!(parse_server_url(bad), Err(ClientError::Config(_))), "{bad}");
        }
    }

    #[test]
    fn the_token_is_never_in_debug_output() {
        let t = Target::new("http://127.0.0.1:1", Some("s3cr3t-token"), None, None).unwrap();
        assert!(!format!("{t:?}").contains("s3cr3t"));
        let c = Client::new(t, DEFAULT_TIMEOUT).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
