//! The example server's routes, handlers and storage.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use vapi_webhooks::error::bounded;
use vapi_webhooks::replay::ReplayGuard;
use vapi_webhooks::store::InMemoryStore;
use vapi_webhooks::vapi::reply::{
    AssistantReply, FunctionCallReply, ToolCallResult, ToolCallsReply,
};
use vapi_webhooks::{
    AssistantOrgStore, Org, OrgId, OrgResolveLayer, SecretProvider, ServerMessage,
    SignatureVerifyLayer, TenantLocator, VapiEvent,
};

use crate::tenants::Tenants;

/// The webhook route; `{slug}` below it picks the tenant from the URL.
pub const WEBHOOK_PATH: &str = "/api/webhooks/vapi";

/// Server settings that are not tenants.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a request may take before it is answered 408.
    pub request_timeout: Duration,
    /// Replay protection (in-process unless a shared store is given).
    pub replay_guard: ReplayGuard,
    /// The scheme and host senders address, for credentials that sign `{url}`.
    pub public_url: Option<String>,
    /// Queue reply-less messages in this durable inbox (`--inbox`) instead of handling them
    /// inline.
    #[cfg(feature = "inbox")]
    pub inbox: Option<vapi_webhooks::inbox::Inbox>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(15),
            replay_guard: ReplayGuard::in_memory(),
            public_url: None,
            #[cfg(feature = "inbox")]
            inbox: None,
        }
    }
}

/// What the handlers need to know about an org.
#[derive(Clone, Debug)]
pub struct OrgInfo {
    pub name: String,
    pub first_assistant: Option<String>,
    /// SHA-256 of the org's API key: compared in constant time, never kept in clear.
    pub api_key_digest: [u8; 32],
}

/// One stored end-of-call report, as `GET /api/calls` lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub call_id: Option<String>,
    pub ended_reason: Option<String>,
    /// RFC 3339.
    pub received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// Where end-of-call reports are kept.
#[derive(Clone)]
pub enum Calls {
    /// In process.
    Memory(Arc<Mutex<MemoryCalls>>),
    /// In Postgres, in an RLS-protected table (feature `postgres`).
    #[cfg(feature = "postgres")]
    Postgres(crate::pg::PgCalls),
}

/// In-process calls, per org.
#[derive(Debug, Default)]
pub struct MemoryCalls {
    by_org: HashMap<OrgId, Vec<CallRecord>>,
    seen: HashSet<(OrgId, String)>,
}

