//! Who may call the API: a bearer token for every call, and `Host` / `Origin` headers
//! naming this server, so a web page cannot reach it by DNS rebinding or cross-site.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use crate::api::ApiError;
use crate::ApiState;

/// Hosts and origins this server answers to.
#[derive(Debug, Clone)]
pub struct Allowed {
    pub hosts: Vec<String>,
    pub origins: Vec<String>,
}

impl Allowed {
    /// Loopback names for a port, plus the desktop app's webview origins.
    pub fn loopback(port: u16) -> Allowed {
        let hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")];
        let mut origins: Vec<String> = hosts.iter().map(|h| format!("http://{h}")).collect();
        origins.extend(["tauri://localhost".to_string(), "http://tauri.localhost".to_string()]);
        Allowed { hosts, origins }
    }

    /// What a server bound to `addr` answers to: loopback names, the address itself when it
    /// is a specific one, and the public names, under the scheme it serves.
    pub fn for_server(addr: std::net::SocketAddr, public_names: &[String], tls: bool) -> Allowed {
        let port = addr.port();
        let mut allowed = Allowed::loopback(port);
        let scheme = if tls { "https" } else { "http" };
        let mut names: Vec<String> = public_names.to_vec();
        if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
            names.push(match addr.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            });
        }
        let default_port = if tls { 443 } else { 80 };
        for name in names {
            let mut forms = vec![format!("{name}:{port}")];
            if port == default_port {
                forms.push(name.clone());
            }
            for host in forms {
                allowed.origins.push(format!("{scheme}://{host}"));
                allowed.hosts.push(host);
            }
        }
        if tls {
            // The loopback names too, when the server speaks HTTPS there.
            let loopback: Vec<String> = allowed.hosts.iter().take(3).map(|h| format!("https://{h}")).collect();
            allowed.origins.extend(loopback);
        }
        allowed
    }
}

/// CORS for the allowed origins only: what the desktop app's webview needs.
pub fn cors(allowed: &Allowed) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderValue, Method};
    let origins: Vec<HeaderValue> = allowed.origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}

/// Answers 413 to a body that announces more than [`crate::BODY_LIMIT`] before any of it is
/// read: a client that waits for `100 Continue` (curl does, for big bodies) never sends
/// it, and none sees its connection closed while still sending. Bodies of unknown length
/// are cut at the limit as they are read (`DefaultBodyLimit`).
pub async fn refuse_oversized(req: Request, next: Next) -> Response {
    let announced = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > crate::BODY_LIMIT as u64) {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    }
    next.run(req).await
}

/// Who a request acts as: the store as a whole (the data dir's API token), or one user of a
/// team store (their own token, see `runwatch users add`), who sees what is for them.
#[derive(Debug, Clone, Default)]
pub struct Viewer(pub Option<String>);

impl Viewer {
    pub fn user(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// Rejects calls without the token (401) or from foreign hosts or origins (403).
pub async fn check(State(state): State<Arc<ApiState>>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    // HTTP/2 (HTTPS clients negotiate it) names the host in the URI's authority, not in Host.
    let authority = req.uri().authority().map(|a| a.as_str().to_string());
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or(authority.as_deref()).unwrap_or("");
    if !state.allowed.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return ApiError::new(StatusCode::FORBIDDEN, format!("host '{host}' is not this Runwatch server")).into_response();
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        if !state.allowed.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return ApiError::new(StatusCode::FORBIDDEN, format!("cross-origin requests from '{origin}' are not allowed")).into_response();
        }
    }
    if has_token(headers, req.uri().query(), &state.token) {
        req.extensions_mut().insert(Viewer(None));
        return next.run(req).await;
    }
    if let Some(given) = given_token(headers, req.uri().query()) {
        let user = crate::api::with_store(&state, move |s| Ok(s.user_for_token(&given)?)).await;
        if let Ok(Some(name)) = user {
            req.extensions_mut().insert(Viewer(Some(name)));
            return next.run(req).await;
        }
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong API token: send 'Authorization: Bearer <token>' (the token is in the data dir's api-token file)",
    )
    .into_response()
}

/// The token a request carries (a user's, on a team store), if any.
fn given_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    let from_query = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    bearer.or(from_query).filter(|t| !t.is_empty()).map(str::to_string)
}

/// The token from `Authorization: Bearer`, or from `?token=` (EventSource cannot send headers).
fn has_token(headers: &HeaderMap, query: Option<&str>, token: &str) -> bool {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    let from_query = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    [bearer, from_query].into_iter().flatten().any(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
