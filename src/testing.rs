//! Signing requests in tests, for any [`Credential`].
//!
//! [`Signer`] produces the headers a sender would attach for a credential: an HMAC of any
//! configuration (algorithm, template, encoding, prefix, timestamp in seconds or milliseconds),
//! Standard Webhooks (with a generated `webhook-id` unless one is set), a shared-secret header
//! or a bearer token. Use it to test handlers behind
//! [`SignatureVerifyLayer`](crate::SignatureVerifyLayer).
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use vapi_webhooks::testing::Signer;
//! use vapi_webhooks::{Credential, SignatureVerifyLayer, SingleTenant};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let credential = Credential::vapi_hmac("test-secret")?;
//! let service = ServiceBuilder::new()
//!     .layer(SignatureVerifyLayer::new(SingleTenant::new(credential.clone())))
//!     .service_fn(|req: Request<Full<Bytes>>| async move {
//!         Ok::<_, Infallible>(Response::new(req.into_body()))
//!     });
//!
//! let body = br#"{"message":{"type":"status-update"}}"#;
//! let mut req = Request::post("/webhooks/vapi").body(Full::new(Bytes::from_static(body)))?;
//! req.headers_mut().extend(Signer::new(&credential).headers(body));
//! let res = service.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderValue, Method};

use crate::credential::{
    Credential, CredentialKind, HeaderSecret, HmacCredential, PayloadInputs, PayloadPart,
    SignatureEncoding,
};

/// Builds the headers that make a request pass a [`Credential`].
///
/// Defaults: the time [`Signer::new`] was called, timestamps in seconds, method `POST`, a
/// generated message id, no URL.
#[derive(Clone, Debug)]
pub struct Signer {
    credential: Credential,
    at: SystemTime,
    millis: bool,
    timestamp: Option<String>,
    message_id: String,
    method: Method,
    url: Option<String>,
}

impl Signer {
    /// A signer for `credential`.
    pub fn new(credential: &Credential) -> Self {
        Self {
            credential: credential.clone(),
            at: SystemTime::now(),
            millis: false,
            timestamp: None,
            message_id: generate_message_id(),
            method: Method::POST,
            url: None,
        }
    }

    /// Signs as of `time`.
    pub fn at(mut self, time: SystemTime) -> Self {
        self.at = time;
        self
    }

    /// Writes the timestamp in milliseconds instead of seconds.
    pub fn millis(mut self) -> Self {
        self.millis = true;
        self
    }

    /// Sends and signs this exact timestamp text instead of one computed from
    /// [`at`](Self::at) (to test odd spellings such as `+123`).
    pub fn raw_timestamp(mut self, timestamp: impl Into<String>) -> Self {
        self.timestamp = Some(timestamp.into());
        self
    }

    /// The message id for `{svix-id}` (Standard Webhooks' `webhook-id`).
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = id.into();
        self
    }

    /// The method for `{method}`. Default `POST`.
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// The full URL for `{url}`, e.g. `https://hooks.example.com/vapi?tenant=acme`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The headers to attach to a request carrying `body`.
    ///
    /// # Panics
    ///
    /// If the credential signs `{url}` and no [`url`](Self::url) was given, or a secret-header
    /// or bearer secret is not a valid header value.
    pub fn headers(&self, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        match self.credential.kind() {
            CredentialKind::Hmac(hmac) => {
                if let Some(name) = hmac.timestamp_header_name() {
                    headers.insert(name.clone(), header_value(self.timestamp().into_bytes()));
                }
                if hmac.format().uses(&PayloadPart::MessageId) {
                    headers.insert(
                        hmac.message_id_header_name().clone(),
                        header_value(self.message_id.clone().into_bytes()),
                    );
                }
                headers.insert(
                    hmac.signature_header_name().clone(),
                    header_value(self.sign_hmac(hmac, body).into_bytes()),
                );
            }
            CredentialKind::SecretHeader(secret) => {
                headers.insert(secret.header().clone(), secret_value(secret, b""));
            }
            CredentialKind::Bearer(secret) => {
                headers.insert(secret.header().clone(), secret_value(secret, b"Bearer "));
            }
        }
        headers
    }

    /// The signature header value for `body`, prefix included (e.g. `sha256=…`, `v1,…`).
    ///
    /// # Panics
    ///
    /// If the credential is not an HMAC credential, or it signs `{url}` and no
    /// [`url`](Self::url) was given.
    pub fn signature(&self, body: &[u8]) -> String {
        match self.credential.kind() {
            CredentialKind::Hmac(hmac) => self.sign_hmac(hmac, body),
            _ => panic!("Signer::signature is for HMAC credentials; use Signer::headers"),
        }
    }

    fn sign_hmac(&self, hmac: &HmacCredential, body: &[u8]) -> String {
        if hmac.format().uses(&PayloadPart::Url) && self.url.is_none() {
            panic!("the credential signs {{url}}: call Signer::url first");
        }
        let timestamp = self.timestamp();
        let inputs = PayloadInputs {
            body,
            timestamp: Some(timestamp.as_bytes()),
            method: self.method.as_str().as_bytes(),
            url: self.url.as_deref().map(str::as_bytes),
            message_id: Some(self.message_id.as_bytes()),
        };
        let mac = hmac
            .mac(&inputs)
            .expect("every input a template can use is provided");
        let encoded = match hmac.signature_encoding() {
            SignatureEncoding::Hex => hex::encode(&*mac),
            SignatureEncoding::Base64 => BASE64.encode(&*mac),
        };
        format!("{}{encoded}", hmac.signature_prefix())
    }

    fn timestamp(&self) -> String {
        if let Some(raw) = &self.timestamp {
            return raw.clone();
        }
        let (since, sign) = match self.at.duration_since(UNIX_EPOCH) {
            Ok(since) => (since, ""),
            Err(before) => (before.duration(), "-"),
        };
        if self.millis {
            format!("{sign}{}", since.as_millis())
        } else {
            format!("{sign}{}", since.as_secs())
        }
    }
}

fn header_value(bytes: Vec<u8>) -> HeaderValue {
    HeaderValue::from_bytes(&bytes).expect("signer produced an invalid header value")
}

fn secret_value(secret: &HeaderSecret, scheme: &[u8]) -> HeaderValue {
    let value = [scheme, secret.secret().expose()].concat();
    let mut value = HeaderValue::from_bytes(&value).unwrap_or_else(|_| {
        panic!(
            "the secret for `{}` is not a valid header value",
            secret.header()
        )
    });
    value.set_sensitive(true);
    value
}

/// A fresh `msg_…` id, unique within the process.
fn generate_message_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!(
        "msg_{nanos:x}_{:x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