impl Calls {
    /// Empty in-process storage.
    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    /// Stores `record` for `org`, at most once per call id. `Ok(false)`: already stored.
    async fn store(&self, org: OrgId, record: CallRecord) -> Result<bool, String> {
        match self {
            Self::Memory(calls) => {
                let mut calls = calls.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(id) = &record.call_id {
                    if !calls.seen.insert((org, id.clone())) {
                        return Ok(false);
                    }
                }
                calls.by_org.entry(org).or_default().push(record);
                Ok(true)
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.store(org, &record).await,
        }
    }

    /// The calls of `org`, oldest first.
    async fn list(&self, org: OrgId) -> Result<Vec<CallRecord>, String> {
        match self {
            Self::Memory(calls) => {
                let calls = calls.lock().unwrap_or_else(|e| e.into_inner());
                Ok(calls.by_org.get(&org).cloned().unwrap_or_default())
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.list(org).await,
        }
    }
}

#[derive(Clone)]
struct AppState {
    orgs: Arc<HashMap<OrgId, OrgInfo>>,
    calls: Calls,
    #[cfg(feature = "inbox")]
    inbox: Option<vapi_webhooks::inbox::Inbox>,
}

/// The example application: its router, ready to serve.
#[derive(Clone)]
pub struct App {
    router: Router,
}

impl App {
    /// Tenants, credentials and calls all in process.
    pub fn in_memory(tenants: Tenants, config: Config) -> Result<Self, String> {
        let mut builder = InMemoryStore::builder();
        for org in &tenants.orgs {
            for id in &org.assistants {
                builder = builder.assistant(id.as_str(), org.id);
            }
            for id in &org.squads {
                builder = builder.squad(id.as_str(), org.id);
            }
            for id in &org.workflows {
                builder = builder.workflow(id.as_str(), org.id);
            }
            for id in &org.phone_numbers {
                builder = builder.phone_number(id.as_str(), org.id);
            }
            for slug in &org.slugs {
                builder = builder.slug(slug.as_str(), org.id);
            }
            for credential in &org.credentials {
                builder = builder.credential(org.id, credential.clone());
            }
        }
        let store = Arc::new(builder.build());
        Ok(Self::new(
            org_infos(&tenants),
            store.clone(),
            store,
            Calls::memory(),
            config,
        ))
    }

    /// The app over any tenant store, secret provider and call storage.
    pub fn new(
        orgs: HashMap<OrgId, OrgInfo>,
        store: Arc<dyn AssistantOrgStore>,
        secrets: Arc<dyn SecretProvider>,
        calls: Calls,
        config: Config,
    ) -> Self {
        // Installed before the first request, so that every count lands in it.
        prometheus();
        let state = AppState {
            orgs: Arc::new(orgs),
            calls,
            #[cfg(feature = "inbox")]
            inbox: config.inbox.clone(),
        };
        let mut verify =
            SignatureVerifyLayer::from_shared(secrets).replay_guard(config.replay_guard);
        if let Some(base) = config.public_url {
            verify = verify.public_url(base);
        }
        // With `--inbox`, queued types are persisted and answered behind the two layers; the
        // rest reaches `webhook`.
        #[cfg(feature = "inbox")]
        let queue = tower::util::option_layer(
            config
                .inbox
                .clone()
                .map(vapi_webhooks::inbox::InboxLayer::new),
        );
        #[cfg(not(feature = "inbox"))]
        let queue = tower::layer::util::Identity::new();
        // Tenant from the payload: saved assistants, squads and phone numbers.
        let by_payload = ServiceBuilder::new()
            .layer(OrgResolveLayer::from_shared(store.clone()))
            .layer(verify.clone())
            .layer(queue.clone());
        // Tenant from the URL: transient assistants and squads carry no id.
        let by_slug = ServiceBuilder::new()
            .layer(
                OrgResolveLayer::from_shared(store)
                    .locator(TenantLocator::path_after(format!("{WEBHOOK_PATH}/"))),
            )
            .layer(verify)
            .layer(queue);
        let router = Router::new()
            .route(WEBHOOK_PATH, post(webhook).layer(by_payload))
            .route(
                &format!("{WEBHOOK_PATH}/{{slug}}"),
                post(webhook).layer(by_slug),
            )
            .route("/api/calls", get(list_calls));
        #[cfg(feature = "inbox")]
        let router = router
            .route("/api/deliveries", get(list_deliveries))
            .route("/api/deliveries/{id}/retry", post(retry_delivery));
        let router = router
            .route("/healthz", get(|| async { "ok" }))
            .route("/metrics", get(metrics))
            .with_state(state)
            .layer(
                ServiceBuilder::new()
                    .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                        // Path only: a query may carry a tenant slug but never a secret; the
                        // body is never logged. The resolve layer fills in `org_id`.
                        tracing::info_span!(
                            "request",
                            method = %req.method(),
                            path = %bounded(req.uri().path()),
                            org_id = tracing::field::Empty,
                            tenant_key_kind = tracing::field::Empty,
                            tenant_key_source = tracing::field::Empty,
                        )
                    }))
                    .layer(TimeoutLayer::with_status_code(
                        StatusCode::REQUEST_TIMEOUT,
                        config.request_timeout,
                    )),
            );
        Self { router }
    }

    /// Serves on `listener` until `shutdown` completes, then drains in-flight requests.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Names, first assistants and API key digests from a tenants file.
pub fn org_infos(tenants: &Tenants) -> HashMap<OrgId, OrgInfo> {
    tenants
        .orgs
        .iter()
        .map(|org| {
            (
                org.id,
                OrgInfo {
                    name: org.name.clone(),
                    first_assistant: org.assistants.first().cloned(),
                    api_key_digest: Sha256::digest(org.api_key.expose().as_bytes()).into(),
                },
            )
        })
        .collect()
}

