//! The example server over real HTTP: several orgs, tenant isolation, the tenants file.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use vapi_webhooks::testing::Signer;

#[path = "../examples/server/app.rs"]
#[allow(dead_code)]
mod app;
#[cfg(feature = "inbox")]
#[path = "../examples/server/inbox.rs"]
#[allow(dead_code)]
mod inbox;
#[cfg(feature = "postgres")]
#[path = "../examples/server/pg.rs"]
#[allow(dead_code)]
mod pg;
#[path = "../examples/server/tenants.rs"]
#[allow(dead_code)]
mod tenants;

use tenants::Tenants;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vapi");
const ORG_A: &str = "a0000000-0000-0000-0000-000000000001";
const ORG_B_ASSISTANT: &str = "7d4c2e1a-5b3f-4a8e-9c6d-2f1e0b9a8c7d";

fn demo_tenants() -> Tenants {
    Tenants::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/tenants.toml"
    )))
    .expect("the demo tenants file is valid")
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture");
    serde_json::from_slice(&text).expect("fixture is JSON")
}

/// A running server on an ephemeral port, stopped on drop.
struct Server {
    base: String,
    tenants: Tenants,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl Server {
    async fn start() -> Self {
        let tenants = demo_tenants();
        let app = app::App::in_memory(tenants.clone(), app::Config::default()).expect("app");
        Self::serve(app, tenants).await
    }

    async fn serve(app: app::App, tenants: Tenants) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{addr}"),
            tenants,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            _stop: stop,
        }
    }

    /// POSTs `body` to `path`, signed with credential `index` of the org named `org`.
    async fn post_signed(
        &self,
        path: &str,
        org: &str,
        index: usize,
        body: &[u8],
    ) -> (StatusCode, String) {
        let org = self
            .tenants
            .orgs
            .iter()
            .find(|o| o.name == org)
            .expect("org");
        let url = format!("{}{path}", self.base);
        let headers = Signer::new(&org.credentials[index])
            .url(url.clone())
            .headers(body);
        self.post(&url, headers, body.to_vec()).await
    }

    async fn post(
        &self,
        url: &str,
        headers: http::HeaderMap,
        body: Vec<u8>,
    ) -> (StatusCode, String) {
        let res = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .headers(headers)
            .body(body)
            .send()
            .await
            .expect("request");
        let status = res.status();
        (status, res.text().await.unwrap())
    }

    async fn calls(&self, api_key: &str) -> (StatusCode, Value) {
        let res = self
            .client
            .get(format!("{}/api/calls", self.base))
            .bearer_auth(api_key)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// A copy of fixture `name` whose only tenant key is `assistant` (its phone number removed).
fn naming_assistant(name: &str, assistant: &str) -> Value {
    let mut message = fixture(name);
    message["message"]["call"]["phoneNumberId"] = Value::Null;
    message["message"]["phoneNumber"] = Value::Null;
    message["message"]["call"]["assistantId"] = json!(assistant);
    message
}

fn tool_calls_for_assistant(assistant: &str) -> Vec<u8> {
    serde_json::to_vec(&naming_assistant("vapi4k_toolRequest1.json", assistant)).unwrap()
}

fn end_of_call_report(call_id: &str) -> Vec<u8> {
    let mut message = fixture("vapi4k_endOfCallReportRequest.json");
    message["message"]["call"]["id"] = json!(call_id);
    serde_json::to_vec(&message).unwrap()
}

#[tokio::test]
async fn healthz_answers() {
    let server = Server::start().await;
    let res = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn each_org_answers_tool_calls_with_its_own_name() {
    let server = Server::start().await;
    // Org A: tenant from the payload (the fixture's phone number), x-vapi-signature HMAC.
    let body = std::fs::read(format!("{FIXTURES}/vapi4k_toolRequest1.json")).unwrap();
    let (status, reply) = server
        .post_signed("/api/webhooks/vapi", "Org A", 0, &body)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        serde_json::from_str::<Value>(&reply).unwrap(),
        json!({"results": [{
            "toolCallId": "call_51kj",
            "name": "getWeatherByCity_001",
            "result": "Org A handled tool getWeatherByCity_001"
        }]})
    );
    // Org B: tenant from the payload (its assistant), Standard Webhooks.
    let (status, reply) = server
        .post_signed(
            "/api/webhooks/vapi",
            "Org B",
            0,
            &tool_calls_for_assistant(ORG_B_ASSISTANT),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(
        reply["results"][0]["result"],
        "Org B handled tool getWeatherByCity_001"
    );
    assert_eq!(reply["results"][0]["toolCallId"], "call_51kj");
    // Org C: tenant from the URL, bearer token.
    let (status, reply) = server
        .post_signed("/api/webhooks/vapi/org-c", "Org C", 0, &body)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(
        reply["results"][0]["result"],
        "Org C handled tool getWeatherByCity_001"
    );
    for result in reply["results"].as_array().unwrap() {
        assert!(!result["result"].as_str().unwrap().contains('\n'));
    }
}

#[tokio::test]
async fn assistant_and_function_requests_get_the_orgs_answers() {
    let server = Server::start().await;
    let body = std::fs::read(format!("{FIXTURES}/vapi4k_assistantRequest.json")).unwrap();
    let (status, reply) = server
        .post_signed("/api/webhooks/vapi", "Org A", 0, &body)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&reply).unwrap(),
        json!({"assistantId": "52b585b4-f84f-44c0-b0fd-4e3641a63a28"})
    );
    let body = std::fs::read(format!("{FIXTURES}/mbvapi4k_functionCall.json")).unwrap();
    let (status, reply) = server
        .post_signed("/api/webhooks/vapi/org-c", "Org C", 0, &body)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&reply).unwrap(),
        json!({"result": "Org C handled function getFavFoodInChicago_001"})
    );
}

