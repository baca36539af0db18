//! The API under `/api/v1`: notifications, runs, notifiers, settings, event ingest, a
//! server-sent-events stream of changes, health. JSON in and out; errors as
//! `{"error": "…"}` with a status that says whose fault it was. The handlers' paths are
//! relative to `/api/v1`; `openapi::routes` is where they are routed and documented.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream::{self, Stream};
use runwatch_core::check_ins::CheckInReport;
use runwatch_core::deliveries::Delivery;
use runwatch_core::inbox::{AckState, ListFilter, Page, UnreadSummary};
use runwatch_core::ingest::Event;
use runwatch_core::noise::{NewSilence, NoiseError, NotifierRules, Silence, SnoozeUntil};
use runwatch_core::notifiers::{Notifier, NotifierLookupError};
use runwatch_core::runs::Run;
use runwatch_core::settings::{self, Settings, SettingsError, SettingsPatch};
use runwatch_core::store::StoreError;
use runwatch_core::{Inserted, Level, Notification, NotifierStatus, Store};
use runwatch_notify::dispatcher::send_test;
use runwatch_notify::send::{Outcome, Sender, DEFAULT_TIMEOUT};
use runwatch_notify::Channel;
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::{IntoParams, ToSchema};

use crate::guard::Viewer;
use crate::ApiState;

/// An API error: a status and one clear message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

/// The body of every error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct ErrorBody {
    pub error: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(ErrorBody { error: self.message })).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadCursor(_) => ApiError::bad_request(e.to_string()),
            StoreError::Unsupported(_) => ApiError::new(StatusCode::NOT_IMPLEMENTED, e.to_string()),
            other => {
                tracing::warn!("API store error: {other}");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the store is unavailable: {other}"))
            }
        }
    }
}

impl From<NotifierLookupError> for ApiError {
    fn from(e: NotifierLookupError) -> Self {
        match e {
            NotifierLookupError::Store(s) => s.into(),
            other => ApiError::not_found(other.to_string()),
        }
    }
}

impl From<NoiseError> for ApiError {
    fn from(e: NoiseError) -> Self {
        match e {
            NoiseError::Store(s) => s.into(),
            NoiseError::UnknownSilence(_) => ApiError::not_found(e.to_string()),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

/// JSON bodies whose every rejection is a 400 (or 413) with a clear message.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))
            }
            Err(e) => Err(ApiError::bad_request(format!("invalid JSON body: {}", e.body_text()))),
        }
    }
}

/// Query strings whose rejection is a JSON 400 like every other error of the API (axum's
/// own answers in plain text).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(ApiError::bad_request(format!("invalid query: {}", e.body_text()))),
        }
    }
}

type ApiResult<T> = Result<axum::Json<T>, ApiError>;

/// Runs store work off the async threads.
pub(crate) async fn with_store<T: Send + 'static>(
    state: &Arc<ApiState>,
    f: impl FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = state.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut store)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e}")))?
}

fn now(state: &ApiState) -> i64 {
    state.clock.now()
}

// ---- health ----

#[derive(Debug, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct Health {
    pub status: String,
    pub version: String,
}

#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
pub async fn health() -> axum::Json<Health> {
    axum::Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

// ---- notifications ----

/// Filters for listing notifications.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema, TS)]
#[ts(export)]
pub struct ListQuery {
    /// Only at or above this level.
    pub level: Option<Level>,
    pub run: Option<String>,
    /// pending (default), acked or all.
    pub state: Option<AckState>,
    pub cursor: Option<String>,
    /// 1…1000, default 50.
    pub limit: Option<usize>,
    /// Only from this followed server, or `local` for this instance's own.
    pub origin: Option<String>,
}

#[utoipa::path(get, path = "/notifications", params(ListQuery),
    responses((status = 200, body = Page), (status = 400, body = ErrorBody)))]
pub async fn list_notifications(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Page> {
    let filter = ListFilter {
        min_level: q.level,
        run_id: q.run,
        state: q.state.unwrap_or_default(),
        cursor: q.cursor,
        limit: q.limit,
        origin: q.origin,
        now: Some(now(&state)),
    };
    with_store(&state, move |s| Ok(s.list_notifications_as(viewer.user(), &filter)?)).await.map(axum::Json)
}

/// One notification and its deliveries.
#[derive(Debug, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct NotificationDetails {
    pub notification: Notification,
    pub deliveries: Vec<Delivery>,
}

