//! The fuzzers' invariants as properties, so that every CI run exercises them in seconds
//! (`fuzz/` runs the same checks for as long as one likes; see the README).

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use tower::{ServiceBuilder, ServiceExt};
use vapi_webhooks::body::Buffered;
use vapi_webhooks::credential::CredentialConfig;
use vapi_webhooks::resolve::probe;
use vapi_webhooks::testing::Signer;
use vapi_webhooks::{
    Credential, InMemoryStore, OrgId, OrgResolveLayer, ServerMessage, SignatureVerifyLayer,
    TenantLocator, Verifier,
};

/// A JSON string: plain ids, escapes, unicode, NUL, quotes.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,12}",
        any::<String>(),
        Just("a\u{0}b".to_owned()),
        Just("quo\"te\\".to_owned()),
    ]
}

/// A value that is not an id: other JSON types around tenant paths.
fn noise() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(Into::into),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Into::into),
        any::<bool>().prop_map(Into::into),
        id().prop_map(Into::into),
        Just(serde_json::json!({"nested": [1, {"a": "b"}]})),
    ]
}

/// Bodies shaped like Vapi messages, with tenant fields present, null, missing or mistyped.
fn message() -> impl Strategy<Value = String> {
    (
        prop::option::of(id()),
        prop::option::of(id()),
        prop::option::of(id()),
        prop::option::of(noise()),
        prop::bool::ANY,
        prop::sample::select(vec![
            "status-update",
            "end-of-call-report",
            "tool-calls",
            "chat.created",
            "brand-new",
        ]),
    )
        .prop_map(|(assistant, squad, phone, extra, flat, kind)| {
            let mut call = serde_json::Map::new();
            if let Some(a) = assistant {
                call.insert("assistantId".into(), a.into());
            }
            if let Some(s) = squad {
                call.insert("squadId".into(), s.into());
            }
            if let Some(p) = phone {
                call.insert("phoneNumberId".into(), p.into());
            }
            if let Some(extra) = extra {
                call.insert("cost".into(), extra);
            }
            let message = serde_json::json!({"type": kind, "call": call, "status": "ended"});
            if flat {
                message.to_string()
            } else {
                serde_json::json!({ "message": message }).to_string()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn probe_and_typed_parse_never_name_different_tenants(body in message()) {
        let keys = probe(body.as_bytes());
        let typed = ServerMessage::from_slice(body.as_bytes());
        if let (Ok(keys), Ok(message)) = (keys, typed) {
            if let Some(call) = message.call() {
                for (path, value) in [
                    ("message.call.assistantId", call.assistant_id.as_deref()),
                    ("message.call.squadId", call.squad_id.as_deref()),
                    ("message.call.phoneNumberId", call.phone_number_id.as_deref()),
                ] {
                    if let (Some(probed), Some(value)) = (keys.get(path), value) {
                        prop_assert_eq!(probed, value, "{}", path);
                    }
                }
            }
        }
    }

    #[test]
    fn the_probe_takes_any_bytes(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = probe(&body);
        let _ = ServerMessage::from_slice(&body);
    }

    #[test]
    fn headers_never_verify_without_the_secret(
        values in prop::collection::vec((0usize..6, prop::collection::vec(any::<u8>(), 0..96)), 0..8),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        const NAMES: [&str; 6] = ["x-signature", "x-timestamp", "webhook-id", "webhook-timestamp", "webhook-signature", "authorization"];
        let credentials = [
            Credential::vapi_hmac("prop-secret").unwrap(),
            Credential::standard_webhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            Credential::bearer("prop-token-long-enough").unwrap(),
        ];
        let mut headers = HeaderMap::new();
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.append(HeaderName::from_static(NAMES[name]), value);
            }
        }
        let result = Verifier::new().verify(&credentials, &Method::POST, &Uri::from_static("/"), &headers, &body);
        prop_assert!(result.is_err());
        prop_assert_eq!(result.unwrap_err().status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn a_signed_body_verifies_whatever_it_holds(body in prop::collection::vec(any::<u8>(), 0..1024)) {
        let credential = Credential::vapi_hmac("prop-secret").unwrap();
        let headers = Signer::new(&credential).headers(&body);
        let verified = Verifier::new().verify(&[credential], &Method::POST, &Uri::from_static("/"), &headers, &body);
        prop_assert!(verified.is_ok());
    }

    #[test]
    fn credential_configs_never_panic_nor_print_secrets(
        kind in prop::sample::select(vec!["hmac", "bearer", "secret-header", "standard-webhooks", "other"]),
        secret in "[A-Za-z0-9+/=_]{8,40}",
        timestamp_header in prop::option::of("[a-z-]{0,12}"),
        payload_format in prop::option::of("[{}a-z.\\-]{0,24}"),
    ) {
        let mut text = format!("kind = {kind:?}\nsecret = {secret:?}\n");
        if let Some(h) = &timestamp_header {
            text.push_str(&format!("timestamp_header = {h:?}\n"));
        }
        if let Some(f) = &payload_format {
            text.push_str(&format!("payload_format = {f:?}\n"));
        }
        if let Ok(config) = toml::from_str::<CredentialConfig>(&text) {
            match config.build() {
                Ok(credential) => {
                    let debug = format!("{:?}", credential);
                    prop_assert!(!debug.contains(&secret));
                }
                Err(err) => prop_assert!(!err.to_string().contains(&secret)),
            }
        }
    }

    #[test]
    fn unsigned_requests_get_only_documented_answers(
        path in "[a-z0-9%./-]{0,40}",
        body in prop_oneof![message(), any::<String>()],
        tenant_header in prop::option::of("[a-z-]{0,10}"),
    ) {
        let org: OrgId = "a0000000-0000-0000-0000-000000000001".parse().unwrap();
        let store = InMemoryStore::builder()
            .assistant("asst-1", org)
            .vapi_org("vorg-1", org)
            .slug("org-a", org)
            .credential(org, Credential::vapi_hmac("prop-secret").unwrap())
            .build();
        let service = ServiceBuilder::new()
            .layer(
                OrgResolveLayer::new(store.clone())
                    .locator(TenantLocator::path_after("/vapi/"))
                    .locator(TenantLocator::header(HeaderName::from_static("x-tenant")))
                    .locator(TenantLocator::payload())
                    .body_limit(1024),
            )
            .layer(SignatureVerifyLayer::new(store))
            .service_fn(|_: Request<Buffered>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"handled"))))
            });
        let Ok(mut req) = Request::post(format!("/vapi/{path}")).body(Full::new(Bytes::from(body))) else {
            return Ok(());
        };
        if let Some(tenant) = tenant_header {
            req.headers_mut().insert("x-tenant", HeaderValue::from_str(&tenant).unwrap());
        }
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (status, text) = runtime.block_on(async {
            let res = service.oneshot(req).await.unwrap();
            let status = res.status();
            (status, res.into_body().collect().await.unwrap().to_bytes())
        });
        let expected: &[u8] = match status {
            StatusCode::BAD_REQUEST => br#"{"error":"bad request"}"#,
            StatusCode::UNAUTHORIZED => br#"{"error":"unauthorized"}"#,
            StatusCode::PAYLOAD_TOO_LARGE => br#"{"error":"payload too large"}"#,
            other => return Err(TestCaseError::fail(format!("undocumented answer {other}"))),
        };
        prop_assert_eq!(&text[..], expected);
    }
}
