//! Runwatch's HTTP server: the web UI page (built from `ui/`, embedded in the binary) and
//! the versioned API under `/api/v1` (see [`api`]), guarded by a bearer token and
//! `Host`/`Origin` checks (see [`guard`]).

pub mod api;
mod checkpoint;
pub mod follow;
pub mod guard;
mod openapi;
#[cfg(test)]
mod ts_client;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use runwatch_core::clock::SharedClock;
use runwatch_core::{ChangeFeed, Store};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

pub use openapi::{openapi_json, PREFIX as API_PREFIX};

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

/// How the server may be reached beyond this machine.
#[derive(Debug, Clone, Default)]
pub struct Exposure {
    /// HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Serve plain HTTP off loopback anyway (`--insecure-http`): the user's explicit choice.
    pub insecure_http: bool,
    /// Names clients use for this server (`--public-name`), accepted in `Host` and `Origin`.
    pub public_names: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ExposureError {
    #[error(
        "refusing to serve plain HTTP on {0}: tokens would cross the network in clear text; pass --tls-cert FILE --tls-key FILE, or --insecure-http on a network you trust"
    )]
    ClearTextOffLoopback(SocketAddr),
    #[error("cannot use the TLS certificate '{cert}' and key '{key}': {source}")]
    Tls { cert: String, key: String, source: io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
}

/// A server bound to its address, ready to serve.
pub struct Server {
    listener: TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    public_names: Vec<String>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port), on loopback only.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self { listener: TcpListener::bind(addr).await?, tls: None, public_names: Vec::new() })
    }

    /// Binds `addr` as `exposure` allows: off loopback only with TLS or an explicit
    /// `insecure_http`.
    pub async fn bind_exposed(addr: SocketAddr, exposure: &Exposure) -> Result<Self, ExposureError> {
        if !addr.ip().is_loopback() && exposure.tls.is_none() && !exposure.insecure_http {
            return Err(ExposureError::ClearTextOffLoopback(addr));
        }
        let tls = match &exposure.tls {
            Some(files) => Some(axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key).await.map_err(|source| {
                ExposureError::Tls { cert: files.cert.display().to_string(), key: files.key.display().to_string(), source }
            })?),
            None => None,
        };
        let listener = TcpListener::bind(addr).await.map_err(|source| ExposureError::Listen { addr, source })?;
        Ok(Self { listener, tls, public_names: exposure.public_names.clone() })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The URL a person opens to see the UI. The token rides in the fragment, which
    /// browsers never send to the server; the page keeps it and strips it from the URL.
    pub fn url(&self, token: &str) -> io::Result<String> {
        let addr = self.local_addr()?;
        // A wildcard address is no place to go: name this machine's loopback instead.
        let shown = if addr.ip().is_unspecified() { SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port()) } else { addr };
        Ok(format!("{}://{shown}/#token={token}", self.scheme()))
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and returns.
    pub async fn serve(self, config: ApiConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        let addr = self.local_addr()?;
        let (changes, _) = broadcast::channel(64);
        // WAL checkpoints are SQLite's; PostgreSQL keeps its own log.
        let checkpointer = if config.store.is_postgres() { None } else { checkpoint::Checkpointer::for_api(&config.store) };
        let (stop_streams, stopping) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            shutdown.await;
            let _ = stop_streams.send(true);
        };
        let state = Arc::new(ApiState {
            store: Mutex::new(config.store),
            token: config.token,
            allowed: guard::Allowed::for_server(addr, &self.public_names, self.tls.is_some()),
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
        let app = router(state);
        let result = match self.tls {
            None => axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await,
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let stop = handle.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    stop.graceful_shutdown(None);
                });
                axum_server::from_tcp_rustls(self.listener.into_std()?, tls)?.handle(handle).serve(app.into_make_service()).await
            }
        };
        if let Some(w) = watcher {
            w.abort();
        }
        drop(feed);
        result
    }
}

/// All routes: the API under `/api/v1`, everything else from the UI bundle.
pub fn router(state: Arc<ApiState>) -> Router {
    // The routes and the OpenAPI document come from one declaration (see `openapi`).
    let (api, _) = openapi::routes().split_for_parts();
    let api = api
        .route("/openapi.json", get(openapi::serve))
        .fallback(|uri: Uri| async move { api::ApiError::new(StatusCode::NOT_FOUND, format!("no API route {}", uri.path())) })
        .layer(axum::middleware::from_fn(guard::refuse_oversized))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::check))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // The desktop window's page (tauri://localhost) calls the API cross-origin; its
        // preflights are answered here, before the token check they cannot pass.
        .layer(guard::cors(&state.allowed))
        .with_state(state);
    Router::new().nest(openapi::PREFIX, api).route("/", get(index)).route("/{*path}", get(asset))
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
            // A PostgreSQL store comes with its change feed (LISTEN/NOTIFY): nothing to poll.
            if store.is_postgres() {
                return None;
            }
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
