//! Buffering the request body once, within a limit.
//!
//! Signatures cover the bytes exactly as received, and the tenant probe reads them before any
//! handler does, so the body is buffered once, by one stage: [`buffer_request`] reads any
//! [`http_body::Body`] (hyper's `Incoming`, axum's `Body`, tower-http's `Limited` and
//! decompression bodies, …) up to a limit, stores the bytes as a [`RawBody`] request extension
//! and lets the request go on with a [`Buffered`] body over **the same bytes** (no copy), so the
//! handler can still read it.
//!
//! * `Content-Length` (or a body's exact size hint) over the limit → [`BodyError::TooLarge`]
//!   without reading a byte;
//! * a streamed body that grows past the limit → [`BodyError::TooLarge`] as soon as it does;
//! * a body that fails mid-stream → [`BodyError::Read`] (a 400, not a 500);
//! * a request that already carries a [`RawBody`] is not read again, but its length is still
//!   checked against the limit: **every limit that is set applies**.
//!
//! [`RawBodyLayer`](crate::RawBodyLayer) is that stage as a layer of its own. `OrgResolveLayer` and
//! `SignatureVerifyLayer` run it themselves when no earlier stage did, each with its own
//! `.body_limit(bytes)` ([`DEFAULT_BODY_LIMIT`], 1 MiB, by default).
//!
//! # Other body limits
//!
//! axum's `DefaultBodyLimit` only configures axum's own extractors (`Bytes`, `Json`, …); these
//! layers read the body before any extractor runs and apply their own limit instead. tower-http's
//! `RequestBodyLimitLayer` may sit in front: its `Limited` body is read like any other, and the
//! smaller of the two limits wins (its own error becomes our 413 when `Content-Length` is
//! absent, or tower-http answers 413 itself when it is present).
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use vapi_webhooks::body::{buffer_request, BodyError, RawBody, DEFAULT_BODY_LIMIT};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Default limit: the body is read once and kept as `RawBody`.
//! let req = http::Request::new(Full::new(Bytes::from_static(br#"{"message":{}}"#)));
//! let (req, bytes) = buffer_request(req, DEFAULT_BODY_LIMIT).await.unwrap();
//! assert_eq!(req.extensions().get::<RawBody>().unwrap().as_bytes(), &bytes);
//!
//! // Buffered again with a smaller limit: not read twice, but the limit still applies.
//! let err = buffer_request(req, 8).await.unwrap_err();
//! assert!(matches!(err, BodyError::TooLarge { limit: 8 }));
//! # }
//! ```
//!
//! As a stage of its own, in front of everything that reads the body:
//!
//! ```
//! use axum::{Router, routing::post};
//! use vapi_webhooks::RawBodyLayer;
//!
//! let app: Router = Router::new()
//!     .route("/webhooks/vapi", post(|body: String| async move { body.len().to_string() }))
//!     .route_layer(RawBodyLayer::new(256 * 1024));
//! ```

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

use crate::error::BoxError;

pub use crate::error::BodyError;

/// The default body limit: 1 MiB. Real end-of-call reports are about 50 KB for each minute of
/// call.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The body a request goes on with once it is buffered: the [`RawBody`] bytes, not copied.
pub type Buffered = Full<Bytes>;

/// The request body as received, stored once in the request extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawBody(pub Bytes);

impl RawBody {
    /// The bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

/// Buffers `req`'s body up to `limit` bytes, once.
///
/// Returns the request, now with a [`Buffered`] body over the bytes and carrying them as a
/// [`RawBody`] extension, together with the bytes. If the request already carries a
/// [`RawBody`] (an earlier stage buffered it), that is used and the body is not read again;
/// its length is still checked against `limit`.
pub async fn buffer_request<B>(
    req: Request<B>,
    limit: usize,
) -> Result<(Request<Buffered>, Bytes), BodyError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    if let Some(RawBody(bytes)) = parts.extensions.get::<RawBody>() {
        if bytes.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        // The earlier stage left a body over these same bytes: nothing to read.
        let bytes = bytes.clone();
        return Ok((Request::from_parts(parts, Full::new(bytes.clone())), bytes));
    }
    let declared = content_length(&parts.headers).unwrap_or(0);
    if declared > limit as u64 || body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    let bytes = collect(Limited::new(body, limit)).await.map_err(|err| {
        match err.is::<LengthLimitError>() {
            true => BodyError::TooLarge { limit },
            false => BodyError::Read(Arc::from(err)),
        }
    })?;
    parts.extensions.insert(RawBody(bytes.clone()));
    Ok((Request::from_parts(parts, Full::new(bytes.clone())), bytes))
}

/// The body's data frames as one `Bytes`. One frame of `Bytes` (the usual case) is handed over
/// as it is: no copy and no allocation; only a body of several frames is copied together.
async fn collect<B>(body: B) -> Result<Bytes, BoxError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(mut data) = frame.map_err(Into::into)?.into_data() else {
            continue; // trailers carry nothing that is signed
        };
        let data = data.copy_to_bytes(data.remaining());
        match (&mut joined, first.take()) {
            (Some(joined), _) => joined.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(earlier)) => {
                let mut both = BytesMut::with_capacity(earlier.len() + data.len());
                both.extend_from_slice(&earlier);
                both.extend_from_slice(&data);
                joined = Some(both);
            }
        }
    }
    Ok(match joined {
        Some(joined) => joined.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// A parseable `Content-Length`; anything else is left to the counting reader.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
