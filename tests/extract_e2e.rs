//! End to end under axum: a real Vapi `tool-calls` fixture, signed with `testing::Signer`,
//! through `OrgResolveLayer` + `SignatureVerifyLayer` over an `InMemoryStore`, into a handler
//! taking `Org`, `VapiEvent` and `ToolCallsEvent`, answering with a `ToolCallsReply`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use uuid::Uuid;
use vapi_webhooks::testing::Signer;
use vapi_webhooks::vapi::reply::{ToolCallResult, ToolCallsReply};
use vapi_webhooks::{
    Credential, InMemoryStore, KeySource, Org, OrgId, OrgResolveLayer, SignatureVerifyLayer,
    TenantKey, ToolCallsEvent, VapiEvent,
};

const FIXTURE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/vapi/vapi4k_toolRequest1.json"
));
/// The fixture's `message.call.phoneNumberId`: the tenant key.
const PHONE_NUMBER_ID: &str = "4a5a04dc-dcbe-45b1-8f64-fd32a253d136";

/// What the handler saw, by value.
#[derive(Debug, PartialEq)]
struct Seen {
    org: OrgId,
    key: TenantKey,
    source: KeySource,
    event_type: String,
    call_id: Option<String>,
    /// (id, name, arguments) of every tool call, from `ToolCallsEvent`.
    calls: Vec<(String, String, HashMap<String, String>)>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn tools(
    State(log): State<Log>,
    Org(org): Org,
    event: VapiEvent,
    calls: ToolCallsEvent,
) -> ToolCallsReply {
    let seen = Seen {
        org: org.org_id,
        key: org.key.clone(),
        source: org.source.clone(),
        event_type: event.type_name().to_owned(),
        call_id: event.call().and_then(|c| c.id.clone()),
        calls: calls
            .calls()
            .into_iter()
            .map(|c| {
                (
                    c.id.clone(),
                    c.name.clone(),
                    c.arguments.parse().expect("string arguments"),
                )
            })
            .collect(),
    };
    log.lock().unwrap().push(seen);
    calls
        .calls()
        .into_iter()
        .map(|c| ToolCallResult::ok(&c.id, &c.name, format!("sunny for {}", org.org_id)))
        .collect()
}

fn routes(log: &Log) -> Router {
    Router::new()
        .route("/vapi/tools", post(tools))
        .with_state(log.clone())
}

async fn send(app: Router, body: &[u8], credential: &Credential) -> (StatusCode, String, String) {
    let mut req = Request::post("/vapi/tools")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap();
    req.headers_mut()
        .extend(Signer::new(credential).headers(body));
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn signed_fixture_reaches_typed_handler_and_reply_comes_back() {
    let (org, other) = (OrgId::new(Uuid::new_v4()), OrgId::new(Uuid::new_v4()));
    let credential = Credential::vapi_hmac("acme-secret").unwrap();
    let store = InMemoryStore::builder()
        .phone_number(PHONE_NUMBER_ID, org)
        .credential(org, credential.clone())
        .assistant("asst_other", other)
        .credential(other, Credential::vapi_hmac("other-secret").unwrap())
        .build();
    let log = Log::default();
    let app = routes(&log)
        .layer(SignatureVerifyLayer::new(store.clone()))
        .layer(OrgResolveLayer::new(store));

    let (status, content_type, body) = send(app.clone(), FIXTURE, &credential).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    assert_eq!(
        body,
        format!(
            r#"{{"results":[{{"toolCallId":"call_51kj","name":"getWeatherByCity_001","result":"sunny for {org}"}}]}}"#
        )
    );
    let arguments = HashMap::from([
        ("city".to_owned(), "Danville".to_owned()),
        ("state".to_owned(), "California".to_owned()),
    ]);
    assert_eq!(
        *log.lock().unwrap(),
        vec![Seen {
            org,
            key: TenantKey::PhoneNumber(PHONE_NUMBER_ID.into()),
            source: KeySource::Payload("message.call.phoneNumberId"),
            event_type: "tool-calls".to_owned(),
            call_id: Some("b1223960-1b4d-4585-91b8-a69b0f57ec2f".to_owned()),
            // Vapi repeats the call in three lists; the handler sees it once.
            calls: vec![(
                "call_51kj".to_owned(),
                "getWeatherByCity_001".to_owned(),
                arguments
            )],
        }]
    );

    // Signed with another org's secret: 401, handler not run.
    let forged = Credential::vapi_hmac("other-secret").unwrap();
    assert_eq!(
        send(app.clone(), FIXTURE, &forged).await,
        (
            StatusCode::UNAUTHORIZED,
            "application/json".to_owned(),
            r#"{"error":"unauthorized"}"#.to_owned()
        )
    );
    // One byte changed after signing: 401 too.
    let mut signed = Request::post("/vapi/tools")
        .body(Body::from(FIXTURE.to_vec()))
        .unwrap();
    signed
        .headers_mut()
        .extend(Signer::new(&credential).headers(FIXTURE));
    let tampered = String::from_utf8(FIXTURE.to_vec())
        .unwrap()
        .replacen("Danville", "Danvillf", 1);
    *signed.body_mut() = Body::from(tampered);
    let res = app.clone().oneshot(signed).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(log.lock().unwrap().len(), 1, "rejected requests never ran");
}

#[tokio::test]
async fn extractors_without_the_layers_are_500_naming_the_layer() {
    let credential = Credential::vapi_hmac("acme-secret").unwrap();
    let log = Log::default();
    // Signed, but nothing verifies it: the extractors refuse rather than trust the body.
    let (status, content_type, body) = send(routes(&log), FIXTURE, &credential).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(content_type, "application/json");
    assert_eq!(
        body,
        r#"{"error":"request was not verified: add SignatureVerifyLayer in front of handlers that use Vapi extractors"}"#
    );
    assert!(log.lock().unwrap().is_empty(), "handler not run");
}
