//! Runwatch's HTTP server: serves the web UI page (built from `ui/`, embedded in the binary)
//! and the versioned API under `/api/v1`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use axum::extract::Path;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

/// The address `runwatch start` listens on unless told otherwise: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8747";

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

    /// The URL a person opens to see the UI.
    pub fn url(&self) -> io::Result<String> {
        Ok(format!("http://{}/", self.local_addr()?))
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        axum::serve(self.listener, router()).with_graceful_shutdown(shutdown).await
    }
}

/// All routes: the API under `/api/v1`, everything else from the UI bundle.
pub fn router() -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/", get(index))
        .route("/{*path}", get(asset))
}

#[derive(serde::Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

/// The UI bundle built by `npm run build` in `ui/` (the make targets build it first).
#[derive(rust_embed::Embed)]
#[folder = "../../../ui/dist/"]
struct UiAssets;

async fn index() -> Response {
    serve_asset("index.html")
}

async fn asset(Path(path): Path<String>, uri: Uri) -> Response {
    if path.starts_with("api/") {
        return (StatusCode::NOT_FOUND, format!("no API route {}", uri.path())).into_response();
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
            ([(header::CONTENT_TYPE, mime.as_ref().to_string())], file.data).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            "the UI is not built into this binary; run `make run` (or `npm run build` in ui/) and rebuild",
        )
            .into_response(),
    }
}
