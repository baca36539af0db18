//! The API's routes, declared once: [`routes`] gives both the axum router and the OpenAPI
//! document (utoipa-axum's `routes!` reads each handler's `#[utoipa::path]`), so no route
//! is served undocumented or documented unserved, and the UI's client is generated from
//! the same document (see `ts_client`).

use std::sync::{Arc, LazyLock};

use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{api, follow, ApiState};

/// Where the API lives; the handlers' paths are relative to it.
pub const PREFIX: &str = "/api/v1";

/// Every operation of the API, one `routes!` per path (a `routes!` of handlers with
/// different paths would serve each handler on every one of them).
pub(crate) fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::default()
        .routes(routes!(api::health))
        .routes(routes!(api::list_notifications))
        .routes(routes!(api::summary))
        .routes(routes!(api::ack))
        .routes(routes!(api::show_notification))
        .routes(routes!(api::ack_one))
        .routes(routes!(api::snooze))
        .routes(routes!(api::unsnooze))
        .routes(routes!(api::list_silences, api::add_silence))
        .routes(routes!(api::expire_silence))
        .routes(routes!(api::runs))
        .routes(routes!(api::snooze_run))
        .routes(routes!(api::ingest))
        .routes(routes!(api::ingest_batch))
        .routes(routes!(api::check_in))
        .routes(routes!(api::list_notifiers, api::add_notifier))
        .routes(routes!(api::get_notifier, api::patch_notifier, api::delete_notifier))
        .routes(routes!(api::test_notifier))
        .routes(routes!(api::get_settings, api::patch_settings))
        .routes(routes!(api::stream))
        .routes(routes!(follow::changes))
        .routes(routes!(follow::list_remotes, follow::add_remote))
        .routes(routes!(follow::patch_remote, follow::delete_remote))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Runwatch API", version = "1", description = "Notifications, runs, notifiers, settings and event ingest. Every call needs `Authorization: Bearer <token>` (the data dir's api-token file)."),
    components(schemas(runwatch_core::inbox::AckState)),
    security(("bearer" = []))
)]
struct ApiDoc;

/// The OpenAPI document of [`routes`] under [`PREFIX`].
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = OpenApiRouter::<Arc<ApiState>>::with_openapi(ApiDoc::openapi()).nest(PREFIX, routes()).into_openapi();
    // After the paths are in: the guard's answers go on every operation.
    Bearer.modify(&mut doc);
    Guarded.modify(&mut doc);
    doc
}

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
    static JSON: LazyLock<String> = LazyLock::new(|| document().to_pretty_json().unwrap_or_default());
    JSON.clone()
}

pub async fn serve() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi_json())
}
