//! What the layers answer when they refuse a request.
//!
//! Clients learn nothing about which tenants exist: there is one uniform answer per class.
//!
//! | situation | status |
//! |---|---|
//! | body over the limit | 413 |
//! | body is not JSON / no tenant key anywhere / body failed mid-stream | 400 |
//! | unknown tenant, org without credentials, missing or invalid signature, stale or future timestamp | 401, identical body for all |
//! | store or secret backend failing, replay store full or unreachable | 503 with `Retry-After` |
//! | layer misconfigured | 500, the message names the missing layer |
//! | replayed delivery ([`crate::replay`]) | 200 with an empty body, or 409 if so configured |
//!
//! The typed [`Rejection`] travels in the response extensions for logging; the response itself
//! comes from an [`OnReject`], [`DefaultOnReject`] unless the layer is given another one (a
//! closure `Fn(&Rejection) -> Response<B>` works).
//!
//! # Example
//!
//! ```
//! use http::{Response, StatusCode};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use vapi_webhooks::reject::{DefaultOnReject, OnReject, Rejection};
//!
//! // A custom answer: plain text, same statuses.
//! let plain = |rejection: &Rejection| {
//!     Response::builder()
//!         .status(rejection.status())
//!         .body(Full::new(Bytes::from(rejection.status().canonical_reason().unwrap_or(""))))
//!         .unwrap()
//! };
//! # fn takes<R: OnReject<Full<Bytes>>>(_: R) {}
//! takes(plain);
//! takes(DefaultOnReject);
//! ```

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

pub use crate::error::{Reason, Rejection};

/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Turns a [`Rejection`] into the response the client gets.
///
/// Implemented by [`DefaultOnReject`] and by closures `Fn(&Rejection) -> Response<B>`. The
/// layer adds the [`Rejection`] to the response extensions after this runs.
pub trait OnReject<B>: Clone + Send + Sync + 'static {
    /// Builds the response for `rejection`.
    fn on_reject(&self, rejection: &Rejection) -> Response<B>;
}

impl<B, F> OnReject<B> for F
where
    F: Fn(&Rejection) -> Response<B> + Clone + Send + Sync + 'static,
{
    fn on_reject(&self, rejection: &Rejection) -> Response<B> {
        self(rejection)
    }
}

/// The default answer: a small JSON body that is the same for every rejection of a class.
///
/// `413 {"error":"payload too large"}`, `400 {"error":"bad request"}`,
/// `401 {"error":"unauthorized"}`, `503 {"error":"service unavailable"}` with `Retry-After`,
/// and for a misconfiguration `500 {"error":"<what is missing>"}`. A replayed delivery gets
/// `200` with an empty body (acknowledged: the first delivery was processed) or
/// `409 {"error":"duplicate delivery"}`, per [`ReplayAnswer`](crate::replay::ReplayAnswer).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultOnReject;

impl<B: From<Bytes>> OnReject<B> for DefaultOnReject {
    fn on_reject(&self, rejection: &Rejection) -> Response<B> {
        let status = rejection.status();
        if status == StatusCode::OK {
            // An acknowledged replay: a success, so no error body.
            return Response::new(B::from(Bytes::new()));
        }
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload too large",
            StatusCode::BAD_REQUEST => "bad request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::CONFLICT => "duplicate delivery",
            StatusCode::SERVICE_UNAVAILABLE => "service unavailable",
            // Misconfiguration: the message is written by this crate and names the layer.
            _ => return json_error(status, &rejection.to_string()),
        };
        json_error(status, message)
    }
}

/// The crate's one error response shape: `{"error": message}` as JSON, with `Retry-After` on a
/// 503. The layers' [`DefaultOnReject`] and the extractors' rejections both answer through it,
/// so every error answer of the crate looks alike.
pub(crate) fn json_error<B: From<Bytes>>(status: StatusCode, message: &str) -> Response<B> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut res = Response::new(B::from(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    res
}

/// Logs and counts `rejection`, builds its response with `on_reject` and attaches the typed
/// reason.
pub(crate) fn respond<B, R: OnReject<B>>(on_reject: &R, rejection: Rejection) -> Response<B> {
    crate::telemetry::rejected(&rejection);
    let status = rejection.status();
    match rejection.org() {
        Some(org) if status.is_server_error() => {
            tracing::warn!(org = %org, status = status.as_u16(), reason = rejection.reason().label(), error = %rejection.reason(), "vapi webhook rejected")
        }
        Some(org) => {
            tracing::info!(org = %org, status = status.as_u16(), reason = %rejection.reason(), "vapi webhook rejected")
        }
        None if status.is_server_error() => {
            tracing::warn!(status = status.as_u16(), reason = %rejection.reason(), "vapi webhook rejected")
        }
        None => {
            tracing::info!(status = status.as_u16(), reason = %rejection.reason(), "vapi webhook rejected")
        }
    }
    let mut res = on_reject.on_reject(&rejection);
    res.extensions_mut().insert(rejection);
    res
}
