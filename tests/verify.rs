//! SignatureVerifyLayer: every verification rule, pinned by status, body, handler runs and the
//! typed rejection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::routing::post;
use axum::{Extension, Router};
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};
use vapi_webhooks::body::Buffered;
use vapi_webhooks::credential::{
    CredentialConfig, HmacAlgorithm, HmacCredential, KindName, SecretString, SignatureEncoding,
};
use vapi_webhooks::reject::Reason;
use vapi_webhooks::testing::Signer;
use vapi_webhooks::verify::{
    Credentials, MAX_SIGNATURE_CANDIDATES, SecretError, SecretProvider, TimestampUnit, VerifyError,
};
use vapi_webhooks::{
    Credential, CredentialError, KeySource, OrgContext, OrgId, Rejection, SignatureVerifyLayer,
    SingleTenant, TenantKey, Verified,
};

const UNAUTHORIZED: &[u8] = br#"{"error":"unauthorized"}"#;
const HOST: &str = "hooks.example.com";
const NOW_SECS: u64 = 1_700_000_000;
const BODY: &[u8] = br#"{"message":{"type":"status-update","status":"ended"}}"#;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn secs(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

/// The app under test: `POST /hook` echoes the body, counts its runs and reports the `Verified`
/// org in `x-verified-org` (`-` for single tenant).
struct App {
    router: Router,
    runs: Arc<AtomicUsize>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    rejection: Option<Rejection>,
}

impl Reply {
    fn reason(&self) -> &Reason {
        self.rejection.as_ref().expect("a rejection").reason()
    }
}

fn echo_route(runs: Arc<AtomicUsize>) -> axum::routing::MethodRouter {
    post(
        move |Extension(verified): Extension<Verified>, body: Bytes| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let org = verified
                    .org
                    .map_or_else(|| "-".to_owned(), |org| org.to_string());
                ([("x-verified-org", org)], body)
            }
        },
    )
}

fn app<P: SecretProvider + ?Sized>(layer: SignatureVerifyLayer<P>) -> App {
    let runs = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route("/hook", echo_route(runs.clone()))
        .layer(layer);
    App { router, runs }
}

fn single(credential: &Credential) -> App {
    app(SignatureVerifyLayer::new(SingleTenant::new(credential.clone())).clock(now))
}

fn request(headers: HeaderMap, body: impl Into<Bytes>) -> Request<Body> {
    let mut req = Request::post("/hook")
        .header(http::header::HOST, HOST)
        .body(Body::from(body.into()))
        .unwrap();
    req.headers_mut().extend(headers);
    req
}

async fn reply(res: Response<Body>) -> Reply {
    let (parts, body) = res.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
        rejection: parts.extensions.get::<Rejection>().cloned(),
    }
}

impl App {
    async fn send(&self, headers: HeaderMap, body: impl Into<Bytes>) -> Reply {
        self.send_request(request(headers, body)).await
    }

    async fn send_request(&self, req: Request<Body>) -> Reply {
        reply(self.router.clone().oneshot(req).await.unwrap()).await
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    /// Passes: 200, the handler ran once more and echoed the exact bytes.
    async fn assert_passes(&self, headers: HeaderMap, body: &[u8]) -> Reply {
        let before = self.runs();
        let reply = self.send(headers, Bytes::copy_from_slice(body)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "rejected: {:?}",
            reply.rejection
        );
        assert_eq!(reply.body, body);
        assert_eq!(self.runs(), before + 1);
        reply
    }

    /// The uniform 401, and the handler did not run.
    async fn assert_refused(&self, headers: HeaderMap, body: &[u8]) -> Reply {
        let before = self.runs();
        let reply = self.send(headers, Bytes::copy_from_slice(body)).await;
        assert_unauthorized(&reply);
        assert_eq!(self.runs(), before, "the handler ran on a rejected request");
        reply
    }
}

fn assert_unauthorized(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "{:?}",
        reply.rejection
    );
    assert_eq!(reply.body, UNAUTHORIZED);
    assert_eq!(
        reply.headers[http::header::CONTENT_TYPE],
        "application/json"
    );
    assert!(
        matches!(reply.reason(), Reason::Verify(_)),
        "{:?}",
        reply.rejection
    );
}

type ReasonCheck = fn(&VerifyError) -> bool;

fn assert_reason(reply: &Reply, expected: ReasonCheck) {
    match reply.reason() {
        Reason::Verify(err) => assert!(expected(err), "unexpected reason {err:?}"),
        other => panic!("unexpected reason {other:?}"),
    }
}

fn with_header(mut headers: HeaderMap, name: &str, value: impl AsRef<[u8]>) -> HeaderMap {
    headers.insert(
        HeaderName::from_bytes(name.as_bytes()).unwrap(),
        HeaderValue::from_bytes(value.as_ref()).unwrap(),
    );
    headers
}

fn without(mut headers: HeaderMap, name: &str) -> HeaderMap {
    headers.remove(name);
    headers
}

