//! Runwatch's HTTP server: the web UI page (built from `ui/`, embedded in the binary) and
//! the versioned API under `/api/v1` (see [`api`]), guarded by a bearer token and
//! `Host`/`Origin` checks (see [`guard`]).

pub mod api;
mod checkpoint;
pub mod guard;
mod openapi;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use runwatch_core::clock::SharedClock;
use runwatch_core::{ChangeFeed, Store};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

pub use openapi::openapi_json;

/// The address `runwatch start` listens on unless told otherwise: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8747";

/// The largest request body accepted (a batch of 1,000 events fits with room to spare).
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// What the API works on.
pub struct ApiConfig {
    pub store: Store,
    pub token: String,
    pub clock: SharedClock,
    /// Called after events are stored (the app and daemon wake the dispatcher here).
    pub on_stored: Box<dyn Fn() + Send + Sync>,
    /// Commits by other connections and processes (the watcher, the dispatcher, the CLI),
    /// told to the stream's clients. Without it, the server polls the store's
    /// `data_version` instead, but only while a stream client is connected.
    pub store_changes: Option<ChangeFeed>,
}

/// Shared by every request.
pub struct ApiState {
    store: Mutex<Store>,
    token: String,
    allowed: guard::Allowed,
    changes: broadcast::Sender<()>,
    clock: SharedClock,
    on_stored: Box<dyn Fn() + Send + Sync>,
    checkpointer: Option<checkpoint::Checkpointer>,
    /// A stream client connected (wakes the polling fallback, see [`watch_store`]).
    stream_joined: tokio::sync::Notify,
    /// True once the server is shutting down: streams end, so the graceful shutdown does
    /// not wait forever for a connected page's never-ending stream.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl ApiState {
    /// Something changed: tell the stream's listeners (and checkpoint it).
    fn changed(&self) {
        let _ = self.changes.send(());
        if let Some(c) = &self.checkpointer {
            c.after_commit();
        }
    }

    /// Before a write that may come in a stream of them: lets the checkpoint in flight end
    /// (see [`checkpoint`]).
    async fn before_write(&self) {
        if let Some(c) = &self.checkpointer {
            c.wait().await;
        }
    }

    fn stored(&self) {
        self.changed();
        (self.on_stored)();
    }
}

/// A server bound to its address, ready to serve.
pub struct Server {
    listener: TcpListener,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self { listener: TcpListener::bind(addr).await? })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The URL a person opens to see the UI. The token rides in the fragment, which
    /// browsers never send to the server; the page keeps it and strips it from the URL.
    pub fn url(&self, token: &str) -> io::Result<String> {
        Ok(format!("http://{}/#token={token}", self.local_addr()?))
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and returns.
    pub async fn serve(self, config: ApiConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        let port = self.local_addr()?.port();
        let (changes, _) = broadcast::channel(64);
        let checkpointer = checkpoint::Checkpointer::for_api(&config.store);
        let (stop_streams, stopping) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            shutdown.await;
            let _ = stop_streams.send(true);
        };
        let state = Arc::new(ApiState {
            store: Mutex::new(config.store),
            token: config.token,
            allowed: guard::Allowed::loopback(port),
            changes,
            clock: config.clock,
            on_stored: config.on_stored,
            checkpointer,
            stream_joined: tokio::sync::Notify::new(),
            stopping,
        });
        // Held until the server ends: the feed watches for as long as a clone lives.
        let feed = config.store_changes;
        let watcher = match &feed {
            Some(feed) => {
                // Only the stream is told: other commits need no checkpoint from here (their
                // connections checkpoint themselves), and a checkpoint writes no commit, so
                // it wakes nothing in turn. A send with no stream client connected is free.
                let changes = state.changes.clone();
                feed.subscribe(move || {
                    let _ = changes.send(());
                });
                None
            }
            None => Some(tokio::spawn(watch_store(state.clone()))),
        };
        let result = axum::serve(self.listener, router(state)).with_graceful_shutdown(shutdown).await;
        if let Some(w) = watcher {
            w.abort();
        }
        drop(feed);
        result
    }
}

/// All routes: the API under `/api/v1`, everything else from the UI bundle.
pub fn router(state: Arc<ApiState>) -> Router {
    let api = Router::new()
        .route("/health", get(api::health))
        .route("/openapi.json", get(openapi::serve))
        .route("/notifications", get(api::list_notifications))
        .route("/notifications/summary", get(api::summary))
        .route("/notifications/ack", post(api::ack))
        .route("/notifications/{id}", get(api::show_notification))
        .route("/notifications/{id}/ack", post(api::ack_one))
        .route("/runs", get(api::runs))
        .route("/events", post(api::ingest))
        .route("/events/batch", post(api::ingest_batch))
        .route("/notifiers", get(api::list_notifiers).post(api::add_notifier))
        .route("/notifiers/{id}", get(api::get_notifier).patch(api::patch_notifier).delete(api::delete_notifier))
        .route("/notifiers/{id}/test", post(api::test_notifier))
        .route("/settings", get(api::get_settings).patch(api::patch_settings))
        .route("/stream", get(api::stream))
        .fallback(|uri: Uri| async move { api::ApiError::new(StatusCode::NOT_FOUND, format!("no API route {}", uri.path())) })
        .layer(axum::middleware::from_fn(guard::refuse_oversized))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::check))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // The desktop window's page (tauri://localhost) calls the API cross-origin; its
        // preflights are answered here, before the token check they cannot pass.
        .layer(guard::cors(&state.allowed))
        .with_state(state);
    Router::new().nest("/api/v1", api).route("/", get(index)).route("/{*path}", get(asset))
}

/// Without a change feed: notices commits by other connections (the watcher, the
/// dispatcher, the CLI) and tells the stream, by polling SQLite's `data_version` (it changes
/// when another connection commits) — only while a stream client is connected.
async fn watch_store(state: Arc<ApiState>) {
    let mut last = None;
    loop {
        if state.changes.receiver_count() == 0 {
            state.stream_joined.notified().await;
            continue;
        }
        let s = state.clone();
        let version = tokio::task::spawn_blocking(move || {
            let store = s.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            store.conn().pragma_query_value(None, "data_version", |r| r.get::<_, i64>(0)).ok()
        })
        .await
        .ok()
        .flatten();
        if version.is_some() && last.is_some() && version != last {
            state.changed();
        }
        last = version.or(last);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The UI bundle built by `npm run build` in `ui/` (the make targets build it first).
#[derive(rust_embed::Embed)]
#[folder = "../../../ui/dist/"]
struct UiAssets;

async fn index() -> Response {
    serve_asset("index.html")
}

async fn asset(Path(path): Path<String>) -> Response {
    if path.starts_with("api/") {
        // An unknown API route is an API error, not the UI page.
        return api::ApiError::new(StatusCode::NOT_FOUND, format!("no API route /{path}")).into_response();
    }
    if UiAssets::get(&path).is_some() {
        serve_asset(&path)
    } else {
        // The UI routes on the client; unknown paths get the page itself.
        serve_asset("index.html")
    }
}

fn serve_asset(path: &str) -> Response {
    match UiAssets::get(path) {
        Some(file) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            let headers = [
                (header::CONTENT_TYPE, mime.as_ref().to_string()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
                (header::X_FRAME_OPTIONS, "DENY".to_string()),
                (header::REFERRER_POLICY, "no-referrer".to_string()),
            ];
            (headers, file.data).into_response()
        }
        None => (StatusCode::NOT_FOUND, "the UI is not built into this binary; run `make run` (or `npm run build` in ui/) and rebuild")
            .into_response(),
    }
}