#[tokio::test]
async fn end_of_call_report_is_stored_once_and_listed_only_for_its_org() {
    let server = Server::start().await;
    let body = end_of_call_report("call-stored-once");
    let (status, reply) = server
        .post_signed("/api/webhooks/vapi", "Org A", 0, &body)
        .await;
    assert_eq!((status, reply.as_str()), (StatusCode::OK, "{}"));
    // The same report again (a new signature, so not a replay): still stored once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = server
        .post_signed("/api/webhooks/vapi", "Org A", 0, &body)
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, calls) = server.calls("key-a").await;
    assert_eq!(status, StatusCode::OK);
    let calls = calls.as_array().expect("a JSON array");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["callId"], "call-stored-once");
    assert_eq!(calls[0]["endedReason"], "customer-ended-call");
    assert!(calls[0]["receivedAt"].as_str().unwrap().ends_with('Z'));
    for other in ["key-b", "key-c"] {
        assert_eq!(server.calls(other).await, (StatusCode::OK, json!([])));
    }
    assert_eq!(server.calls("key-x").await.0, StatusCode::UNAUTHORIZED);
    let res = reqwest::get(format!("{}/api/calls", server.base))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cross_tenant_and_tampered_requests_are_refused_and_store_nothing() {
    let server = Server::start().await;
    // A payload naming Org B's assistant, signed with Org A's valid credential.
    let message = naming_assistant("vapi4k_endOfCallReportRequest.json", ORG_B_ASSISTANT);
    let body = serde_json::to_vec(&message).unwrap();
    let (status, reply) = server
        .post_signed("/api/webhooks/vapi", "Org A", 0, &body)
        .await;
    assert_eq!(
        (status, reply.as_str()),
        (StatusCode::UNAUTHORIZED, r#"{"error":"unauthorized"}"#)
    );

    // Org A's own report, signed by Org A, then one byte changed.
    let body = end_of_call_report("call-tampered");
    let org_a = &server.tenants.orgs[0];
    let url = format!("{}/api/webhooks/vapi", server.base);
    let headers = Signer::new(&org_a.credentials[0])
        .url(url.clone())
        .headers(&body);
    // Still valid JSON naming the same tenant: only the signature can tell.
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("customer-ended-call", "customer-ended-calm")
        .into_bytes();
    assert_ne!(tampered, body);
    let (status, reply) = server.post(&url, headers, tampered).await;
    assert_eq!(
        (status, reply.as_str()),
        (StatusCode::UNAUTHORIZED, r#"{"error":"unauthorized"}"#)
    );

    // Unsigned.
    let (status, _) = server.post(&url, http::HeaderMap::new(), body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for key in ["key-a", "key-b", "key-c"] {
        assert_eq!(
            server.calls(key).await,
            (StatusCode::OK, json!([])),
            "{key}"
        );
    }
}

#[tokio::test]
async fn transient_assistant_payloads_are_served_through_the_slug_route() {
    let server = Server::start().await;
    let body = std::fs::read(format!("{FIXTURES}/mbvapi4k_statusUpdate2.json")).unwrap();
    // No tenant key in the payload but an unmapped Vapi org id: the payload route cannot
    // place it, and answers like for any unknown key.
    let (status, _) = server
        .post_signed("/api/webhooks/vapi", "Org B", 0, &body)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, reply) = server
        .post_signed("/api/webhooks/vapi/org-b", "Org B", 0, &body)
        .await;
    assert_eq!((status, reply.as_str()), (StatusCode::OK, "{}"));
    // Another org's slug with Org B's signature.
    let (status, _) = server
        .post_signed("/api/webhooks/vapi/org-a", "Org B", 0, &body)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An unknown slug: the same 401.
    let (status, reply) = server
        .post_signed("/api/webhooks/vapi/org-zz", "Org B", 0, &body)
        .await;
    assert_eq!(
        (status, reply.as_str()),
        (StatusCode::UNAUTHORIZED, r#"{"error":"unauthorized"}"#)
    );
}

#[tokio::test]
async fn a_rotated_out_credential_no_longer_verifies() {
    let server = Server::start().await;
    let body = std::fs::read(format!("{FIXTURES}/mbvapi4k_statusUpdate2.json")).unwrap();
    // Org B's legacy shared secret expired on 2026-01-01.
    let (status, _) = server
        .post_signed("/api/webhooks/vapi/org-b", "Org B", 1, &body)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_replayed_delivery_is_acknowledged_without_running_the_handler_twice() {
    let server = Server::start().await;
    let body = end_of_call_report("call-replayed");
    let url = format!("{}/api/webhooks/vapi", server.base);
    let headers = Signer::new(&server.tenants.orgs[0].credentials[0])
        .url(url.clone())
        .headers(&body);
    let first = server.post(&url, headers.clone(), body.clone()).await;
    assert_eq!(first, (StatusCode::OK, "{}".to_owned()));
    let again = server.post(&url, headers, body).await;
    assert_eq!(again, (StatusCode::OK, String::new()));
    let (_, calls) = server.calls("key-a").await;
    assert_eq!(calls.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn authentic_deliveries_are_never_refused_for_their_content() {
    const ORG_A_ASSISTANT: &str = "52b585b4-f84f-44c0-b0fd-4e3641a63a28";
    let server = Server::start().await;
    let cases = [
        // The seed design's own flat test payload.
        format!(
            r#"{{"type":"call.started","call":{{"id":"call-12345","assistantId":"{ORG_A_ASSISTANT}","customer":{{"number":"+1-555-0001"}}}}}}"#
        ),
        // A text chat: the only id is chat.assistantId.
        format!(
            r#"{{"message":{{"type":"chat.created","chat":{{"id":"chat-1","assistantId":"{ORG_A_ASSISTANT}"}}}}}}"#
        ),
        // A schema-valid timestamp far past year 9999.
        format!(
            r#"{{"message":{{"type":"status-update","status":"ended","timestamp":260000000000000,"call":{{"assistantId":"{ORG_A_ASSISTANT}"}}}}}}"#
        ),
        // tool-calls without `type`.
        format!(
            r#"{{"message":{{"toolCallList":[],"call":{{"assistantId":"{ORG_A_ASSISTANT}"}}}}}}"#
        ),
    ];
    for body in &cases {
        let (status, reply) = server
            .post_signed("/api/webhooks/vapi", "Org A", 0, body.as_bytes())
            .await;
        // `{}` or a tool-calls reply: only the handler answers that (a replay is empty).
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(reply.starts_with('{'), "{body}: {reply}");
    }
    // A known field of the wrong type in an end-of-call report: stored all the same.
    let mut report: Value =
        serde_json::from_slice(&end_of_call_report("call-wrong-types")).unwrap();
    report["message"]["cost"] = json!("not a number");
    report["message"]["endedReason"] = json!(42);
    let (status, reply) = server
        .post_signed(
            "/api/webhooks/vapi",
            "Org A",
            0,
            &serde_json::to_vec(&report).unwrap(),
        )
        .await;
    assert_eq!((status, reply.as_str()), (StatusCode::OK, "{}"));
    let (_, calls) = server.calls("key-a").await;
    assert!(
        calls
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["callId"] == "call-wrong-types"),
        "{calls}"
    );
}

/// Everything logged while `f` runs on this thread (the server's tasks run here too).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn request_text_in_logs_is_bounded() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = Server::start().await;
    // An unsigned request with a 60 KB slug, and a signed one with a 2,000-character type.
    let slug = "s".repeat(60_000);
    let (status, _) = server
        .post(
            &format!("{}/api/webhooks/vapi/{slug}", server.base),
            http::HeaderMap::new(),
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let long_type = format!(
        r#"{{"message":{{"type":"{}","call":{{"assistantId":"52b585b4-f84f-44c0-b0fd-4e3641a63a28"}}}}}}"#,
        "t".repeat(2_000)
    );
    let (status, _) = server
        .post_signed("/api/webhooks/vapi", "Org A", 0, long_type.as_bytes())
        .await;
    assert_eq!(status, StatusCode::OK);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("vapi message"), "{logs}");
    for line in logs.lines() {
        assert!(line.len() < 1_000, "a {}-byte log line", line.len());
    }
    assert!(!logs.contains(&"s".repeat(200)));
    assert!(!logs.contains(&"t".repeat(200)));
}

#[tokio::test]
async fn metrics_count_each_org_and_outcome() {
    let server = Server::start().await;
    let body = tool_calls_for_assistant("52b585b4-f84f-44c0-b0fd-4e3641a63a28");
    let (status, _) = server
        .post_signed("/api/webhooks/vapi", "Org A", 0, &body)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Org B's credential (other headers) on Org A's assistant: refused, counted under Org A.
    let (status, _) = server
        .post_signed("/api/webhooks/vapi", "Org B", 0, &body)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let res = server
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    for line in [
        format!(r#"vapi_webhooks_requests_total{{org="{ORG_A}",outcome="accepted"}}"#),
        format!(r#"vapi_webhooks_requests_total{{org="{ORG_A}",outcome="missing_signature"}}"#),
        format!(r#"vapi_webhooks_verify_seconds_count{{org="{ORG_A}",outcome="accepted"}}"#),
    ] {
        assert!(text.contains(&line), "{line} not in:\n{text}");
    }
    // Labels hold org ids and fixed names only.
    assert!(!text.contains("52b585b4"), "{text}");
}

fn refused(text: &str) -> tenants::TenantsError {
    Tenants::parse("bad.toml", text).expect_err("the file must be refused")
}

const GOOD_ORG: &str = r#"
[[org]]
id = "a0000000-0000-0000-0000-000000000001"
name = "Org A"
api_key = "key-a"
assistants = ["asst-1"]

[[org.credential]]
kind = "bearer"
secret = "token"
"#;

#[test]
fn the_demo_tenants_file_loads() {
    let tenants = demo_tenants();
    assert_eq!(tenants.orgs.len(), 3);
    assert!(tenants.orgs.iter().all(|org| !org.credentials.is_empty()));
    assert_eq!(tenants.orgs[0].id.to_string(), ORG_A);
}

#[test]
fn tenants_file_errors_name_the_file_line_and_key() {
    let err = refused(&GOOD_ORG.replace("name = \"Org A\"", "name = \"Org A\"\ncolour = \"blue\""));
    assert_eq!((err.file.as_str(), err.line), ("bad.toml", 5), "{err}");
    assert!(err.to_string().contains("colour"), "{err}");

    let err = refused(&GOOD_ORG.replace("a0000000-0000-0000-0000-000000000001", "not-a-uuid"));
    assert_eq!((err.line, err.key.as_deref()), (3, Some("id")), "{err}");
    assert!(err.to_string().starts_with("bad.toml:3:"), "{err}");

    let err = refused(&GOOD_ORG.replace("secret = \"token\"", "secret = \"\""));
    assert_eq!(
        (err.line, err.key.as_deref()),
        (10, Some("secret")),
        "{err}"
    );

    let err = refused(&GOOD_ORG.replace(
        "kind = \"bearer\"",
        "kind = \"bearer\"\nsignature_header = \"x\"",
    ));
    assert_eq!(err.key.as_deref(), Some("credential"), "{err}");

    let err = refused(&GOOD_ORG.replace(
        "secret = \"token\"",
        "secret = \"token\"\nnot_after = \"tomorrow\"",
    ));
    assert_eq!(
        (err.line, err.key.as_deref()),
        (11, Some("not_after")),
        "{err}"
    );
}

#[test]
fn secrets_of_the_wrong_type_are_refused_without_being_printed() {
    for (from, to) in [
        ("secret = \"token\"", "secret = 31337999111"),
        ("api_key = \"key-a\"", "api_key = 31337999111"),
        ("secret = \"token\"", "secret = 31337.999111"),
        ("secret = \"token\"", "secret = [31337999111]"),
    ] {
        let err = refused(&GOOD_ORG.replace(from, to));
        let text = format!("{err} {err:?}");
        assert!(!text.contains("31337"), "{text}");
        assert!(text.contains("expected a string secret"), "{text}");
    }
}

#[test]
fn a_key_listed_by_two_orgs_is_refused() {
    let second = GOOD_ORG
        .replace(
            "a0000000-0000-0000-0000-000000000001",
            "b0000000-0000-0000-0000-000000000002",
        )
        .replace("Org A", "Org B")
        .replace("key-a", "key-b");
    let err = refused(&format!("{GOOD_ORG}{second}"));
    assert_eq!(err.key.as_deref(), Some("assistants"), "{err}");
    assert_eq!(err.line, 16, "{err}");
    assert!(err.message.contains("Org A"), "{err}");

    let err = refused(&format!(
        "{GOOD_ORG}{}",
        second.replace("asst-1", "asst-2").replace("key-b", "key-a")
    ));
    assert_eq!(err.key.as_deref(), Some("api_key"), "{err}");
    assert!(
        !err.to_string().contains("key-a"),
        "an API key is never echoed: {err}"
    );

    let err = refused(&format!(
        "{GOOD_ORG}{}",
        second.replace("asst-1", "asst-2").replace(
            "b0000000-0000-0000-0000-000000000002",
            "a0000000-0000-0000-0000-000000000001"
        )
    ));
    assert_eq!(err.key.as_deref(), Some("id"), "{err}");
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    #[tokio::test]
    async fn the_calls_store_never_prints_the_database_password() {
        use vapi_webhooks::postgres::sqlx::postgres::PgPoolOptions;
        // A lazy pool connects to nothing: the options alone hold the password.
        let pool = PgPoolOptions::new()
            .connect_lazy("postgres://app:hunter2-secret@127.0.0.1:5432/x")
            .unwrap();
        let calls = pg::PgCalls::new(pool);
        let printed = format!("{calls:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    fn database_url() -> Option<String> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("DATABASE_URL must be set under CI=true")
            }
            _ => {
                eprintln!(
                    "skipped: DATABASE_URL is not set, so the Postgres mode of the example server was not tested"
                );
                None
            }
        }
    }

    #[tokio::test]
    #[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
    async fn the_server_on_postgres_stores_calls_per_org_under_rls() {
        let Some(url) = database_url() else { return };
        let tenants = demo_tenants();
        let key = vapi_webhooks::postgres::EncryptionKey::generate();
        let backend = pg::connect(&url, None, key, Some(&tenants))
            .await
            .expect("postgres backend");
        let store = backend.store;
        let app = app::App::new(
            backend.orgs,
            store.clone(),
            store,
            app::Calls::Postgres(backend.calls),
            app::Config::default(),
        );
        let server = Server::serve(app, tenants).await;

        let call_id = format!("pg-{}", uuid::Uuid::new_v4());
        let body = end_of_call_report(&call_id);
        let (status, reply) = server
            .post_signed("/api/webhooks/vapi", "Org A", 0, &body)
            .await;
        assert_eq!((status, reply.as_str()), (StatusCode::OK, "{}"));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (status, _) = server
            .post_signed("/api/webhooks/vapi", "Org A", 0, &body)
            .await;
        assert_eq!(status, StatusCode::OK);

        let (status, calls) = server.calls("key-a").await;
        assert_eq!(status, StatusCode::OK);
        let mine: Vec<_> = calls
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["callId"] == call_id.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{calls}");
        let (_, calls_b) = server.calls("key-b").await;
        assert!(
            calls_b
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["callId"] != call_id.as_str()),
            "{calls_b}"
        );

        // Cross-tenant: Org B's assistant, Org A's signature → 401, nothing stored.
        let mut message = naming_assistant("vapi4k_endOfCallReportRequest.json", ORG_B_ASSISTANT);
        let cross_id = format!("pg-cross-{}", uuid::Uuid::new_v4());
        message["message"]["call"]["id"] = json!(cross_id);
        let (status, _) = server
            .post_signed(
                "/api/webhooks/vapi",
                "Org A",
                0,
                &serde_json::to_vec(&message).unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        for key in ["key-a", "key-b"] {
            let (_, calls) = server.calls(key).await;
            assert!(
                calls
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|c| c["callId"] != cross_id.as_str())
            );
        }

        // A NUL in an authentic report does not turn into a 5xx.
        let mut message = fixture("vapi4k_endOfCallReportRequest.json");
        let nul_id = format!("pg-nul-{}", uuid::Uuid::new_v4());
        message["message"]["call"]["id"] = json!(nul_id);
        message["message"]["summary"] = json!("a\u{0}b");
        let (status, _) = server
            .post_signed(
                "/api/webhooks/vapi",
                "Org A",
                0,
                &serde_json::to_vec(&message).unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
}