#[utoipa::path(get, path = "/notifications/{id}", params(("id" = String, Path)),
    responses((status = 200, body = NotificationDetails), (status = 404, body = ErrorBody)))]
pub async fn show_notification(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> ApiResult<NotificationDetails> {
    with_store(&state, move |s| {
        let notification = s.notification_as(viewer.user(), &id)?.ok_or_else(|| ApiError::not_found(format!("no notification '{id}'")))?;
        let deliveries = s.deliveries_of(&id)?;
        Ok(NotificationDetails { notification, deliveries })
    })
    .await
    .map(axum::Json)
}

/// What to acknowledge: some ids, or everything pending.
#[derive(Debug, Default, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct AckRequest {
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub all: bool,
    /// With `all`: only notifications with seq up to this (a follower acknowledging what it
    /// has of this inbox, not what came after).
    #[serde(default)]
    #[ts(optional)]
    pub upto: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct AckResult {
    /// How many were pending and are now acknowledged.
    pub acknowledged: usize,
}

#[utoipa::path(post, path = "/notifications/ack", request_body = AckRequest,
    responses((status = 200, body = AckResult), (status = 400, body = ErrorBody)))]
pub async fn ack(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    Json(req): Json<AckRequest>,
) -> ApiResult<AckResult> {
    // Exactly one of the two.
    if req.all != req.ids.is_empty() {
        return Err(ApiError::bad_request("give either \"ids\": [...] or \"all\": true"));
    }
    let at = now(&state);
    state.before_write().await;
    if req.upto.is_some() && !req.all {
        return Err(ApiError::bad_request("\"upto\" goes with \"all\": true"));
    }
    let n = with_store(&state, move |s| {
        let user = viewer.user();
        Ok(match (req.all, req.upto) {
            (true, Some(upto)) => s.ack_upto_as(user, upto, at)?,
            (true, None) => s.ack_all_as(user, at)?,
            (false, _) => s.ack_as(user, &req.ids, at)?,
        })
    })
    .await?;
    state.changed();
    Ok(axum::Json(AckResult { acknowledged: n }))
}

#[utoipa::path(post, path = "/notifications/{id}/ack", params(("id" = String, Path)),
    responses((status = 200, body = AckResult), (status = 404, body = ErrorBody)))]
pub async fn ack_one(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> ApiResult<AckResult> {
    let at = now(&state);
    let n = with_store(&state, move |s| {
        let user = viewer.user();
        s.notification_as(user, &id)?.ok_or_else(|| ApiError::not_found(format!("no notification '{id}'")))?;
        Ok(s.ack_as(user, std::slice::from_ref(&id), at)?)
    })
    .await?;
    state.changed();
    Ok(axum::Json(AckResult { acknowledged: n }))
}

#[utoipa::path(get, path = "/notifications/summary", responses((status = 200, body = UnreadSummary)))]
pub async fn summary(State(state): State<Arc<ApiState>>, Extension(viewer): Extension<Viewer>) -> ApiResult<UnreadSummary> {
    let at = now(&state);
    with_store(&state, move |s| Ok(s.unread_summary_as(viewer.user(), at)?)).await.map(axum::Json)
}

/// How long to snooze: exactly one of the three.
#[derive(Debug, Default, Deserialize, ToSchema, TS)]
#[ts(export, optional_fields)]
pub struct SnoozeRequest {
    /// For this many seconds.
    #[schema(minimum = 1)]
    pub for_secs: Option<u64>,
    /// Until this time (ms since the epoch).
    pub until: Option<i64>,
    /// Until the run's next state change.
    pub until_change: Option<bool>,
}

impl SnoozeRequest {
    fn until(&self, now: i64) -> Result<SnoozeUntil, ApiError> {
        match (self.for_secs, self.until, self.until_change.unwrap_or(false)) {
            (Some(secs), None, false) if secs > 0 => {
                Ok(SnoozeUntil::Time(now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000))))
            }
            (None, Some(t), false) => Ok(SnoozeUntil::Time(t)),
            (None, None, true) => Ok(SnoozeUntil::RunChange),
            _ => Err(ApiError::bad_request("give exactly one of \"for_secs\" (> 0), \"until\" or \"until_change\": true")),
        }
    }
}