fn github() -> Credential {
    Credential::hmac(
        HmacCredential::new(HmacAlgorithm::Sha256, "It's a Secret to Everybody")
            .unwrap()
            .signature_header(HeaderName::from_static("x-hub-signature-256"))
            .timestamp_header(None)
            .payload_format("{body}")
            .unwrap()
            .prefix("sha256="),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Published vectors

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TIMESTAMP: u64 = 1_614_265_330;
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

#[tokio::test]
async fn standard_webhooks_test_vector_passes() {
    let credential = Credential::standard_webhooks(SW_SECRET).unwrap();
    let app =
        app(SignatureVerifyLayer::new(SingleTenant::new(credential)).clock(|| secs(SW_TIMESTAMP)));
    let headers = HeaderMap::new();
    let headers = with_header(headers, "webhook-id", SW_ID);
    let headers = with_header(headers, "webhook-timestamp", SW_TIMESTAMP.to_string());
    let headers = with_header(headers, "webhook-signature", SW_SIGNATURE);
    let reply = app.assert_passes(headers.clone(), SW_BODY).await;
    assert_eq!(reply.headers["x-verified-org"], "-");

    // The same vector one byte off, or with another id, fails.
    app.assert_refused(headers.clone(), br#"{"test": 2432232315}"#)
        .await;
    app.assert_refused(with_header(headers, "webhook-id", "msg_other"), SW_BODY)
        .await;
}

#[test]
fn signer_reproduces_the_standard_webhooks_vector() {
    let credential = Credential::standard_webhooks(SW_SECRET).unwrap();
    let signer = Signer::new(&credential)
        .at(secs(SW_TIMESTAMP))
        .message_id(SW_ID);
    assert_eq!(signer.signature(SW_BODY), SW_SIGNATURE);
    let headers = signer.headers(SW_BODY);
    assert_eq!(headers.len(), 3);
    assert_eq!(headers["webhook-id"], SW_ID);
    assert_eq!(headers["webhook-timestamp"], "1614265330");
    assert_eq!(headers["webhook-signature"], SW_SIGNATURE);
}

#[tokio::test]
async fn standard_webhooks_interoperates_with_the_reference_crate() {
    let credential = Credential::standard_webhooks(SW_SECRET).unwrap();
    let reference = standardwebhooks::Webhook::new(SW_SECRET).unwrap();

    // Reference signer → our layer.
    let app = single(&credential);
    let signature = reference
        .sign("msg_interop", NOW_SECS as i64, BODY)
        .unwrap();
    let headers = with_header(HeaderMap::new(), "webhook-id", "msg_interop");
    let headers = with_header(headers, "webhook-timestamp", NOW_SECS.to_string());
    let headers = with_header(headers, "webhook-signature", signature);
    app.assert_passes(headers, BODY).await;

    // Our signer (auto-generated webhook-id, current time) → reference verifier.
    let headers = Signer::new(&credential).headers(BODY);
    assert!(headers["webhook-id"].to_str().unwrap().starts_with("msg_"));
    reference.verify(BODY, &headers).unwrap();
}

const GITHUB_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[tokio::test]
async fn github_style_body_only_hmac_passes() {
    let app = single(&github());
    let headers = with_header(HeaderMap::new(), "x-hub-signature-256", GITHUB_SIGNATURE);
    app.assert_passes(headers, b"Hello, World!").await;
    // Uppercase hex decodes to the same bytes.
    let upper = format!(
        "sha256={}",
        GITHUB_SIGNATURE["sha256=".len()..].to_uppercase()
    );
    app.assert_passes(
        with_header(HeaderMap::new(), "x-hub-signature-256", upper),
        b"Hello, World!",
    )
    .await;
    assert_eq!(
        Signer::new(&github()).signature(b"Hello, World!"),
        GITHUB_SIGNATURE
    );
    assert_eq!(
        Signer::new(&github()).headers(b"Hello, World!")["x-hub-signature-256"],
        GITHUB_SIGNATURE
    );
}

// ---------------------------------------------------------------------------------------------
// Bad signatures: one 401 for all, handler never runs

#[tokio::test]
async fn bad_signatures_get_the_same_401_and_never_reach_the_handler() {
    let credential = Credential::vapi_hmac("vapi-secret").unwrap();
    let app = single(&credential);
    let signer = Signer::new(&credential).at(now());
    let good = signer.headers(BODY);
    let signature = good["x-signature"].to_str().unwrap().to_owned();
    app.assert_passes(good.clone(), BODY).await;

    let sha1 =
        Credential::hmac(HmacCredential::new(HmacAlgorithm::Sha1, "vapi-secret").unwrap()).unwrap();
    let sha1_signature = Signer::new(&sha1).at(now()).signature(BODY);
    assert_eq!(sha1_signature.len(), 40);

    let reserialised = br#"{"message": {"type": "status-update", "status": "ended"}}"#;
    let mut tampered = BODY.to_vec();
    tampered[20] ^= 1;
    let cases: Vec<(&str, HeaderMap, &[u8], ReasonCheck)> = vec![
        ("tampered body", good.clone(), &tampered, |e| {
            matches!(e, VerifyError::InvalidSignature)
        }),
        ("re-serialised body", good.clone(), reserialised, |e| {
            matches!(e, VerifyError::InvalidSignature)
        }),
        (
            "missing signature",
            without(good.clone(), "x-signature"),
            BODY,
            |e| matches!(e, VerifyError::MissingSignature),
        ),
        (
            "empty signature",
            with_header(good.clone(), "x-signature", ""),
            BODY,
            |e| matches!(e, VerifyError::MissingSignature),
        ),
        (
            "truncated signature",
            with_header(good.clone(), "x-signature", &signature[..62]),
            BODY,
            |e| matches!(e, VerifyError::InvalidSignature),
        ),
        (
            "signature too long",
            with_header(good.clone(), "x-signature", format!("{signature}00")),
            BODY,
            |e| matches!(e, VerifyError::InvalidSignature),
        ),
        (
            "non-hex signature of the right length",
            with_header(good.clone(), "x-signature", "zz".repeat(32)),
            BODY,
            |e| matches!(e, VerifyError::InvalidSignature),
        ),
        (
            "sha1 for a sha256 credential",
            with_header(good.clone(), "x-signature", sha1_signature),
            BODY,
            |e| matches!(e, VerifyError::InvalidSignature),
        ),
        (
            "missing timestamp",
            without(good.clone(), "x-timestamp"),
            BODY,
            |e| matches!(e, VerifyError::MissingTimestamp),
        ),
        (
            "another secret",
            Signer::new(&Credential::vapi_hmac("other").unwrap())
                .at(now())
                .headers(BODY),
            BODY,
            |e| matches!(e, VerifyError::InvalidSignature),
        ),
    ];
    for (label, headers, body, reason) in cases {
        let reply = app.assert_refused(headers, body).await;
        assert_reason(&reply, reason);
        eprintln!("ok: {label}");
    }
    assert_eq!(app.runs(), 1);
}

#[tokio::test]
async fn truncated_and_malformed_standard_webhooks_signatures_are_refused() {
    let credential = Credential::standard_webhooks(SW_SECRET).unwrap();
    let app = single(&credential);
    let good = Signer::new(&credential).at(now()).headers(BODY);
    let signature = good["webhook-signature"].to_str().unwrap().to_owned();
    for bad in [
        "v1,".to_owned(),
        "v1".to_owned(),
        signature[3..].to_owned(),                             // no prefix
        signature.replacen("v1,", "v2,", 1),                   // another version
        format!("v1,{}", &signature[3..40]),                   // truncated base64
        format!("v1,{}!", &signature[3..signature.len() - 1]), // not base64
    ] {
        app.assert_refused(with_header(good.clone(), "webhook-signature", &bad), BODY)
            .await;
    }
    // Unpadded base64 decodes to the same bytes.
    let unpadded = signature.trim_end_matches('=').to_owned();
    app.assert_passes(with_header(good, "webhook-signature", unpadded), BODY)
        .await;
}

// ---------------------------------------------------------------------------------------------
// Timestamps

#[tokio::test]
async fn timestamp_window_is_inclusive_both_ways_in_seconds_and_millis() {
    let credential = Credential::vapi_hmac("vapi-secret").unwrap();
    let app = single(&credential);
    let now_s = NOW_SECS as i64;
    let now_ms = now_s * 1000;
    let signed = |ts: i64| {
        Signer::new(&credential)
            .raw_timestamp(ts.to_string())
            .headers(BODY)
    };
    for ts in [now_s, now_s - 299, now_s + 299, now_s - 300, now_s + 300] {
        app.assert_passes(signed(ts), BODY).await;
    }
    for ts in [
        now_ms,
        now_ms - 299_999,
        now_ms + 299_999,
        now_ms - 300_000,
        now_ms + 300_000,
    ] {
        app.assert_passes(signed(ts), BODY).await;
    }
    for ts in [now_s - 301, now_s + 301, now_ms - 300_001, now_ms + 300_001] {
        let reply = app.assert_refused(signed(ts), BODY).await;
        assert_reason(&reply, |e| matches!(e, VerifyError::TimestampOutOfWindow));
    }
    // The signer's own clock and unit land in the window.
    app.assert_passes(
        Signer::new(&credential).at(now()).millis().headers(BODY),
        BODY,
    )
    .await;
    app.assert_passes(
        Signer::new(&credential)
            .at(now() - Duration::from_secs(30))
            .headers(BODY),
        BODY,
    )
    .await;
}

#[tokio::test]
async fn timestamp_units_and_tolerance_are_configurable() {
    let credential = Credential::vapi_hmac("vapi-secret").unwrap();
    let layer = |unit| {
        app(
            SignatureVerifyLayer::new(SingleTenant::new(credential.clone()))
                .clock(now)
                .timestamp_unit(unit)
                .tolerance(Duration::from_secs(10)),
        )
    };
    let seconds = Signer::new(&credential).at(now()).headers(BODY);
    let millis = Signer::new(&credential).at(now()).millis().headers(BODY);
    let late = Signer::new(&credential)
        .at(now() - Duration::from_secs(11))
        .headers(BODY);

    let app_s = layer(TimestampUnit::Seconds);
    app_s.assert_passes(seconds.clone(), BODY).await;
    app_s.assert_refused(millis.clone(), BODY).await;
    app_s.assert_refused(late.clone(), BODY).await;

    let app_ms = layer(TimestampUnit::Millis);
    app_ms.assert_passes(millis.clone(), BODY).await;
    app_ms.assert_refused(seconds.clone(), BODY).await;

    let app_auto = layer(TimestampUnit::Auto);
    app_auto.assert_passes(seconds, BODY).await;
    app_auto.assert_passes(millis, BODY).await;
    app_auto.assert_refused(late, BODY).await;
}

#[tokio::test]
async fn odd_timestamp_spellings_are_refused_without_panicking() {
    let credential = Credential::vapi_hmac("vapi-secret").unwrap();
    let now_s = NOW_SECS.to_string();
    let malformed = [
        String::new(),
        format!("+{now_s}"),
        format!("0{now_s}"),
        "00".to_owned(),
        "-5".to_owned(),
        format!("-{now_s}"),
        i64::MIN.to_string(),
        "9223372036854775808".to_owned(),
        "99999999999999999999999999".to_owned(),
        "12a".to_owned(),
        "1.5".to_owned(),
        format!("{now_s}.0"),
        format!(" {now_s}"),
        format!("{now_s} "),
        "0x6553f100".to_owned(),
        "１７".to_owned(),
    ];
    for unit in [
        TimestampUnit::Auto,
        TimestampUnit::Seconds,
        TimestampUnit::Millis,
    ] {
        let app = app(
            SignatureVerifyLayer::new(SingleTenant::new(credential.clone()))
                .clock(now)
                .timestamp_unit(unit),
        );
        for ts in &malformed {
            // Signed correctly over the odd text, so only the timestamp rule can refuse it.
            let headers = Signer::new(&credential)
                .raw_timestamp(ts.as_str())
                .headers(BODY);
            let reply = app.assert_refused(headers, BODY).await;
            assert_reason(&reply, |e| matches!(e, VerifyError::InvalidTimestamp));
        }
        // Well-formed extremes are simply out of the window (no overflow on the way).
        for ts in [i64::MAX.to_string(), "0".to_owned(), "1".to_owned()] {
            let headers = Signer::new(&credential).raw_timestamp(ts).headers(BODY);
            let reply = app.assert_refused(headers, BODY).await;
            assert_reason(&reply, |e| matches!(e, VerifyError::TimestampOutOfWindow));
        }
    }
    // Two timestamp header lines are ambiguous.
    let app = single(&credential);
    let mut headers = Signer::new(&credential).at(now()).headers(BODY);
    headers.append("x-timestamp", HeaderValue::from_static("1700000000"));
    let reply = app.assert_refused(headers, BODY).await;
    assert_reason(&reply, |e| matches!(e, VerifyError::InvalidTimestamp));
}

#[tokio::test]
async fn a_credential_without_a_timestamp_header_skips_the_window() {
    // GitHub-style: no timestamp at all, so any clock passes.
    let app = app(SignatureVerifyLayer::new(SingleTenant::new(github())).clock(|| secs(0)));
    app.assert_passes(
        with_header(HeaderMap::new(), "x-hub-signature-256", GITHUB_SIGNATURE),
        b"Hello, World!",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Several signatures per header

#[tokio::test]
async fn one_valid_signature_among_several_passes_and_the_number_tried_is_bounded() {
    let credential = Credential::standard_webhooks(SW_SECRET).unwrap();
    let app = single(&credential);
    let good = Signer::new(&credential).at(now()).headers(BODY);
    let valid = good["webhook-signature"].to_str().unwrap().to_owned();
    let garbage = |n: usize| {
        (0..n)
            .map(|i| {
                format!(
                    "v1,{}",
                    base64::engine::general_purpose::STANDARD.encode([i as u8; 32])
                )
            })
            .collect::<Vec<_>>()
    };
    let header =
        |tokens: Vec<String>| with_header(good.clone(), "webhook-signature", tokens.join(" "));

    // A few garbage tokens (and tokens of other versions) around the valid one.
    let mut tokens = garbage(3);
    tokens.insert(1, "v1a,c29tZXRoaW5n".to_owned());
    tokens.insert(2, valid.clone());
    app.assert_passes(header(tokens), BODY).await;

    // The valid one as the last candidate tried passes; one further does not.
    let mut tokens = garbage(MAX_SIGNATURE_CANDIDATES - 1);
    tokens.push(valid.clone());
    app.assert_passes(header(tokens), BODY).await;
    let mut tokens = garbage(MAX_SIGNATURE_CANDIDATES);
    tokens.push(valid.clone());
    app.assert_refused(header(tokens), BODY).await;

    // 1,000 signatures: refused, the valid one at the end is never reached.
    let mut tokens = garbage(999);
    tokens.push(valid.clone());
    let reply = app.assert_refused(header(tokens), BODY).await;
    assert_reason(&reply, |e| matches!(e, VerifyError::InvalidSignature));

    // Tokens without the prefix are skipped and do not count; several header lines are read.
    let mut tokens = vec!["garbage".to_owned(); 100];
    tokens.push(valid.clone());
    app.assert_passes(header(tokens), BODY).await;
    let mut headers = with_header(good.clone(), "webhook-signature", garbage(2).join(" "));
    headers.append("webhook-signature", HeaderValue::from_str(&valid).unwrap());
    app.assert_passes(headers, BODY).await;
}

// ---------------------------------------------------------------------------------------------
// Credentials, rotation, providers

#[tokio::test]
async fn rotation_old_credential_passes_until_not_after() {
    let rotate_at = now() + Duration::from_secs(3600);
    let old = Credential::vapi_hmac("old-secret")
        .unwrap()
        .not_after(rotate_at);
    let new = Credential::vapi_hmac("new-secret").unwrap();
    let clock = Arc::new(Mutex::new(now()));
    let time = clock.clone();
    let app = app(
        SignatureVerifyLayer::new(SingleTenant::many([old.clone(), new.clone()]))
            .clock(move || *time.lock().unwrap()),
    );
    let at = |t: SystemTime, c: &Credential| Signer::new(c).at(t).headers(BODY);

    app.assert_passes(at(now(), &old), BODY).await;
    app.assert_passes(at(now(), &new), BODY).await;
    *clock.lock().unwrap() = rotate_at;
    app.assert_passes(at(rotate_at, &old), BODY).await;
    *clock.lock().unwrap() = rotate_at + Duration::from_secs(1);
    let after = rotate_at + Duration::from_secs(1);
    app.assert_refused(at(after, &old), BODY).await;
    app.assert_passes(at(after, &new), BODY).await;

    // Only the expired one left: no active credential.
    let app = app_with_clock(SingleTenant::new(old.clone()), after);
    let reply = app.assert_refused(at(after, &old), BODY).await;
    assert_reason(&reply, |e| matches!(e, VerifyError::NoCredentials));
}

fn app_with_clock(provider: SingleTenant, t: SystemTime) -> App {
    app(SignatureVerifyLayer::new(provider).clock(move || t))
}

#[test]
fn empty_secrets_are_refused_at_build() {
    assert_eq!(
        Credential::vapi_hmac("").unwrap_err(),
        CredentialError::EmptySecret
    );
    assert_eq!(
        Credential::vapi_signature("").unwrap_err(),
        CredentialError::EmptySecret
    );
    assert_eq!(
        Credential::standard_webhooks("").unwrap_err(),
        CredentialError::EmptySecret
    );
    assert_eq!(
        Credential::standard_webhooks("whsec_").unwrap_err(),
        CredentialError::EmptySecret
    );
    assert_eq!(
        Credential::secret_header(HeaderName::from_static("x-vapi-secret"), "").unwrap_err(),
        CredentialError::EmptySecret
    );
    assert_eq!(
        Credential::bearer("").unwrap_err(),
        CredentialError::EmptySecret
    );
    assert_eq!(
        HmacCredential::new(HmacAlgorithm::Sha512, Vec::new()).unwrap_err(),
        CredentialError::EmptySecret
    );
    assert_eq!(
        SecretString::new("").unwrap_err(),
        CredentialError::EmptySecret
    );
    assert!(toml::from_str::<CredentialConfig>("kind = \"hmac\"\nsecret = \"\"").is_err());
}

#[tokio::test]
async fn no_credentials_at_all_is_a_401() {
    let app = app(SignatureVerifyLayer::new(SingleTenant::many([])).clock(now));
    let signed = Signer::new(&Credential::vapi_hmac("x").unwrap())
        .at(now())
        .headers(BODY);
    let reply = app.assert_refused(signed, BODY).await;
    assert_reason(&reply, |e| matches!(e, VerifyError::NoCredentials));
}

/// A per-organisation provider, as a multi-tenant application would have.
struct Tenants(HashMap<OrgId, Vec<Credential>>);

#[async_trait::async_trait]
impl SecretProvider for Tenants {
    async fn credentials(&self, org: Option<&OrgId>) -> Result<Credentials, SecretError> {
        let org = org.ok_or(SecretError::OrgRequired)?;
        Ok(self.0.get(org).cloned().unwrap_or_default().into())
    }
}

struct Down;

#[async_trait::async_trait]
impl SecretProvider for Down {
    async fn credentials(&self, _org: Option<&OrgId>) -> Result<Credentials, SecretError> {
        Err(SecretError::Unavailable(Arc::new(std::io::Error::other(
            "connection refused",
        ))))
    }
}

fn org(n: u128) -> OrgId {
    OrgId::new(uuid::Uuid::from_u128(n))
}

fn context(org: OrgId) -> OrgContext {
    OrgContext::new(
        org,
        TenantKey::Assistant("asst".into()),
        KeySource::Payload("message.call.assistantId"),
    )
}

/// The multi-tenant app with an `OrgContext` for `org` (or none) put in by an outer layer.
fn tenant_app(provider: Arc<dyn SecretProvider>, org: Option<OrgId>) -> App {
    let runs = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route("/hook", echo_route(runs.clone()))
        .layer(SignatureVerifyLayer::from_shared(provider).clock(now));
    let router = match org {
        Some(org) => router.layer(Extension(context(org))),
        None => router,
    };
    App { router, runs }
}

#[tokio::test]
async fn each_org_is_verified_with_its_own_credentials() {
    let a = Credential::vapi_hmac("secret-of-a").unwrap();
    let b = Credential::bearer("token-of-b").unwrap();
    let provider: Arc<dyn SecretProvider> = Arc::new(Tenants(HashMap::from([
        (org(1), vec![a.clone()]),
        (org(2), vec![b.clone()]),
    ])));

    let app_a = tenant_app(provider.clone(), Some(org(1)));
    let reply = app_a
        .assert_passes(Signer::new(&a).at(now()).headers(BODY), BODY)
        .await;
    assert_eq!(reply.headers["x-verified-org"], org(1).to_string());
    // B's valid credential does not open A.
    let reply = app_a
        .assert_refused(Signer::new(&b).headers(BODY), BODY)
        .await;
    assert_eq!(reply.rejection.unwrap().org(), Some(&org(1)));

    let app_b = tenant_app(provider.clone(), Some(org(2)));
    app_b
        .assert_passes(Signer::new(&b).headers(BODY), BODY)
        .await;
    app_b
        .assert_refused(Signer::new(&a).at(now()).headers(BODY), BODY)
        .await;

    // An org without credentials: the same 401.
    let app_c = tenant_app(provider.clone(), Some(org(3)));
    let reply = app_c
        .assert_refused(Signer::new(&a).at(now()).headers(BODY), BODY)
        .await;
    assert_reason(&reply, |e| matches!(e, VerifyError::NoCredentials));
    assert_eq!(reply.rejection.unwrap().org(), Some(&org(3)));
}

#[tokio::test]
async fn a_multi_tenant_provider_without_org_context_is_a_500_naming_org_resolve_layer() {
    let a = Credential::vapi_hmac("secret-of-a").unwrap();
    let provider: Arc<dyn SecretProvider> =
        Arc::new(Tenants(HashMap::from([(org(1), vec![a.clone()])])));
    let app = tenant_app(provider, None);
    let reply = app
        .send(Signer::new(&a).at(now()).headers(BODY), BODY)
        .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        std::str::from_utf8(&reply.body)
            .unwrap()
            .contains("OrgResolveLayer")
    );
    assert!(matches!(
        reply.reason(),
        Reason::Verify(VerifyError::Provider(SecretError::OrgRequired))
    ));
    assert_eq!(app.runs(), 0);
}

#[tokio::test]
async fn a_failing_provider_is_a_503_with_retry_after() {
    let app = tenant_app(Arc::new(Down), Some(org(1)));
    let a = Credential::vapi_hmac("secret-of-a").unwrap();
    let reply = app
        .send(Signer::new(&a).at(now()).headers(BODY), BODY)
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers[http::header::RETRY_AFTER], "5");
    assert_eq!(reply.body, &br#"{"error":"service unavailable"}"#[..]);
    assert!(matches!(
        reply.reason(),
        Reason::Verify(VerifyError::Provider(SecretError::Unavailable(_)))
    ));
    assert_eq!(app.runs(), 0);
}

// ---------------------------------------------------------------------------------------------
// Credential kinds and configurations

#[tokio::test]
async fn secret_header_passes_only_with_the_exact_secret() {
    let credential =
        Credential::secret_header(HeaderName::from_static("x-vapi-secret"), "legacy-secret")
            .unwrap();
    let app = single(&credential);
    let signed = Signer::new(&credential).headers(BODY);
    assert_eq!(signed["x-vapi-secret"], "legacy-secret");
    app.assert_passes(signed.clone(), BODY).await;
    for bad in [
        "legacy-secreT",
        "legacy-secret ",
        "legacy-secre",
        "legacy-secretx",
        "Bearer legacy-secret",
    ] {
        app.assert_refused(with_header(HeaderMap::new(), "x-vapi-secret", bad), BODY)
            .await;
    }
    let reply = app.assert_refused(HeaderMap::new(), BODY).await;
    assert_reason(&reply, |e| matches!(e, VerifyError::MissingSignature));
    let mut twice = signed.clone();
    twice.append("x-vapi-secret", HeaderValue::from_static("legacy-secret"));
    app.assert_refused(twice, BODY).await;
}

#[tokio::test]
async fn bearer_requires_the_scheme_and_the_exact_token() {
    let credential = Credential::bearer("tok-123").unwrap();
    let app = single(&credential);
    let signed = Signer::new(&credential).headers(BODY);
    assert_eq!(signed[http::header::AUTHORIZATION], "Bearer tok-123");
    app.assert_passes(signed, BODY).await;
    // The scheme is case-insensitive (RFC 9110).
    app.assert_passes(
        with_header(HeaderMap::new(), "authorization", "bearer tok-123"),
        BODY,
    )
    .await;
    for bad in [
        "tok-123",
        "Basic tok-123",
        "Bearer  tok-123",
        "Bearer tok-1234",
        "Bearer tok-12",
        "Bearer",
        "Bearertok-123",
    ] {
        app.assert_refused(with_header(HeaderMap::new(), "authorization", bad), BODY)
            .await;
    }
    // Another header name.
    let custom = Credential::bearer_in(HeaderName::from_static("x-auth"), "tok-123").unwrap();
    let app = single(&custom);
    app.assert_passes(Signer::new(&custom).headers(BODY), BODY)
        .await;
    app.assert_refused(
        with_header(HeaderMap::new(), "authorization", "Bearer tok-123"),
        BODY,
    )
    .await;
}

fn templated() -> Credential {
    Credential::hmac(
        HmacCredential::new(HmacAlgorithm::Sha256, "template-secret")
            .unwrap()
            .payload_format("{method} {url}\n{svix-id}.{timestamp}.{body}")
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn method_url_and_message_id_templates() {
    let credential = templated();
    let app = app(
        SignatureVerifyLayer::new(SingleTenant::new(credential.clone()))
            .clock(now)
            .public_url(format!("https://{HOST}")),
    );
    let url = format!("https://{HOST}/hook?tenant=acme");
    let req = |headers: HeaderMap| {
        let mut req = request(headers, BODY);
        *req.uri_mut() = "/hook?tenant=acme".parse().unwrap();
        req
    };
    let signer = Signer::new(&credential)
        .at(now())
        .message_id("msg_1")
        .url(url.as_str());
    let headers = signer.headers(BODY);
    assert_eq!(headers["svix-id"], "msg_1");

    // `{url}` is the public URL + path and query; method, url and id are all covered.
    let reply = app.send_request(req(headers.clone())).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.rejection);
    for (label, headers) in [
        (
            "other url",
            signer
                .clone()
                .url(format!("https://{HOST}/hook?tenant=evil"))
                .headers(BODY),
        ),
        (
            "http url",
            signer
                .clone()
                .url(format!("http://{HOST}/hook?tenant=acme"))
                .headers(BODY),
        ),
        (
            "other method",
            signer.clone().method(Method::PUT).headers(BODY),
        ),
        ("other id", with_header(headers.clone(), "svix-id", "msg_2")),
    ] {
        let reply = app.send_request(req(headers)).await;
        assert_unauthorized(&reply);
        eprintln!("ok: {label}");
    }
    let reply = app
        .send_request(req(without(headers.clone(), "svix-id")))
        .await;
    assert_unauthorized(&reply);
    assert_reason(&reply, |e| matches!(e, VerifyError::MissingMessageId));
    assert_eq!(app.runs(), 1);

    // Nothing the client sends picks the host: an absolute request target is not trusted.
    let mut absolute = req(Signer::new(&credential)
        .at(now())
        .url("http://attacker.example/hook?x=1")
        .headers(BODY));
    *absolute.uri_mut() = "http://attacker.example/hook?x=1".parse().unwrap();
    assert_unauthorized(&app.send_request(absolute).await);
}

#[tokio::test]
async fn url_credentials_verify_nothing_without_a_public_url() {
    let credential = templated();
    let app = single(&credential);
    let signed = Signer::new(&credential)
        .at(now())
        .message_id("msg_1")
        .url("http://attacker.example/hook")
        .headers(BODY);
    let mut req = request(signed, BODY);
    req.headers_mut()
        .insert(http::header::HOST, "attacker.example".parse().unwrap());
    let reply = app.send_request(req).await;
    assert_unauthorized(&reply);
    assert_reason(&reply, |e| matches!(e, VerifyError::UnknownUrl));
    assert_eq!(app.runs(), 0);
}

#[test]
fn a_timestamp_header_outside_the_signed_payload_is_refused_when_built() {
    let unsigned = HmacCredential::new(HmacAlgorithm::Sha256, "s")
        .unwrap()
        .timestamp_header(Some(HeaderName::from_static("x-ts")))
        .payload_format("{body}")
        .unwrap();
    assert_eq!(
        Credential::hmac(unsigned).unwrap_err(),
        CredentialError::TimestampNotSigned
    );
    let err = toml::from_str::<CredentialConfig>(
        "kind = \"hmac\"\nsecret = \"s\"\ntimestamp_header = \"x-ts\"\npayload_format = \"{body}\"",
    )
    .unwrap()
    .build()
    .unwrap_err();
    assert_eq!(err, CredentialError::TimestampNotSigned);
}

#[tokio::test]
async fn public_url_rebuilds_the_url_the_sender_signed() {
    let credential = templated();
    let app = app(
        SignatureVerifyLayer::new(SingleTenant::new(credential.clone()))
            .clock(now)
            .public_url("https://public.example.org/"),
    );
    let signer = Signer::new(&credential).at(now());
    let public = signer
        .clone()
        .url("https://public.example.org/hook")
        .headers(BODY);
    app.assert_passes(public, BODY).await;
    // The internal Host no longer counts.
    let internal = signer.url(format!("https://{HOST}/hook")).headers(BODY);
    app.assert_refused(internal, BODY).await;
}

fn hmac_raw<M: Mac + hmac::digest::KeyInit>(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut mac = <M as Mac>::new_from_slice(key).unwrap();
    mac.update(payload);
    mac.finalize().into_bytes().to_vec()
}

#[tokio::test]
async fn sha512_sha1_base64_and_base64_secrets_match_independent_hmacs() {
    let ts = NOW_SECS.to_string();
    let payload = [ts.as_bytes(), b".", BODY].concat();
    let key = b"raw key \x00\xff bytes";
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(key);

    let config = |toml_text: String| {
        toml::from_str::<CredentialConfig>(&toml_text)
            .unwrap()
            .build()
            .unwrap()
    };
    let cases: Vec<(&str, Credential, String)> = vec![
        (
            "sha512 hex",
            Credential::hmac(HmacCredential::new(HmacAlgorithm::Sha512, "k512").unwrap()).unwrap(),
            hex::encode(hmac_raw::<Hmac<sha2::Sha512>>(b"k512", &payload)),
        ),
        (
            "sha1 hex with prefix",
            Credential::hmac(
                HmacCredential::new(HmacAlgorithm::Sha1, "k1")
                    .unwrap()
                    .prefix("sha1="),
            )
            .unwrap(),
            format!(
                "sha1={}",
                hex::encode(hmac_raw::<Hmac<sha1::Sha1>>(b"k1", &payload))
            ),
        ),
        (
            "sha256 base64",
            Credential::hmac(
                HmacCredential::new(HmacAlgorithm::Sha256, "k256")
                    .unwrap()
                    .encoding(SignatureEncoding::Base64),
            )
            .unwrap(),
            base64::engine::general_purpose::STANDARD
                .encode(hmac_raw::<Hmac<sha2::Sha256>>(b"k256", &payload)),
        ),
        (
            "secret_is_base64 from config",
            config(format!(
                "kind = \"hmac\"\nsecret = \"{key_b64}\"\nsecret_is_base64 = true\ntimestamp_header = \"x-timestamp\"\nalgorithm = \"sha512\"\nencoding = \"base64\""
            )),
            base64::engine::general_purpose::STANDARD
                .encode(hmac_raw::<Hmac<sha2::Sha512>>(key, &payload)),
        ),
    ];
    for (label, credential, expected) in cases {
        let signer = Signer::new(&credential).at(now());
        assert_eq!(signer.signature(BODY), expected, "{label}");
        let app = single(&credential);
        app.assert_passes(
            with_header(signer.headers(BODY), "x-signature", &expected),
            BODY,
        )
        .await;
        // The same secret used as text (not decoded) would be another key.
        app.assert_refused(with_header(signer.headers(BODY), "x-signature", "00"), BODY)
            .await;
    }

    // Without secret_is_base64 the base64 text itself is the key.
    let text_key = config(format!(
        "kind = \"hmac\"\nsecret = \"{key_b64}\"\ntimestamp_header = \"x-timestamp\""
    ));
    assert_eq!(
        Signer::new(&text_key).at(now()).signature(BODY),
        hex::encode(hmac_raw::<Hmac<sha2::Sha256>>(key_b64.as_bytes(), &payload))
    );
    // The x-vapi-signature preset reads its own headers.
    let vapi = Credential::vapi_signature("preset").unwrap();
    let headers = Signer::new(&vapi).at(now()).headers(BODY);
    assert!(headers.contains_key("x-vapi-signature") && headers.contains_key("x-vapi-timestamp"));
    single(&vapi).assert_passes(headers, BODY).await;
}

// ---------------------------------------------------------------------------------------------
// Secrets never printed

#[tokio::test]
async fn debug_and_display_never_show_secrets() {
    const SECRET: &str = "s3cr3t-do-not-print";
    let credentials = [
        Credential::vapi_hmac(SECRET).unwrap(),
        Credential::vapi_signature(SECRET).unwrap(),
        Credential::secret_header(HeaderName::from_static("x-vapi-secret"), SECRET).unwrap(),
        Credential::bearer(SECRET).unwrap(),
        toml::from_str::<CredentialConfig>(&format!("kind = \"hmac\"\nsecret = \"{SECRET}\""))
            .unwrap()
            .build()
            .unwrap(),
    ];
    let config = CredentialConfig::new(KindName::Bearer, SecretString::new(SECRET).unwrap());
    let layer = SignatureVerifyLayer::new(SingleTenant::many(credentials.clone())).clock(now);
    let service = tower::Layer::layer(
        &layer,
        tower::service_fn(|req: Request<Buffered>| async move {
            Ok::<_, Infallible>(Response::new(req.into_body()))
        }),
    );
    let app = app(layer.clone());
    let reply = app
        .send(
            with_header(HeaderMap::new(), "authorization", "Bearer wrong"),
            BODY,
        )
        .await;
    let rejection = reply.rejection.clone().unwrap();

    let printed = [
        format!("{credentials:?}"),
        format!("{credentials:#?}"),
        format!("{config:?}"),
        serde_json::to_string(&config).unwrap(),
        format!("{:?}", SingleTenant::many(credentials.clone())),
        format!("{layer:?}"),
        format!("{service:?}"),
        format!("{rejection}"),
        format!("{rejection:?}"),
        format!("{:?}", Signer::new(&credentials[0])),
        format!("{:?}", Signer::new(&credentials[3]).headers(BODY)),
        String::from_utf8_lossy(&reply.body).into_owned(),
    ];
    for text in printed {
        assert!(!text.contains(SECRET), "secret printed in {text}");
        assert!(
            !text.contains(&hex::encode(SECRET)),
            "secret printed in {text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Placement: axum and plain tower

async fn assert_placement(router: Router, runs: Arc<AtomicUsize>, credential: &Credential) {
    let app = App { router, runs };
    let big = vec![b'x'; 200_000];
    let body = [
        br#"{"message":{"type":"transcript","transcript":""#.as_slice(),
        &big,
        b"\"}}",
    ]
    .concat();
    let reply = app
        .assert_passes(Signer::new(credential).at(now()).headers(&body), &body)
        .await;
    assert_eq!(reply.headers["x-verified-org"], "-");
    app.assert_refused(HeaderMap::new(), &body).await;
}

#[tokio::test]
async fn works_under_router_layer_route_layer_method_router_layer_and_service_builder() {
    let credential = Credential::vapi_hmac("placement").unwrap();
    let layer = || SignatureVerifyLayer::new(SingleTenant::new(credential.clone())).clock(now);

    let runs = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route("/hook", echo_route(runs.clone()))
        .layer(layer());
    assert_placement(router, runs, &credential).await;

    let runs = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route("/hook", echo_route(runs.clone()))
        .route_layer(layer());
    assert_placement(router, runs, &credential).await;

    let runs = Arc::new(AtomicUsize::new(0));
    let router = Router::new().route("/hook", echo_route(runs.clone()).layer(layer()));
    assert_placement(router, runs, &credential).await;

    // A plain tower service with its own body type.
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let service =
        ServiceBuilder::new()
            .layer(layer())
            .service_fn(move |req: Request<Full<Bytes>>| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let verified = req.extensions().get::<Verified>().cloned();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let mut res = Response::new(Full::new(body));
                    if verified.is_some() {
                        res.headers_mut()
                            .insert("x-verified-org", HeaderValue::from_static("-"));
                    }
                    Ok::<_, Infallible>(res)
                }
            });
    let body = Bytes::from_static(BODY);
    let mut req = Request::post("/hook")
        .body(Full::new(body.clone()))
        .unwrap();
    req.headers_mut()
        .extend(Signer::new(&credential).at(now()).headers(BODY));
    let res = service.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-verified-org"], "-");
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), body);
    let res = service
        .oneshot(Request::post("/hook").body(Full::new(body)).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        UNAUTHORIZED
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn on_reject_closure_replaces_the_response_and_keeps_the_typed_rejection() {
    let credential = Credential::vapi_hmac("custom").unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route("/hook", echo_route(runs.clone()))
        .layer(
            SignatureVerifyLayer::new(SingleTenant::new(credential.clone()))
                .clock(now)
                .on_reject(|rejection: &Rejection| {
                    let mut res = Response::new(Body::from("nope"));
                    *res.status_mut() = rejection.status();
                    res
                }),
        );
    let reply = reply(
        router
            .oneshot(request(HeaderMap::new(), BODY))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, "nope");
    assert!(matches!(
        reply.reason(),
        Reason::Verify(VerifyError::MissingSignature)
    ));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}