fn empty_ack() -> Response {
    (StatusCode::OK, axum::Json(serde_json::json!({}))).into_response()
}

async fn webhook(State(state): State<AppState>, Org(org): Org, event: VapiEvent) -> Response {
    let org_id = org.org_id;
    let info = state.orgs.get(&org_id);
    let name = info.map_or_else(|| org_id.to_string(), |info| info.name.clone());
    tracing::info!(org = %org_id, message_type = %bounded(event.type_name()), "vapi message");
    match &*event {
        ServerMessage::AssistantRequest(_) => {
            match info.and_then(|info| info.first_assistant.as_deref()) {
                Some(id) => AssistantReply::assistant_id(id).into_response(),
                None => AssistantReply::error(format!("{name} has no assistant configured"))
                    .into_response(),
            }
        }
        ServerMessage::ToolCalls(message) => ToolCallsReply::new(
            message
                .calls()
                .into_iter()
                .map(|call| {
                    ToolCallResult::ok(
                        call.id.as_str(),
                        call.name.as_str(),
                        format!("{name} handled tool {}", call.name),
                    )
                })
                .collect(),
        )
        .into_response(),
        ServerMessage::FunctionCall(message) => {
            let function = message
                .function_call
                .as_ref()
                .map_or("(unnamed)", |call| call.name.as_str());
            FunctionCallReply::new(format!("{name} handled function {function}")).into_response()
        }
        ServerMessage::EndOfCallReport(report) => {
            let record = CallRecord {
                call_id: report.call.as_ref().and_then(|call| call.id.clone()),
                ended_reason: report.ended_reason.as_ref().map(|r| r.as_str().to_owned()),
                received_at: now_rfc3339(),
                summary: report.summary().map(str::to_owned),
            };
            match state.calls.store(org_id, record).await {
                Ok(stored) => {
                    tracing::info!(org = %org_id, stored, "end-of-call report");
                    empty_ack()
                }
                Err(err) => {
                    tracing::warn!(org = %org_id, error = %err, "could not store an end-of-call report");
                    unavailable()
                }
            }
        }
        _ => empty_ack(),
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({ "error": "unauthorized" })),
    )
        .into_response()
}

/// The answer of the deliveries routes without `--inbox`.
#[cfg(feature = "inbox")]
fn inbox_off() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": "the inbox is off (start with --inbox)" })),
    )
        .into_response()
}

#[cfg(feature = "inbox")]
async fn list_deliveries(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(org) = api_key_org(&state, &headers) else {
        return unauthorized();
    };
    match &state.inbox {
        Some(inbox) => crate::inbox::deliveries(inbox, org).await,
        None => inbox_off(),
    }
}

#[cfg(feature = "inbox")]
async fn retry_delivery(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(org) = api_key_org(&state, &headers) else {
        return unauthorized();
    };
    match &state.inbox {
        Some(inbox) => crate::inbox::retry(inbox, org, &id).await,
        None => inbox_off(),
    }
}

async fn list_calls(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(org) = api_key_org(&state, &headers) else {
        return unauthorized();
    };
    match state.calls.list(org).await {
        Ok(calls) => axum::Json(calls).into_response(),
        Err(err) => {
            tracing::warn!(org = %org, error = %err, "could not list calls");
            unavailable()
        }
    }
}

/// The org whose API key is the bearer token, compared in constant time over every org.
fn api_key_org(state: &AppState, headers: &HeaderMap) -> Option<OrgId> {
    let token = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut found = None;
    for (id, info) in state.orgs.iter() {
        if bool::from(info.api_key_digest.ct_eq(&digest)) {
            found = Some(*id);
        }
    }
    found
}

pub fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        axum::Json(serde_json::json!({ "error": "service unavailable" })),
    )
        .into_response()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `GET /metrics`: the crate's counters and histograms (and the app's), in Prometheus text.
async fn metrics() -> Response {
    match prometheus() {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response(),
    }
}

/// The process's Prometheus recorder, installed on first use (one per process, however many
/// apps it serves).
pub fn prometheus() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .map_err(|err| tracing::warn!(error = %err, "no metrics recorder"))
                .ok()
        })
        .as_ref()
}