#[utoipa::path(post, path = "/notifications/{id}/snooze", params(("id" = String, Path)), request_body = SnoozeRequest,
    responses((status = 200, body = Notification), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn snooze(State(state): State<Arc<ApiState>>, Path(id): Path<String>, Json(req): Json<SnoozeRequest>) -> ApiResult<Notification> {
    let at = now(&state);
    let until = req.until(at)?;
    let n = with_store(&state, move |s| {
        s.notification(&id)?.ok_or_else(|| ApiError::not_found(format!("no notification '{id}'")))?;
        s.snooze(std::slice::from_ref(&id), until, at)?;
        s.notification(&id)?.ok_or_else(|| ApiError::not_found(format!("no notification '{id}'")))
    })
    .await?;
    state.changed();
    Ok(axum::Json(n))
}

#[utoipa::path(post, path = "/notifications/{id}/unsnooze", params(("id" = String, Path)),
    responses((status = 200, body = Notification), (status = 404, body = ErrorBody)))]
pub async fn unsnooze(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult<Notification> {
    let at = now(&state);
    let n = with_store(&state, move |s| {
        s.notification(&id)?.ok_or_else(|| ApiError::not_found(format!("no notification '{id}'")))?;
        s.unsnooze(std::slice::from_ref(&id), at)?;
        s.notification(&id)?.ok_or_else(|| ApiError::not_found(format!("no notification '{id}'")))
    })
    .await?;
    state.changed();
    Ok(axum::Json(n))
}

/// What snoozing a run did.
#[derive(Debug, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct SnoozeRunResult {
    /// Its pending notifications snoozed now (those arriving before the snooze ends are too).
    pub snoozed: usize,
}

#[utoipa::path(post, path = "/runs/{id}/snooze", params(("id" = String, Path)), request_body = SnoozeRequest,
    responses((status = 200, body = SnoozeRunResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn snooze_run(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Json(req): Json<SnoozeRequest>,
) -> ApiResult<SnoozeRunResult> {
    let at = now(&state);
    let until = req.until(at)?;
    let snoozed = with_store(&state, move |s| {
        s.run(&id)?.ok_or_else(|| ApiError::not_found(format!("no run '{id}'")))?;
        Ok(s.snooze_run(&id, until, at)?)
    })
    .await?;
    state.changed();
    Ok(axum::Json(SnoozeRunResult { snoozed }))
}

// ---- silences ----

#[utoipa::path(get, path = "/silences", responses((status = 200, body = Vec<Silence>)))]
pub async fn list_silences(State(state): State<Arc<ApiState>>) -> ApiResult<Vec<Silence>> {
    with_store(&state, |s| Ok(s.silences()?)).await.map(axum::Json)
}

#[utoipa::path(post, path = "/silences", request_body = NewSilence,
    responses((status = 200, body = Silence), (status = 400, body = ErrorBody)))]
pub async fn add_silence(State(state): State<Arc<ApiState>>, Json(req): Json<NewSilence>) -> ApiResult<Silence> {
    let at = now(&state);
    let s = with_store(&state, move |s| Ok(s.add_silence(&req, at)?)).await?;
    state.changed();
    Ok(axum::Json(s))
}

