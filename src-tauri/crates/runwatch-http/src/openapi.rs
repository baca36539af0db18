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
        api::runs, api::ingest, api::ingest_batch, api::check_in, api::list_notifiers, api::add_notifier, api::get_notifier,
        api::patch_notifier, api::delete_notifier, api::test_notifier, api::get_settings, api::patch_settings, api::stream,
    ),
    components(schemas(runwatch_core::inbox::AckState)),
    modifiers(&Bearer, &Guarded),
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

/// Every route answers 401 without the token and 403 to a foreign `Host` or `Origin`
/// (the guard in front of them all), with the same JSON error body as the rest.
struct Guarded;

impl Modify for Guarded {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in operations.into_iter().flatten() {
                let responses = &mut op.responses.responses;
                responses.insert("401".into(), error("Missing or wrong API token").into());
                responses.insert("403".into(), error("Foreign Host or Origin header").into());
            }
        }
    }
}

/// The document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

pub async fn serve() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi_json())
}
