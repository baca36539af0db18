//! The OpenAPI document of `/api/v1`, generated from the Rust types and handlers.

use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

#[derive(OpenApi)]
#[openapi(
    info(title = "Runwatch API", version = "1", description = "Notifications, runs, notifiers, settings and event ingest. Every call needs `Authorization: Bearer <token>` (the data dir's api-token file)."),
    paths(
        api::health, api::list_notifications, api::show_notification, api::ack, api::ack_one, api::summary,
        api::runs, api::ingest, api::ingest_batch, api::list_notifiers, api::add_notifier, api::get_notifier,
        api::patch_notifier, api::delete_notifier, api::test_notifier, api::get_settings, api::patch_settings, api::stream,
    ),
    components(schemas(runwatch_core::inbox::AckState)),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

/// The document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

pub async fn serve() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi_json())
}