#[utoipa::path(post, path = "/silences/{id}/expire", params(("id" = String, Path)),
    responses((status = 200, body = Silence), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn expire_silence(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult<Silence> {
    let at = now(&state);
    let s = with_store(&state, move |s| Ok(s.expire_silence(&id, at)?)).await?;
    state.changed();
    Ok(axum::Json(s))
}

// ---- runs ----

#[utoipa::path(get, path = "/runs", responses((status = 200, body = Vec<Run>)))]
pub async fn runs(State(state): State<Arc<ApiState>>) -> ApiResult<Vec<Run>> {
    with_store(&state, |s| Ok(s.runs()?)).await.map(axum::Json)
}

// ---- events ----

/// What storing an event did.
#[derive(Debug, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct IngestResult {
    pub id: String,
    /// The event id was already stored: nothing new.
    pub duplicate: bool,
}

fn validate_event(e: &Event) -> Result<(), ApiError> {
    if e.message.trim().is_empty() && e.title.as_deref().is_none_or(|t| t.trim().is_empty()) {
        return Err(ApiError::bad_request("an event needs a \"message\" (or a \"title\")"));
    }
    Ok(())
}

/// Who events are for: as given (each a user of this team store), or, sent with a user's
/// token, that user. The single-user store has no one to address.
fn address(s: &Store, viewer: &Viewer, events: &mut [Event]) -> Result<(), ApiError> {
    if events.iter().all(|e| e.to.is_empty()) && viewer.user().is_none() {
        return Ok(());
    }
    if !s.is_postgres() {
        return Err(ApiError::bad_request("\"to\" needs a team store (runwatch --store postgresql://… start)"));
    }
    let known: Vec<String> = s.users().map_err(|e| ApiError::bad_request(e.to_string()))?.into_iter().map(|u| u.name).collect();
    for e in events.iter_mut() {
        if e.to.is_empty() {
            e.to.extend(viewer.user().map(str::to_string));
        }
        for to in &e.to {
            let r = runwatch_core::users::Recipient::parse(to).map_err(ApiError::bad_request)?;
            if !known.contains(&r.user) {
                return Err(ApiError::bad_request(format!("\"to\": there is no user '{}' on this store", r.user)));
            }
        }
    }
    Ok(())
}

fn result_of(i: Inserted) -> IngestResult {
    match i {
        Inserted::New(n) => IngestResult { id: n.id, duplicate: false },
        Inserted::Duplicate(id) => IngestResult { id, duplicate: true },
    }
}

#[utoipa::path(post, path = "/events", request_body = Event,
    responses((status = 200, body = IngestResult), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn ingest(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    Json(mut event): Json<Event>,
) -> ApiResult<IngestResult> {
    validate_event(&event)?;
    event.source = "api".into();
    let at = now(&state);
    state.before_write().await;
    let r = with_store(&state, move |s| {
        address(s, &viewer, std::slice::from_mut(&mut event))?;
        Ok(s.ingest(&event, at)?)
    })
    .await?;
    state.stored();
    Ok(axum::Json(result_of(r)))
}

/// Events sent together: stored in one transaction, all or none.
#[derive(Debug, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct EventBatch {
    pub events: Vec<Event>,
}

#[utoipa::path(post, path = "/events/batch", request_body = EventBatch,
    responses((status = 200, body = Vec<IngestResult>), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn ingest_batch(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    Json(batch): Json<EventBatch>,
) -> ApiResult<Vec<IngestResult>> {
    let mut events = batch.events;
    for (i, e) in events.iter_mut().enumerate() {
        validate_event(e).map_err(|err| ApiError::bad_request(format!("event {i}: {}", err.message)))?;
        e.source = "api".into();
    }
    let at = now(&state);
    state.before_write().await;
    let r = with_store(&state, move |s| {
        address(s, &viewer, &mut events)?;
        Ok(s.ingest_batch(&events, at)?)
    })
    .await?;
    state.stored();
    Ok(axum::Json(r.into_iter().map(result_of).collect()))
}

// ---- check-ins ----

/// What became of a check-in.
#[derive(Debug, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct CheckInResult {
    pub run_id: String,
    /// Its event id was stored before: nothing changed.
    pub duplicate: bool,
}

/// A check-in from a job on any machine: alive (with the time to the next one), finished
/// or failed. It feeds the same detector as Aim's check-in files: a promise not kept within
/// `expect_next_in` + grace makes the run stuck.
#[utoipa::path(post, path = "/check-ins", request_body = CheckInReport,
    responses((status = 200, body = CheckInResult), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn check_in(State(state): State<Arc<ApiState>>, Json(report): Json<CheckInReport>) -> ApiResult<CheckInResult> {
    report.validate().map_err(ApiError::bad_request)?;
    let at = now(&state);
    let run_id = report.run_id.clone();
    state.before_write().await;
    // Any daemon of a shared store stores it; the one holding the check-ins role takes it
    // into the detector (woken by the change feed).
    let new = with_store(&state, move |s| Ok(s.record_check_in(&report, at)?)).await?;
    state.stored();
    Ok(axum::Json(CheckInResult { run_id, duplicate: !new }))
}

// ---- notifiers ----

/// A notifier as the API shows it: secrets masked (they are write-only).
#[derive(Debug, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct NotifierView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: NotifierStatus,
    pub min_level: Level,
    #[ts(type = "Record<string, unknown>")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
    /// Delay, repeat and quiet hours.
    pub rules: NotifierRules,
}

fn view(n: &Notifier, rules: NotifierRules) -> NotifierView {
    let config = Channel::from_notifier(n).map_or_else(|e| serde_json::json!({"error": e.to_string()}), |c| c.masked());
    NotifierView {
        id: n.id.clone(),
        kind: n.kind.clone(),
        status: n.status,
        min_level: n.min_level,
        config,
        created_at: n.created_at,
        updated_at: n.updated_at,
        rules,
    }
}

/// [`view`] with the notifier's rules read from the store.
fn view_in(s: &Store, n: &Notifier) -> Result<NotifierView, ApiError> {
    Ok(view(n, s.notifier_rules(&n.id)?))
}

/// A notifier to add.
#[derive(Debug, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct NewNotifier {
    #[serde(rename = "type")]
    pub kind: String,
    /// slack: url, message; workplace: group_id, access_token, base_url, message; logger: message;
    /// webhook: url, headers, message; ntfy: url, topic, token, click_url, message.
    #[ts(type = "Record<string, unknown>")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub min_level: Option<Level>,
    #[serde(default)]
    #[ts(optional)]
    pub rules: Option<NotifierRules>,
}

