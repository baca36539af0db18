//! Following across machines, the server side and the settings side: the change feed a
//! follower reads (`GET /changes`, long-polled), and the remotes this instance follows
//! (`/remotes`). The follower itself is in the engine (runwatch-engine's `follow`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use runwatch_core::remotes::{Changes, Cursor, NewRemote, Remote, RemoteError};
use serde::Deserialize;
use ts_rs::TS;
use utoipa::{IntoParams, ToSchema};

use crate::api::{with_store, ApiError, ErrorBody, Json, Query};
use crate::guard::Viewer;
use crate::ApiState;

/// The longest a `GET /changes` waits for something to change.
pub const MAX_WAIT_SECS: u64 = 15;

/// Where to read changes from.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema, TS)]
#[ts(export)]
pub struct ChangesQuery {
    /// The `cursor` of the previous answer; none (or `0.0.0`) for everything.
    pub after: Option<String>,
    /// At most this many notifications (1…1000, default 1000).
    pub limit: Option<usize>,
    /// Seconds to wait when nothing changed yet (0…15, default 0; more counts as 15): a long poll.
    pub wait: Option<u64>,
}

/// What changed after a cursor: the feed followers read. Notifications come as they are
/// now (acknowledged or not), then acknowledgements one by one and "acknowledge all"s
/// (every notification with seq up to `upto`). With `wait`, an answer with no change comes
/// only after that many seconds. With a user's token (a team store), the feed holds what
/// is for that user or for everyone, with that user's acknowledgements.
#[utoipa::path(get, path = "/changes", params(ChangesQuery),
    responses((status = 200, body = Changes), (status = 400, body = ErrorBody)))]
pub async fn changes(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<ChangesQuery>,
) -> Result<axum::Json<Changes>, ApiError> {
    let after: Cursor =
        q.after.as_deref().unwrap_or("0.0.0").parse().map_err(|e: runwatch_core::StoreError| ApiError::bad_request(e.to_string()))?;
    let limit = q.limit.unwrap_or(runwatch_core::remotes::MAX_CHANGES);
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(MAX_WAIT_SECS));
    // Subscribed before reading, so a change between the read and the wait is not missed;
    // a waiting follower is told of changes as a stream client is.
    let mut rx = state.changes.subscribe();
    state.stream_joined.notify_one();
    let mut stopping = state.stopping.clone();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let viewer = viewer.clone();
        let found = with_store(&state, move |s| Ok(s.changes_as(viewer.user(), after, limit)?)).await?;
        if !found.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(axum::Json(found));
        }
        tokio::select! {
            changed = tokio::time::timeout_at(deadline, rx.recv()) => match changed {
                Err(_) | Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return Ok(axum::Json(found)),
                Ok(_) => {}
            },
            // The server is stopping: answer now, so the graceful shutdown need not wait.
            _ = stopping.wait_for(|s| *s) => return Ok(axum::Json(found)),
        }
    }
}

impl From<RemoteError> for ApiError {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::Store(s) => s.into(),
            RemoteError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            RemoteError::Exists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            RemoteError::BadName(_) => ApiError::bad_request(e.to_string()),
        }
    }
}

#[utoipa::path(get, path = "/remotes", responses((status = 200, body = Vec<Remote>)))]
pub async fn list_remotes(State(state): State<Arc<ApiState>>) -> Result<axum::Json<Vec<Remote>>, ApiError> {
    with_store(&state, |s| Ok(s.remotes()?)).await.map(axum::Json)
}

/// A server to follow.
#[derive(Debug, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct AddRemote {
    /// Shown as the origin of its notifications.
    pub name: String,
    /// `ssh://[user@]host[:port]`, `https://host[:port]`, or `http://` to this machine.
    pub url: String,
    /// Its API token (write-only: never shown again); not for `ssh://` (read there).
    #[ts(optional)]
    pub token: Option<String>,
    /// A CA certificate (PEM file on this machine) its HTTPS certificate is signed by.
    #[ts(optional)]
    pub ca_file: Option<String>,
    /// Also send its notifications to this instance's notifiers [default: false].
    #[ts(optional)]
    pub deliver: Option<bool>,
}

#[utoipa::path(post, path = "/remotes", request_body = AddRemote,
    responses((status = 200, body = Remote), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_remote(State(state): State<Arc<ApiState>>, Json(req): Json<AddRemote>) -> Result<axum::Json<Remote>, ApiError> {
    let (url, token) = if runwatch_remote::ssh::is_ssh(&req.url) {
        runwatch_remote::ssh::parse_ssh_url(&req.url).map_err(|e| ApiError::bad_request(e.to_string()))?;
        (req.url.trim().trim_end_matches('/').to_string(), String::new())
    } else {
        let url = runwatch_remote::client::parse_server_url(&req.url).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let token = req.token.as_deref().unwrap_or_default().trim().to_string();
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err(ApiError::bad_request("\"token\" must be the server's API token ('runwatch token' on it prints it)"));
        }
        (url.as_str().trim_end_matches('/').to_string(), token)
    };
    let new = NewRemote { name: req.name, url, token, ca_file: req.ca_file, deliver: req.deliver.unwrap_or(false) };
    let at = state.clock.now();
    let r = with_store(&state, move |s| Ok(s.add_remote(&new, at)?)).await?;
    state.changed();
    Ok(axum::Json(r))
}

/// Changes to a remote; omitted fields stay.
#[derive(Debug, Default, Deserialize, ToSchema, TS)]
#[ts(export, optional_fields)]
pub struct RemotePatch {
    pub enabled: Option<bool>,
    pub deliver: Option<bool>,
}

#[utoipa::path(patch, path = "/remotes/{name}", params(("name" = String, Path)), request_body = RemotePatch,
    responses((status = 200, body = Remote), (status = 404, body = ErrorBody)))]
pub async fn patch_remote(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Json(p): Json<RemotePatch>,
) -> Result<axum::Json<Remote>, ApiError> {
    let at = state.clock.now();
    let r = with_store(&state, move |s| Ok(s.set_remote(&name, p.enabled, p.deliver, at)?)).await?;
    state.changed();
    Ok(axum::Json(r))
}

/// Stops following a remote; its notifications stay in the inbox.
#[utoipa::path(delete, path = "/remotes/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_remote(State(state): State<Arc<ApiState>>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    with_store(&state, move |s| Ok(s.remove_remote(&name)?)).await?;
    state.changed();
    Ok(StatusCode::NO_CONTENT)
}