#[utoipa::path(get, path = "/notifiers", responses((status = 200, body = Vec<NotifierView>)))]
pub async fn list_notifiers(State(state): State<Arc<ApiState>>) -> ApiResult<Vec<NotifierView>> {
    with_store(&state, |s| s.notifiers()?.iter().map(|n| view_in(s, n)).collect()).await.map(axum::Json)
}

#[utoipa::path(post, path = "/notifiers", request_body = NewNotifier,
    responses((status = 200, body = NotifierView), (status = 400, body = ErrorBody)))]
pub async fn add_notifier(State(state): State<Arc<ApiState>>, Json(req): Json<NewNotifier>) -> ApiResult<NotifierView> {
    let channel = Channel::from_parts(&req.kind, &req.config).map_err(|e| ApiError::bad_request(e.to_string()))?;
    channel.validate().map_err(|e| ApiError::bad_request(e.to_string()))?;
    let at = now(&state);
    let n = Notifier {
        id: uuid::Uuid::new_v4().to_string(),
        kind: channel.kind().into(),
        status: NotifierStatus::Enabled,
        config: channel.config_json(),
        min_level: req.min_level.unwrap_or(Level::Debug),
        created_at: at,
        updated_at: at,
    };
    let rules = req.rules.unwrap_or_default();
    rules.check().map_err(|e| ApiError::bad_request(e.to_string()))?;
    let v = view(&n, rules.clone());
    with_store(&state, move |s| {
        s.add_notifier(&n)?;
        s.set_notifier_rules(&n.id, &rules, at)?;
        Ok(())
    })
    .await?;
    state.changed();
    Ok(axum::Json(v))
}

#[utoipa::path(get, path = "/notifiers/{id}", params(("id" = String, Path)),
    responses((status = 200, body = NotifierView), (status = 404, body = ErrorBody)))]
pub async fn get_notifier(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult<NotifierView> {
    with_store(&state, move |s| view_in(s, &s.resolve_notifier(&id)?)).await.map(axum::Json)
}

/// Changes to a notifier; omitted fields stay. Config keys given replace the stored ones,
/// so a secret need not be sent again to change the template.
#[derive(Debug, Default, Deserialize, ToSchema, TS)]
#[ts(export, optional_fields)]
pub struct NotifierPatch {
    pub status: Option<NotifierStatus>,
    pub min_level: Option<Level>,
    #[ts(optional, type = "Record<string, unknown>")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
    /// Replaces the rules (delay, repeat, quiet hours) as a whole.
    pub rules: Option<NotifierRules>,
}

#[utoipa::path(patch, path = "/notifiers/{id}", params(("id" = String, Path)), request_body = NotifierPatch,
    responses((status = 200, body = NotifierView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn patch_notifier(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Json(patch): Json<NotifierPatch>,
) -> ApiResult<NotifierView> {
    let at = now(&state);
    let v = with_store(&state, move |s| {
        let n = s.resolve_notifier(&id)?;
        let mut config = n.config.clone();
        if let Some(serde_json::Value::Object(changes)) = &patch.config {
            if let serde_json::Value::Object(m) = &mut config {
                m.extend(changes.clone());
            }
            let channel = Channel::from_parts(&n.kind, &config).map_err(|e| ApiError::bad_request(e.to_string()))?;
            channel.validate().map_err(|e| ApiError::bad_request(e.to_string()))?;
            config = channel.config_json();
        } else if patch.config.is_some() {
            return Err(ApiError::bad_request("\"config\" must be an object"));
        }
        if let Some(rules) = &patch.rules {
            rules.check()?;
        }
        s.update_notifier(&n.id, patch.config.is_some().then_some(&config), patch.min_level, patch.status, at)?;
        if let Some(rules) = &patch.rules {
            s.set_notifier_rules(&n.id, rules, at)?;
        }
        view_in(s, &s.resolve_notifier(&n.id)?)
    })
    .await?;
    state.changed();
    Ok(axum::Json(v))
}

#[utoipa::path(delete, path = "/notifiers/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_notifier(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    with_store(&state, move |s| {
        let n = s.resolve_notifier(&id)?;
        s.remove_notifier(&n.id)?;
        Ok(())
    })
    .await?;
    state.changed();
    Ok(StatusCode::NO_CONTENT)
}

/// The answer to a test message.
#[derive(Debug, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct TestResult {
    pub ok: bool,
    pub error: Option<String>,
}

#[utoipa::path(post, path = "/notifiers/{id}/test", params(("id" = String, Path)),
    responses((status = 200, body = TestResult), (status = 404, body = ErrorBody)))]
pub async fn test_notifier(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult<TestResult> {
    let n = with_store(&state, move |s| Ok(s.resolve_notifier(&id)?)).await?;
    let channel = Channel::from_notifier(&n).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let outcome = tokio::task::spawn_blocking(move || send_test(&Sender::new(DEFAULT_TIMEOUT), &channel))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(axum::Json(match outcome {
        Outcome::Sent => TestResult { ok: true, error: None },
        Outcome::Retry { error, .. } | Outcome::Failed { error } => TestResult { ok: false, error: Some(error) },
    }))
}

// ---- settings ----

impl From<SettingsError> for ApiError {
    fn from(e: SettingsError) -> Self {
        match e {
            SettingsError::Invalid(message) => ApiError::bad_request(message),
            SettingsError::Store(s) => s.into(),
        }
    }
}

#[utoipa::path(get, path = "/settings", responses((status = 200, body = Settings)))]
pub async fn get_settings(State(state): State<Arc<ApiState>>) -> ApiResult<Settings> {
    with_store(&state, |s| Ok(Settings::load(s)?)).await.map(axum::Json)
}

#[utoipa::path(patch, path = "/settings", request_body = SettingsPatch,
    responses((status = 200, body = Settings), (status = 400, body = ErrorBody)))]
pub async fn patch_settings(State(state): State<Arc<ApiState>>, Json(p): Json<SettingsPatch>) -> ApiResult<Settings> {
    p.validate()?;
    let v = with_store(&state, move |s| Ok(settings::patch(s, &p)?)).await?;
    state.changed();
    Ok(axum::Json(v))
}

// ---- the change stream ----

/// What the stream sends on every change: the new unread summary.
#[derive(Debug, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct Change {
    pub summary: UnreadSummary,
}

#[utoipa::path(get, path = "/stream", responses((status = 200, description = "text/event-stream of `change` events whose data is a Change")))]
pub async fn stream(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = state.changes.subscribe();
    state.stream_joined.notify_one();
    let stopping = state.stopping.clone();
    let events = stream::unfold((state, rx, stopping, true), move |(state, mut rx, mut stopping, first)| {
        let viewer = viewer.clone();
        async move {
            if !first {
                tokio::select! {
                    // Lagging behind only means several changes are reported as one.
                    changed = rx.recv() => if matches!(changed, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        return None;
                    },
                    // The server is stopping: end the stream so its connection can close.
                    _ = stopping.wait_for(|s| *s) => return None,
                }
            }
            let at = now(&state);
            let summary = with_store(&state, move |s| Ok(s.unread_summary_as(viewer.user(), at)?)).await.unwrap_or_default();
            let data = serde_json::to_string(&Change { summary }).unwrap_or_default();
            Some((Ok(SseEvent::default().event("change").data(data)), (state, rx, stopping, false)))
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
